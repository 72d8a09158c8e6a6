"""Latency: how long a file waits at the observatory, with every daemon looping as a site runs it.

A night trickles in file by file at ORM-ONSITE while the stack's daemons loop at production sleep times
(the dev stack's ``--sleep-time 5`` removed: each daemon's own default, or the sleep time Rucio's Helm chart
gives it, ``benchstack.production_sleep``; other options as the dev stack sets them). Two spans
per file, median and worst:

* closed -> queued: from the file's close (its final mtime) to the creation of its transfer request to
  PIC-DISK (``created_at`` in Rucio's requests, or requests_history once archived). The ledger's
  ``protected_at`` (carrier closed, its rules in place) is reported beside it.
* copied -> deleted: from its copy at PIC-DISK being done (the finisher marks the replica AVAILABLE and
  archives the request: ``updated_at`` of the DONE request in requests_history) to the ledger's
  ``deleted_at`` (set by rucio-magic-carrier when it sees that the reaper deleted the source replica).
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import create_engine, text

from rucio_magic_ext.ledger import FileState, Ledger
from rucio_magic_ext.ledger.models import LedgerFile
from tools.bench import benchstack
from tools.bench.report import Figure
from tools.make_night import PlannedFile, plan_night, write_night

NIGHT = date(2020, 2, 4)
DONE = frozenset({FileState.DELETED, FileState.REJECTED, FileState.QUARANTINED})
REQUESTS = """
SELECT r.scope, r.name, r.created_at, r.state, r.updated_at
FROM {schema}.{table} r JOIN {schema}.rses s ON s.id = r.dest_rse_id
WHERE s.rse = :rse
"""


@dataclass(frozen=True)
class Setup:
    """How the latency run is made: the night, how it trickles, the settle time, the daemons' sleep times."""

    files: int
    trickle: float  # seconds between two files closing
    settle: int  # [magic-scanner] settle_seconds
    carrier_max_age: int  # [magic-scanner] carrier_max_age_seconds
    own_sleep: bool  # daemons at production sleep times (else the dev stack's 5 s)
    timeout: float

    def describe(self) -> str:
        sleeps = "daemons at production sleep times" if self.own_sleep else "daemons at the dev stack's 5 s"
        return f"settle {self.settle} s, carrier max age {self.carrier_max_age} s, {sleeps}"


FULL = Setup(files=85, trickle=2.0, settle=30, carrier_max_age=30, own_sleep=True, timeout=1800)
QUICK = Setup(files=30, trickle=0.5, settle=5, carrier_max_age=10, own_sleep=False, timeout=420)


def run(place: benchstack.Place, setup: Setup) -> list[Figure]:
    plan = plan_night(NIGHT, runs=3, scale=1e-5)[: setup.files]
    extra = {
        "magic-scanner": {"settle_seconds": str(setup.settle), "carrier_max_age_seconds": str(setup.carrier_max_age)},
        "magic-carrier": {"dwell_seconds": "0"},
    }
    closed: dict[str, float] = {}
    with benchstack.running(place, extra, "latency") as stack:
        started = benchstack.start_daemons(stack, own_sleep=setup.own_sleep)
        print(f"latency: {len(started)} daemons looping ({setup.describe()})", file=sys.stderr)
        root = benchstack.orm_root(stack)

        def observe(planned: PlannedFile, _written: int, done: bool) -> None:
            if done:
                closed[planned.path] = os.stat(root / planned.path).st_mtime

        writer = threading.Thread(
            target=write_night, args=(plan, root), kwargs={"trickle": setup.trickle, "observe": observe}, daemon=True
        )
        writer.start()
        ledger = Ledger.from_url(*benchstack.ledger_url(stack))
        rows = _wait(ledger, plan, setup.timeout)
        requests = _requests(stack.settings.db_url, stack.settings.db_schema)
    return figures(plan, closed, rows, requests, setup)


def _wait(ledger: Ledger, plan: list[PlannedFile], timeout: float) -> dict[str, LedgerFile]:
    """The ledger rows of the night once every file left the observatory, or at the timeout."""
    deadline = time.monotonic() + timeout
    paths = [planned.path for planned in plan]
    last = ""
    while True:
        try:
            rows = ledger.known(benchstack.ORM, paths)
        except Exception:  # the ledger's tables appear once the scanner has started
            rows = {}
        states: dict[str, int] = {}
        for row in rows.values():
            states[row.state.value] = states.get(row.state.value, 0) + 1
        summary = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
        if summary != last:
            print(f"latency: {summary or 'nothing seen yet'}", file=sys.stderr)
            last = summary
        if len(rows) == len(plan) and all(row.state in DONE for row in rows.values()):
            return rows
        if time.monotonic() > deadline:
            print(f"latency: timeout after {timeout:.0f} s", file=sys.stderr)
            return rows
        time.sleep(5)


def _requests(url: str, schema: str) -> dict[str, list[tuple[datetime, str, datetime]]]:
    """Transfer requests to PIC-DISK by file name: (created_at, state, updated_at), live and archived."""
    engine = create_engine(url)
    found: dict[str, list[tuple[datetime, str, datetime]]] = {}
    try:
        with engine.connect() as connection:
            for table in ("requests", "requests_history"):
                query = text(REQUESTS.format(schema=schema or "public", table=table))
                for _scope, name, created, state, updated in connection.execute(query, {"rse": benchstack.PIC}):
                    found.setdefault(name, []).append((created, str(state), updated))
    finally:
        engine.dispose()
    return found


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc).replace(tzinfo=None)


def spans(
    plan: list[PlannedFile],
    closed: dict[str, float],
    rows: dict[str, LedgerFile],
    requests: dict[str, list[tuple[datetime, str, datetime]]],
) -> dict[str, list[float]]:
    """Seconds per file for each span that the file completed."""
    out: dict[str, list[float]] = {"queued": [], "protected": [], "deleted": []}
    for planned in plan:
        if planned.path not in closed:
            continue
        close = _utc(closed[planned.path])
        row = rows.get(planned.path)
        made = requests.get(planned.name, [])
        if made:
            out["queued"].append((min(created for created, _, _ in made) - close).total_seconds())
        if row is not None and row.protected_at:
            out["protected"].append((row.protected_at - close).total_seconds())
        copied = [updated for _, state, updated in made if state in ("D", "DONE", "RequestState.DONE")]
        if row is not None and row.deleted_at and copied:
            out["deleted"].append((row.deleted_at - min(copied)).total_seconds())
    return out


def figures(
    plan: list[PlannedFile],
    closed: dict[str, float],
    rows: dict[str, LedgerFile],
    requests: dict[str, list[tuple[datetime, str, datetime]]],
    setup: Setup,
) -> list[Figure]:
    measured = spans(plan, closed, rows, requests)
    names = {
        "queued": ("latency.closed_to_queued", "closed -> transfer request created"),
        "protected": ("latency.closed_to_protected", "closed -> ledger protected_at"),
        "deleted": ("latency.copied_to_deleted", "request DONE at PIC-DISK -> ledger deleted_at"),
    }
    out = []
    for key, (name, what) in names.items():
        values = measured[key]
        detail = f"{what}; {len(values)} of {len(plan)} files; {setup.describe()}"
        extra: dict[str, Any] = {"seconds": values, "setup": setup.__dict__}
        median = statistics.median(values) if values else float("nan")
        worst = max(values) if values else float("nan")
        out.append(Figure(f"{name}.median", median, "s", detail=detail, extra=extra))
        out.append(Figure(f"{name}.worst", worst, "s", detail=f"{len(values)} of {len(plan)} files"))
    return out
