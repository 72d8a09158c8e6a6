"""One synthetic night through a real Rucio stack on SQLite, watched and summarised.

The stack runs the stock daemons looping (judge, conveyor with the project's transfer tool, reaper).
Files are brought into Rucio as an observatory ingest does: registered where they were written, with
their adler32, in run datasets with the replication policy's rules, and pinned at the source by a
carrier rule (``purge_replicas``) that is released once every copy at PIC is in place.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from devstack.config import ETC
from devstack.stack import Stack
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rucio_magic_ext import layout
from rucio_magic_ext.checksum import checksum_file
from rucio_magic_ext.replication import load_policy
from tools.make_night import PlannedFile, plan_night, write_night

ORM, PIC = "ORM-ONSITE", "PIC-DISK"
CARRIER_SCOPE = "magic_carrier"
console = Console()


@dataclass
class Timeline:
    """Seconds spent in each stage, in order."""

    stages: dict[str, float] = field(default_factory=dict)

    def run(self, stage: str, action: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            return action()
        finally:
            self.stages[stage] = time.monotonic() - started


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_flow(state: Path, night: date, runs: int, scale: float, seed: int, keep: bool, timeout: float) -> int:
    stack = Stack(state, db="sqlite", port=_free_port())
    stack.reset()
    timeline = Timeline()
    try:
        timeline.run("stack up", stack.up)
        console.print(f"[bold]Rucio stack up[/] on SQLite at {stack.url} (state in {state})")
        os.environ["RUCIO_CONFIG"] = str(stack.settings.rucio_cfg)
        from rucio.client import Client  # after up: the stack's rucio.cfg exists

        client = Client()
        orm_root = Path(client.get_protocols(ORM)[0]["prefix"])
        pic_root = Path(client.get_protocols(PIC)[0]["prefix"])

        plan = plan_night(night, runs=runs, seed=seed, scale=scale)
        timeline.run("night written at ORM", lambda: write_night(plan, orm_root))
        console.print(f"night {night}: {len(plan)} files, {_mb(sum(f.size for f in plan))} written at {ORM}")

        carrier = timeline.run("registered and protected", lambda: ingest(client, plan, orm_root))
        watch = Watch(client, plan, orm_root, pic_root)
        timeline.run("replicated to PIC", lambda: watch.until("replicated", watch.replicated, timeout))
        client.update_replication_rule(carrier, {"lifetime": 0})  # release: the source copies become OBSOLETE
        timeline.run("deleted at source", lambda: watch.until("deleted at source", watch.deleted_at_source, timeout))
        summarise(watch, timeline)
        return 0 if watch.deleted_at_source() == len(plan) else 1
    finally:
        if keep:
            console.print(f"stack left running: python3 tools/devstack down --state {state}")
        else:
            stack.down()


def ingest(client: Any, plan: list[PlannedFile], orm_root: Path) -> str:
    """Register every file at ORM with its PFN and checksum, organise it, and put the rules on it."""
    client = _retrying(client)
    policy = load_policy(ETC / "replication-policy.toml")
    placements = {planned.path: layout.placement(planned.record, _night_of(planned)) for planned in plan}
    files = []
    for planned in plan:
        placed = placements[planned.path]
        adler32 = checksum_file(orm_root / planned.path)["adler32"]
        files.append(
            {
                "scope": placed.scope,
                "name": placed.name,
                "bytes": planned.size,
                "adler32": adler32,
                "pfn": f"file://localhost:0{orm_root / planned.path}",
            }
        )
    for start in range(0, len(files), 500):
        client.add_replicas(ORM, files[start : start + 500])

    datasets: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    containers: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
    for planned in plan:
        placed = placements[planned.path]
        datasets[(placed.scope, placed.dataset)].append({"scope": placed.scope, "name": placed.name})
        chain = [placed.dataset, *placed.containers]
        for child, parent in zip(chain, chain[1:]):
            containers[(placed.scope, parent)].add((placed.scope, child))
    existing = {(did["scope"], did["name"]) for did in _list_collections(client)}
    new = [(scope, name, "DATASET") for scope, name in datasets] + [(s, n, "CONTAINER") for s, n in containers]
    client.add_dids([{"scope": s, "name": n, "type": t} for s, n, t in new if (s, n) not in existing])
    client.attach_dids_to_dids(
        [{"scope": s, "name": n, "dids": dids} for (s, n), dids in datasets.items()]
        + [
            {"scope": s, "name": n, "dids": [{"scope": cs, "name": cn} for cs, cn in sorted(children)]}
            for (s, n), children in containers.items()
        ]
    )

    for (scope, dataset), _ in datasets.items():
        record = next(p.record for p in plan if placements[p.path].dataset == dataset)
        for spec in policy.rules_for(record.level, record.telescope):
            client.add_replication_rule(
                [{"scope": scope, "name": dataset}],
                spec.copies,
                spec.rse_expression,
                grouping=spec.grouping,
                lifetime=spec.lifetime,
                activity=spec.activity,
                comment=spec.rule_comment,
            )

    carrier = f"carrier_{uuid.uuid4().hex[:12]}"
    client.add_dataset(CARRIER_SCOPE, carrier)
    client.attach_dids(CARRIER_SCOPE, carrier, [{"scope": f["scope"], "name": f["name"]} for f in files])
    client.close(CARRIER_SCOPE, carrier)
    return client.add_replication_rule(
        [{"scope": CARRIER_SCOPE, "name": carrier}],
        1,
        ORM,
        purge_replicas=True,
        activity="MAGIC Carrier",
        comment="magic carrier (source)",
    )[0]


def _retrying(client: Any) -> Any:
    """The client, with each call retried a few times on a database error.

    On SQLite, a transaction that started reading and then writes fails at once when another process
    wrote meanwhile (the server and the daemons share one file): the call is simply run again.
    """
    from rucio.common.exception import DatabaseException

    class Retrying:
        def __getattr__(self, name: str) -> Any:
            call = getattr(client, name)

            def retried(*args: Any, **kwargs: Any) -> Any:
                for attempt in range(10):
                    try:
                        return call(*args, **kwargs)
                    except DatabaseException:
                        if attempt == 9:
                            raise
                        time.sleep(0.2 * (attempt + 1))
                return None

            return retried

    return Retrying()


def _night_of(planned: PlannedFile) -> date | None:
    folder = layout.observatory_folder("/" + planned.path)
    return folder.night if folder else None


def _list_collections(client: Any) -> list[dict[str, str]]:
    found = []
    for scope in layout.SCOPES:
        found += [{"scope": scope, "name": name} for name in client.list_dids(scope, {}, did_type="collection")]
    return found


class Watch:
    """What is where, read from Rucio and from the storages, with a progress display while waiting."""

    def __init__(self, client: Any, plan: list[PlannedFile], orm_root: Path, pic_root: Path) -> None:
        self.client, self.plan, self.orm_root, self.pic_root = client, plan, orm_root, pic_root
        self.placements = {p.path: layout.placement(p.record, _night_of(p)) for p in plan}

    def states(self) -> dict[str, dict[str, str]]:
        dids = [{"scope": p.scope, "name": p.name} for p in self.placements.values()]
        found: dict[str, dict[str, str]] = {}
        for start in range(0, len(dids), 500):
            for replica in self.client.list_replicas(dids[start : start + 500], all_states=True):
                found[replica["name"]] = replica["states"]
        return found

    def replicated(self) -> int:
        return sum(1 for states in self.states().values() if states.get(PIC) == "AVAILABLE")

    def deleted_at_source(self) -> int:
        states = self.states()
        return sum(
            1
            for planned in self.plan
            if ORM not in states.get(planned.name, {}) and not (self.orm_root / planned.path).exists()
        )

    def bytes_at_pic(self) -> int:
        return sum(f.stat().st_size for f in self.pic_root.rglob("*") if f.is_file() and not f.name.startswith("."))

    def until(self, what: str, count: Callable[[], int], timeout: float) -> None:
        total = len(self.plan)
        deadline = time.monotonic() + timeout
        columns = (
            TextColumn(f"[bold]{what}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[moved]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task(what, total=total, moved="")
            while True:
                done = count()
                progress.update(task, completed=done, moved=f"{_mb(self.bytes_at_pic())} at {PIC}")
                if done >= total:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{what}: {done} of {total} files after {timeout:.0f} s")
                time.sleep(2)


def summarise(watch: Watch, timeline: Timeline) -> None:
    states = watch.states()
    per_level: dict[str, Counter[str]] = defaultdict(Counter)
    for planned in watch.plan:
        level = planned.record.level.value
        row = per_level[level]
        row["files"] += 1
        row["bytes"] += planned.size
        row["registered"] += 1 if planned.name in states else 0
        row["replicated"] += 1 if states.get(planned.name, {}).get(PIC) == "AVAILABLE" else 0
        gone = ORM not in states.get(planned.name, {}) and not (watch.orm_root / planned.path).exists()
        row["deleted at source"] += 1 if gone else 0
    table = Table(title="MAGIC night: observatory -> data centre")
    for column in ("level", "files", "size", "seen", "registered", "replicated", "deleted at source"):
        table.add_column(column, justify="right" if column != "level" else "left")
    for level, row in per_level.items():
        table.add_row(
            level,
            str(row["files"]),
            _mb(row["bytes"]),
            str(row["files"]),
            str(row["registered"]),
            str(row["replicated"]),
            str(row["deleted at source"]),
        )
    console.print(table)
    stages = Table(title="time per stage")
    stages.add_column("stage")
    stages.add_column("seconds", justify="right")
    for stage, seconds in timeline.stages.items():
        stages.add_row(stage, f"{seconds:.1f}")
    console.print(stages)


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
