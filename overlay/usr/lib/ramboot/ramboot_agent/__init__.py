"""ramboot-agent: the in-RAM provisioning agent (pure standard library)."""

__version__ = "0.1.0"
