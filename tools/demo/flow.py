"""One synthetic night through the whole MAGIC flow on a real Rucio stack (SQLite), watched and summarised.

The stack runs every daemon looping, as a site would: rucio-magic-scanner finds the night's files at the
observatory (ORM-ONSITE), registers and protects them; the conveyor copies them to PIC-DISK with the
project's transfer tool; rucio-magic-carrier verifies each copy at PIC and releases the carriers; the
reaper deletes the source copies. The ledger tells the whole story, and the summary comes from it.

With ``storage="xrootd"`` both RSEs live behind real XRootD servers: the night is written straight into the
ORM server's data folder, as the DAQ writes on site, and every daemon reaches it only over root:// (the
scanner lists and checksums on the server, the transfer tool copies server to server, the carrier asks PIC's
server for each copy's adler32, the reaper deletes with xrdfs).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections import Counter
from datetime import date, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rucio_magic_ext.common import utcnow
from rucio_magic_ext.ledger import FileState, Ledger
from rucio_magic_ext.ledger.models import LedgerFile
from rucio_magic_ext.report.nights import MILESTONES, at_or_beyond, nights
from rucio_magic_ext.report.query import file_row
from tools.demo.dl3 import real_run, show_dl3
from tools.demo.metrics import metrics_check
from tools.devstack.stack import Stack
from tools.make_night import PlannedFile, plan_night, write_night

ORM, PIC = "ORM-ONSITE", "PIC-DISK"
DONE = frozenset({FileState.DELETED, FileState.REJECTED, FileState.QUARANTINED})
console = Console() if sys.stdout.isatty() else Console(width=110)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_flow(
    state: Path,
    night: date,
    runs: int,
    scale: float,
    seed: int,
    keep: bool,
    timeout: float,
    trickle: float | None = None,
    storage: str = "posix",
    metrics: bool = False,
    auth: str = "none",
    link_mbit: float = 0,
) -> int:
    stack = Stack(state, db="sqlite", port=_free_port(), storage=storage, xrootd_ports={}, metrics=metrics,
                  metrics_ports={}, prometheus_port=0, auth=auth, extra={}, environment={}, link_mbit=link_mbit)
    stack.reset()
    try:
        started = time.monotonic()
        stack.up()
        console.print(
            f"[bold]Rucio stack up[/] on SQLite at {stack.url} in {time.monotonic() - started:.0f} s, "
            f"every daemon running (state and logs in {state})"
        )
        for name, server in stack.xrootd_servers().items():
            console.print(f"{'ORM-ONSITE' if name == 'orm' else 'PIC-DISK'} on XRootD: {server.root_url} "
                          f"and {server.http_url}, disk {server.data}"
                          + (f", guarded ({auth}: TLS and {'a VOMS proxy' if auth == 'x509' else 'tokens'})"
                             if auth != "none" else ""))
        os.environ["RUCIO_CONFIG"] = str(stack.settings.rucio_cfg)
        os.environ.update(stack.settings.environment)  # a person who fetches DL3 runs holds the site's proxy too
        console.print(
            f"watch it from another shell: RUCIO_CONFIG={stack.settings.rucio_cfg} "
            f"{Path(sys.executable).parent / 'rucio-magic'} status"
        )
        plan = [*plan_night(night, runs=runs, seed=seed, scale=scale), real_run()]
        orm_root = stack.data_folder(ORM)
        console.print(
            f"night {night} and a real DL3 run: {len(plan)} files, {_mb(sum(f.size for f in plan))} "
            f"{'trickling in' if trickle else 'written'} at {ORM}"
        )
        began = utcnow()
        def adopt(planned: PlannedFile, _size: int, _closed: bool) -> None:
            """The DAQ's files belong to the storage's account, which may then delete them when the reaper asks."""
            stack.adopt(orm_root / planned.path)

        writer = threading.Thread(
            target=write_night, args=(plan, orm_root), kwargs={"trickle": trickle, "observe": adopt}, daemon=True
        )
        writer.start()
        if not trickle:
            writer.join()
        watch = Watch(plan, stack.data_folder(PIC))
        dashboard = metrics_check(stack, watch.ledger, console) if metrics else None
        crossed = stack.link.crossed() if stack.link else None
        rows = watch.until_done(timeout)
        summarise(plan, rows)
        if stack.link and crossed:
            carried = stack.link.crossed()["from_orm"] - crossed["from_orm"]
            night = sum(planned.size for planned in plan)
            console.print(f"link ORM -> PIC at {link_mbit:g} Mbit/s: {_mb(carried)} carried for a night of "
                          f"{_mb(night)} ({carried / night:.3f} bytes per byte of the night)")
        write_report(watch.ledger, state, night, began)
        shown = dashboard.finish() if dashboard else True
        found = show_dl3(console, plan, state, fetch=auth != "token")
        return 0 if shown and found and all(row.state is FileState.DELETED for row in rows.values()) else 1
    finally:
        if keep:
            console.print(f"stack left running: python3 tools/devstack down --state {state}")
        else:
            stack.down()


class Watch:
    """The night's files as the ledger sees them, with a progress display while the flow runs."""

    def __init__(self, plan: list[PlannedFile], pic_root: Path) -> None:
        from rucio_magic_ext.ledger import Ledger

        self.plan = plan
        self.pic_root = pic_root
        self.ledger = Ledger.from_config()
        self.ledger.upgrade()  # the scanner may not have created the tables yet

    def rows(self) -> dict[str, LedgerFile]:
        return self.ledger.known(ORM, [planned.path for planned in self.plan])

    def until_done(self, timeout: float) -> dict[str, LedgerFile]:
        total = len(self.plan)
        columns = (
            TextColumn("[bold]{task.description:<24}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
        )
        deadline = time.monotonic() + timeout
        with Progress(*columns, console=console) as progress:
            tasks = {
                name: progress.add_task(name, total=total, detail="")
                for name, _ in MILESTONES
            }
            while True:
                rows = self.rows()
                states = Counter(row.state for row in rows.values())
                reached = _reached(states)
                for name, task in tasks.items():
                    progress.update(task, completed=reached[name])
                progress.update(tasks["replicated"], detail=f"{_mb(self._bytes_at_pic())} at {PIC}")
                progress.update(tasks["registered"], detail=_pending(states))
                if len(rows) == total and all(row.state in DONE for row in rows.values()):
                    return rows
                if time.monotonic() > deadline:
                    console.print(f"[red]not finished after {timeout:.0f} s[/]: {dict(states)}")
                    return rows
                time.sleep(2)

    def _bytes_at_pic(self) -> int:
        return sum(f.stat().st_size for f in self.pic_root.rglob("*") if f.is_file() and not f.name.startswith("."))


def _reached(states: Counter[FileState]) -> dict[str, int]:
    """How many files got at least as far as each milestone, as the report counts them."""
    return {
        name: sum(count for state, count in states.items() if at_or_beyond(state, milestone))
        for name, milestone in MILESTONES
    }


def _pending(states: Counter[FileState]) -> str:
    early = {s.value.lower(): states[s] for s in (FileState.SEEN, FileState.STABLE, FileState.CHECKSUMMED) if states[s]}
    return ", ".join(f"{count} {name}" for name, count in early.items())


def summarise(plan: list[PlannedFile], rows: dict[str, LedgerFile]) -> None:
    """The night per data level, and the time each stage took, as ``rucio-magic report`` computes them."""
    table = Table(title=f"MAGIC night: observatory ({ORM}) -> data centre ({PIC})")
    for column in ("night", "level", "files", "size", *(name for name, _ in MILESTONES), "refused"):
        table.add_column(column, justify="left" if column in ("night", "level") else "right")
    for level in sorted({planned.record.level.value for planned in plan}):
        for entry in nights(file_row(row) for row in rows.values() if row.level == level):  # a night, an RSE
            reached = (str(entry.reached[name]) for name, _ in MILESTONES)
            table.add_row(_night(entry.night), level, str(entry.files), _mb(entry.bytes), *reached, str(entry.refused))
    console.print(table)

    for row in rows.values():
        if row.state in (FileState.REJECTED, FileState.QUARANTINED):
            console.print(f"{row.state.value.lower()}: {row.path}: {row.last_error}")

    stages = Table(title="time per stage, per file (from the ledger)")
    for column in ("night", "stage", "median s", "slowest s"):
        stages.add_column(column, justify="left" if column in ("night", "stage") else "right")
    for whole in nights(file_row(row) for row in rows.values()):
        for name, latency in whole.latencies.items():
            if latency is not None:
                stages.add_row(_night(whole.night), name, f"{latency.median:.1f}", f"{latency.slowest:.1f}")
    console.print(stages)


def _night(night: date | None) -> str:
    """A file's night as MAGIC names it (its sunrise date); files no night can be read from are apart."""
    return night.isoformat() if night else "no night"


def write_report(ledger: Ledger, state: Path, night: date, began: datetime) -> None:
    """The night's timeline plot and per-night table, as ``rucio-magic report`` writes them."""
    from rucio_magic_ext.report import write
    from rucio_magic_ext.report.query import load_rows

    until = utcnow()
    rows = [row for row in load_rows(ledger, began, until, ORM) if row.night == night]
    plot = write.write_plot(rows, state / "report.png", began, until, what=f"{ORM}, night {night}")
    table = write.write_table(rows, state / "report.md")
    console.print(f"report: {plot} (timeline), {table} (per night)")


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
