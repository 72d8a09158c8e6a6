"""Command line of make_night: plan a night, list it, or write it (optionally trickled)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date, datetime, timezone
from pathlib import Path

from tools.make_night.hostile import write_hostile
from tools.make_night.plan import plan_night
from tools.make_night.summary import human, summarize
from tools.make_night.write import DEFAULT_DL3_TEMPLATE, write_night


def _night(text: str) -> date:
    for form in ("%Y-%m-%d", "%Y%m%d", "%Y_%m_%d"):
        try:
            return datetime.strptime(text, form).date()
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD or YYYYMMDD)")


def parser() -> argparse.ArgumentParser:
    command = argparse.ArgumentParser(
        prog="python tools/make_night",
        description="Write one synthetic MAGIC night laid out like the observatory storage "
        "(M1|M2/DAQ/RAW/YYYY_MM_DD, M1|M2/OSA/{Calibrated,Star}/YYYY/MM/DD, ST/OSA/{SuperStar,Melibea,DL3}/...).",
        epilog="Example: python tools/make_night /tmp/orm --night 2020-01-04 --scale 1e-4 --seed 7",
    )
    command.add_argument("root", nargs="?", type=Path, help="storage root, like /data (not needed with --list)")
    command.add_argument(
        "--night",
        type=_night,
        default=datetime.now(timezone.utc).date(),
        help="the night, labelled by its sunrise date (MARS convention; default: today, UTC)",
    )
    command.add_argument("--runs", type=int, default=20, help="runs in the night, P and C runs included (default 20)")
    command.add_argument("--seed", type=int, default=0, help="same seed, same names, sizes and bytes (default 0)")
    command.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply every size but the DL3 files' (valid FITS of a fixed 0.35 MB) "
        "(1 = real sizes, about 0.5 TB a night; 1e-4 = tens of MB)",
    )
    command.add_argument("--first-run", type=int, help="first run number (default: plausible for the night)")
    command.add_argument(
        "--real-dl3",
        nargs="?",
        type=Path,
        const=DEFAULT_DL3_TEMPLATE,
        metavar="FITS",
        help="copy a real DL3 file byte for byte for every DL3 product (default file: the Crab run in tests/data) "
        "instead of rewriting that run's headers, times and pointing for each run; the copies keep the headers "
        "of their own run, which disagree with the names they get",
    )
    command.add_argument(
        "--trickle",
        type=float,
        metavar="SECONDS",
        help="seconds between files: each appears under its final name, grows in a few writes, then closes",
    )
    command.add_argument("--pieces", type=int, default=4, help="writes per file when trickling (default 4)")
    command.add_argument(
        "--stamp-times", action="store_true", help="set each file's mtime to when it would have been closed on site"
    )
    command.add_argument(
        "--list",
        "--dry-run",
        dest="list",
        action="store_true",
        help="print the planned files (path, size); write nothing",
    )
    command.add_argument(
        "--hostile",
        action="store_true",
        help="also write one odd entry of each kind among the first folder's files (a name not UTF-8, a name too "
        "long for Rucio, a FIFO, a socket, links out of the root and nowhere, a future mtime, an empty file, a "
        "truncated gzip): see tools/make_night/hostile.py",
    )
    command.add_argument("--json", action="store_true", help="print a JSON summary (with --list: and every file)")
    return command


def main(argv: list[str] | None = None) -> int:
    try:
        return _run(parser().parse_args(argv))
    except BrokenPipeError:  # the listing was piped into head: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _run(args: argparse.Namespace) -> int:
    if args.root is None and not args.list:
        parser().error("a storage root is needed unless --list/--dry-run is given")
    template_size = args.real_dl3.stat().st_size if args.real_dl3 else None
    try:
        plan = plan_night(args.night, args.runs, args.seed, args.scale, args.first_run, template_size)
    except ValueError as error:
        parser().error(str(error))
    summary = summarize(plan)
    if args.list:
        if args.json:
            summary["planned"] = [{"path": planned.path, "size": planned.size} for planned in plan]
            print(json.dumps(summary, indent=2))
        else:
            for planned in plan:
                print(f"{planned.path}\t{planned.size}")
        return 0
    written = write_night(
        plan,
        args.root,
        args.trickle,
        args.pieces,
        args.stamp_times,
        dl3_template=args.real_dl3 or DEFAULT_DL3_TEMPLATE,
    )
    summary.update(root=str(args.root), seconds=round(written.seconds, 3))
    if args.hostile:
        outside = args.root.resolve().parent / f".{args.root.resolve().name}-outside.bin"
        outside.write_bytes(b"a file outside the storage root: no link may lead the scanner here")
        odd = write_hostile(plan, args.root, outside)
        summary["hostile"] = [{"kind": o.kind, "path": o.path, "expect": o.state, "says": o.says} for o in odd]
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"night {summary['night']}: {written.files} files, {human(written.bytes)} in {written.seconds:.2f} s "
            f"below {args.root} (runs {summary['first_run']}-{summary['last_run']}: {', '.join(summary['sources'])})",
            file=sys.stderr,
        )
    return 0
