"""Incremental scan: one scanner cycle with K files already known and 100 new ones, for growing K.

A site's ledger only grows; a cycle must cost what is new, not what is known. For each K the observatory
holds K resting files (tools/bench/seed.py) and 100 new files of the night going on, closed hours ago;
one cycle in a fresh process discovers, registers and protects the 100. Its wall time (the best of
two such cycles) and the peak memory of its process are the figures; the smallest K is the baseline
that the largest is compared with.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from rucio_magic_ext.common import utcnow
from rucio_magic_ext.ledger import Ledger
from tools.bench import benchstack, children, nights, seed
from tools.bench.report import Figure, Target
from tools.make_night import write_night

FIRST_NIGHT = date(2019, 6, 1)
TARGET_K = 100_000
TARGET_SECONDS = 3.0
TARGET_MB = 300.0
REPEAT = 2  # cycles per K, each with its own new files: the best one counts (other work shares the machine)
FLAT_RATIO = 1.5  # time at the largest K over time at the smallest: "flat"
SETTINGS = {"magic-scanner": {"settle_seconds": "1", "carrier_max_age_seconds": "0"}}


def run(place: benchstack.Place, sizes: Sequence[int], new: int, profile_dir: Path | None = None) -> list[Figure]:
    sizes = sorted(sizes)
    plan = nights.plan_files(sizes[-1] + REPEAT * new, FIRST_NIGHT)
    measured: dict[int, dict] = {}
    with benchstack.running(place, SETTINGS, "incremental") as stack:
        root = benchstack.orm_root(stack)
        ledger = Ledger.from_url(*benchstack.ledger_url(stack))
        ledger.upgrade()
        known = 0  # plan[:known] is in the ledger and on storage
        for k in sizes:
            began = time.monotonic()
            fresh = plan[known:k]
            tail_night = seed.night_of(plan[k + REPEAT * new - 1])
            now = utcnow()
            seed.create_files(root, fresh)
            seed.add_rows(ledger, benchstack.ORM, fresh, tail_night, now)
            seed.close_nights(ledger, benchstack.ORM, {seed.night_of(p) for p in plan[:k]} - {tail_night}, now)
            folders = seed.record_folders(ledger, benchstack.ORM, root, now)
            seed.settle_database(ledger)
            print(
                f"incremental: K={k} known ({folders} folders, seeded in {time.monotonic() - began:.0f} s)",
                file=sys.stderr,
            )
            cycles = []
            for attempt in range(REPEAT):
                time.sleep(0.05)  # folder mtimes are coarse: the new files must change them
                write_night(plan[k + attempt * new : k + (attempt + 1) * new], root, stamp_times=True)
                profile = profile_dir / f"incremental-{k}-{attempt}.prof" if profile_dir else None
                cycles.append(children.scanner_cycle(stack, log=f"bench-incremental-{k}", profile=profile))
            measured[k] = {**min(cycles, key=lambda cycle: cycle["seconds"]), "folders": folders, "cycles": cycles}
            measured[k]["peak_rss_mb"] = max(cycle["peak_rss_mb"] for cycle in cycles)
            known = k + REPEAT * new
    return figures(measured, new)


def figures(measured: dict[int, dict], new: int) -> list[Figure]:
    """Time and peak memory per K (targets at 100k), and the largest K against the smallest."""
    out = []
    for k, cycle in sorted(measured.items()):
        at_target = k == TARGET_K
        moved = cycle["moved"]
        detail = (
            f"best of {len(cycle['cycles'])} cycles; {moved.get('discover', 0)} discovered, "
            f"{moved.get('protect', 0)} protected of {new} new"
        )
        out.append(
            Figure(
                f"incremental.cycle_time[K={k}]",
                cycle["seconds"],
                "s",
                target=Target(TARGET_SECONDS, "<=") if at_target else None,
                detail=detail,
                extra=cycle,
            )
        )
        out.append(
            Figure(
                f"incremental.peak_rss[K={k}]",
                cycle["peak_rss_mb"],
                "MB",
                target=Target(TARGET_MB, "<=") if at_target else None,
                detail=f"{cycle['rss_before_cycle_mb']:.0f} MB after imports and start-up",
            )
        )
    smallest, largest = min(measured), max(measured)
    if largest != smallest:
        out.append(
            Figure(
                f"incremental.growth[K={largest}/K={smallest}]",
                measured[largest]["seconds"],
                "s",
                baseline=measured[smallest]["seconds"],
                baseline_name=f"K={smallest}",
                target=Target(FLAT_RATIO, "<=", on_ratio=True),
                detail="cycle time at the largest K over the smallest",
            )
        )
    return out
