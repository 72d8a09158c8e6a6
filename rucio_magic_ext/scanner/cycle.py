"""One scanner cycle: every stage once, in the order a file travels; a failing stage never stops the others."""

from __future__ import annotations

import logging
from collections.abc import Callable

from rucio_magic_ext import monitoring
from rucio_magic_ext.scanner.census import refresh_gauges
from rucio_magic_ext.scanner.checksum import checksum
from rucio_magic_ext.scanner.context import Context
from rucio_magic_ext.scanner.discover import discover
from rucio_magic_ext.scanner.nights import close_nights
from rucio_magic_ext.scanner.protect import protect
from rucio_magic_ext.scanner.register import register
from rucio_magic_ext.scanner.settle import settle

STAGES: tuple[tuple[str, Callable[[Context], int]], ...] = (
    ("discover", discover),
    ("settle", settle),
    ("checksum", checksum),
    ("register", register),
    ("protect", protect),
    ("nights", close_nights),
    ("census", refresh_gauges),
)


def run_cycle(context: Context, stages: tuple[tuple[str, Callable[[Context], int]], ...] = STAGES) -> dict[str, int]:
    """Run the stages; returns how many files (nights, for the last) each one moved on."""
    moved: dict[str, int] = {}
    for name, stage in stages:
        try:
            with monitoring.stage_timer(name):
                moved[name] = stage(context)
            monitoring.stage_files(name, moved[name])
        except Exception as error:
            moved[name] = 0
            monitoring.stage_error(name)
            context.logger(logging.ERROR, "stage %s failed: %s", name, error, exc_info=True)
    return moved
