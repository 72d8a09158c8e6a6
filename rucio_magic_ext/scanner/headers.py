"""What a file's own headers say, read before it is registered: today the FITS headers of DL3 files.

A DL3 file is registered fully described or not at all: one that is not valid FITS, fails its checksum cards,
lacks a required header or contradicts its name is refused with the reason (``Dl3Refused``) and left on
storage. Only the header blocks are read where the storage serves ranges (posix, root://, davs://). The data of
an HDU with checksum cards is read too, to verify them, except where the storage's server gave the file's
checksum: no data crosses the link then, and the cards are verified on the file's first copy, at the
destination, before its source may go (``release/hook.py``).
"""

from __future__ import annotations

import io
from typing import Any, BinaryIO

from rucio_magic_ext.dl3.headers import describe
from rucio_magic_ext.ledger.models import LedgerFile
from rucio_magic_ext.naming import Level
from rucio_magic_ext.storage.base import Storage

HEADER_BUFFER = 1 << 16  # one FITS header is a few 2,880-byte blocks: one read each


def header_metadata(storage: Storage, location: str, row: LedgerFile) -> dict[str, Any] | None:
    """The metadata the file's headers hold, or None for a file whose headers the flow does not read."""
    if row.record.level is not Level.DL3:
        return None
    with storage.open_read(location) as stream:
        return describe(_buffered(stream), row.size, row.record, row.night, sums=not storage.storage_side_checksum)


def _buffered(stream: io.RawIOBase | BinaryIO) -> BinaryIO:
    """A raw remote stream reads in small pieces: buffer it so that each header costs one ranged read."""
    if isinstance(stream, io.RawIOBase):
        return io.BufferedReader(stream, buffer_size=HEADER_BUFFER)
    return stream
