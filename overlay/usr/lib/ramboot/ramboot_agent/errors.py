"""The agent's exception hierarchy: every failure the agent reports is one of these."""

from __future__ import annotations


class AgentError(Exception):
    """A failure the agent reports (console, failure event) before falling back."""


class ConfigError(AgentError):
    """Bad or missing instructions: kernel command line, DHCP options."""


class NetworkError(AgentError):
    """No usable network: no carrier, no lease, within the configured bounds."""


class FetchError(AgentError):
    """A download failed after its retries; names the URL and the reason."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


class ScriptError(AgentError):
    """A boot script is malformed or failed; names the script URL and line."""

    def __init__(self, url: str, line: int | None, message: str) -> None:
        where = f"{url}:{line}" if line is not None else url
        super().__init__(f"{where}: {message}")
        self.url = url
        self.line = line
        self.message = message


class BootError(AgentError):
    """Loading or executing the next kernel failed."""
