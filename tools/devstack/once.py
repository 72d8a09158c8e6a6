"""One pass of one or several daemon functions, in this process, in order::

    python once.py module:function [--option value ...] [--then module:function ...]

Used by ``Stack.run_once`` and ``Stack.run_round``: calling the daemons' functions with ``once=True`` (and
``partition_wait_time=0`` where they take it) skips the console scripts' start-up wait, and one process
for a round of daemons skips re-importing Rucio for each (``zygote.py`` forks these processes with Rucio
imported already). Needs ``RUCIO_CONFIG`` in the environment.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: tools and rucio_magic_ext

from rucio.common.logging import setup_logging

from rucio_magic_ext.transfertool.register import register as register_transfertool
from tools.devstack.daemons import once_kwargs


def run(entry: str, *args: str) -> None:
    module_name, function_name = entry.split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    kwargs = {"once": True, **once_kwargs(args)}
    if "partition_wait_time" in inspect.signature(function).parameters:
        kwargs["partition_wait_time"] = 0
    function(**kwargs)


def main(argv: list[str]) -> None:
    setup_logging(process_name="once")
    register_transfertool()
    step: list[str] = []
    for word in [*argv, "--then"]:
        if word == "--then":
            if step:
                run(*step)
            step = []
        else:
            step.append(word)


if __name__ == "__main__":
    main(sys.argv[1:])
