"""Synthetic MAGIC files for the benchmarks: consecutive nights of ``tools/make_night``, as many files as asked.

The names are real MAGIC names in their observatory folders (raw, calibrated, star, stereo levels), so the
scanner does all its work on them: parse, place, register, organise, protect.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

from tools.make_night import PlannedFile, plan_night

RUNS_PER_NIGHT = 20  # about 1,900 files a night
TINY = 1e-5  # file size factor: a few kB per file, so that writing them costs little


def nights_from(first: date, seed: int = 0, scale: float = TINY) -> Iterator[list[PlannedFile]]:
    """The plans of ``first`` and the nights after it, one by one (run numbers never collide)."""
    night = first
    while True:
        yield plan_night(night, runs=RUNS_PER_NIGHT, seed=seed, scale=scale)
        night += timedelta(days=1)


def plan_files(count: int, first: date, seed: int = 0, scale: float = TINY) -> list[PlannedFile]:
    """The first ``count`` files of the nights from ``first`` on, in the order they are closed on site."""
    files: list[PlannedFile] = []
    for plan in nights_from(first, seed, scale):
        files.extend(plan[: count - len(files)])
        if len(files) >= count:
            return files
    raise AssertionError("unreachable")
