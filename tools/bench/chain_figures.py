"""The chain benchmark's figures from what its runs measured. Pure.

Rates are over the whole span of a run: for the chain, from the first file closed at the observatory to
the last one deleted there; for the plain copy, the ``cp -r``; for stock Rucio, from its first rule to the
last replica AVAILABLE at PIC-DISK. A daemon's cost is its CPU from the moment the night began to the end
(its start-up, before any file, is given apart) per 1,000 files, and its peak resident memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from tools.bench.procstat import Track
from tools.bench.report import Figure, Target

BYTES_TARGET = 0.7  # chain bytes/s over a plain copy's
FILES_TARGET = 0.8  # chain files/s over stock Rucio's
READS_TARGET = 1.0  # bytes read at the observatory by transfers over the night's bytes: each byte leaves once
#: The project's daemons, whose cost is reported (the conveyor ones are the magic tool's wrappers).
PROJECT_DAEMONS = ("magic-scanner", "magic-carrier", "conveyor-preparer", "conveyor-submitter", "conveyor-poller")
#: Milestones of the chain, each the moment its last file reached it, in the order of the flow.
MILESTONES = ("registered", "protected", "queued", "copied", "verified", "released", "deleted")


@dataclass(frozen=True)
class Cost:
    """A daemon's CPU seconds over the measured work and before it, and its peak memory (MB)."""

    cpu: float
    startup_cpu: float
    peak_rss_mb: float
    children_cpu: float = 0.0  # processes it started (the transfer tool's copiers), included in ``cpu``


def cost(track: Track) -> Cost | None:
    """The cost of one daemon from its samples; None when it was never seen."""
    if track.last is None:
        return None
    mark = track.mark or track.first
    assert mark is not None
    cpu = track.last.cpu - mark.cpu
    children = cpu - (track.last.leader_cpu - mark.leader_cpu)
    peak_kb = max(track.peak_rss_kb, track.last.leader_hwm_kb)
    return Cost(cpu=cpu, startup_cpu=mark.cpu, peak_rss_mb=peak_kb / 1000, children_cpu=children)


@dataclass(frozen=True)
class PlainCopy:
    """``cp -r`` of the night's folder tree between the two storages."""

    files: int
    bytes: int
    seconds: float


@dataclass(frozen=True)
class StockRun:
    """Stock Rucio replicating the same files, registered beforehand, one rule per run dataset."""

    files: int
    replicated: int
    rules: int
    seconds: float  # first rule -> last replica AVAILABLE at PIC-DISK
    costs: Mapping[str, Cost] = field(default_factory=dict)
    load: tuple[float, float] = (math.nan, math.nan)  # 1-minute load average at its start and end


@dataclass(frozen=True)
class ChainRun:
    """The whole chain over one night: scanner, conveyor, carrier and reaper, daemons looping."""

    files: int
    bytes: int
    deleted: int  # files gone from the observatory's storage
    seconds: float  # first file closed -> last file deleted at the source
    milestones: Mapping[str, float]  # milestone -> seconds from the first close to its last file
    costs: Mapping[str, Cost]
    setup: str  # how the run was made, for the figures' detail
    load: tuple[float, float] = (math.nan, math.nan)  # 1-minute load average at its start and end
    source_reads: tuple[int, int] | None = None  # transfers that read at the observatory, and their bytes
    copy_started: float = math.nan  # seconds from the first close to the first transfer request to PIC-DISK

    @property
    def complete(self) -> bool:
        return self.deleted == self.files


def rate(count: float, seconds: float) -> float:
    """``count`` per second; NaN without a positive span."""
    return count / seconds if seconds > 0 else math.nan


def _mb(value: float) -> float:
    return value / 1e6


def _load(load: tuple[float, float]) -> str:
    return f"load {load[0]:.1f} -> {load[1]:.1f}"


def _span_detail(chain: ChainRun) -> str:
    steps = [f"{name} +{chain.milestones[name]:.0f} s" for name in MILESTONES if name in chain.milestones]
    return "last file " + ", ".join(steps) if steps else "no milestone reached"


def figures(chain: ChainRun, copy: PlainCopy, stock: StockRun | None) -> list[Figure]:
    """The chain's figures, each beside its baseline of the same run, with the machine's load during each."""
    done = "" if chain.complete else f"; INCOMPLETE: {chain.deleted} of {chain.files} deleted at the source"
    chain_files = rate(chain.deleted, chain.seconds)
    moved = chain.bytes * chain.deleted / chain.files if chain.files else 0
    loads = f"chain {_load(chain.load)}" + (f", stock Rucio {_load(stock.load)}" if stock else "")
    out = [
        Figure(
            "chain.bytes_per_s",
            _mb(rate(moved, chain.seconds)),
            "MB/s",
            baseline=_mb(rate(copy.bytes, copy.seconds)),
            baseline_name="cp -r",
            target=Target(BYTES_TARGET, ">=", on_ratio=True),
            detail=f"{chain.files} files, {_mb(chain.bytes):.0f} MB, first closed -> last deleted at the source "
            f"{chain.seconds:.0f} s, {chain_files:.2f} files/s; cp -r of the tree {copy.seconds:.2f} s, "
            f"{rate(copy.files, copy.seconds):.0f} files/s; {loads}{done}",
            extra={"chain_files_per_s": chain_files, "copy": copy.__dict__},
        ),
        Figure(
            "chain.files_per_s",
            chain_files,
            "files/s",
            baseline=rate(stock.replicated, stock.seconds) if stock else None,
            baseline_name="stock-rucio",
            target=Target(FILES_TARGET, ">=", on_ratio=True),
            detail=(
                f"stock Rucio: {stock.replicated} of {stock.files} files, {stock.rules} dataset rules, first rule -> "
                f"last replica AVAILABLE at PIC-DISK {stock.seconds:.0f} s; {chain.setup}; {loads}{done}"
                if stock
                else f"no stock baseline; {chain.setup}; {loads}{done}"
            ),
        ),
        Figure(
            "chain.span",
            chain.seconds,
            "s",
            detail=f"first closed -> last deleted at the source; {_span_detail(chain)}; {_load(chain.load)}",
            extra={"milestones": dict(chain.milestones)},
        ),
    ]
    if chain.source_reads is not None:
        out.append(_reads_figure(chain, chain.source_reads))
    if "copied" in chain.milestones and not math.isnan(chain.copy_started):
        out.append(_copying_figure(chain, stock))
    stock_costs = stock.costs if stock else {}
    for name in PROJECT_DAEMONS:
        out.extend(_daemon_figures(name, chain.costs.get(name), stock_costs.get(name), chain.files, loads))
    return out


def _reads_figure(chain: ChainRun, reads: tuple[int, int]) -> Figure:
    """How often each byte of the night crossed the observatory's link: every transfer whose source was the
    observatory (Rucio's requests, archived or not, by their ``source_rse_id``), over the night's bytes."""
    transfers, read = reads
    return Figure(
        "chain.source_reads",
        _mb(read),
        "MB",
        baseline=_mb(chain.bytes),
        baseline_name="night",
        target=Target(READS_TARGET, "<=", on_ratio=True),
        detail=f"{transfers} transfers read at the observatory for {chain.files} files, failed ones included; "
        "the ratio is reads per byte; the scanner's adler32 reads each byte once more where the storage "
        "computes no checksum itself",
    )


def _copying_figure(chain: ChainRun, stock: StockRun | None) -> Figure:
    """The chain's copying alone (first transfer request to last copy done), against stock Rucio's whole run,
    which is copying alone: what the scanner and the carrier cost the conveyor while it works. The rest of the
    chain's span, before and after, is settle time and the daemons' sleeps, which do not grow with a night."""
    head, copied = chain.copy_started, chain.milestones["copied"]
    return Figure(
        "chain.copying_files_per_s",
        rate(chain.files, copied - head),
        "files/s",
        baseline=rate(stock.replicated, stock.seconds) if stock else None,
        baseline_name="stock-rucio",
        detail=f"first transfer request +{head:.0f} s -> last copy done +{copied:.0f} s: {copied - head:.0f} s "
        f"of copying; before it {head:.0f} s, after it {chain.seconds - copied:.0f} s of the span",
    )


def stock_cpu(mine: Cost, stock: Cost) -> float:
    """Stock Rucio's CPU for the same work, its start-up taken off: its daemons start with the work waiting,
    so their start-up falls inside the run; it is taken as the chain's start-up of the same daemon."""
    return max(0.0, stock.startup_cpu + stock.cpu - mine.startup_cpu)


def _daemon_figures(name: str, mine: Cost | None, stock: Cost | None, files: int, loads: str) -> list[Figure]:
    if mine is None:
        return []
    per = 1000 / files if files else math.nan
    children = f"; {mine.children_cpu:.1f} s of it in the processes it started" if mine.children_cpu >= 0.05 else ""
    stock_note = f"; stock Rucio {stock.startup_cpu + stock.cpu:.1f} s with its start-up" if stock else ""
    return [
        Figure(
            f"chain.cpu_per_1000_files[{name}]",
            mine.cpu * per,
            "s",
            baseline=stock_cpu(mine, stock) * per if stock else None,
            baseline_name="stock-rucio",
            detail=f"{mine.cpu:.1f} CPU s over {files} files, start-up {mine.startup_cpu:.1f} s apart"
            f"{children}{stock_note}; {loads}",
            extra={"cost": mine.__dict__, "stock": stock.__dict__ if stock else None},
        ),
        Figure(
            f"chain.peak_rss[{name}]",
            mine.peak_rss_mb,
            "MB",
            baseline=stock.peak_rss_mb if stock else None,
            baseline_name="stock-rucio",
            detail=f"resident memory of the daemon and the processes it started, at its peak; {loads}",
        ),
    ]
