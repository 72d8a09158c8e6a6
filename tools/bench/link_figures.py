"""The link benchmark's figures from what its runs measured. Pure.

The link's limit is the night's bytes over its rate: no flow empties the observatory faster. Every figure is
given beside it, and beside stock Rucio replicating the same night over the same link in the same run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tools.bench.report import Figure, Target

SAFETY_FACTOR, SAFETY_SLACK = 1.1, 120.0  # time to safety within 1.1 x the link's limit plus 2 minutes
UTILISATION_TARGET = 0.9  # of the link's rate while copies are due
BYTES_TARGET = 1.01  # bytes over the link per byte of the night: each byte once


@dataclass(frozen=True)
class Sample:
    """One look at the link and the observatory's disk: when (epoch), the link's counters, the night's bytes
    written so far and still held at the observatory."""

    at: float
    from_orm: int
    to_orm: int
    written: int = 0
    held: int = 0


@dataclass(frozen=True)
class LinkRun:
    """One night over the link: the project's flow, or stock Rucio replicating it."""

    flow: str  # "magic" or "stock"
    written: str  # "at once" or "trickled"
    files: int
    bytes: int
    rate_mbit: float
    done: int  # files deleted at the source (magic) or AVAILABLE at PIC-DISK (stock)
    started: float  # epoch: the first file closed (magic), the first rule (stock)
    finished: float  # epoch: the last file gone from the observatory (magic), the last copy AVAILABLE (stock)
    copies_due: tuple[float, float]  # epoch: the first transfer request made, the last copy done
    samples: Sequence[Sample]
    real_bytes: int = 0  # the same night at a real night's sizes
    framing: float = math.nan  # bytes over the link per byte of one large plain copy (stock's run measures it)

    @property
    def limit(self) -> float:
        """Seconds the link needs to carry the night's bytes once."""
        return self.bytes * 8 / (self.rate_mbit * 1e6)

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    def crossed(self, since: float = -math.inf, until: float = math.inf) -> tuple[int, int]:
        """Bytes over the link (from the observatory, to it) between two moments, from the samples nearest them."""
        inside = [sample for sample in self.samples if since <= sample.at <= until]
        if len(inside) < 2:
            return 0, 0
        return inside[-1].from_orm - inside[0].from_orm, inside[-1].to_orm - inside[0].to_orm

    def at_real_sizes(self, framing: float) -> tuple[float, float]:
        """Bytes over the link per byte of the night at a real night's sizes, and the bytes per file beyond the
        framing. A file costs the same listing, queries, header ranges, copy set-up and deletion whatever its size,
        so the bytes per file measured here are added to a real night's framed bytes."""
        carried, _ = self.crossed()
        beyond = carried - framing * self.bytes
        return framing + beyond / self.real_bytes, beyond / self.files

    def utilisation(self) -> float:
        """The link's use while copies are due: bytes from the observatory over what its rate could carry."""
        start, end = self.copies_due
        if not end > start:
            return math.nan
        carried, _ = self.crossed(start, end)
        return carried * 8 / (self.rate_mbit * 1e6 * (end - start))

    def backlog(self) -> tuple[int, int]:
        """The peak bytes held at the observatory, and the peak bytes a link at its rate could not yet have carried
        (written so far minus what it carries from the first write on, never below zero)."""
        if not self.samples:
            return 0, 0
        first = self.samples[0].at
        per_second = self.rate_mbit * 1e6 / 8
        carried_at_best = 0.0
        peak_ideal = 0.0
        last = first
        for sample in self.samples:
            carried_at_best = min(sample.written, carried_at_best + per_second * (sample.at - last))
            peak_ideal = max(peak_ideal, sample.written - carried_at_best)
            last = sample.at
        return max(sample.held for sample in self.samples), int(peak_ideal)


def figures(runs: Sequence[LinkRun]) -> list[Figure]:
    """For each way the night was written: time to safety, utilisation and bytes per byte, beside the link's limit
    and stock Rucio's run; for a trickled night, the bytes held at the observatory."""
    stock = next((run for run in runs if run.flow == "stock"), None)
    out: list[Figure] = []
    for run in (run for run in runs if run.flow == "magic"):
        tag = "at_once" if run.written == "at once" else "trickled"
        done = "" if run.done == run.files else f"; INCOMPLETE: {run.done} of {run.files} deleted at the source"
        night = f"{run.files} files, {run.bytes / 1e6:.0f} MB {run.written}, link {run.rate_mbit:g} Mbit/s{done}"
        out.append(Figure(
            f"link.time_to_safety[{tag}]", run.seconds, "s", run.limit, "link limit",
            Target(SAFETY_FACTOR * run.limit + SAFETY_SLACK, "<="),
            f"first file closed to last deleted at the source; {night}"
            + (f"; stock Rucio first rule to last copy {stock.seconds:.0f} s" if stock else ""),
        ))
        out.append(Figure(
            f"link.utilisation[{tag}]", run.utilisation(), "", stock.utilisation() if stock else None,
            "stock Rucio", Target(UTILISATION_TARGET),
            f"bytes from ORM over the rate x the time copies were due "
            f"({run.copies_due[1] - run.copies_due[0]:.0f} s, first request to last copy)",
        ))
        carried, back = run.crossed()
        out.append(Figure(
            f"link.bytes_per_byte[{tag}]", carried / run.bytes, "", (stock.crossed()[0] / stock.bytes)
            if stock else None, "stock Rucio", Target(BYTES_TARGET, "<="),
            f"{carried / 1e6:.1f} MB from ORM, {back / 1e6:.1f} MB to it, for a night of {run.bytes / 1e6:.1f} MB "
            "(the link's own counters, framing included)",
        ))
        if stock is not None and run.real_bytes and not math.isnan(stock.framing):
            projected, per_file = run.at_real_sizes(stock.framing)
            out.append(Figure(
                f"link.bytes_per_byte_at_real_sizes[{tag}]", projected, "", stock.at_real_sizes(stock.framing)[0],
                "stock Rucio", Target(BYTES_TARGET, "<="),
                f"{per_file / 1e3:.1f} kB per file beyond the framing ({stock.framing:.4f} per byte: one plain "
                f"xrdcp in the same run), added to a night of {run.real_bytes / 1e9:.0f} GB in {run.files} files",
            ))
        if run.written != "at once":
            held, ideal = run.backlog()
            out.append(Figure(
                f"link.peak_held[{tag}]", held / 1e6, "MB", ideal / 1e6, "bytes the link could not yet carry",
                detail="the night's bytes at ORM-ONSITE at their peak, against the peak of what a link busy from "
                "the first write could not yet have carried",
            ))
    if stock is not None:
        out.append(Figure(
            "link.stock_copy_time", stock.seconds, "s", stock.limit, "link limit",
            detail=f"stock Rucio: {stock.files} files registered beforehand, one rule per run dataset, first rule "
            f"to last copy AVAILABLE at PIC-DISK ({stock.done} of {stock.files})",
        ))
    return out
