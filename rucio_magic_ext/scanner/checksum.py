"""Checksum: adler32 (and md5 when configured) in one streaming pass over each settled file.

A ``.gz`` file is decompressed in the same pass: a gzip stream whose end (and so its CRC and length
trailer) is not there yet means the file is still being written, whatever its mtime says. It goes back
to SEEN, and to QUARANTINED once it has not grown for several settle times. The storage's own checksum
is used instead when the storage computes one (then there is no pass to verify gzip in).
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone

from rucio_magic_ext.checksum import StreamingChecksum, read_file_blocks
from rucio_magic_ext.common import utcnow
from rucio_magic_ext.ledger import FileState
from rucio_magic_ext.ledger.models import LedgerFile
from rucio_magic_ext.scanner.context import Context

ACTOR = "scanner.checksum"
GIVE_UP_AFTER_SETTLES = 3


class Unfinished(Exception):
    """The file changed during the pass, or its gzip stream has not ended: it is still being written."""


class Corrupt(Exception):
    """The gzip stream is broken: no later write will mend it."""


@dataclass(frozen=True)
class Digest:
    size: int
    checksums: dict[str, str]


def digest_stream(stream: object, algorithms: tuple[str, ...], gzip: bool, size: int) -> Digest:
    """Checksums of a stream of ``size`` bytes, checking on the way that a gzip stream is whole."""
    checksum = StreamingChecksum(algorithms)
    inflater = zlib.decompressobj(wbits=31) if gzip else None
    for block in read_file_blocks(stream, size):  # type: ignore[arg-type]
        checksum.update(block)
        if inflater is not None and not inflater.eof:
            try:
                inflater.decompress(block, 1 << 20)
                while inflater.unconsumed_tail and not inflater.eof:
                    inflater.decompress(inflater.unconsumed_tail, 1 << 20)
            except zlib.error as error:
                raise Corrupt(f"gzip stream broken: {error}") from None
    if inflater is not None:
        if not inflater.eof:
            raise Unfinished("gzip stream has no end yet (trailer missing)")
        if inflater.unused_data:
            raise Corrupt(f"{len(inflater.unused_data)} bytes after the end of the gzip stream")
    return Digest(checksum.size, checksum.hexdigests())


def checksum(context: Context) -> int:
    """Move STABLE files to CHECKSUMMED; returns how many."""
    rows = context.due(FileState.STABLE)
    done: list[LedgerFile] = []
    values: dict[int, dict[str, str]] = {}
    for row in rows:
        try:
            values[row.id] = _checksums(context, row)
            done.append(row)
        except Unfinished as why:
            _unfinished(context, row, str(why))
        except Corrupt as why:
            context.ledger.set_aside([row], FileState.QUARANTINED, ACTOR, str(why))
            context.logger(logging.WARNING, "quarantined %s: %s", row.path, why)
        except FileNotFoundError:
            context.ledger.set_aside([row], FileState.QUARANTINED, ACTOR, "vanished from storage before registration")
        except OSError as error:
            context.ledger.fail([row], f"storage: {error}", ACTOR, context.config.retry)
            context.logger(logging.WARNING, "checksum of %s failed, will retry: %s", row.path, error)
    context.ledger.move(done, FileState.CHECKSUMMED, ACTOR, values=values)
    return len(done)


def _checksums(context: Context, row: LedgerFile) -> dict[str, str]:
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
    after = context.storage.stat(location)
    if (after.size, after.mtime) != (row.size, row.mtime):
        raise Unfinished("changed while being read")
    return {algorithm: found[algorithm] for algorithm in algorithms}


def _unfinished(context: Context, row: LedgerFile, why: str) -> None:
    idle = utcnow() - datetime.fromtimestamp(row.mtime, timezone.utc).replace(tzinfo=None)
    if idle > context.config.settle * GIVE_UP_AFTER_SETTLES and "gzip" in why:
        reason = f"{why}, and unchanged for {idle}: truncated"
        context.ledger.set_aside([row], FileState.QUARANTINED, ACTOR, reason)
        context.logger(logging.WARNING, "quarantined %s: %s", row.path, reason)
        return
    context.ledger.move([row], FileState.SEEN, ACTOR, f"not settled after all: {why}")
    context.logger(logging.INFO, "%s is still being written (%s): waiting", row.path, why)
