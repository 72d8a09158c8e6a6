"""``python3 tools/demo``: the MAGIC flow end to end on the embedded default (SQLite, local folders)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: tools and rucio_magic_ext

from tools.devstack import venv  # standard library only

venv.ensure()

from tools.demo.cli import main  # noqa: E402  (after the venv is ensured)

sys.exit(main())
