"""The runner: each chosen benchmark in turn on the benchmarks' own stack; one line per figure, and JSON.

Progress goes to stderr, figures to stdout. A benchmark that fails is reported as such and the others
still run; the exit code is 0 when every chosen benchmark produced its figures (met targets or not).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from tools.bench import benchstack, machine
from tools.bench.report import Figure, write_json
from tools.devstack.config import REPO

DEFAULT_JSON = REPO / ".state" / "bench" / "results.json"
NAMES = ("registration", "incremental", "checksum", "latency", "xrootd", "chain", "link")
LONG = ("chain", "link")  # run only when named in --only


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 tools/bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        help=f"comma-separated benchmarks to run (default: {', '.join(n for n in NAMES if n not in LONG)}; "
        f"{', '.join(LONG)} only when named: a real night's 2,763 files through the whole chain, about 35 minutes, and "
        "over a link between two sites, about 45 minutes)",
    )
    parser.add_argument("--quick", action="store_true", help="scaled down, for a quick look (figures not comparable)")
    parser.add_argument("--scale", type=float, help="chain: file sizes of a real night times this (default 1e-3)")
    parser.add_argument("--trickle", type=float, help="chain: seconds between two files closing (default 0: at once)")
    parser.add_argument(
        "--files", type=int, help="chain: the night's first N files only (default 2763, the whole night)"
    )
    parser.add_argument("--rate", type=float, help="link: the link's rate in Mbit/s (default 10)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="results file (default: %(default)s)")
    parser.add_argument("--state", type=Path, default=benchstack.DEFAULT_STATE, help="the stack's state folder")
    parser.add_argument("--pg-database", default=benchstack.DATABASE, help="PostgreSQL database of the stack")
    parser.add_argument("--profile", action="store_true", help="keep a cProfile of each measured scanner cycle")
    return parser


def chosen(only: str | None) -> list[str]:
    """The benchmarks named in ``--only``, in the runner's order; every one but the long ones when not given."""
    if not only:
        return [name for name in NAMES if name not in LONG]
    wanted = [name.strip() for name in only.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(NAMES))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(NAMES)}")
    return [name for name in NAMES if name in wanted]


def benchmarks(args: argparse.Namespace, place: benchstack.Place) -> dict[str, Callable[[], list[Figure]]]:
    from tools.bench import chain, checksum_figures, incremental, latency, link, registration, xrootd

    quick = args.quick
    profile_dir = args.state.parent / f"{args.state.name}-profiles" if args.profile else None
    return {
        "registration": lambda: registration.run(place, 500 if quick else 5000, 60 if quick else 300, profile_dir),
        "incremental": lambda: incremental.run(
            place, (2000, 10_000, 30_000) if quick else (10_000, 100_000, 300_000), 100, profile_dir
        ),
        "checksum": lambda: checksum_figures.run("64M" if quick else "2G", args.state.parent),
        "latency": lambda: latency.run(place, latency.QUICK if quick else latency.FULL),
        "xrootd": lambda: xrootd.run(place, xrootd.QUICK if quick else xrootd.FULL),
        "chain": lambda: chain.run(
            place,
            chain.setup(chain.QUICK if quick else chain.FULL, scale=args.scale, trickle=args.trickle, files=args.files),
        ),
        "link": lambda: link.run(place, link.with_rate(link.QUICK if quick else link.FULL, args.rate)),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    names = chosen(args.only)
    os.environ.pop("RUCIO_CONFIG", None)  # the runner never talks to Rucio itself; its children do
    place = benchstack.Place(args.state.resolve(), benchstack.free_port(), args.pg_database)
    runs = benchmarks(args, place)
    figures: list[Figure] = []
    failed: dict[str, str] = {}
    timings: dict[str, float] = {}
    started = time.monotonic()
    load = {"start": os.getloadavg()}
    for name in names:
        began = time.monotonic()
        try:
            produced = runs[name]()
        except Exception as error:
            traceback.print_exc(file=sys.stderr)
            failed[name] = f"{type(error).__name__}: {error}"
            print(f"{name:<38} FAILED: {failed[name]}", flush=True)
            continue
        finally:
            timings[name] = time.monotonic() - began
        for figure in produced:
            print(figure.line(), flush=True)
        figures.extend(produced)
    context = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "benchmarks": names,
        "seconds": {**timings, "total": time.monotonic() - started},
        "failed": failed,
        "machine": machine.describe(args.state),
        "load_average": {**load, "end": os.getloadavg()},  # other work on the machine shows here
        "python": platform.python_version(),
    }
    write_json(args.json, figures, context)
    print(f"results: {args.json} ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    return 1 if failed else 0
