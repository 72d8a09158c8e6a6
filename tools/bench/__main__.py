"""``python3 tools/bench``: every benchmark of the project, each beside its baseline, one line per figure."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack import venv  # standard library only

venv.ensure()

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.runner import main  # noqa: E402  (after the venv is ensured)

sys.exit(main())
