"""The source copies of a carrier, read again at the observatory just before its source rule goes.

The reaper deletes whatever is at a source replica's stored path when it comes, so that path is what is read:
through the source RSE's own protocols in Rucio (the storage confined to the prefix of the protocol that holds
the PFN, as the scanner's is), its size, mtime and adler32 (the storage's own where it computes one, else
read here). ``verify.source_verdict`` decides from them.

The adler32 is taken every time, not only when the size or mtime moved: whoever writes a file can set its mtime
back. On posix that is one more read of the source's bytes where the carrier runs. A root:// or davs:// server
answers its own, no byte moved; such a server keeps the checksum it computed while the file's mtime, to the
second, is unchanged, so there a rewrite that also sets the mtime back is not seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rucio_magic_ext import rucio_db
from rucio_magic_ext.checksum import ADLER32
from rucio_magic_ext.common import DID
from rucio_magic_ext.ledger.models import LedgerFile
from rucio_magic_ext.release.verify import SourceReading
from rucio_magic_ext.storage import Storage, credentials, storage_for_pfn


def adler32_of(storage: Storage, pfn: str) -> tuple[str, str]:
    """A file's adler32 and how it was proven: answered by the storage's server (no byte read here) where it
    computes one, else computed here over the bytes read back."""
    proven = storage.checksum_detail(pfn, (ADLER32,))
    return proven.values[ADLER32], proven.how(ADLER32)


def read_sources(rse: str, rows: Sequence[LedgerFile]) -> dict[DID, SourceReading]:
    """Each file's source as its storage holds it now, at the path its replica at ``rse`` names in Rucio."""
    with rucio_db.reading() as session:
        paths = rucio_db.replica_paths(rse, [row.did for row in rows], session)
    protocols = rucio_db.rse_settings(rse)["protocols"]
    return {row.did: _read(rse, row, paths.get(row.did), protocols) for row in rows}


def _read(rse: str, row: LedgerFile, path: str | None, protocols: Sequence[dict[str, Any]]) -> SourceReading:
    """A path other than the ledger's, or none, proves nothing about the bytes the flow registered: unreadable."""
    if path is None:
        return SourceReading(f"{rse}:{row.path}", None, None, None, f"no replica at {rse} in Rucio")
    if path.lstrip("/") != row.path.lstrip("/"):
        return SourceReading(f"{rse}:{path}", None, None, None, f"its replica names {path}, the ledger {row.path}")
    pfn = rucio_db.pfn(rse, row.did, path)
    if pfn is None:
        return SourceReading(f"{rse}:{path}", None, None, None, "no protocol to read the source with")
    entry = None
    try:
        storage = storage_for_pfn(pfn, protocols, credentials.for_rse(rse))
        entry = storage.stat(pfn)
        adler32, _ = adler32_of(storage, pfn)
        return SourceReading(pfn, entry.size, entry.mtime, adler32)
    except FileNotFoundError:
        return SourceReading(pfn, None, None, None, "nothing at its path", missing=True)
    except Exception as error:
        size, mtime = (entry.size, entry.mtime) if entry else (None, None)
        return SourceReading(pfn, size, mtime, None, f"unreadable: {error}")
