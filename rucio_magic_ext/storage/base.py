"""What the scanner and the transfer tool need from a storage, whatever its protocol.

One implementation per URL scheme (posix first; root:// and davs:// later). The interface is
deliberately close to fsspec's (`find`/`info`/`checksum`/`open`/`copy`/`mv`/`rm`), so an
fsspec-backed implementation (fsspec-xrootd for root://, an HTTP one for davs://) can be a thin
adapter. Locations are given either as the storage's URL (a Rucio PFN) or as its native path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, ClassVar

from rucio_magic_ext.checksum import ADLER32

#: Rucio's logger convention: `logger(level, msg, *args)`.
LoggerFunction = Callable[..., Any]

#: Called with the number of bytes copied so far; may raise to abort the copy.
ProgressCallback = Callable[[int], None]


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
    """Size and checksums of the bytes read from the source during a copy."""

    size: int
    checksums: dict[str, str] = field(default_factory=dict)


class Storage(ABC):
    """File operations on one storage endpoint; a missing file raises FileNotFoundError."""

    #: URL scheme served, as in Rucio protocol definitions ('file', 'root', 'davs').
    scheme: ClassVar[str]
    #: True when checksum() is computed by the storage itself, without streaming the bytes here.
    storage_side_checksum: ClassVar[bool] = False

    @abstractmethod
    def path_of(self, location: str) -> str:
        """Native path of a URL (or of a path already native)."""

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
    ) -> CopyResult:
        """Copy `source` to a new file `destination` (which must not exist), durably.

        Both locations are on storages of this scheme. On any failure the partial destination is
        removed before the error propagates.
        """

    @abstractmethod
    def rename(self, source: str, destination: str) -> None:
        """Atomically give `source` the name `destination`, replacing it if it exists."""

    @abstractmethod
    def remove(self, location: str) -> bool:
        """Delete one file; False when it was already absent."""
