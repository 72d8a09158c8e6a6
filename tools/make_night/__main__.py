"""``python tools/make_night ROOT [--night YYYY-MM-DD] [--scale F] [--seed N] [--trickle S] [--list] [--json]``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root: rucio_magic_ext and tools

from tools.make_night.cli import main

sys.exit(main())
