"""One file as the report sees it: where it stands, and when it last entered each state that the report uses."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime

from rucio_magic_ext.ledger.states import FileState


@dataclass(frozen=True)
class FileRow:
    """A ledger row cut down to what the report needs: small enough to hold a whole season in memory."""

    rse: str
    night: date | None
    level: str | None
    size: int
    state: FileState
    seen_at: datetime | None = None
    registered_at: datetime | None = None
    protected_at: datetime | None = None
    replicated_at: datetime | None = None
    verified_at: datetime | None = None
    deleted_at: datetime | None = None


# The ledger columns a report reads: ``FileRow``'s fields, each named as its column.
COLUMNS = tuple(field.name for field in fields(FileRow))
