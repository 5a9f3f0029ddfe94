"""Render a validated inventory into the trees and files the boot servers serve.

One module per output: `tftp`, `http`, `kea`, `dnsmasq`, `bootconf`; `tree`
puts them together and swaps the result into place atomically.
"""
