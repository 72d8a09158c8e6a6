"""One cycle of rucio-magic-scanner in a process of its own, timed; prints what it measured as JSON.

    RUCIO_CONFIG=<stack>/rucio.cfg python tools/bench/one_cycle.py [--profile FILE]

The scanner is built as the daemon builds it (``build_context``: settings, ledger, catalogue, storage,
policy) and ``run_cycle`` runs every stage once, as one pass of the daemon does. Only the cycle is timed:
importing Rucio and building the context happen once per daemon, not once per cycle. The peak resident
memory is that of the whole process (imports included), as an operator sees it: ``VmHWM``.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time
from pathlib import Path


def _rss_mb() -> float:
    """Peak resident memory of this process so far, in MB.

    ``VmHWM`` is that of this program only; ``ru_maxrss`` survives fork and exec on Linux, and so would
    report the parent's peak whenever it is the larger.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", help="write a cProfile of the cycle to this file")
    args = parser.parse_args(argv)

    from rucio.common.logging import setup_logging

    from rucio_magic_ext.scanner.cycle import run_cycle
    from rucio_magic_ext.scanner.daemon import build_context

    setup_logging(process_name="bench-scanner")
    started = time.perf_counter()
    context = build_context(logger=logging.log)
    built = time.perf_counter()
    rss_before = _rss_mb()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    cycle_start = time.perf_counter()
    moved = run_cycle(context)
    seconds = time.perf_counter() - cycle_start
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    result = {
        "seconds": seconds,
        "build_seconds": built - started,
        "moved": moved,
        "rss_before_cycle_mb": rss_before,
        "peak_rss_mb": _rss_mb(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
