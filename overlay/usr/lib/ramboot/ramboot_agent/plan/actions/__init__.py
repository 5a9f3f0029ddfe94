"""The action kinds; plan/registry.py lists them."""
