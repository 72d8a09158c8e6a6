"""Registration: N new files through one scanner cycle, against two baselines measured in the same run.

The scanner's cycle discovers, settles, checksums, registers (replica, metadata, run dataset < night <
top container) and protects (policy rules, carrier datasets and their rules) the N files. The files are
written with the times they were closed on site (hours ago), and the scanner's settle time is 1 s, so no
file waits for a later cycle; its batch size is above N, so one cycle takes them all. The baselines
register files of other nights on the same stack: the 2020 prototype's file-by-file REST calls
(``prototype.py``), and the best peer pattern, bulk REST calls as Rubin registers (``bulk_rest.py``), N files
with the same collections, metadata and policy rules.

Sites run Rucio's cache in memcached; the targets hold without it (Rucio then caches nothing), and where
memcached is installed the whole measurement runs a second time on a stack with it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from rucio_magic_ext.ledger import FileState, Ledger
from tools.bench import benchstack, children, nights
from tools.bench.report import Figure, Target
from tools.devstack.stack import Stack
from tools.make_night import PlannedFile, write_night

SCANNER_NIGHT = date(2020, 1, 4)
PROTOTYPE_NIGHT = date(2020, 3, 4)
BULK_REST_NIGHT = date(2020, 5, 4)
# What a peer can be held to: the 2020 prototype's one call per file per step, and bulk REST doing the same work.
# Beyond these, the cycle is bound by Rucio's core writing locks, replicas and requests (README: Registration).
TARGET_RATIO = 10.0  # over the 2020 prototype
TARGET_BULK_RATIO = 1.0  # over bulk REST


def settings(files: int) -> dict[str, dict[str, str]]:
    return {
        "magic-scanner": {
            "settle_seconds": "1",
            "batch_size": str(max(files, 2000)),
            "carrier_max_age_seconds": "0",
        }
    }


@dataclasses.dataclass(frozen=True)
class WithoutCache(benchstack.Place):
    """The benchmarks' stack with no memcached: Rucio caches nothing."""

    def stack(self, extra: dict[str, dict[str, str]]) -> Stack:
        stack = super().stack(extra)
        stack.settings.cache = False
        return stack


def run(place: benchstack.Place, files: int, baseline_files: int, profile_dir: Path | None = None) -> list[Figure]:
    """Without memcached (the targets), then with it where it is installed."""
    uncached = WithoutCache(place.state, place.port, place.pg_database)
    figures = measure(uncached, files, baseline_files, profile_dir, cached=False)
    if shutil.which("memcached"):
        figures += measure(place, files, baseline_files, profile_dir, cached=True)
    else:
        print("registration: memcached is not installed: no figures with Rucio's cache", file=sys.stderr)
    return figures


def measure(
    place: benchstack.Place, files: int, baseline_files: int, profile_dir: Path | None, cached: bool
) -> list[Figure]:
    """The scanner's cycle and both baselines on one fresh stack."""
    label = "with memcached" if cached else "without memcached"
    with benchstack.running(place, settings(files), f"registration ({label})") as stack:
        root = benchstack.orm_root(stack)
        plan = nights.plan_files(files, SCANNER_NIGHT)
        write_night(plan, root, stamp_times=True)
        print(f"registration: {len(plan)} files written, one scanner cycle", file=sys.stderr)
        suffix = "-memcached" if cached else ""
        profile = profile_dir / f"registration-{files}{suffix}.prof" if profile_dir else None
        cycle = children.scanner_cycle(stack, log="bench-registration-cycle", profile=profile)
        ledger = Ledger.from_url(*benchstack.ledger_url(stack))
        protected = sum(
            1
            for row in ledger.known(benchstack.ORM, [p.path for p in plan]).values()
            if row.state is FileState.PROTECTED
        )
        print(f"registration: {baseline_files} files through the 2020 prototype", file=sys.stderr)
        proto = _baseline(stack, root, "prototype.py", nights.plan_files(baseline_files, PROTOTYPE_NIGHT))
        print(f"registration: {files} files through bulk REST calls", file=sys.stderr)
        bulk = _baseline(stack, root, "bulk_rest.py", nights.plan_files(files, BULK_REST_NIGHT))
    return figures(files, protected, cycle, proto, bulk, cached)


def figures(
    files: int, protected: int, cycle: dict[str, Any], proto: dict[str, Any], bulk: dict[str, Any], cached: bool
) -> list[Figure]:
    """Files per second of the cycle over each baseline's; the targets apply without memcached."""
    rate = protected / cycle["seconds"]
    done = f"{protected} of {files} files protected in one cycle of {cycle['seconds']:.1f} s"
    label = "memcached" if cached else "no memcached"
    return [
        Figure(
            "registration.files_per_s" + ("[memcached]" if cached else ""),
            rate,
            "files/s",
            baseline=proto["files"] / proto["seconds"],
            baseline_name="prototype-2020",
            target=None if cached else Target(TARGET_RATIO, ">=", on_ratio=True),
            detail=f"{label}; {done}; prototype {proto['files']} files, {proto['rest_calls']} REST calls in "
            f"{proto['seconds']:.1f} s",
            extra={"cycle": cycle, "prototype": proto, "files": files, "protected": protected, "cached": cached},
        ),
        Figure(
            "registration.files_per_s" + ("[memcached,bulk-rest]" if cached else "[bulk-rest]"),
            rate,
            "files/s",
            baseline=bulk["files"] / bulk["seconds"],
            baseline_name="bulk-rest",
            target=None if cached else Target(TARGET_BULK_RATIO, ">=", on_ratio=True),
            detail=f"{label}; {done}; bulk REST {bulk['files']} files, {bulk['rest_calls']} REST calls in "
            f"{bulk['seconds']:.1f} s, no carrier",
            extra={"bulk_rest": bulk, "cached": cached},
        ),
    ]


def _baseline(stack: Stack, root: Path, script: str, plan: list[PlannedFile]) -> dict[str, Any]:
    """Write ``plan``'s files and register them with a baseline's script in a child process."""
    write_night(plan, root, stamp_times=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=stack.state) as paths:
        json.dump([p.path for p in plan], paths)
        paths.flush()
        return children.run_child(stack, script, str(root), paths.name, log=f"bench-{Path(script).stem}")
