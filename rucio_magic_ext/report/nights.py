"""Per night and source RSE: how much data, how far it got, and how long each stage took. Pure.

Milestones count the files whose current state is at or beyond them along the flow, as the demo's summary does;
stage latencies come from the ``<state>_at`` columns of each file.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from rucio_magic_ext.ledger.states import DEAD_ENDS, FLOW, FileState
from rucio_magic_ext.report.rows import FileRow

MILESTONES = (
    ("registered", FileState.REGISTERED),
    ("replicated", FileState.REPLICATED),
    ("verified", FileState.VERIFIED),
    ("deleted at source", FileState.DELETED),
)
STAGES = (
    ("seen -> registered", "seen_at", "registered_at"),
    ("registered -> replicated", "registered_at", "replicated_at"),
    ("replicated -> verified", "replicated_at", "verified_at"),
    ("verified -> deleted at source", "verified_at", "deleted_at"),
    ("seen -> deleted at source", "seen_at", "deleted_at"),
)
NO_NIGHT = "unknown"  # files whose name did not parse, so the ledger knows no night for them


@dataclass(frozen=True)
class Latency:
    """Seconds a stage took, over the files of a night that went through it."""

    files: int
    median: float
    slowest: float


@dataclass(frozen=True)
class Night:
    rse: str
    night: date | None
    files: int
    bytes: int
    reached: dict[str, int]  # milestone name -> files at or beyond it
    refused: int  # REJECTED or QUARANTINED
    latencies: dict[str, Latency | None] = field(default_factory=dict)  # stage name -> None if no file did it

    @property
    def label(self) -> str:
        return self.night.isoformat() if self.night else NO_NIGHT


def at_or_beyond(state: FileState, milestone: FileState) -> bool:
    """Whether a file in ``state`` has reached ``milestone`` (a dead end has reached none)."""
    return state in FLOW and FLOW.index(state) >= FLOW.index(milestone)


def _latency(rows: Sequence[FileRow], start: str, end: str) -> Latency | None:
    """None when no file did the stage. A file sent back by a failed verification keeps its older
    ``verified_at`` until verified again: such a span would be negative, and is left out."""
    spans = []
    for row in rows:
        begin, finish = getattr(row, start), getattr(row, end)
        if begin is not None and finish is not None and finish >= begin:
            spans.append((finish - begin).total_seconds())
    return Latency(len(spans), statistics.median(spans), max(spans)) if spans else None


def nights(rows: Iterable[FileRow]) -> list[Night]:
    """One entry per (source RSE, night), by RSE then night; files of no known night last."""
    grouped: dict[tuple[str, date | None], list[FileRow]] = {}
    for row in rows:
        grouped.setdefault((row.rse, row.night), []).append(row)
    return [
        Night(
            rse=rse,
            night=night,
            files=len(members),
            bytes=sum(row.size for row in members),
            reached={name: sum(at_or_beyond(row.state, state) for row in members) for name, state in MILESTONES},
            refused=sum(row.state in DEAD_ENDS for row in members),
            latencies={name: _latency(members, start, end) for name, start, end in STAGES},
        )
        for (rse, night), members in sorted(grouped.items(), key=lambda item: (item[0][0], item[0][1] or date.max))
    ]


def _slug(name: str) -> str:
    return name.replace(" -> ", "_to_").replace(" ", "_")


def to_csv(table: Sequence[Night]) -> str:
    """Machine-readable: exact bytes, seconds with millisecond precision, empty cells where no file did a stage."""
    header = ["rse", "night", "files", "bytes", *(_slug(name) for name, _ in MILESTONES), "refused"]
    for name, _, _ in STAGES:
        header += [f"{_slug(name)}_median_s", f"{_slug(name)}_max_s"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for entry in table:
        cells: list[object] = [entry.rse, entry.label, entry.files, entry.bytes]
        cells += [entry.reached[name] for name, _ in MILESTONES]
        cells.append(entry.refused)
        for name, _, _ in STAGES:
            latency = entry.latencies.get(name)
            cells += [f"{latency.median:.3f}", f"{latency.slowest:.3f}"] if latency else ["", ""]
        writer.writerow(cells)
    return out.getvalue()


def size_text(size: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def to_markdown(table: Sequence[Night]) -> str:
    """For people: sizes in decimal units, each stage as "median / slowest" seconds."""
    header = ["RSE", "night", "files", "size", *(name for name, _ in MILESTONES), "refused"]
    header += [f"{name} (median / max s)" for name, _, _ in STAGES]
    lines = [_line(header), _line(["---", "---", *["--:"] * (len(header) - 2)])]
    for entry in table:
        cells = [entry.rse, entry.label, str(entry.files), size_text(entry.bytes)]
        cells += [str(entry.reached[name]) for name, _ in MILESTONES]
        cells.append(str(entry.refused))
        for name, _, _ in STAGES:
            latency = entry.latencies.get(name)
            cells.append(f"{latency.median:.1f} / {latency.slowest:.1f}" if latency else "-")
        lines.append(_line(cells))
    if not table:
        lines.append(_line(["no files", *[""] * (len(header) - 1)]))
    return "\n".join(lines) + "\n"
