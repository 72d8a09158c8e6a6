"""Run one pass of a daemon function in this process: ``python once.py module:function [--option value ...]``.

Used by ``Stack.run_once`` for conveyor daemons: calling their functions with ``partition_wait_time=0``
skips the 10 s wait of the console scripts. Needs ``RUCIO_CONFIG`` in the environment.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack.daemons import once_kwargs
from rucio.common.logging import setup_logging

from rucio_magic_ext.transfertool.register import register as register_transfertool


def main(entry: str, *args: str) -> None:
    module_name, function_name = entry.split(":")
    setup_logging(process_name=function_name)
    register_transfertool()
    function = getattr(importlib.import_module(module_name), function_name)
    function(once=True, partition_wait_time=0, **once_kwargs(args))


if __name__ == "__main__":
    main(*sys.argv[1:])
