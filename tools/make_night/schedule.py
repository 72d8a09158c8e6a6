"""The runs of one night: which target, which run type, which wobble, how many subruns, when.

A shifter points at a target, takes a pedestal (P) and a calibration (C) run, then data (D) runs of
about 20 minutes, rotating through the target's wobble positions run after run, and moves on to the
next target as it culminates. Pure: everything comes from the ``random.Random`` handed in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

from tools.make_night.catalogue import Target, pick_targets

# Run numbers seen in the 2019-2020 path list: 05083804 on 2019-08-01, 05088068 on 2020-01-03.
_REFERENCE_NIGHT, _REFERENCE_RUN, _RUNS_PER_DAY = date(2020, 1, 3), 5_088_068, 27.5
FIRST_STEREO_RUN, LAST_RUN = 5_000_000, 5_999_999

DATA_SUBRUNS = (5, 25)
MIN_BLOCK_DATA_RUNS, MAX_BLOCK_DATA_RUNS = 2, 5


@dataclass(frozen=True, slots=True)
class Run:
    number: int
    run_type: str  # P, C or D
    target: Target
    wobble_offset: Decimal | None
    wobble_angle: int | None
    subruns: int
    start: datetime
    end: datetime


def default_first_run(night: date, runs: int) -> int:
    """A run number plausible for the date, so that nights generated in sequence do not collide."""
    estimate = _REFERENCE_RUN + round((night - _REFERENCE_NIGHT).days * _RUNS_PER_DAY)
    return min(max(estimate, FIRST_STEREO_RUN), LAST_RUN + 1 - runs)


def _data_runs_per_target(runs: int, rng: random.Random) -> list[int]:
    """Split ``runs`` into target blocks of P + C + k data runs, using every run."""
    if runs < 3:
        raise ValueError(f"a night needs at least 3 runs (pedestal, calibration, data), not {runs}")
    blocks: list[int] = []
    left = runs
    while left:
        data = rng.randint(MIN_BLOCK_DATA_RUNS, MAX_BLOCK_DATA_RUNS)
        data = min(data, left - 2)
        if left - 2 - data < 2 + MIN_BLOCK_DATA_RUNS:  # the rest could not make a block of its own
            data = left - 2
        blocks.append(data)
        left -= 2 + data
    return blocks


def _calibration_subruns(rng: random.Random) -> int:
    return 1 if rng.random() < 0.85 else 2


def plan_runs(night: date, runs: int, first_run: int, rng: random.Random) -> list[Run]:
    """The runs of the night labelled ``night`` (the sunrise date): they start on the evening before."""
    blocks = _data_runs_per_target(runs, rng)
    targets = pick_targets(night, len(blocks), rng)
    clock = datetime.combine(night - timedelta(days=1), time(20, 30), timezone.utc)
    clock += timedelta(minutes=rng.uniform(0, 40))
    planned: list[Run] = []
    number = first_run
    for target, data_runs in zip(targets, blocks):
        angles = target.wobble_angles
        turn = rng.randrange(len(angles))
        keep_wobble = rng.random() < 0.75  # pedestal and calibration runs often carry no wobble
        offset = target.wobble_offset if keep_wobble else None
        angle = angles[turn] if keep_wobble else None
        for run_type in ("P", "C"):
            minutes = rng.uniform(0.5, 1.5)
            end = clock + timedelta(minutes=minutes)
            subruns = _calibration_subruns(rng)
            planned.append(Run(number, run_type, target, offset, angle, subruns, clock, end))
            number, clock = number + 1, end + timedelta(seconds=rng.uniform(20, 60))
        for index in range(data_runs):
            end = clock + timedelta(minutes=rng.uniform(15, 21))
            subruns = rng.randint(*DATA_SUBRUNS)
            angle = angles[(turn + index) % len(angles)]
            planned.append(Run(number, "D", target, target.wobble_offset, angle, subruns, clock, end))
            number, clock = number + 1, end + timedelta(seconds=rng.uniform(30, 90))
        clock += timedelta(minutes=rng.uniform(3, 8))  # slewing to the next target
    return planned
