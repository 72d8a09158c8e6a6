"""Checksum: adler32 (and md5 when configured) in one streaming pass over each settled file.

The storage's own checksum is used where the storage computes one (root://, davs://): no byte crosses the
network, which between La Palma and PIC is one shared link. Elsewhere (posix) the file is read here, and a
``.gz`` file is decompressed in the same pass: a gzip stream whose end (and so its CRC and length trailer)
is not there yet means the file is still being written, whatever its mtime says. It goes back to SEEN, and
to QUARANTINED once it has not grown for several settle times. A ``.gz`` file checksummed by its server is
proven whole on its first copy instead, read at the destination before its source may go
(``release/hook.py``).

A DL3 file's FITS headers are read in the same stage (``scanner/headers.py``), between the two checks that
the file did not change: one refused by its headers is QUARANTINED with the reason.

Each file is judged on its own: one that vanishes, shrinks or grows during the pass goes back to settling
(not to quarantine: settle decides, its folder checked first); one that is not a regular file is REJECTED
unopened; one that cannot be read is kept with its error and tried again with backoff. Only an outage of
the whole storage or database stops the stage, after the files already done are recorded.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from rucio_magic_ext import daemons, monitoring
from rucio_magic_ext.checksum import Corrupt, Unfinished, digest_stream
from rucio_magic_ext.common import utcnow
from rucio_magic_ext.dl3.headers import Dl3Refused
from rucio_magic_ext.ledger import FileState, LostRace
from rucio_magic_ext.ledger.models import LedgerFile
from rucio_magic_ext.scanner.context import Context
from rucio_magic_ext.scanner.headers import header_metadata
from rucio_magic_ext.scanner.settle import mtime_age
from rucio_magic_ext.storage.posix import NotARegularFile

ACTOR = "scanner.checksum"
GIVE_UP_AFTER_SETTLES = 3


def checksum(context: Context) -> int:
    """Move STABLE files to CHECKSUMMED; returns how many."""
    rows = context.due(FileState.STABLE)
    done: list[LedgerFile] = []
    values: dict[int, dict[str, Any]] = {}
    try:
        for row in rows:
            if daemons.GRACEFUL_STOP.is_set():
                break  # asked to stop: the files done so far are recorded, the others wait for the next start
            try:
                values[row.id] = _read(context, row)
                done.append(row)
            except Exception as error:
                try:
                    _judge(context, row, error)
                except LostRace:
                    continue  # another worker moved it meanwhile
    finally:
        context.ledger.move(done, FileState.CHECKSUMMED, ACTOR, values=values)
    return len(done)


def _judge(context: Context, row: LedgerFile, error: Exception) -> None:
    """One file's failure, kept on that file; an outage of the whole storage or database is raised."""
    if isinstance(error, Unfinished):
        _unfinished(context, row, str(error))
    elif isinstance(error, Corrupt):
        context.ledger.set_aside([row], FileState.QUARANTINED, ACTOR, str(error))
        monitoring.odd_entry("quarantined")
        context.logger(logging.WARNING, "quarantined %s: %s", row.path, error)
    elif isinstance(error, Dl3Refused):
        context.ledger.set_aside([row], FileState.QUARANTINED, ACTOR, f"DL3 refused ({error.kind}): {error}")
        monitoring.odd_entry(f"dl3_{error.kind}")
        context.logger(logging.WARNING, "quarantined %s: DL3 refused: %s", row.path, error)
    elif isinstance(error, NotARegularFile):
        context.ledger.set_aside([row], FileState.REJECTED, ACTOR, error.what)
        monitoring.odd_entry("symlink" if error.link else "not_regular")
        context.logger(logging.WARNING, "rejected %s: %s", row.path, error.what)
    elif isinstance(error, FileNotFoundError):
        context.require_root()
        context.ledger.move([row], FileState.SEEN, ACTOR, "vanished during the checksum: back to settling")
        monitoring.odd_entry("vanished")
    elif daemons.outage_of(error):
        raise error
    else:
        why = str(error) if isinstance(error, OSError) else f"{type(error).__name__}: {error}"
        context.ledger.fail([row], f"storage: {why}", ACTOR, context.config.retry)
        monitoring.odd_entry("unreadable")
        context.logger(logging.WARNING, "checksum of %s failed, will retry: %s", row.path, why)


def _read(context: Context, row: LedgerFile) -> dict[str, Any]:
    """The file's checksums (and what its headers say, for a DL3 file), proven read from one unchanged file."""
    location = context.native(row.path)
    before = context.storage.stat(location)
    if (before.size, before.mtime) != (row.size, row.mtime):
        raise Unfinished("changed since it settled")
    algorithms = context.config.checksums
    if context.storage.storage_side_checksum:
        found = context.storage.checksum(location, algorithms)
    else:
        with context.storage.open_read(location) as stream:
            digest = digest_stream(stream, algorithms, gzip=row.path.endswith(".gz"), size=row.size)
        if digest.size != row.size:
            raise Unfinished(f"read {digest.size} bytes of {row.size}")
        found = digest.checksums
    headers = header_metadata(context.storage, location, row)
    after = context.storage.stat(location)
    if (after.size, after.mtime) != (row.size, row.mtime):
        raise Unfinished("changed while being read")
    values: dict[str, Any] = {algorithm: found[algorithm] for algorithm in algorithms}
    if headers is not None:
        values["header_metadata"] = headers
    return values


def _unfinished(context: Context, row: LedgerFile, why: str) -> None:
    idle = mtime_age(row.mtime, utcnow()) or timedelta(0)  # an mtime past year 9999: not idle by its own word
    if idle > context.config.settle * GIVE_UP_AFTER_SETTLES and "gzip" in why:
        reason = f"{why}, and unchanged for {idle}: truncated"
        context.ledger.set_aside([row], FileState.QUARANTINED, ACTOR, reason)
        context.logger(logging.WARNING, "quarantined %s: %s", row.path, reason)
        return
    context.ledger.move([row], FileState.SEEN, ACTOR, f"not settled after all: {why}")
    context.logger(logging.INFO, "%s is still being written (%s): waiting", row.path, why)
