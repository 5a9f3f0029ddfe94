"""The session's test PKI and signatures (cases.py)."""

from tests.agent.trust.cases import signatures

__all__ = ["signatures"]
