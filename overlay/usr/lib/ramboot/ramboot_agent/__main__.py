import sys

from ramboot_agent.cli import main

sys.exit(main())
