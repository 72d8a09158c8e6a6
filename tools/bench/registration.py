"""Registration: N new files through one scanner cycle, against the 2020 prototype's file-by-file REST calls.

The scanner's cycle discovers, settles, checksums, registers (replica, metadata, run dataset < night <
top container) and protects (policy rules, carrier datasets and their rules) the N files. The files are
written with the times they were closed on site (hours ago), and the scanner's settle time is 1 s, so no
file waits for a later cycle; its batch size is above N, so one cycle takes them all. The prototype
registers files of another night on the same stack, in the same run.
"""

from __future__ import annotations

import json
import sys
import tempfile
from datetime import date
from pathlib import Path

from rucio_magic_ext.ledger import FileState, Ledger
from tools.bench import benchstack, children, nights
from tools.bench.report import Figure, Target
from tools.make_night import write_night

SCANNER_NIGHT = date(2020, 1, 4)
PROTOTYPE_NIGHT = date(2020, 3, 4)
TARGET_RATIO = 50.0


def settings(files: int) -> dict[str, dict[str, str]]:
    return {
        "magic-scanner": {
            "settle_seconds": "1",
            "batch_size": str(max(files, 2000)),
            "carrier_max_age_seconds": "0",
        }
    }


def run(place: benchstack.Place, files: int, baseline_files: int, profile_dir: Path | None = None) -> list[Figure]:
    with benchstack.running(place, settings(files), "registration") as stack:
        root = benchstack.orm_root(stack)
        plan = nights.plan_files(files, SCANNER_NIGHT)
        write_night(plan, root, stamp_times=True)
        print(f"registration: {len(plan)} files written, one scanner cycle", file=sys.stderr)
        profile = profile_dir / f"registration-{files}.prof" if profile_dir else None
        cycle = children.scanner_cycle(stack, log="bench-registration-cycle", profile=profile)
        ledger = Ledger.from_url(*benchstack.ledger_url(stack))
        protected = sum(
            1
            for row in ledger.known(benchstack.ORM, [p.path for p in plan]).values()
            if row.state is FileState.PROTECTED
        )

        baseline_plan = nights.plan_files(baseline_files, PROTOTYPE_NIGHT)
        write_night(baseline_plan, root, stamp_times=True)
        print(f"registration: {len(baseline_plan)} files through the 2020 prototype", file=sys.stderr)
        with tempfile.NamedTemporaryFile("w", suffix=".json", dir=stack.state) as paths:
            json.dump([p.path for p in baseline_plan], paths)
            paths.flush()
            proto = children.run_child(stack, "prototype.py", str(root), paths.name, log="bench-prototype")

    scanner_rate = protected / cycle["seconds"]
    prototype_rate = proto["files"] / proto["seconds"]
    return [
        Figure(
            "registration.files_per_s",
            scanner_rate,
            "files/s",
            baseline=prototype_rate,
            baseline_name="prototype-2020",
            target=Target(TARGET_RATIO, ">=", on_ratio=True),
            detail=f"{protected} of {len(plan)} files protected in one cycle of {cycle['seconds']:.1f} s; "
            f"prototype {proto['files']} files, {proto['rest_calls']} REST calls in {proto['seconds']:.1f} s",
            extra={"cycle": cycle, "prototype": proto, "files": len(plan), "protected": protected},
        )
    ]
