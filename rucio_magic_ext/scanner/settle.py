"""Settle: a file is taken only once it is complete, its size and mtime unchanged for the settle time.

Empty files and files that shrink are QUARANTINED: something went wrong at the telescope, and a person
should look before anything is registered. A file that vanishes before registration is quarantined
too, so that the ledger says what happened to it, but only once its folder is confirmed there: a folder
briefly missing (an unmount, a remount) is an outage, not a verdict on its files.

Each file is judged on its own: one that cannot be read (a directory where the file was, an I/O error) is
kept with its error and tried again with backoff; one that is not a regular file (a FIFO, a device, a
link out of the root) is REJECTED unopened. A file whose mtime lies in the future (a DAQ clock ahead, a
mtime past year 9999) waits at most ``future_mtime_max_wait_seconds``, unchanged, and then settles on the
ledger's clock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum

from rucio_magic_ext import monitoring
from rucio_magic_ext.common import utcnow
from rucio_magic_ext.daemons import outage_of
from rucio_magic_ext.ledger import FileState, LostRace
from rucio_magic_ext.ledger.models import LedgerFile
from rucio_magic_ext.ledger.paths import from_text
from rucio_magic_ext.scanner.context import Context
from rucio_magic_ext.scanner.discover import describe, refusal
from rucio_magic_ext.storage.base import Entry
from rucio_magic_ext.storage.posix import NotARegularFile

ACTOR = "scanner.settle"
FUTURE_SKEW = timedelta(minutes=1)  # clocks that disagree by less than this are not "in the future"
FUTURE = "mtime in the future"


class Settling(Enum):
    WAIT = "wait"
    GREW = "grew"  # changed since last seen: record the new size, start waiting again
    STABLE = "stable"
    QUARANTINE = "quarantine"
    FUTURE = "future"  # mtime ahead of the clock: wait a bounded time


@dataclass(frozen=True)
class Decision:
    settling: Settling
    reason: str = ""


def mtime_age(mtime: float, now: datetime) -> timedelta | None:
    """How long ago ``mtime`` was; None when it lies beyond what a date can hold (past year 9999)."""
    try:
        return now - datetime.fromtimestamp(mtime, timezone.utc).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError):
        return None


def decide(
    known_size: int,
    known_mtime: float,
    entry: Entry | None,
    now: datetime,
    settle: timedelta,
    waited_future: bool = False,
) -> Decision:
    """Pure: what to do with a SEEN file, given what the ledger knows and what the storage says now.

    ``waited_future``: the file already waited the bounded time for an mtime in the future, unchanged.
    """
    if entry is None:
        return Decision(Settling.QUARANTINE, "vanished from storage before it was registered (its folder is there)")
    if entry.size < known_size:
        return Decision(Settling.QUARANTINE, f"shrank from {known_size} to {entry.size} bytes while being written")
    if entry.size != known_size or entry.mtime != known_mtime:
        return Decision(Settling.GREW)
    age = mtime_age(entry.mtime, now)
    if age is None or age < -FUTURE_SKEW:
        ahead = "beyond year 9999" if age is None else f"{-age} ahead of the clock"
        if not waited_future:
            return Decision(Settling.FUTURE, f"{FUTURE} ({entry.mtime:.0f}, {ahead})")
        if entry.size == 0:
            return Decision(Settling.QUARANTINE, f"empty, {FUTURE} ({ahead}), unchanged for the longest wait")
        return Decision(Settling.STABLE, f"{FUTURE} ({ahead}), unchanged for the longest wait: settled")
    if age < settle:
        return Decision(Settling.WAIT)
    if entry.size == 0:
        return Decision(Settling.QUARANTINE, f"empty, unchanged for {age}")
    return Decision(Settling.STABLE)


def settle(context: Context, now: datetime | None = None) -> int:
    """Move complete files to STABLE; returns how many."""
    now = now or utcnow()
    rows = context.due(FileState.SEEN)
    stable: list[tuple[LedgerFile, str]] = []  # each row with its decision's reason ("" for none)
    grew: list[tuple[LedgerFile, Entry]] = []
    for row in rows:
        try:
            _settle_one(context, row, now, stable, grew)
        except LostRace:
            continue  # another worker moved it meanwhile
        except Exception as error:
            if outage_of(error):
                raise  # nothing is judged while the storage or the database is away
            _failed(context, row, error, "unreadable")
    if grew:
        context.ledger.observe([row for row, _ in grew], [(entry.size, entry.mtime) for _, entry in grew])
    context.ledger.move([row for row, why in stable if not why], FileState.STABLE, ACTOR)
    for row, why in stable:
        if why:
            context.ledger.move([row], FileState.STABLE, ACTOR, why)
            context.logger(logging.WARNING, "%s: %s", row.path, why)
    return len(stable)


def _settle_one(
    context: Context,
    row: LedgerFile,
    now: datetime,
    stable: list[tuple[LedgerFile, str]],
    grew: list[tuple[LedgerFile, Entry]],
) -> None:
    if row.scope is None and not _describe_again(context, row):
        return
    try:
        entry: Entry | None = context.storage.stat(context.native(row.path))
    except FileNotFoundError:
        context.require_root()
        if not context.folder_present(row.path):
            _failed(context, row, OSError(f"its folder is not there (an unmount or a rename?): {row.path}"),
                    "folder_missing")  # fmt: skip
            return
        entry = None
    except NotARegularFile as refused:
        _set_aside(context, row, FileState.REJECTED, refused.what, "symlink" if refused.link else "not_regular")
        return
    # The wait is counted from when the ledger first noted the future mtime: a change (GREW) starts it again.
    future_since = row.updated_at if (row.last_error or "").startswith(FUTURE) else None
    waited = future_since is not None and now - future_since >= context.config.future_wait
    decision = decide(row.size, row.mtime, entry, now, context.config.settle, waited)
    if decision.settling is Settling.STABLE:
        stable.append((row, decision.reason))
    elif decision.settling is Settling.GREW and entry is not None:
        grew.append((row, entry))
    elif decision.settling is Settling.FUTURE and future_since is None:  # said once; looked at every cycle
        reason = f"{decision.reason}: waits at most {context.config.future_wait}, unchanged, then settles"
        context.ledger.fail([row], reason, ACTOR, timedelta(0))
        monitoring.odd_entry("future_mtime")
        context.logger(logging.WARNING, "%s: %s", row.path, reason)
    elif decision.settling is Settling.QUARANTINE:
        _set_aside(context, row, FileState.QUARANTINED, decision.reason, "vanished" if entry is None else "quarantined")


def _describe_again(context: Context, row: LedgerFile) -> bool:
    """A file put back from REJECTED is judged afresh by its name; False when it is refused again."""
    refused = refusal(from_text(row.path))
    seen, why = (None, refused[1]) if refused else describe(row.path, row.size, row.mtime)
    if why or seen is None:
        _set_aside(context, row, FileState.REJECTED, str(why), refused[0] if refused else "not_magic")
        return False
    context.ledger.describe(row, seen)
    return True


def _set_aside(context: Context, row: LedgerFile, state: FileState, reason: str, kind: str) -> None:
    context.ledger.set_aside([row], state, ACTOR, reason)
    monitoring.odd_entry(kind)
    context.logger(logging.WARNING, "%s %s: %s", state.value.lower(), row.path, reason)


def _failed(context: Context, row: LedgerFile, error: BaseException, kind: str) -> None:
    why = str(error) if isinstance(error, OSError) else f"{type(error).__name__}: {error}"
    context.ledger.fail([row], f"storage: {why}", ACTOR, context.config.retry)
    monitoring.odd_entry(kind)
    context.logger(logging.WARNING, "settling %s failed, will retry: %s", row.path, why)
