"""ramboot host tools: check, render and deploy a network-boot fleet."""

__version__ = "0.1.0"
