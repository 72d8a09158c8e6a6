"""Reading and moving files in the ledger, in bulk. Every move is conditional on the state the caller saw
(``UPDATE ... WHERE state = seen``), so two workers never both move one file, and writes who moved it and why."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import CursorResult, Engine, Result, Table, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from rucio_magic_ext import monitoring
from rucio_magic_ext.common import chunks, utcnow
from rucio_magic_ext.ledger import engine as ledger_engine
from rucio_magic_ext.ledger.models import NEVER_LISTED, LedgerEvent, LedgerFile, LedgerFolder
from rucio_magic_ext.ledger.states import DEAD_ENDS, FileState, check_move, timestamp_column


@dataclass(frozen=True)
class Seen:
    """A file as listed on storage, with what its name says when it parses."""

    path: str
    size: int
    mtime: float
    scope: str | None = None
    name: str | None = None
    night: date | None = None
    level: str | None = None


class FolderMark(NamedTuple):
    """A folder as last listed (or failing): whether it is due again is decided from these."""

    mtime: float
    last_error: str | None
    retry_after: datetime | None


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE matched: the session returns a CursorResult for one, though typed as any Result."""
    return cast("CursorResult[Any]", result).rowcount


class LostRace(RuntimeError):
    """Another worker moved some of the files first: the caller should drop them from its batch."""


class Ledger:
    """The ledger of one deployment: an engine, and the bulk operations that the stages need."""

    def __init__(self, engine: Engine, schema: str | None = None) -> None:
        self.engine, self.schema = engine, schema
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str, schema: str | None = None) -> Ledger:
        return cls(ledger_engine.make_engine(url, schema), schema)

    @classmethod
    def from_config(cls) -> Ledger:
        return cls.from_url(*ledger_engine.configured_url_and_schema())

    def upgrade(self) -> None:
        ledger_engine.upgrade(self.engine, self.schema)

    def exists(self) -> bool:
        """Whether the ledger's tables are there: the daemons make them when they first start."""
        from sqlalchemy import inspect

        return inspect(self.engine).has_table(LedgerFile.__tablename__, schema=self.schema)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    # -- discovery --------------------------------------------------------------------------------------

    def folder_mtimes(self, rse: str) -> dict[str, float]:
        with self.session() as session:
            rows = session.execute(select(LedgerFolder.path, LedgerFolder.mtime).where(LedgerFolder.rse == rse))
            return {path: mtime for path, mtime in rows}

    def folders(self, rse: str) -> dict[str, LedgerFolder]:
        """Every folder of ``rse`` the ledger knows, listed or failing, by path."""
        with self.session() as session:
            return {row.path: row for row in session.scalars(select(LedgerFolder).where(LedgerFolder.rse == rse))}

    def folder_marks(self, rse: str) -> dict[str, FolderMark]:
        """What discovery needs of every folder of ``rse``, by path: plain rows, read once per cycle."""
        query = select(LedgerFolder.path, LedgerFolder.mtime, LedgerFolder.last_error, LedgerFolder.retry_after)
        with self.session() as session:
            return {path: FolderMark(*mark) for path, *mark in session.execute(query.where(LedgerFolder.rse == rse))}

    def folder_failed(self, rse: str, path: str, error: str, backoff: timedelta) -> datetime:
        """Keep why a folder could not be listed; returns when it is tried again (the backoff doubles per attempt).
        The folder keeps the mtime of its last good listing, so nothing it held is forgotten."""
        now = utcnow()
        with self.session() as session:
            query = select(LedgerFolder).where(LedgerFolder.rse == rse, LedgerFolder.path == path)
            row = session.scalars(query).first()
            if row is None:
                row = LedgerFolder(rse=rse, path=path, mtime=NEVER_LISTED, listed_at=now, attempts=0)
                session.add(row)
            retry: datetime = now + backoff * (2 ** min(row.attempts or 0, 10))  # int ** int is Any to typeshed
            row.attempts, row.last_error, row.failed_at, row.retry_after = (row.attempts or 0) + 1, error, now, retry
        monitoring.flow_failed("scanner.discover.folder", 1)
        return retry

    def folder_problems(self, rse: str | None = None) -> list[LedgerFolder]:
        """Folders whose last listing failed, oldest failure first."""
        query = select(LedgerFolder).where(LedgerFolder.last_error.is_not(None)).order_by(LedgerFolder.failed_at)
        if rse:
            query = query.where(LedgerFolder.rse == rse)
        with self.session() as session:
            return list(session.scalars(query))

    def save_folders(self, rse: str, mtimes: dict[str, float]) -> None:
        """Record folders as listed at ``mtimes``; a folder that failed before is well again."""
        now = utcnow()
        with self.session() as session:
            known: dict[str, int] = {}
            for chunk in chunks(list(mtimes)):  # these folders only: the tree can hold thousands
                query = select(LedgerFolder.id, LedgerFolder.path).where(
                    LedgerFolder.rse == rse, LedgerFolder.path.in_(chunk)
                )
                known.update((path, folder_id) for folder_id, path in session.execute(query))
            well = {"attempts": 0, "last_error": None, "failed_at": None, "retry_after": None}
            updates = [
                {"id": known[path], "mtime": mtime, "listed_at": now, **well}
                for path, mtime in mtimes.items()
                if path in known
            ]
            inserts = [
                {"rse": rse, "path": path, "mtime": mtime, "listed_at": now, "attempts": 0}
                for path, mtime in mtimes.items()
                if path not in known
            ]
            if updates:
                session.execute(update(LedgerFolder), updates)
            if inserts:
                session.execute(self._insert_ignoring_duplicates(LedgerFolder), inserts)

    def known_paths(self, rse: str, paths: Sequence[str]) -> set[str]:
        """Which of ``paths`` the ledger holds: their paths only, no rows to build."""
        found: set[str] = set()
        with self.session() as session:
            for chunk in chunks(list(paths)):
                query = select(LedgerFile.path).where(LedgerFile.rse == rse, LedgerFile.path.in_(chunk))
                found.update(session.scalars(query))
        return found

    def known(self, rse: str, paths: Sequence[str]) -> dict[str, LedgerFile]:
        """The ledger rows of ``paths`` that exist, by path."""
        found: dict[str, LedgerFile] = {}
        with self.session() as session:
            for chunk in chunks(list(paths)):
                query = select(LedgerFile).where(LedgerFile.rse == rse, LedgerFile.path.in_(chunk))
                found.update((row.path, row) for row in session.scalars(query))
        return found

    def add_seen(self, rse: str, files: Iterable[Seen], actor: str) -> int:
        """Record new files as SEEN. A file another worker recorded first is left to it."""
        now = utcnow()
        fresh = {"state": FileState.SEEN, "attempts": 0, "seen_at": now, "updated_at": now}
        rows = [{"rse": rse, **asdict(seen), **fresh} for seen in files]
        if not rows:
            return 0
        added = sizes = 0
        with self.session() as session:
            for chunk in chunks(rows):
                statement = self._insert_ignoring_duplicates(LedgerFile).returning(LedgerFile.id, LedgerFile.size)
                inserted = session.execute(statement, list(chunk)).all()
                self._events(session, [file_id for file_id, _ in inserted], FileState.SEEN, actor, None, now)
                added += len(inserted)
                sizes += sum(size for _, size in inserted)
        monitoring.flow_moved(rse, FileState.SEEN.value, added, sizes)
        return added

    def _insert_ignoring_duplicates(self, model: type) -> Any:
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            return postgresql.insert(model).on_conflict_do_nothing()
        if dialect == "sqlite":
            return sqlite.insert(model).on_conflict_do_nothing()
        raise NotImplementedError(f"the ledger supports PostgreSQL and SQLite, not {dialect}")

    # -- the stages' work ---------------------------------------------------------------------------------

    def due(
        self,
        rse: str,
        states: Iterable[FileState],
        limit: int,
        worker: int = 0,
        workers: int = 1,
        now: datetime | None = None,
        without_carrier: bool = False,
    ) -> list[LedgerFile]:
        """Files in ``states`` whose retry time has come, this worker's share only (by id)."""
        now = now or utcnow()
        query = (
            select(LedgerFile)
            .where(
                LedgerFile.rse == rse,
                LedgerFile.state.in_(list(states)),
                or_(LedgerFile.retry_after.is_(None), LedgerFile.retry_after <= now),
            )
            .order_by(LedgerFile.id)
            .limit(limit)
        )
        if workers > 1:
            query = query.where(LedgerFile.id % workers == worker)
        if without_carrier:
            query = query.where(LedgerFile.carrier.is_(None))
        with self.session() as session:
            return list(session.scalars(query))

    def observe(self, files: Sequence[LedgerFile], entries: Sequence[tuple[int, float]]) -> None:
        """Record a file's new size and mtime (it is still being written): no state change, no event. A file that
        changed starts afresh: an error or wait noted before is about bytes that are no longer there."""
        now = utcnow()
        fresh = {"attempts": 0, "last_error": None, "retry_after": None, "updated_at": now}
        with self.session() as session:
            for row, (size, mtime) in zip(files, entries):
                session.execute(
                    update(LedgerFile).where(LedgerFile.id == row.id).values(size=size, mtime=mtime, **fresh)
                )
                row.size, row.mtime = size, mtime
                row.attempts, row.last_error, row.retry_after = 0, None, None

    def describe(self, row: LedgerFile, seen: Seen) -> None:
        """Give a file put back into the flow what its name says now (scope, name, night, level)."""
        values = {"scope": seen.scope, "name": seen.name, "night": seen.night, "level": seen.level}
        with self.session() as session:
            session.execute(update(LedgerFile).where(LedgerFile.id == row.id).values(**values, updated_at=utcnow()))
        for key, value in values.items():
            setattr(row, key, value)
        row.__dict__.pop("record", None)  # cached from the old name
        row.__dict__.pop("placement", None)

    def move(
        self,
        files: Sequence[LedgerFile],
        target: FileState,
        actor: str,
        detail: str | None = None,
        values: dict[int, dict[str, Any]] | None = None,
    ) -> None:
        """Move ``files`` (as the caller read them) to ``target``, with per-file column values. Raises LostRace,
        changing nothing, if any of them is no longer in the state the caller saw."""
        if not files:
            return
        for row in files:
            check_move(row.state, target)
        now = utcnow()
        column = timestamp_column(target)
        common = {"state": target, "updated_at": now, "retry_after": None, "last_error": None, column: now}
        per_file = values or {}
        with self.session() as active:
            for (state, keys), group in _groups(files, per_file).items():
                for chunk in chunks(group):
                    if keys:
                        # Per-file values: one executemany, each row still conditional on its state.
                        table = LedgerFile.__table__
                        assert isinstance(table, Table)  # a mapped class's own table (typed as any FromClause)
                        statement = (
                            update(table)
                            .where(table.c.id == bindparam("file_id"), table.c.state == state)
                            .values({**common, **{key: bindparam(f"new_{key}") for key in keys}})
                        )
                        params = [
                            {"file_id": row.id, **{f"new_{key}": per_file[row.id][key] for key in keys}}
                            for row in chunk
                        ]
                        changed = rowcount(active.execute(statement, params))
                    else:
                        changed = rowcount(
                            active.execute(
                                update(LedgerFile)
                                .where(LedgerFile.id.in_([row.id for row in chunk]), LedgerFile.state == state)
                                .values(**common)
                            )
                        )
                    if changed != len(chunk):
                        raise LostRace(f"{len(chunk) - changed} of {len(chunk)} files left {state.value} meanwhile")
            self._events(active, [row.id for row in files], target, actor, detail, now)
        for row in files:
            row.state = target
            setattr(row, column, now)
            for key, value in (values or {}).get(row.id, {}).items():
                setattr(row, key, value)
        _count_moves(files, target)

    def set_aside(self, files: Sequence[LedgerFile], target: FileState, actor: str, reason: str) -> None:
        """Move files to a dead end (REJECTED, QUARANTINED), the reason kept on each row and in its event."""
        self.move(files, target, actor, reason, {row.id: {"last_error": reason} for row in files})

    def fail(
        self,
        files: Sequence[LedgerFile],
        error: str,
        actor: str,
        backoff: timedelta,
        at_most: timedelta | None = None,
    ) -> None:
        """Note the error on ``files``; retry after a backoff doubling per attempt, never longer than ``at_most``."""
        now = utcnow()
        with self.session() as session:
            for row in files:
                delay = backoff * (2 ** min(row.attempts, 10))
                if at_most is not None:
                    delay = min(delay, at_most)
                session.execute(
                    update(LedgerFile)
                    .where(LedgerFile.id == row.id)
                    .values(attempts=LedgerFile.attempts + 1, last_error=error, retry_after=now + delay, updated_at=now)
                )
                row.attempts, row.last_error, row.retry_after = row.attempts + 1, error, now + delay
            self._events(session, [row.id for row in files], None, actor, f"error: {error}", now, states=files)
        monitoring.flow_failed(actor, len(files))

    def retry(
        self,
        rse: str,
        actor: str,
        reason: str,
        paths: Sequence[str] = (),
        state: FileState | None = None,
        night: date | None = None,
    ) -> list[LedgerFile]:
        """Put ``paths``, or every file in ``state`` (of ``night``), back into the flow, as an operator decides:
        a set-aside file goes back to SEEN and is looked at afresh; a file waiting on a retry is tried at once."""
        query = select(LedgerFile).where(LedgerFile.rse == rse)
        if paths:
            query = query.where(or_(LedgerFile.path.in_(list(paths)), LedgerFile.name.in_(list(paths))))
        if state is not None:
            query = query.where(LedgerFile.state == state)
        if night is not None:
            query = query.where(LedgerFile.night == night)
        if not paths and state is None:
            raise ValueError("name the files: paths, or a state")
        with self.session() as session:
            rows = list(session.scalars(query))
        dead = [row for row in rows if row.state in DEAD_ENDS]
        waiting = [row for row in rows if row.state not in DEAD_ENDS and row.retry_after is not None]
        detail = f"put back by {actor}: {reason}"
        values = {row.id: {"attempts": 0} for row in dead}
        self.move(dead, FileState.SEEN, f"operator:{actor}"[:64], detail, values)
        if waiting:
            now = utcnow()
            with self.session() as session:
                session.execute(
                    update(LedgerFile).where(LedgerFile.id.in_([row.id for row in waiting])).values(retry_after=now)
                )
                self._events(session, [row.id for row in waiting], None, f"operator:{actor}"[:64], detail, now, waiting)
            for row in waiting:
                row.retry_after = now
        return dead + waiting

    def note(self, files: Sequence[LedgerFile], actor: str, detail: str) -> None:
        """A decision that changes no state (kept, dry run, waiting): recorded with its reason."""
        now = utcnow()
        with self.session() as session:
            self._events(session, [row.id for row in files], None, actor, detail, now, states=files)

    # -- reading ------------------------------------------------------------------------------------------

    def history(self, rse: str, path_or_name: str) -> list[tuple[LedgerFile, list[LedgerEvent]]]:
        """A file's row and events, found by its path on the RSE or by its DID name."""
        named = or_(LedgerFile.path == path_or_name, LedgerFile.name == path_or_name)
        events = select(LedgerEvent).order_by(LedgerEvent.id)
        with self.session() as session:
            rows = session.scalars(select(LedgerFile).where(LedgerFile.rse == rse, named)).all()
            return [(row, list(session.scalars(events.where(LedgerEvent.file_id == row.id)))) for row in rows]

    def counts(self, rse: str | None = None) -> dict[tuple[date | None, FileState], tuple[int, int]]:
        """(files, bytes) per night and state."""
        query = select(LedgerFile.night, LedgerFile.state, func.count(), func.coalesce(func.sum(LedgerFile.size), 0))
        if rse:
            query = query.where(LedgerFile.rse == rse)
        with self.session() as session:
            rows = session.execute(query.group_by(LedgerFile.night, LedgerFile.state))
            return {(night, state): (count, size) for night, state, count, size in rows}

    # -- helpers ------------------------------------------------------------------------------------------

    @staticmethod
    def _events(
        session: Session,
        ids: Sequence[int],
        state: FileState | None,
        actor: str,
        detail: str | None,
        at: datetime,
        states: Sequence[LedgerFile] | None = None,
    ) -> None:
        if not ids:
            return
        current = {row.id: row.state for row in states or ()}
        session.execute(
            insert(LedgerEvent),
            [
                {"file_id": file_id, "at": at, "state": state or current[file_id], "actor": actor, "detail": detail}
                for file_id in ids
            ],
        )


def _groups(
    files: Sequence[LedgerFile], values: dict[int, dict[str, Any]]
) -> dict[tuple[FileState, tuple[str, ...]], list[LedgerFile]]:
    """Files that one statement can move: same current state, same columns to set."""
    grouped: dict[tuple[FileState, tuple[str, ...]], list[LedgerFile]] = {}
    for row in files:
        grouped.setdefault((row.state, tuple(sorted(values.get(row.id, {})))), []).append(row)
    return grouped


def _count_moves(files: Sequence[LedgerFile], target: FileState) -> None:
    """Committed moves, as flow metrics per source RSE; a verification also as seconds since appearance."""
    by_rse: dict[str, list[LedgerFile]] = {}
    for row in files:
        by_rse.setdefault(row.rse, []).append(row)
    for rse, rows in by_rse.items():
        monitoring.flow_moved(rse, target.value, len(rows), sum(row.size for row in rows))
        if target is FileState.VERIFIED:
            spans = [row.verified_at - row.seen_at for row in rows if row.seen_at and row.verified_at]
            monitoring.seen_to_verified(rse, [span.total_seconds() for span in spans])


def finished_nights(ledger: Ledger, rse: str, seen_before: datetime) -> list[date]:
    """Nights of ``rse`` whose last file appeared before ``seen_before`` and that are not closed yet.

    Asked every cycle: the nights are found one after the other along the (rse, night, seen_at) index (a recursive
    query), and only those not closed have their last file looked up: the cost follows the nights, not the files.
    """
    from rucio_magic_ext.ledger.models import LedgerNight

    files = LedgerFile
    first = select(func.min(files.night).label("night")).where(files.rse == rse, files.night.is_not(None))
    nights = first.cte("nights", recursive=True)
    following = select(func.min(files.night)).where(files.rse == rse, files.night > nights.c.night)
    nights = nights.union_all(select(following.scalar_subquery()).where(nights.c.night.is_not(None)))
    closed = select(LedgerNight.night).where(LedgerNight.rse == rse)
    last_seen = select(func.max(files.seen_at)).where(files.rse == rse, files.night == nights.c.night)
    query = select(nights.c.night).where(
        nights.c.night.is_not(None), nights.c.night.not_in(closed), last_seen.scalar_subquery() < seen_before
    )
    with ledger.session() as session:
        return sorted(session.scalars(query))


def registered_of_night(ledger: Ledger, rse: str, night: date) -> list[LedgerFile]:
    """The files of a night that made it into Rucio."""
    gone = (FileState.SEEN, FileState.STABLE, FileState.CHECKSUMMED, FileState.REJECTED, FileState.QUARANTINED)
    query = select(LedgerFile).where(LedgerFile.rse == rse, LedgerFile.night == night, LedgerFile.state.not_in(gone))
    with ledger.session() as session:
        return list(session.scalars(query))


def record_closed_night(ledger: Ledger, rse: str, night: date, datasets: int) -> None:
    from rucio_magic_ext.ledger.models import LedgerNight

    with ledger.session() as session:
        session.execute(insert(LedgerNight).values(rse=rse, night=night, datasets=datasets, closed_at=utcnow()))
