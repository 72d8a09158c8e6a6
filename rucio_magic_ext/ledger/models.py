"""The ledger's tables: one row per file seen on a source RSE, its events, and the folders already listed.

Tables carry the ``magic_ledger_`` prefix and live beside Rucio's own (same database and schema by
default), so that a stage can move Rucio and the ledger in one transaction.
"""

from __future__ import annotations

import enum
import functools
from datetime import date, datetime
from typing import Any, Optional

from sqlalchemy import JSON, BigInteger, Date, DateTime, Float, ForeignKey, Index, Integer, MetaData, String, Text
from sqlalchemy import Enum as SqlEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rucio_magic_ext import layout
from rucio_magic_ext.layout import Placement
from rucio_magic_ext.ledger.states import DEAD_ENDS, FLOW, CarrierState, FileState, timestamp_column
from rucio_magic_ext.naming import MagicName, parse

PREFIX = "magic_ledger_"
BigId = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER keys only


# Column annotations stay Optional[...]: SQLAlchemy evaluates them, and Rucio images run Python 3.9.


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "%(table_name)s_%(column_0_N_name)s_idx",
            "uq": "%(table_name)s_%(column_0_N_name)s_uq",
            "fk": "%(table_name)s_%(column_0_name)s_fk",
            "pk": "%(table_name)s_pk",
            "ck": "%(table_name)s_%(constraint_name)s_ck",
        }
    )


def _state_type(states: type[enum.Enum] = FileState) -> SqlEnum:
    return SqlEnum(states, native_enum=False, length=16, validate_strings=True, create_constraint=False)


class LedgerFile(Base):
    """A file on a source RSE and where it stands. ``<state>_at`` keep when it last entered each state."""

    __tablename__ = PREFIX + "files"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    rse: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(1024))  # relative to the RSE's prefix
    size: Mapped[int] = mapped_column(BigInteger)
    mtime: Mapped[float] = mapped_column(Float)
    adler32: Mapped[Optional[str]] = mapped_column(String(8))
    md5: Mapped[Optional[str]] = mapped_column(String(32))
    scope: Mapped[Optional[str]] = mapped_column(String(25))
    name: Mapped[Optional[str]] = mapped_column(String(250))
    night: Mapped[Optional[date]] = mapped_column(Date)
    level: Mapped[Optional[str]] = mapped_column(String(16))
    carrier: Mapped[Optional[str]] = mapped_column(String(250))
    # What the file's own headers say (a DL3 file's FITS headers), read in the checksum pass, registered as metadata.
    header_metadata: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    state: Mapped[FileState] = mapped_column(_state_type())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    retry_after: Mapped[Optional[datetime]] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)

    seen_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    stable_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    checksummed_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    registered_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    protected_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    replicated_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    verified_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    released_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    deleted_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    rejected_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    quarantined_at: Mapped[Optional[datetime]] = mapped_column(DateTime)

    __table_args__ = (
        Index(None, "rse", "path", unique=True),
        # Each stage asks for "files of this RSE in this state, due now": proportional to that work.
        Index(None, "rse", "state", "retry_after"),
        Index(None, "scope", "name"),
        Index(None, "carrier"),
        Index(None, "night", "state"),
    )

    @property
    def did(self) -> tuple[str, str]:
        return (str(self.scope), str(self.name))

    @functools.cached_property
    def record(self) -> MagicName:
        """The parsed name, once per row: every stage after discovery needs it."""
        return parse(str(self.name))

    @functools.cached_property
    def placement(self) -> Placement:
        """Where the file sits in Rucio (scope, run dataset, containers, path), once per row."""
        return layout.placement(self.record, self.night)


assert all(hasattr(LedgerFile, timestamp_column(state)) for state in (*FLOW, *DEAD_ENDS))


class LedgerEvent(Base):
    """Every state change and decision, with its reason: the history an operator audits."""

    __tablename__ = PREFIX + "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    file_id: Mapped[int] = mapped_column(ForeignKey(LedgerFile.id, ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(DateTime)
    state: Mapped[FileState] = mapped_column(_state_type())
    actor: Mapped[str] = mapped_column(String(64))  # which daemon stage decided
    detail: Mapped[Optional[str]] = mapped_column(Text)

    __table_args__ = (Index(None, "file_id", "at"), Index(None, "at"))


class LedgerFolder(Base):
    """A folder of a source RSE as last listed: an unchanged folder mtime means no new entry to look at.

    A folder that could not be listed keeps the error, when it happened and when to try again, so that a
    failing folder is shown and retried with backoff while the rest of the tree goes on.
    """

    __tablename__ = PREFIX + "folders"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    rse: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(1024))
    mtime: Mapped[float] = mapped_column(Float)  # NEVER_LISTED until a listing succeeds
    listed_at: Mapped[datetime] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    failed_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    retry_after: Mapped[Optional[datetime]] = mapped_column(DateTime)

    __table_args__ = (Index(None, "rse", "path", unique=True),)


NEVER_LISTED = -1.0  # the mtime of a folder whose listing has only failed: no real mtime equals it


class LedgerCarrier(Base):
    """A carrier batch: a temporary dataset whose source rule pins its files until their copies are verified."""

    __tablename__ = PREFIX + "carriers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    rse: Mapped[str] = mapped_column(String(255))  # the source RSE
    scope: Mapped[str] = mapped_column(String(25))
    name: Mapped[str] = mapped_column(String(250))
    policy: Mapped[str] = mapped_column(String(1024))  # names of the replication rules its files need
    state: Mapped[CarrierState] = mapped_column(
        SqlEnum(CarrierState, native_enum=False, length=16, create_constraint=False)
    )
    files: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    source_rule: Mapped[Optional[str]] = mapped_column(String(32))
    destination_rules: Mapped[Optional[str]] = mapped_column(Text)  # comma-separated rule ids
    detail: Mapped[Optional[str]] = mapped_column(Text)
    opened_at: Mapped[datetime] = mapped_column(DateTime)
    closed_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    released_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    gone_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    split_from: Mapped[Optional[str]] = mapped_column(String(250))  # the carrier a failing file was moved out of

    __table_args__ = (Index(None, "scope", "name", unique=True), Index(None, "rse", "state"))

    @property
    def did(self) -> tuple[str, str]:
        return (self.scope, self.name)

    @property
    def destination_rule_ids(self) -> tuple[str, ...]:
        return tuple(rule_id for rule_id in (self.destination_rules or "").split(",") if rule_id)


class LedgerNight(Base):
    """A night whose datasets were closed, once no file of it had appeared for a while."""

    __tablename__ = PREFIX + "nights"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    rse: Mapped[str] = mapped_column(String(255))
    night: Mapped[date] = mapped_column(Date)
    datasets: Mapped[int] = mapped_column(Integer)
    closed_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index(None, "rse", "night", unique=True),)


class LedgerAuditCounts(Base):
    """The last cheap audit of a source RSE, taken by the scanner's census: how many of each class of difference
    between its storage, Rucio and the ledger (no file's data read). Kept here so that ``status`` shows the same
    figures as the gauges and a restarted scanner neither repeats the audit at once nor loses them."""

    __tablename__ = PREFIX + "audit_counts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    rse: Mapped[str] = mapped_column(String(255))
    counts: Mapped[Optional[dict[str, int]]] = mapped_column(JSON)  # class (audit.classes.Kind value) -> how many
    taken_at: Mapped[Optional[datetime]] = mapped_column(DateTime)  # when those counts were taken
    tried_at: Mapped[datetime] = mapped_column(DateTime)  # the last try: the next is due audit_seconds after it
    error: Mapped[Optional[str]] = mapped_column(Text)  # why the last try failed; None when it gave the counts

    __table_args__ = (Index(None, "rse", unique=True),)


class LedgerOutage(Base):
    """A service the scanner finds not answering for a source RSE (its storage, the credentials it presents), from
    when it first did not until the cycle that finds it back, which removes the row: ``status`` shows it meanwhile."""

    __tablename__ = PREFIX + "outages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    rse: Mapped[str] = mapped_column(String(255))
    service: Mapped[str] = mapped_column(String(32))  # Outage.service: "storage", "credentials"
    since: Mapped[datetime] = mapped_column(DateTime)
    seen_at: Mapped[datetime] = mapped_column(DateTime)  # the last cycle that found it so
    why: Mapped[Optional[str]] = mapped_column(Text)

    __table_args__ = (Index(None, "rse", "service", unique=True),)
