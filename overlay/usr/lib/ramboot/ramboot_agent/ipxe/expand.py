"""``${...}`` expansion, innermost first, as iPXE's expand_settings() does.

iPXE repeatedly replaces the innermost ``${name}`` (the last ``${`` before
the first ``}``) until none is left, so ``${${var}}`` works and a value may
itself contain ``${...}``. Unknown settings expand to nothing. An
unterminated ``${`` is left as it is by iPXE; the agent rejects it when the
script is parsed (a deliberate difference, see docs/agent-ipxe.md).
"""

from __future__ import annotations

from collections.abc import Callable

# Bounds, so that a value containing its own reference cannot loop forever.
MAX_EXPANSIONS = 1000
MAX_LENGTH = 1 << 16


class ExpansionError(ValueError):
    """Unterminated ``${``, or an expansion that does not end."""


def _innermost(text: str) -> tuple[int, int] | None:
    first = text.find("${")
    if first < 0:
        return None
    end = text.find("}", first + 2)
    if end < 0:
        return None
    return text.rfind("${", first, end), end


def expand(word: str, lookup: Callable[[str], str | None]) -> str:
    """Expand every ``${name}`` in ``word`` using ``lookup`` (None: empty)."""
    text = word
    for _ in range(MAX_EXPANSIONS):
        found = _innermost(text)
        if found is None:
            return text
        start, end = found
        value = lookup(text[start + 2 : end]) or ""
        text = text[:start] + value + text[end + 1 :]
        if len(text) > MAX_LENGTH:
            raise ExpansionError(f"expansion longer than {MAX_LENGTH} characters")
    raise ExpansionError(f"more than {MAX_EXPANSIONS} expansions (a self-referencing value?)")


def check_syntax(word: str) -> None:
    """Reject a ``${`` that no ``}`` closes (expanding every name to nothing)."""
    text = word
    while (found := _innermost(text)) is not None:
        start, end = found
        text = text[:start] + text[end + 1 :]
    if "${" in text:
        raise ExpansionError("unterminated '${'")
