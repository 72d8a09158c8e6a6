"""The benchmarks' own Rucio stack: its own state folder, port and PostgreSQL database, fresh for each benchmark.

Every benchmark starts from an empty catalogue and ledger, so no figure depends on what ran before it.
The state folder, port and database never change within a run: the rucio.cfg path stays valid for the
child processes. Whatever the stack started is stopped and its database dropped on the way out, on
errors too; the logs stay in the state folder for a look afterwards.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tools.devstack import database, processes
from tools.devstack.config import REPO
from tools.devstack.daemons import DAEMONS, Daemon
from tools.devstack.stack import SITE_CFG, Stack

DEFAULT_STATE = REPO / ".state" / "bench"
DATABASE = "rucio_bench"
ORM, PIC = "ORM-ONSITE", "PIC-DISK"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclasses.dataclass(frozen=True)
class Place:
    """Where the benchmarks' stack lives; chosen once per run."""

    state: Path = DEFAULT_STATE
    port: int = 0
    pg_database: str = DATABASE

    def stack(self, extra: dict[str, dict[str, str]], **settings: Any) -> Stack:
        return Stack(self.state, db="postgresql", port=self.port, pg_database=self.pg_database, extra=extra, cache=True,
                     **settings)


@contextmanager
def running(place: Place, extra: dict[str, dict[str, str]], log: str, **settings: Any) -> Iterator[Stack]:
    """A fresh stack (server only, no daemon), stopped and its database dropped afterwards. ``settings``: the
    stack's others (``storage="xrootd"``, ``link_mbit``), its site then the one they ask for."""
    stack = place.stack(extra, **settings)
    stack.reset()
    print(f"{log}: starting a Rucio stack on PostgreSQL ({place.pg_database}) at {stack.url}", file=sys.stderr)
    try:
        stack.up(daemons=[], site=None if settings else SITE_CFG)
        yield stack
    finally:
        stack.down()
        database.drop(stack.settings)


# What Rucio's Helm chart (rucio/helm-charts, charts/rucio-daemons/values.yaml) deploys daemons with, beyond
# their own defaults: the submitter loops every 10 s, not 600 s; the reaper runs 4 threads (each deletes one file
# at a time). The project's own values (etc/k8s/values-rucio-daemons.yaml) keep both.
HELM_CHART = {"conveyor-submitter": ("--sleep-time", "10"), "reaper": ("--threads", "4")}


def production_sleep(daemon: Daemon) -> Daemon:
    """The daemon without the dev stack's ``--sleep-time``, looping as sites deploy it: with the options of
    Rucio's Helm chart where it sets them, else at its own defaults."""
    argv = list(daemon.argv)
    while "--sleep-time" in argv:
        at = argv.index("--sleep-time")
        del argv[at : at + 2]
    argv += HELM_CHART.get(daemon.name, ())
    return dataclasses.replace(daemon, argv=tuple(argv))


def start_daemons(stack: Stack, names: Iterable[str] | None = None, own_sleep: bool = True) -> list[str]:
    """Start the stack's daemons (default: all); with ``own_sleep`` at production sleep times
    (``production_sleep``), else at the dev stack's.

    They get pid files in the stack's run folder, so ``stack.down()`` stops them.
    """
    chosen = [d for d in DAEMONS if names is None or d.name in set(names)]
    started = []
    for daemon in chosen:
        run = production_sleep(daemon) if own_sleep else daemon
        settings = stack.settings
        processes.start(run.name, run.command(port=settings.port), stack.env, settings.log_dir, settings.run_dir)
        started.append(" ".join(os.path.basename(part) for part in run.command(port=settings.port)))
    return started


def ledger_url(stack: Stack) -> tuple[str, str | None]:
    """The ledger's database and schema: Rucio's own, as the daemons use it by default."""
    return stack.settings.db_url, stack.settings.db_schema or None


def orm_root(stack: Stack) -> Path:
    return stack.settings.storage_dir / "orm-onsite"
