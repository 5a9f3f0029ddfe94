"""Shared test helpers: network namespaces, real peers, QEMU."""
