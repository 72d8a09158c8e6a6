"""The odd entries a real observatory disk holds, written among a night's files (``--hostile``).

DAQ and analysis programs and people write the disk: a name that is not UTF-8, a MAGIC name too long for
Rucio, a FIFO or a socket named like a data file, links that lead out of the storage or nowhere, a file
whose mtime lies in the future, an empty file, a gzip file whose writer stopped before the trailer. Each is
one :class:`Odd`, with the state the scanner must leave it in and a word its reason must hold.

Not written, because a test running as root on ext4 cannot make them for real: a file or folder without
read permission (root reads everything), an mtime past year 9999 (ext4 stops at 2446; tmpfs does not, see
tests/unit/test_odd_entries.py).
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from rucio_magic_ext.ledger.paths import to_text
from rucio_magic_ext.naming import format_name
from tools.make_night.plan import PlannedFile

FUTURE_SECONDS = 10 * 365 * 86400


@dataclass(frozen=True)
class Odd:
    kind: str  # as in the metric magic_scanner_odd_total{kind}
    path: str  # relative to the storage root, as the ledger shows it (bytes not UTF-8 as \\xNN)
    raw: bytes  # the same path as bytes on disk
    state: str  # where the scanner leaves it: REJECTED, QUARANTINED, SEEN (held)
    says: str  # a word of the reason


def bind_socket(path: Path) -> None:
    """A UNIX socket left at ``path``, as a crashed program leaves one (bound from its folder: a socket's address
    holds at most 107 bytes, a storage path more)."""
    here = os.getcwd()
    os.chdir(path.parent)
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(path.name)
    finally:
        os.chdir(here)


def _name(first: PlannedFile, run: int, **changes: object) -> str:
    record = dataclasses.replace(first.record, run=run, subrun=1, compression=None, **changes)
    return format_name(record)


def write_hostile(plan: list[PlannedFile], root: str | os.PathLike[str], outside: str | os.PathLike[str]) -> list[Odd]:
    """Write one odd entry of each kind into the folder of the plan's first file; ``outside`` is a file that
    is not below ``root`` (the target of the link that leads out)."""
    root = Path(root)
    first = plan[0]
    folder = first.path.rsplit("/", 1)[0]
    base = 9_900_000 + first.record.run % 1000 * 10  # run numbers no plan uses
    odds: list[Odd] = []
    old = time.time() - 3600
    (root / folder).mkdir(parents=True, exist_ok=True)

    def add(kind: str, name: str | bytes, state: str, says: str) -> Path:
        raw = os.fsencode(folder) + b"/" + (name if isinstance(name, bytes) else name.encode())
        shown = raw.decode("utf-8", "surrogateescape")
        odds.append(Odd(kind, to_text(shown), raw, state, says))
        return Path(os.fsdecode(os.fsencode(str(root)) + b"/" + raw))

    target = add("not_utf8", _name(first, base + 1).encode().replace(b".", b"\xff\xfe.", 1), "REJECTED", "0xff")
    target.write_bytes(b"not utf-8")
    os.utime(target, (old, old))
    long_name = _name(first, base + 2, source="Crab")
    long_name = _name(first, base + 2, source="Crab" + "N" * (252 - len(long_name)))  # 252: over Rucio's 250,
    target = add("name_too_long", long_name, "REJECTED", "at most 250")  # under the file system's 255 bytes
    target.write_bytes(b"long")
    os.utime(target, (old, old))
    os.mkfifo(add("not_regular", _name(first, base + 3), "REJECTED", "FIFO"))
    bind_socket(add("not_regular", _name(first, base + 4), "REJECTED", "socket"))
    os.symlink(os.path.abspath(outside), add("symlink", _name(first, base + 5), "REJECTED", "out of the storage root"))
    os.symlink(root / "nowhere" / "x", add("symlink", _name(first, base + 6), "REJECTED", "dangling"))
    future = add("future_mtime", _name(first, base + 7), "SEEN", "future")
    future.write_bytes(os.urandom(2000))
    os.utime(future, (time.time() + FUTURE_SECONDS, time.time() + FUTURE_SECONDS))
    empty = add("quarantined", _name(first, base + 8), "QUARANTINED", "empty")
    empty.write_bytes(b"")
    os.utime(empty, (old, old))
    cut = add("quarantined", _name(first, base + 9) + ".gz", "QUARANTINED", "gzip")
    cut.write_bytes(gzip.compress(os.urandom(5000), mtime=0)[:-8])  # the writer stopped before the trailer
    os.utime(cut, (old, old))
    return odds
