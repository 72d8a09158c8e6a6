"""The ledger rows a report over a time range needs, read in one query of only the columns it uses."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select

from rucio_magic_ext.ledger import Ledger
from rucio_magic_ext.ledger.models import LedgerFile
from rucio_magic_ext.report.rows import COLUMNS, FileRow


def load_rows(ledger: Ledger, since: datetime, until: datetime, rse: str | None = None) -> list[FileRow]:
    """Files whose source copy existed at some time in [since, until]: seen by ``until`` and not deleted
    before ``since``. That is every file seen in the range, and every older file still at the observatory
    when it began (a backlog), so the series start from what really stood where at ``since``."""
    query = select(*(getattr(LedgerFile, column) for column in COLUMNS)).where(
        LedgerFile.seen_at.is_not(None),
        LedgerFile.seen_at <= until,
        or_(LedgerFile.deleted_at.is_(None), LedgerFile.deleted_at >= since),
    )
    if rse:
        query = query.where(LedgerFile.rse == rse)
    with ledger.session() as session:
        return [FileRow(*values) for values in session.execute(query)]


def file_row(row: LedgerFile) -> FileRow:
    """A ledger row already read, as the report sees it."""
    return FileRow(*(getattr(row, column) for column in COLUMNS))
