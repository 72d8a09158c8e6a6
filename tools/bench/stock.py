"""The chain's two baselines, measured on a stack of their own: a plain copy, and stock Rucio replicating.

* ``cp -r`` of the night's folder tree from ORM-ONSITE's folder to a folder beside PIC-DISK's, on the same
  file system: what moving the bytes alone costs.
* Stock Rucio: the same files registered beforehand through Rucio's client (``stock_register.py``), one rule
  per run dataset to PIC-DISK, then the conveyor daemons the chain uses (the magic tool's preparer, submitter
  and poller, Rucio's finisher) started at the same sleep times and run until every file has its replica
  AVAILABLE at PIC-DISK; no scanner, no carrier, nothing deleted. The daemons start after the rules, so they
  find the work waiting, the preparer first (a submitter that found nothing would sleep a cycle): Rucio's
  own floor. Their cost is sampled as the chain's is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from rucio_magic_ext import layout
from tools.bench import benchstack, children, procstat
from tools.bench.chain_figures import PlainCopy, StockRun, cost
from tools.devstack import processes
from tools.devstack.stack import Stack
from tools.make_night import PlannedFile, write_night

CONVEYOR = ("conveyor-preparer", "conveyor-submitter", "conveyor-poller", "conveyor-finisher")
PREPARING = """
SELECT count(*) FROM {schema}.requests WHERE state = 'P'
"""
AVAILABLE_AT = """
SELECT count(*), max(r.updated_at) FROM {schema}.replicas r JOIN {schema}.rses s ON s.id = r.rse_id
WHERE s.rse = :rse AND r.state = 'A'
"""


def epoch(moment: datetime | None) -> float:
    """A naive UTC time of Rucio's or the ledger's, in seconds since the epoch."""
    return moment.replace(tzinfo=timezone.utc).timestamp() if moment else float("nan")


def _one(stack: Stack, query: str, **values: str) -> tuple[Any, ...]:
    """The one row of ``query`` on Rucio's database."""
    engine = create_engine(stack.settings.db_url)
    statement = text(query.format(schema=stack.settings.db_schema or "public"))
    try:
        with engine.connect() as connection:
            return tuple(connection.execute(statement, values).one())
    finally:
        engine.dispose()


def available_at(stack: Stack, rse: str) -> tuple[int, float]:
    """How many replicas are AVAILABLE at ``rse``, and when the last of them became so (epoch)."""
    count, last = _one(stack, AVAILABLE_AT, rse=rse)
    return int(count), epoch(last)


def prepared(stack: Stack, deadline: float) -> None:
    """Wait until the preparer has queued every request (none left PREPARING), or the deadline."""
    while _one(stack, PREPARING)[0] and time.monotonic() < deadline:
        time.sleep(1)


def plain_copy(source: Path, target: Path) -> PlainCopy:
    """``cp -r`` of the tree, timed; the copy is removed afterwards."""
    files = [path for path in source.rglob("*") if path.is_file()]
    shutil.rmtree(target, ignore_errors=True)
    began = time.monotonic()
    subprocess.run(["cp", "-r", str(source), str(target)], check=True)
    seconds = time.monotonic() - began
    shutil.rmtree(target, ignore_errors=True)
    return PlainCopy(len(files), sum(path.stat().st_size for path in files), seconds)


def listing(plan: list[PlannedFile]) -> list[dict[str, str]]:
    """Each file as stock registration needs it: its path, DID and run dataset."""
    out = []
    for planned in plan:
        folder = layout.observatory_folder("/" + planned.path)  # names such as scalib carry no night
        placed = layout.placement(planned.record, folder.night if folder else None)
        out.append({"path": planned.path, "scope": placed.scope, "name": placed.name, "dataset": placed.dataset})
    return out


def leaders(stack: Stack, names: tuple[str, ...]) -> dict[str, int]:
    """The pid of each named daemon the stack started (from its pid file)."""
    found = {name: processes.pid_of(stack.pid_file(name)) for name in names}
    return {name: pid for name, pid in found.items() if pid is not None}


def run(
    place: benchstack.Place, plan: list[PlannedFile], own_sleep: bool, timeout: float
) -> tuple[PlainCopy, StockRun]:
    with benchstack.running(place, {}, "chain (baselines)") as stack:
        root = benchstack.orm_root(stack)
        write_night(plan, root, stamp_times=True)
        copy = plain_copy(root, stack.settings.storage_dir / "cp-baseline")
        print(f"chain: cp -r of {copy.files} files, {copy.bytes / 1e6:.0f} MB: {copy.seconds:.2f} s", file=sys.stderr)
        files = stack.state / "stock-files.json"
        files.write_text(json.dumps(listing(plan)))
        registered = children.run_child(stack, "stock_register.py", str(root), str(files), log="bench-chain-stock")
        print(f"chain: stock Rucio: {registered['files']} files registered, {registered['rules']} rules "
              f"in {registered['rules_seconds']:.0f} s; conveyor started", file=sys.stderr)
        load_start = os.getloadavg()[0]
        deadline = time.monotonic() + timeout
        benchstack.start_daemons(stack, CONVEYOR[:1], own_sleep=own_sleep)
        prepared(stack, deadline)
        benchstack.start_daemons(stack, CONVEYOR[1:], own_sleep=own_sleep)
        sampler = procstat.Sampler(leaders(stack, CONVEYOR)).start()
        count, last = available_at(stack, benchstack.PIC)
        while count < len(plan) and time.monotonic() < deadline:
            time.sleep(2)
            count, last = available_at(stack, benchstack.PIC)
        tracks = sampler.stop()
        load = (load_start, os.getloadavg()[0])
        print(f"chain: stock Rucio: {count} of {len(plan)} AVAILABLE at PIC-DISK", file=sys.stderr)
    costs = {name: one for name, track in tracks.items() if (one := cost(track)) is not None}
    stock = StockRun(len(plan), count, registered["rules"], last - registered["first_rule_at"], costs, load)
    return copy, stock
