"""Fixtures shared by the agent's test packages."""

from tests.agent.trust.cases import signatures  # the session's test PKI (made once)

__all__ = ["signatures"]
