"""``rucio-magic-scanner``: a Rucio daemon (heartbeats, graceful stop, ``--run-once``, ``--threads``).

Instances and threads share the work through Rucio's heartbeats: each takes the files whose ledger id,
and the folders and carriers whose name, hash to its worker number, so two scanners never handle the
same file; every ledger move is conditional besides, so a race loses cleanly instead of doubling work.
"""

from __future__ import annotations

import argparse
import functools
import logging
import signal
import threading
from typing import Any

DAEMON_NAME = "magic-scanner"
GRACEFUL_STOP = threading.Event()


def build_context(logger: Any = logging.log) -> Any:
    """Settings, ledger, catalogue, storage and policy of this deployment, from rucio.cfg."""
    from rucio_magic_ext.ledger import Ledger
    from rucio_magic_ext.replication import load_policy
    from rucio_magic_ext.scanner.catalogue import Catalogue
    from rucio_magic_ext.scanner.config import load_config
    from rucio_magic_ext.scanner.context import Context
    from rucio_magic_ext.storage import get_storage

    config = load_config()
    ledger = Ledger.from_config()
    ledger.upgrade()
    catalogue = Catalogue(config.rse, config.account, logger)
    root_url = catalogue.storage_root()
    storage = get_storage(root_url)
    return Context(config, ledger, catalogue, storage, load_policy(config.replication_policy),
                   storage.path_of(root_url).rstrip("/") or "/", logger=logger)  # fmt: skip


def run_once(context: Any, heartbeat_handler: Any, **_kwargs: Any) -> bool:
    """One cycle on this worker's share; True (sleep) when nothing moved."""
    from rucio_magic_ext.scanner.cycle import run_cycle

    context.worker, context.workers, context.logger = heartbeat_handler.live()
    moved = run_cycle(context)
    context.logger(logging.DEBUG, "cycle: %s", moved)
    return not any(moved.values())


def scanner(once: bool = False, sleep_time: int = 60, partition_wait_time: int = 10) -> None:
    from rucio.daemons.common import run_daemon

    context = build_context()
    run_daemon(
        once=once,
        graceful_stop=GRACEFUL_STOP,
        executable=DAEMON_NAME,
        partition_wait_time=partition_wait_time,
        sleep_time=sleep_time,
        run_once_fnc=functools.partial(run_once, context),
    )


def stop(signum: int | None = None, frame: Any = None) -> None:
    GRACEFUL_STOP.set()


def run(once: bool = False, threads: int = 1, sleep_time: int = 60, partition_wait_time: int = 10) -> None:
    from rucio.common.logging import setup_logging

    setup_logging(process_name=DAEMON_NAME)
    kwargs = {"once": once, "sleep_time": sleep_time, "partition_wait_time": partition_wait_time}
    if once or threads == 1:
        scanner(**kwargs)
        return
    workers = [threading.Thread(target=scanner, kwargs=kwargs, name=f"{DAEMON_NAME}-{n}") for n in range(threads)]
    for worker in workers:
        worker.start()
    while any(worker.is_alive() for worker in workers):  # wake up for signals
        for worker in workers:
            worker.join(timeout=3.14)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rucio-magic-scanner",
        description=(
            "Watch the observatory's RSE ([magic-scanner] rse in rucio.cfg) and bring every new MAGIC file into Rucio: "
            "discover it, wait until it is complete, checksum it, register it where it was written with its metadata, "
            "attach it to its run dataset, night and top containers, put the replication policy's rules on them and "
            "pin it at the source in a carrier batch until its copies are verified. Every step is recorded in the "
            "ledger. Several instances share the work through Rucio's heartbeats."
        ),
        epilog="Configuration: the [magic-scanner] section of rucio.cfg (see rucio_magic_ext/scanner/config.py).",
    )
    parser.add_argument("--run-once", action="store_true", default=False, help="one cycle, then exit")
    parser.add_argument("--threads", type=int, default=1, help="concurrent worker threads (default: %(default)s)")
    parser.add_argument("--sleep-time", type=int, default=60, help="seconds between cycles with nothing to do")
    parser.add_argument("--partition-wait-time", type=int, default=10,
                        help="seconds to wait at start for the heartbeats of the other instances")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        run(once=args.run_once, threads=args.threads, sleep_time=args.sleep_time,
            partition_wait_time=args.partition_wait_time)  # fmt: skip
    except KeyboardInterrupt:
        stop()
