"""How many files stood where, over time: the observatory's backlog, the transfers in flight, the copies at PIC.
Pure. Each file moves the series only at its own ``<state>_at`` instants, so the series are step functions:
exact when sampled at every change instant, and sampled on an even grid when there are too many of those.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import accumulate

from rucio_magic_ext.report.rows import FileRow

AT_SOURCE = "at source"
REGISTERED = "registered"
REPLICATING = "replicating"
AT_DESTINATION = "at destination"
DELETED = "deleted at source"
SERIES = (AT_SOURCE, REGISTERED, REPLICATING, AT_DESTINATION, DELETED)

MAX_INSTANTS = 2000  # beyond this, a step line is no longer readable and an even grid says as much


@dataclass(frozen=True)
class Timeline:
    """The number of files in each series at each instant (``series[name][i]`` at ``instants[i]``)."""

    instants: list[datetime]
    series: dict[str, list[int]]

    @property
    def empty(self) -> bool:
        return not any(any(values) for values in self.series.values())


def _steps(row: FileRow) -> list[tuple[datetime, str, int]]:
    """The instants at which ``row`` enters (+1) or leaves (-1) each series.

    The ledger keeps when a file *last* entered each state. A copy that failed verification sends its file
    back to PROTECTED after its replication (``protected_at`` > ``replicated_at``): from then on the file is
    replicating again, and no longer at the destination, until it is replicated anew.
    """
    steps: list[tuple[datetime, str, int]] = []
    seen, registered, protected = row.seen_at, row.registered_at, row.protected_at
    replicated, deleted = row.replicated_at, row.deleted_at
    if seen is not None:
        steps.append((seen, AT_SOURCE, 1))
        if deleted is not None:
            steps.append((max(seen, deleted), AT_SOURCE, -1))
    if registered is not None:
        steps.append((registered, REGISTERED, 1))
    if protected is not None:
        steps.append((protected, REPLICATING, 1))
        if replicated is not None and replicated >= protected:
            steps.append((replicated, REPLICATING, -1))
    if replicated is not None:
        steps.append((replicated, AT_DESTINATION, 1))
        if protected is not None and protected > replicated:
            steps.append((protected, AT_DESTINATION, -1))
    if deleted is not None:
        steps.append((deleted, DELETED, 1))
    return steps


def timeline(rows: Iterable[FileRow], instants: Sequence[datetime]) -> Timeline:
    """The five series at ``instants`` (sorted), each counting the files of ``rows`` that at that instant are:

    - at source: seen (``seen_at`` <= t) and not yet deleted there (no ``deleted_at`` <= t); files refused
      (REJECTED, QUARANTINED) stay on the observatory's storage and so count here;
    - registered: registered in Rucio by then (``registered_at`` <= t), cumulative;
    - replicating: protected, i.e. their rules created (``protected_at`` <= t), but not yet replicated since
      (no ``replicated_at`` in [``protected_at``, t]);
    - at destination: replicated (``replicated_at`` <= t), whatever came after (verified, released, source
      deleted), unless sent back to PROTECTED by a failed verification before t;
    - deleted at source: their source copy deleted by the reaper (``deleted_at`` <= t), cumulative.

    A file with a change exactly at t counts as changed.
    """
    changes: dict[str, list[tuple[datetime, int]]] = {name: [] for name in SERIES}
    for row in rows:
        for at, name, delta in _steps(row):
            changes[name].append((at, delta))
    series: dict[str, list[int]] = {}
    for name, moves in changes.items():
        moves.sort(key=lambda move: move[0])
        times = [at for at, _ in moves]
        totals = list(accumulate(delta for _, delta in moves))
        series[name] = [totals[index - 1] if index else 0 for index in (bisect_right(times, t) for t in instants)]
    return Timeline(list(instants), series)


def change_instants(rows: Iterable[FileRow], since: datetime, until: datetime) -> list[datetime]:
    """Every instant in [since, until] at which a series changes, with ``since`` and ``until`` themselves."""
    inside = {at for row in rows for at, _, _ in _steps(row) if since < at < until}
    return [since, *sorted(inside), until]


def even_instants(since: datetime, until: datetime, count: int) -> list[datetime]:
    """``count`` instants evenly spread from ``since`` to ``until``, both included."""
    if count < 2 or until <= since:
        return [since, until] if until > since else [since]
    step = (until - since) / (count - 1)
    return [since + step * index for index in range(count - 1)] + [until]


def sample_instants(
    rows: Sequence[FileRow], since: datetime, until: datetime, limit: int = MAX_INSTANTS
) -> list[datetime]:
    """Every change instant while there are at most ``limit`` of them (exact steps), else an even grid."""
    instants = change_instants(rows, since, until)
    return instants if len(instants) <= limit else even_instants(since, until, limit)
