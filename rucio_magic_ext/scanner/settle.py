"""Settle: a file is taken only once it is complete, its size and mtime unchanged for the settle time.

Empty files and files that shrink are QUARANTINED: something went wrong at the telescope, and a person
should look before anything is registered. A file that vanishes before registration is quarantined
too, so that the ledger says what happened to it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum

from rucio_magic_ext.common import utcnow
from rucio_magic_ext.ledger import FileState
from rucio_magic_ext.ledger.models import LedgerFile
from rucio_magic_ext.scanner.context import Context
from rucio_magic_ext.storage.base import Entry

ACTOR = "scanner.settle"


class Settling(Enum):
    WAIT = "wait"
    GREW = "grew"  # changed since last seen: record the new size, start waiting again
    STABLE = "stable"
    QUARANTINE = "quarantine"


@dataclass(frozen=True)
class Decision:
    settling: Settling
    reason: str = ""


def decide(known_size: int, known_mtime: float, entry: Entry | None, now: datetime, settle: timedelta) -> Decision:
    """Pure: what to do with a SEEN file, given what the ledger knows and what the storage says now."""
    if entry is None:
        return Decision(Settling.QUARANTINE, "vanished from storage before it was registered")
    if entry.size < known_size:
        return Decision(Settling.QUARANTINE, f"shrank from {known_size} to {entry.size} bytes while being written")
    if entry.size != known_size or entry.mtime != known_mtime:
        return Decision(Settling.GREW)
    age = now - datetime.fromtimestamp(entry.mtime, timezone.utc).replace(tzinfo=None)
    if age < settle:
        return Decision(Settling.WAIT)
    if entry.size == 0:
        return Decision(Settling.QUARANTINE, f"empty, unchanged for {age}")
    return Decision(Settling.STABLE)


def settle(context: Context, now: datetime | None = None) -> int:
    """Move complete files to STABLE; returns how many."""
    now = now or utcnow()
    rows = context.due(FileState.SEEN)
    stable: list[LedgerFile] = []
    grew: list[tuple[LedgerFile, Entry]] = []
    for row in rows:
        try:
            entry: Entry | None = context.storage.stat(context.native(row.path))
        except FileNotFoundError:
            entry = None
        decision = decide(row.size, row.mtime, entry, now, context.config.settle)
        if decision.settling is Settling.STABLE:
            stable.append(row)
        elif decision.settling is Settling.GREW and entry is not None:
            grew.append((row, entry))
        elif decision.settling is Settling.QUARANTINE:
            context.ledger.set_aside([row], FileState.QUARANTINED, ACTOR, decision.reason)
            context.logger(logging.WARNING, "quarantined %s: %s", row.path, decision.reason)
    if grew:
        context.ledger.observe([row for row, _ in grew], [(entry.size, entry.mtime) for _, entry in grew])
    context.ledger.move(stable, FileState.STABLE, ACTOR)
    return len(stable)
