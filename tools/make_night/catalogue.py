"""Targets a synthetic night can observe, and which of them are up on a given night.

Names, wobble offsets and wobble angles are those seen in the La Palma path list of 2019-2020
(``tests/data/magic_orm_paths_2019_2020.txt.gz``), stored as MAGIC stores them (truncated to about
12 characters). Right ascensions are approximate: they only order targets through the night and make
the season plausible (Crab in winter, Mrk501 in summer).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

# The usual order of the four standard wobble positions, run after run (seen in the path list).
STANDARD_ANGLES = (0, 180, 90, 270)


@dataclass(frozen=True, slots=True)
class Target:
    source: str
    ra_hours: float
    wobble_offset: Decimal = Decimal("0.40")
    wobble_angles: tuple[int, ...] = STANDARD_ANGLES


CATALOGUE: tuple[Target, ...] = (
    Target("TXS0025+197", 0.47),
    Target("S20109+22", 1.19),
    Target("CGRaBSJ0211+", 2.19),
    Target("PSRJ0218+423", 2.35),
    Target("S30218+35", 2.36),
    Target("LSI+61", 2.68),
    Target("Perseus-MA", 3.33, Decimal("0.26"), (108, 288, 28, 208)),
    Target("CrabNebula", 5.58, Decimal("0.40"), (35, 215)),
    Target("1ES1218+304", 12.36),
    Target("PKS1413+135", 14.27),
    Target("B2-1420+32", 14.38),
    Target("PKS1502+106", 15.08),
    Target("PKS1510-089", 15.21),
    Target("PG1553+113", 15.93),
    Target("Mrk501", 16.90),
    Target("GalacticCent", 17.76, Decimal("0.50"), (7, 187, 113, 293)),
    Target("HESSJ1809-19", 18.15, Decimal("0.40"), (30, 210, 120, 300)),
    Target("HESSJ1943+21", 19.72),
    Target("1ES1959+650", 20.00),
    Target("1ES2037+521", 20.65),
    Target("BLLac", 22.05),
    Target("Boomerang", 22.48, Decimal("0.50"), (160, 340, 60, 240)),
    Target("B2-2234+28A", 22.62),
    Target("TXS2241", 22.73),
    Target("1ES2344+514", 23.78),
)


def sidereal_midnight(night: date) -> float:
    """Local sidereal time (hours) at La Palma's local midnight before sunrise on ``night``.

    La Palma's longitude (-17.9 deg) and its local midnight (about 01:12 UTC) nearly cancel, so this
    is Greenwich sidereal time at 0 h UTC of the sunrise date.
    """
    days = (night - date(2000, 1, 1)).days - 0.5
    return (6.697374558 + 0.06570982441908 * days) % 24


def _hours_from(ra_hours: float, lst: float) -> float:
    """Signed hours from culmination at midnight, in [-12, 12)."""
    return (ra_hours - lst + 12) % 24 - 12


def pick_targets(night: date, count: int, rng: random.Random) -> list[Target]:
    """``count`` targets up on that night, in the order they culminate (the order a shifter follows)."""
    lst = sidereal_midnight(night)
    by_distance = sorted(CATALOGUE, key=lambda target: abs(_hours_from(target.ra_hours, lst)))
    pool = by_distance[: max(count, min(len(CATALOGUE), 2 * count))]
    chosen = rng.sample(pool, min(count, len(pool)))
    while len(chosen) < count:  # more blocks than targets: revisit some, as long nights do
        chosen.append(rng.choice(pool))
    return sorted(chosen, key=lambda target: _hours_from(target.ra_hours, lst))
