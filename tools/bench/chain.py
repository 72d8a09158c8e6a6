"""The whole chain at a real night's size: does it keep up, and what does it cost beyond moving the bytes?

A night of 2,763 files (``tools/make_night``, file sizes scaled by ``Setup.scale``; DL3 files are real GADF
files of about 351 kB whatever the scale) is written at ORM-ONSITE, all at once or trickled like a DAQ,
while every daemon of the stack loops at production sleep times, as Rucio's Helm chart deploys it (each
daemon's own default, the submitter's 10 s: ``benchstack.production_sleep``): the scanner
registers and protects, the conveyor (the magic tool) copies to PIC-DISK, the carrier verifies and
releases, the reaper deletes at the source. The run ends when every file is deleted there (the ledger
DELETED and the file gone from the storage), or at the timeout. The span is from the first file closed to
the last one gone from the observatory's storage (watched every second).

Its baselines (``stock.py``), on a stack of their own in the same run: ``cp -r`` of the same tree, and
stock Rucio replicating the same files registered beforehand. Each daemon's CPU and memory are read from
/proc while it runs (``procstat.py``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from rucio_magic_ext.ledger import FileState, Ledger
from rucio_magic_ext.ledger.models import LedgerFile
from tools.bench import benchstack, procstat, stock
from tools.bench.chain_figures import ChainRun, cost, figures
from tools.bench.report import Figure
from tools.devstack.daemons import DAEMONS
from tools.devstack.stack import Stack
from tools.make_night import PlannedFile, plan_night, write_night

NIGHT = date(2020, 1, 4)
RUNS, SEED = 30, 0  # a night of 2,854 files, of which the first 2,763 closed
REAL_NIGHT_FILES = 2763
DONE = frozenset({FileState.DELETED, FileState.REJECTED, FileState.QUARANTINED})
LAST_REQUEST = """
SELECT max(r.created_at) FROM {schema}.{table} r JOIN {schema}.rses s ON s.id = r.dest_rse_id WHERE s.rse = :rse
"""
FIRST_REQUEST = LAST_REQUEST.replace("max(", "min(")
# The finisher archives a DONE request as it makes the replica AVAILABLE (its updated_at then); later lock
# changes move the replica's own updated_at, so the copy's time is read from the archive.
LAST_COPY = """
SELECT max(r.updated_at) FROM {schema}.requests_history r JOIN {schema}.rses s ON s.id = r.dest_rse_id
WHERE s.rse = :rse AND r.state = 'D'
"""
# Every transfer that read at an RSE: its request, archived or not, records the source the conveyor chose.
SOURCE_READS = """
SELECT count(*), coalesce(sum(r.bytes), 0) FROM {schema}.{table} r JOIN {schema}.rses s ON s.id = r.source_rse_id
WHERE s.rse = :rse
"""


@dataclass(frozen=True)
class Setup:
    """How the chain is run: the night's size, how it is written, the flow's settings, the daemons' sleep."""

    files: int = REAL_NIGHT_FILES
    scale: float = 1e-3  # file sizes of a real night times this: about 745 MB in all
    trickle: float = 0.0  # seconds between two files closing; 0: the whole night at once
    settle: int = 30  # [magic-scanner] settle_seconds
    carrier_max_age: int = 30  # [magic-scanner] carrier_max_age_seconds
    own_sleep: bool = True  # daemons at production sleep times (else the dev stack's 5 s)
    timeout: float = 2700

    def describe(self) -> str:
        written = f"trickled {self.trickle:g} s apart" if self.trickle else "written at once"
        sleeps = "daemons at production sleep times" if self.own_sleep else "daemons at the dev stack's 5 s"
        return (f"night {written}, size scale {self.scale:g}, settle {self.settle} s, carrier max age "
                f"{self.carrier_max_age} s, dwell 0, {sleeps}")


FULL = Setup()
QUICK = Setup(files=300, scale=1e-4, settle=5, carrier_max_age=10, own_sleep=False, timeout=900)


def setup(
    base: Setup, scale: float | None = None, trickle: float | None = None, files: int | None = None
) -> Setup:
    """``base`` with the command line's choices; a trickled night gets its writing time on top of the timeout."""
    if scale is not None and scale <= 0:
        raise ValueError(f"--scale must be positive, not {scale}")
    if trickle is not None and trickle < 0:
        raise ValueError(f"--trickle must not be negative, not {trickle}")
    if files is not None and not 0 < files <= REAL_NIGHT_FILES:
        raise ValueError(f"--files must be from 1 to {REAL_NIGHT_FILES}, not {files}")
    chosen = dataclasses.replace(
        base,
        scale=base.scale if scale is None else scale,
        trickle=base.trickle if trickle is None else trickle,
        files=base.files if files is None else files,
    )
    return dataclasses.replace(chosen, timeout=chosen.timeout + chosen.trickle * chosen.files)


def night(setup: Setup) -> list[PlannedFile]:
    """The night's first ``setup.files`` files in the order they close, at the setup's scale."""
    plan = plan_night(NIGHT, runs=RUNS, seed=SEED, scale=setup.scale)
    if setup.files > len(plan):
        raise ValueError(f"the night has {len(plan)} files, fewer than {setup.files}")
    return plan[: setup.files]


def run(place: benchstack.Place, setup: Setup) -> list[Figure]:
    plan = night(setup)
    print(f"chain: {len(plan)} files, {sum(p.size for p in plan) / 1e6:.0f} MB; {setup.describe()}", file=sys.stderr)
    copy, baseline = stock.run(place, plan, setup.own_sleep, setup.timeout)
    return figures(_chain(place, plan, setup), copy, baseline)


def _chain(place: benchstack.Place, plan: list[PlannedFile], setup: Setup) -> ChainRun:
    extra = {
        "magic-scanner": {"settle_seconds": str(setup.settle), "carrier_max_age_seconds": str(setup.carrier_max_age)},
        "magic-carrier": {"dwell_seconds": "0"},
    }
    with benchstack.running(place, extra, "chain") as stack:
        names = tuple(daemon.name for daemon in DAEMONS)
        benchstack.start_daemons(stack, names, own_sleep=setup.own_sleep)
        sampler = procstat.Sampler(stock.leaders(stack, names)).start()
        _started(sampler)
        load_start = os.getloadavg()[0]
        root = benchstack.orm_root(stack)
        closed: dict[str, float] = {}

        def observe(planned: PlannedFile, _written: int, done: bool) -> None:
            if done:
                closed[planned.path] = os.stat(root / planned.path).st_mtime

        options = {"trickle": setup.trickle or None, "observe": observe}
        writer = threading.Thread(target=write_night, args=(plan, root), kwargs=options, daemon=True)
        writer.start()
        print(f"chain: the night is being written; {len(names)} daemons looping", file=sys.stderr)
        gone, rows = watch(stack, root, plan, closed, setup.timeout)
        tracks = sampler.stop()
        load = (load_start, os.getloadavg()[0])
        first = min(closed.values(), default=float("nan"))
        milestones = _milestones(stack, rows, gone, first)
        copy_started = earliest(stack, FIRST_REQUEST, ("requests", "requests_history")) - first
        reads = _source_reads(stack)
    last = max(gone.values(), default=float("nan"))
    return ChainRun(
        files=len(plan),
        bytes=sum(planned.size for planned in plan),
        deleted=len(gone),
        seconds=last - first,
        milestones=milestones,
        costs={name: one for name, track in tracks.items() if (one := cost(track)) is not None},
        setup=setup.describe(),
        load=load,
        source_reads=reads,
        copy_started=copy_started,
    )


def _started(sampler: procstat.Sampler, timeout: float = 180) -> None:
    """Wait until the daemons' start-up is over (their CPU still over 6 s), then mark where the night begins."""
    deadline = time.monotonic() + timeout
    recent = [sampler.sample()]
    while time.monotonic() < deadline:
        time.sleep(3)
        recent = [*recent[-2:], sampler.sample()]
        if procstat.quiet(recent, tolerance=0.1):
            break
    sampler.mark()


def watch(
    stack: Stack, root: Path, plan: list[PlannedFile], closed: dict[str, float], timeout: float
) -> tuple[dict[str, float], dict[str, LedgerFile]]:
    """Until every file is done in the ledger and gone from the storage: when each file went (epoch), the rows."""
    ledger = Ledger.from_url(*benchstack.ledger_url(stack))
    paths = [planned.path for planned in plan]
    gone: dict[str, float] = {}
    rows: dict[str, LedgerFile] = {}
    deadline = time.monotonic() + timeout
    last_look, last_summary = 0.0, ""
    while time.monotonic() < deadline:
        now = time.time()
        for path in list(closed):
            if path not in gone and not (root / path).exists():
                gone[path] = now
        if time.monotonic() - last_look >= 5:
            last_look = time.monotonic()
            try:
                rows = ledger.known(benchstack.ORM, paths)
            except Exception:  # the ledger's tables appear once the scanner has started
                rows = {}
            summary = _summary(rows, len(gone))
            if summary != last_summary:
                print(f"chain: {summary}", file=sys.stderr)
                last_summary = summary
            finished = [row for row in rows.values() if row.state in DONE]
            deleted = {row.path for row in rows.values() if row.state is FileState.DELETED}
            if len(finished) == len(plan) and deleted <= set(gone):
                return gone, rows
        time.sleep(1)
    print(f"chain: timeout after {timeout:.0f} s", file=sys.stderr)
    return gone, rows


def _summary(rows: dict[str, LedgerFile], gone: int) -> str:
    states: dict[str, int] = {}
    for row in rows.values():
        states[row.state.value] = states.get(row.state.value, 0) + 1
    listed = ", ".join(f"{count} {state}" for state, count in sorted(states.items())) or "nothing in the ledger yet"
    return f"{listed}; {gone} gone from the storage"


def _milestones(stack: Stack, rows: dict[str, LedgerFile], gone: dict[str, float], first: float) -> dict[str, float]:
    """Seconds from the first close to the moment the last file reached each milestone of the flow."""
    found: dict[str, float] = {}
    for name in ("registered", "protected", "verified", "released"):
        times = [stock.epoch(getattr(row, f"{name}_at")) for row in rows.values() if getattr(row, f"{name}_at")]
        if times:
            found[name] = max(times) - first
    for name, query in (("queued", LAST_REQUEST), ("copied", LAST_COPY)):
        moment = latest(stack, query, ("requests", "requests_history") if name == "queued" else ("",))
        if not math.isnan(moment):
            found[name] = moment - first
    if gone:
        found["deleted"] = max(gone.values()) - first
    return found


def _rows(stack: Stack, query: str, tables: tuple[str, ...], rse: str) -> list[Any]:
    """The one row ``query`` gives for ``rse`` over each of ``tables``, read straight from Rucio's database."""
    engine = create_engine(stack.settings.db_url)
    try:
        with engine.connect() as connection:
            schema = stack.settings.db_schema or "public"
            return [
                connection.execute(text(query.format(schema=schema, table=table)), {"rse": rse}).one()
                for table in tables
            ]
    finally:
        engine.dispose()


def _source_reads(stack: Stack) -> tuple[int, int]:
    """Transfers whose source was ORM-ONSITE, and the bytes they read there."""
    rows = _rows(stack, SOURCE_READS, ("requests", "requests_history"), benchstack.ORM)
    return sum(int(count) for count, _ in rows), sum(int(total) for _, total in rows)


def latest(stack: Stack, query: str, tables: tuple[str, ...]) -> float:
    """The latest time (epoch) ``query`` finds for PIC-DISK over ``tables``; NaN when none."""
    return max(_moments(stack, query, tables), default=float("nan"))


def earliest(stack: Stack, query: str, tables: tuple[str, ...]) -> float:
    return min(_moments(stack, query, tables), default=float("nan"))


def _moments(stack: Stack, query: str, tables: tuple[str, ...]) -> list[float]:
    moments = [stock.epoch(moment) for (moment,) in _rows(stack, query, tables, benchstack.PIC)]
    return [moment for moment in moments if not math.isnan(moment)]
