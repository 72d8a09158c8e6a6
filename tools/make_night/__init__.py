"""A synthetic but realistic MAGIC night, laid out like the La Palma storage.

``plan_night`` decides every file (name, folder, size, content seed) without writing anything;
``write_night`` puts a plan on disk, at once or trickled in like a running DAQ. DL3 products are valid
GADF files of their own run (``dl3``), raw files valid gzip streams, the rest pseudo-random bytes. Run
``python tools/make_night --help`` for the command line.
"""

from tools.make_night.plan import Content, PlannedFile, observatory_dir, plan_night
from tools.make_night.write import DEFAULT_DL3_TEMPLATE, Written, write_file, write_night

__all__ = [
    "DEFAULT_DL3_TEMPLATE",
    "Content",
    "PlannedFile",
    "Written",
    "observatory_dir",
    "plan_night",
    "write_file",
    "write_night",
]
