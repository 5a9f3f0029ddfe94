"""Fault injection for the atomicity tests.

With RAMBOOT_DEPLOY_CRASH_AT=N in the environment, the Nth checkpoint a
deploy or rollback passes kills the process on the spot, as a power cut or
SIGKILL would. Unset (always, outside the tests) it costs one dict lookup.
"""

from __future__ import annotations

import itertools
import os

_ENV = "RAMBOOT_DEPLOY_CRASH_AT"
_passed = itertools.count(1)


def checkpoint(name: str) -> None:
    crash_at = os.environ.get(_ENV)
    if crash_at is None:
        return
    passed = next(_passed)
    if passed == int(crash_at):
        os.write(2, f"fault injected at checkpoint {passed} ({name})\n".encode())
        os._exit(86)
