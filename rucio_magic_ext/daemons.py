"""What the project's daemons share: Rucio's daemon loop, heartbeats, threads, signals and flags.

A daemon is described by a :class:`DaemonSpec`: how to build its worker (settings, ledger, catalogue)
and how to run one cycle with it. The loop, the ``--run-once``/``--threads``/``--sleep-time`` flags,
SIGTERM/SIGINT and the heartbeat-based share of work are Rucio's (``rucio.daemons.common``).
"""

from __future__ import annotations

import argparse
import functools
import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rucio_magic_ext.common import RefusedToStart

GRACEFUL_STOP = threading.Event()


@dataclass(frozen=True)
class DaemonSpec:
    name: str  # heartbeat executable and process name, e.g. "magic-scanner"
    description: str
    build: Callable[[argparse.Namespace], Any]  # the worker: must have worker, workers and logger attributes
    cycle: Callable[[Any], dict[str, int]]  # one cycle: how much each step moved
    options: Callable[[argparse.ArgumentParser], None] = field(default=lambda parser: None)
    epilog: str = ""


def run_once(spec: DaemonSpec, worker: Any, heartbeat_handler: Any, **_kwargs: Any) -> bool:
    """One cycle on this worker's share of the work; True (sleep) when nothing moved."""
    worker.worker, worker.workers, worker.logger = heartbeat_handler.live()
    moved = spec.cycle(worker)
    worker.logger(logging.DEBUG, "cycle: %s", moved)
    return not any(moved.values())


def loop(spec: DaemonSpec, args: argparse.Namespace, once: bool, sleep_time: int, partition_wait_time: int) -> None:
    """One worker, built and run in this thread (``--run-once``, and the daemons' one-pass functions)."""
    serve(spec, spec.build(args), once, sleep_time, partition_wait_time)


def serve(spec: DaemonSpec, worker: Any, once: bool, sleep_time: int, partition_wait_time: int) -> None:
    from rucio.daemons.common import run_daemon

    run_daemon(
        once=once,
        graceful_stop=GRACEFUL_STOP,
        executable=spec.name,
        partition_wait_time=partition_wait_time,
        sleep_time=sleep_time,
        run_once_fnc=functools.partial(run_once, spec, worker),
    )


def run(spec: DaemonSpec, args: argparse.Namespace) -> None:
    """Build every worker first, in this thread: a worker that refuses to start stops the daemon before any runs."""
    from rucio.common.logging import setup_logging

    setup_logging(process_name=spec.name)
    kwargs = {"once": args.run_once, "sleep_time": args.sleep_time, "partition_wait_time": args.partition_wait_time}
    workers = [spec.build(args) for _ in range(1 if args.run_once else max(args.threads, 1))]
    if len(workers) == 1:
        serve(spec, workers[0], **kwargs)
        return
    threads = [
        threading.Thread(target=serve, args=(spec, worker), kwargs=kwargs, name=f"{spec.name}-{number}")
        for number, worker in enumerate(workers)
    ]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):  # wake up regularly, so signals are handled
        for thread in threads:
            thread.join(timeout=3.14)


def stop(signum: int | None = None, frame: Any = None) -> None:
    GRACEFUL_STOP.set()


def parser(spec: DaemonSpec) -> argparse.ArgumentParser:
    built = argparse.ArgumentParser(prog=f"rucio-{spec.name}", description=spec.description, epilog=spec.epilog)
    built.add_argument("--run-once", action="store_true", default=False, help="one cycle, then exit")
    built.add_argument("--threads", type=int, default=1, help="concurrent worker threads (default: %(default)s)")
    built.add_argument(
        "--sleep-time", type=int, default=60, help="seconds between cycles with nothing to do (default: %(default)s)"
    )
    built.add_argument(
        "--partition-wait-time",
        type=int,
        default=10,
        help="seconds to wait at start for the heartbeats of the other instances (default: %(default)s)",
    )
    spec.options(built)
    return built


def main(spec: DaemonSpec, argv: list[str] | None = None) -> None:
    args = parser(spec).parse_args(argv)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        run(spec, args)
    except KeyboardInterrupt:
        stop()
    except RefusedToStart as refused:
        logging.critical("rucio-%s: %s", spec.name, refused)
        sys.exit(2)
