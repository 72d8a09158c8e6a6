"""A long-running observatory, fast: K files already on storage and already in the ledger, at rest.

Nothing of it goes through Rucio: the scanner of a steady site has these files PROTECTED or REPLICATED
in its ledger and never touches them again, so only the ledger rows and the storage entries matter.
Rows go in with one bulk insert per chunk; files are created empty (the scanner does not read resting
files); folders are recorded as listed at their current mtime, and older nights as closed, as the
scanner itself would have left them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, text
from sqlalchemy.dialects import postgresql

from rucio_magic_ext import layout
from rucio_magic_ext.ledger import FileState, Ledger
from rucio_magic_ext.ledger.models import LedgerFile, LedgerFolder, LedgerNight
from tools.make_night import PlannedFile

CHUNK = 10_000
RESTING = (FileState.PROTECTED, FileState.REPLICATED)


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def ledger_row(rse: str, planned: PlannedFile, night: date, seen_at: datetime, index: int) -> dict[str, Any]:
    """The row the scanner would have left for a file it registered and protected long ago."""
    state = RESTING[index % len(RESTING)]
    record = planned.record
    stamps = {"seen_at": seen_at, "stable_at": seen_at, "checksummed_at": seen_at, "registered_at": seen_at}
    stamps["protected_at"] = seen_at
    if state is FileState.REPLICATED:
        stamps["replicated_at"] = seen_at
    return {
        "rse": rse,
        "path": planned.path,
        "size": planned.size,
        "mtime": planned.closed_at.timestamp(),
        "adler32": "00000001",
        "scope": layout.scope(record),
        "name": planned.name,
        "night": night,
        "level": record.level.value,
        "state": state,
        "attempts": 0,
        "updated_at": seen_at,
        **stamps,
    }


def create_files(root: Path, files: Sequence[PlannedFile]) -> None:
    """Empty files under their names: a file the scanner does not read needs no bytes."""
    made: set[str] = set()
    for planned in files:
        folder = planned.path.rsplit("/", 1)[0]
        if folder not in made:
            (root / folder).mkdir(parents=True, exist_ok=True)
            made.add(folder)
        os.close(os.open(root / planned.path, os.O_WRONLY | os.O_CREAT, 0o644))


def add_rows(ledger: Ledger, rse: str, files: Sequence[PlannedFile], tail_night: date, now: datetime) -> None:
    """Ledger rows of ``files``: seen when they were closed, those of the night still going seen just now."""
    with ledger.session() as session:
        for start in range(0, len(files), CHUNK):
            rows = []
            for index, planned in enumerate(files[start : start + CHUNK], start=start):
                night = night_of(planned)
                seen_at = now if night >= tail_night else _naive(planned.closed_at)
                rows.append(ledger_row(rse, planned, night, seen_at, index))
            session.execute(insert(LedgerFile), rows)


def close_nights(ledger: Ledger, rse: str, nights: set[date], now: datetime) -> None:
    """Nights before the one going on are finished and closed, as the scanner's last stage leaves them."""
    if not nights:
        return
    rows = [{"rse": rse, "night": night, "datasets": 0, "closed_at": now} for night in sorted(nights)]
    with ledger.session() as session:
        session.execute(postgresql.insert(LedgerNight).on_conflict_do_nothing(), rows)


def record_folders(ledger: Ledger, rse: str, root: Path, now: datetime) -> int:
    """Every folder below ``root`` as listed now, at its mtime: an unchanged folder is not listed again."""
    mtimes = {}
    for folder, _dirs, _files in os.walk(root):
        relative = os.path.relpath(folder, root)
        mtimes["" if relative == "." else relative] = os.stat(folder).st_mtime
    with ledger.session() as session:
        session.execute(delete(LedgerFolder).where(LedgerFolder.rse == rse))
        session.execute(
            insert(LedgerFolder), [{"rse": rse, "path": p, "mtime": m, "listed_at": now} for p, m in mtimes.items()]
        )
    return len(mtimes)


def settle_database(ledger: Ledger) -> None:
    """Vacuumed tables with fresh statistics and a checkpoint behind: a site's ledger grew over months, with
    autovacuum keeping up; a bulk load just before the cycle must not leave its after-effects (autovacuum,
    a checkpoint) to fall inside the measured cycle."""
    schema = f"{ledger.schema}." if ledger.schema else ""
    with ledger.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in (LedgerFile, LedgerFolder, LedgerNight):
            connection.execute(text(f"VACUUM ANALYZE {schema}{table.__tablename__}"))
    url = ledger.engine.url
    try:  # CHECKPOINT needs a superuser: the loopback admin role, where there is one
        import psycopg

        with psycopg.connect(
            host=url.host, port=url.port, user="postgres", dbname="postgres", autocommit=True
        ) as admin:
            admin.execute("CHECKPOINT")
    except Exception as error:
        print(f"incremental: no checkpoint before the cycle ({error})", file=sys.stderr)


def night_of(planned: PlannedFile) -> date:
    """The night of a file, from its observatory folder."""
    folder = layout.observatory_folder("/" + planned.path)
    assert folder is not None and folder.night is not None, planned.path
    return folder.night
