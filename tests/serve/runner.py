"""`ramboot serve` exactly as shipped, with the test's stage documents.

    python -m tests.serve.runner [serve options...]

Only the targets class is replaced (tests.serve.targets.ScriptedTargets);
everything else (CLI, uvicorn, TLS, database) is the real command.
"""

from __future__ import annotations

import sys

from ramboot import cli
from ramboot.serve import command
from tests.serve.targets import ScriptedTargets

if __name__ == "__main__":
    command.StandInTargets = ScriptedTargets  # type: ignore[misc,assignment]
    sys.argv = ["ramboot", "serve", *sys.argv[1:]]
    cli.main()
