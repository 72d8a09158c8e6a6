"""What the scanner and the transfer tool need from a storage, whatever its protocol.

One implementation per URL scheme (posix first; root:// and davs:// later). The interface is
deliberately close to fsspec's (`find`/`info`/`checksum`/`open`/`copy`/`mv`/`rm`), so an
fsspec-backed implementation (fsspec-xrootd for root://, an HTTP one for davs://) can be a thin
adapter. Locations are given either as the storage's URL (a Rucio PFN) or as its native path.

A storage may be given a root, the prefix of the RSE protocol it serves (as a URL or a native path). Every
location then goes through ``path_of``, which normalises it and raises :class:`OutsideRoot` unless it is
the root or below it: a PFN built from a DID name such as ``../../etc/x`` is refused before any byte is
read or written. Without a root (scanner, carrier, tests) locations are only normalised.
"""

from __future__ import annotations

import errno
import posixpath
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, ClassVar

from rucio_magic_ext.checksum import ADLER32

#: Called with the number of bytes copied so far; may raise to abort the copy.
ProgressCallback = Callable[[int], None]


class OutsideRoot(ValueError):
    """A location that is not at or under the storage's root; nothing there is read or written."""

    def __init__(self, location: str, root: str, reason: str) -> None:
        super().__init__(f"{location} is outside the storage root {root}: {reason}")
        self.location = location
        self.root = root
        self.reason = reason


def normalise(path: str) -> str:
    """An absolute '/'-separated path without '.', empty components or a trailing '/'."""
    return "/" + posixpath.normpath(path).lstrip("/")


def confine(path: str, root: str | None, location: str | None = None) -> str:
    """`path` normalised; with a root (normalised), OutsideRoot unless it is the root or below it.

    Under a root a '..' component is refused outright rather than resolved: resolved on the string it
    could disagree with the file system past a symlinked folder. `location` is what the caller gave,
    for the message.
    """
    if root is None:
        return normalise(path)
    shown = location if location is not None else path
    if ".." in path.split("/"):
        raise OutsideRoot(shown, root, "a '..' component may lead out of it")
    if not path.startswith("/"):
        raise OutsideRoot(shown, root, "a relative path is not under it")
    normal = normalise(path)
    if root != "/" and normal != root and not normal.startswith(root + "/"):
        raise OutsideRoot(shown, root, f"{normal} is not below it")
    return normal


@dataclass(frozen=True)
class Entry:
    """A file as the storage lists it: native path, size in bytes, modification time (epoch s)."""

    path: str
    size: int
    mtime: float


@dataclass(frozen=True)
class Folder:
    """A directory as the storage lists it: native path and modification time (epoch s).

    Its mtime changes when an entry is created, renamed or removed in it, not when a file in it grows:
    a folder whose mtime has not moved holds no new name.
    """

    path: str
    mtime: float


@dataclass(frozen=True)
class CopyResult:
    """Size and checksums of the bytes read from the source during a copy, and how the bytes travelled."""

    size: int
    checksums: dict[str, str] = field(default_factory=dict)
    #: "streamed" through this process, or "third-party copy" (server to server, no byte through here).
    method: str = "streamed"


class StorageUnavailable(ConnectionError):
    """The storage did not answer (refused, timed out, disconnected, overloaded): nothing is known of the file.

    An OSError, so callers that retry on storage errors retry; never a FileNotFoundError, so nobody
    concludes that a file is gone because its server is down.
    """


class ChecksumMismatch(OSError):
    """The bytes of a copy do not have the checksum of their source; the copy was removed."""

    def __init__(self, location: str, expected: dict[str, str], found: dict[str, str], what: str) -> None:
        problems = "; ".join(f"{name} {found.get(name)} != {value}" for name, value in expected.items()
                             if found.get(name) != value)
        super().__init__(errno.EIO, f"{what} checksum mismatch: {problems}", location)
        self.expected = expected
        self.found = found


@dataclass(frozen=True)
class ProvenChecksums:
    """Checksums and how each was obtained: answered by the storage, or computed here from streamed bytes."""

    values: dict[str, str]
    #: Algorithms whose value the storage computed and answered itself.
    by_storage: frozenset[str] = frozenset()
    #: Algorithms computed here by reading the file's bytes, and how many bytes that read.
    streamed: frozenset[str] = frozenset()
    bytes_read: int = 0
    #: What the storage answered when it did not give an algorithm asked for (for the logs).
    notes: tuple[str, ...] = field(default=())

    @property
    def storage_side(self) -> bool:
        """True when no byte of the file was read here."""
        return not self.streamed


class Storage(ABC):
    """File operations on one storage endpoint; a missing file raises FileNotFoundError.

    Every operation takes its locations through `path_of`, so with a root none reaches outside it.
    """

    #: URL scheme served, as in Rucio protocol definitions ('file', 'root', 'davs').
    scheme: ClassVar[str]
    #: True when checksum() is computed by the storage itself, without streaming the bytes here.
    storage_side_checksum: ClassVar[bool] = False
    #: Native path that every location must be at or under; None: not confined.
    root: str | None = None

    def __init__(self, root: str | None = None) -> None:
        """`root`: the RSE protocol's prefix, as a URL of this scheme or a native path; None: not confined."""
        if root is not None:
            native = self.native_path(root)
            if ".." in native.split("/") or not native.startswith("/"):
                raise ValueError(f"a storage root must be absolute, without '..': {root}")
            self.root = normalise(native)

    def path_of(self, location: str) -> str:
        """Native path of a URL (or of a path already native), normalised; OutsideRoot if it leaves the root."""
        return confine(self.native_path(location), self.root, location)

    @abstractmethod
    def native_path(self, location: str) -> str:
        """The path a URL names on this storage (a native path as it is), not yet normalised nor confined."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[Entry]:
        """Every file under `prefix`, recursively, produced lazily (no full listing in memory)."""

    @abstractmethod
    def folders(self, prefix: str) -> Iterator[Folder]:
        """Every directory under `prefix` (itself included), recursively, lazily, without listing files."""

    @abstractmethod
    def files(self, folder: str) -> list[Entry]:
        """The files directly in `folder` (not below it); empty when the folder is gone."""

    @abstractmethod
    def stat(self, location: str) -> Entry:
        """Size and modification time of one file."""

    @abstractmethod
    def checksum(self, location: str, algorithms: Iterable[str] = (ADLER32,)) -> dict[str, str]:
        """Checksums in Rucio's format, keyed by algorithm name."""

    @abstractmethod
    def open_read(self, location: str) -> BinaryIO:
        """A binary stream of the file's bytes, supporting `readinto`."""

    @abstractmethod
    def copy(
        self,
        source: str,
        destination: str,
        algorithms: Iterable[str] = (ADLER32,),
        progress: ProgressCallback | None = None,
        source_storage: Storage | None = None,
    ) -> CopyResult:
        """Copy `source` to a new file `destination` (which must not exist), durably.

        Both locations are on storages of this scheme: `source` on `source_storage` (confined to its own
        root), this storage when None. On any failure the partial destination is removed before the
        error propagates.
        """

    @abstractmethod
    def rename(self, source: str, destination: str) -> None:
        """Atomically give `source` the name `destination`, replacing it if it exists."""

    @abstractmethod
    def remove(self, location: str) -> bool:
        """Delete one file; False when it was already absent."""


def check_source(origin: Storage, source: str, wanted: tuple[str, ...], streamed: dict[str, str]) -> None:
    """Compare the bytes read with the checksum the source's storage keeps (when it keeps one, at no cost):
    a mismatch means the source changed or rotted after it was checksummed."""
    detail = getattr(origin, "checksum_detail", None)
    if detail is None or not origin.storage_side_checksum:
        return
    stored = detail(source, wanted, stream=False).values
    if any(stored[name] != streamed[name] for name in stored):
        raise ChecksumMismatch(source, stored, streamed, "SOURCE (stored checksum against the bytes read)")
