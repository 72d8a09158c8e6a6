"""``python3 tools/devstack up|down|status|reset|check [--db sqlite|postgresql] [--state DIR] [--port N]``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: tools and rucio_magic_ext

from tools.devstack import venv  # standard library only

venv.ensure()

from tools.devstack.cli import main  # noqa: E402  (after the venv is ensured)

sys.exit(main())
