"""``python3 tools/bench``: every benchmark of the project, each beside its baseline, one line per figure."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: tools and rucio_magic_ext

from tools.devstack import venv  # standard library only

venv.ensure()

from tools.bench.runner import main  # noqa: E402  (after the venv is ensured)

sys.exit(main())
