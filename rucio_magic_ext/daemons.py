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
from rucio_magic_ext.failures import DatabaseUnavailable, Outage

GRACEFUL_STOP = threading.Event()


@dataclass(frozen=True)
class DaemonSpec:
    name: str  # heartbeat executable and process name, e.g. "magic-scanner"
    description: str
    build: Callable[[argparse.Namespace], Any]  # the worker: must have worker, workers and logger attributes
    cycle: Callable[[Any], dict[str, int]]  # one cycle: how much each step moved
    options: Callable[[argparse.ArgumentParser], None] = field(default=lambda parser: None)
    epilog: str = ""


def outage_of(error: BaseException) -> Outage | None:
    """The outage behind an error, told by type: an Outage raised where it was seen, or the database driver's
    word that the database cannot be reached; None when the error is one entry's own fault."""
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, Outage):
            return link
        if _unreachable(link):
            return DatabaseUnavailable(_first_line(link))
        link = link.__cause__ or link.__context__
    return None


def _unreachable(error: BaseException) -> bool:
    """SQLAlchemy's own disconnect test; for PostgreSQL a driver error with no SQLSTATE (no server answered),
    a failed connection (class 08) or a server going away (57P); for MySQL and Oracle, Rucio's own test."""
    from rucio.db.sqla.session import retry_if_db_connection_error
    from sqlalchemy import exc

    if isinstance(error, (exc.DisconnectionError, exc.InterfaceError)):
        return True
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    if not isinstance(error, exc.OperationalError):
        return False
    if error.orig is not None and hasattr(error.orig, "sqlstate"):  # psycopg: an error the server sent has one
        return error.orig.sqlstate is None or error.orig.sqlstate.startswith(("08", "57P"))
    return not hasattr(error.orig, "sqlite_errorcode") and retry_if_db_connection_error(error)  # SQLite: no server


def run_once(spec: DaemonSpec, worker: Any, heartbeat_handler: Any, **_kwargs: Any) -> bool:
    """One cycle on this worker's share of the work; True (sleep) when nothing moved."""
    worker.worker, worker.workers, worker.logger = heartbeat_handler.live()
    moved = spec.cycle(worker)
    worker.logger(logging.DEBUG, "cycle: %s", moved)
    return not any(moved.values())


def loop(spec: DaemonSpec, args: argparse.Namespace, once: bool, sleep_time: int, partition_wait_time: int) -> None:
    """One worker, built and run in this thread (``--run-once``, and the daemons' one-pass functions)."""
    serve(spec, spec.build(args), once, sleep_time, partition_wait_time)


OUTAGE_WAIT_SECONDS = 10.0


def serve(spec: DaemonSpec, worker: Any, once: bool, sleep_time: int, partition_wait_time: int) -> None:
    """Rucio's daemon loop, kept alive across an outage of the database.

    Rucio's loop renews its heartbeat outside of the cycle's error handling, so a database that goes away ends
    it with a traceback. Here the loop is started again, every ``OUTAGE_WAIT_SECONDS``, until the database
    answers; the outage is logged once when it starts and once when it ends. With ``once`` the daemon stops
    instead, and ``main`` says why.
    """
    from rucio.daemons.common import run_daemon

    down: dict[str, str] = {}  # the service that is down, while it is
    wait = partition_wait_time
    while not GRACEFUL_STOP.is_set():
        try:
            run_daemon(
                once=once,
                graceful_stop=GRACEFUL_STOP,
                executable=spec.name,
                partition_wait_time=wait,
                sleep_time=sleep_time,
                run_once_fnc=functools.partial(_live_once, spec, worker, down),
            )
            return
        except Exception as error:
            outage = outage_of(error)
            if outage is None:
                raise
            if once:
                raise
            if not down:
                logging.error("rucio-%s: the %s does not answer (%s): waiting for it", spec.name, outage.service,
                              _first_line(error))  # fmt: skip
            down["service"] = outage.service
            wait = 0
            GRACEFUL_STOP.wait(OUTAGE_WAIT_SECONDS)


def _live_once(spec: DaemonSpec, worker: Any, down: dict[str, str], heartbeat_handler: Any, **kw: Any) -> bool:
    if "service" in down:
        logging.warning("rucio-%s: the %s answers again: resuming", spec.name, down.pop("service"))
    return run_once(spec, worker, heartbeat_handler, **kw)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


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
    except Exception as error:
        outage = outage_of(error)
        if outage is None:
            raise
        logging.critical("rucio-%s: the %s does not answer (%s): nothing was marked; run again later", spec.name,
                         outage.service, _first_line(error))  # fmt: skip
        sys.exit(75)  # EX_TEMPFAIL: try again later
