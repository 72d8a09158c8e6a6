"""What the scanner and the transfer tool need from a storage, whatever its protocol.

One implementation per URL scheme: posix (`file`), `root` (XRootD) and `davs` (WebDAV). As fsspec writes walk
and find once over a backend's `ls`, `Storage` holds what every storage does the same way (the folder walks, the
checksum with its proof, the streamed copy with its checks and its clean-up); a backend supplies the primitives.
Locations are given either as the storage's URL (a Rucio PFN) or as its native path.

A storage may be given a root, the prefix of the RSE protocol it serves. Every location then goes through
``path_of``, which raises :class:`OutsideRoot` unless it is the root or below it: a PFN built from a DID name
such as ``../../etc/x`` is refused before any byte is read or written.
"""

from __future__ import annotations

import builtins
import errno
import io
import logging
import posixpath
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rucio_magic_ext.checksum import ADLER32, StreamingChecksum, read_blocks, read_file_blocks, wanted_algorithms
from rucio_magic_ext.common import LoggerFunction
from rucio_magic_ext.failures import Outage

#: Called with the number of bytes copied so far; may raise to abort the copy.
ProgressCallback = Callable[[int], None]


class OutsideRoot(ValueError):
    """A location that is not at or under the storage's root; nothing there is read or written."""

    def __init__(self, location: str, root: str, reason: str) -> None:
        super().__init__(f"{location} is outside the storage root {root}: {reason}")
        self.location, self.root, self.reason = location, root, reason


def normalise(path: str) -> str:
    """An absolute '/'-separated path without '.', empty components or a trailing '/'."""
    return "/" + posixpath.normpath(path).lstrip("/")


def confine(path: str, root: str | None, location: str | None = None) -> str:
    """`path` normalised; with a root (normalised), OutsideRoot unless it is the root or below it. Under a root a
    '..' component is refused rather than resolved: on the string it could disagree with the file system past a
    symlinked folder. `location` is what the caller gave, for the message."""
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
    """A directory as the storage lists it. Its mtime changes when an entry is created, renamed or removed in
    it, not when a file in it grows: a folder whose mtime has not moved holds no new name."""

    path: str
    mtime: float


@dataclass(frozen=True)
class Refused(Entry):
    """An entry of a folder that is not taken, listed so that the one who watches can say why."""

    reason: str = ""
    link: bool = False  # a symbolic link not followed, rather than a FIFO, socket or device


@dataclass(frozen=True)
class CopyResult:
    """Size and checksums of the bytes read from the source during a copy, and how the bytes travelled."""

    size: int
    checksums: dict[str, str] = field(default_factory=dict)
    #: "streamed" through this process, or "third-party copy" (server to server, no byte through here).
    method: str = "streamed"


class StorageUnavailable(Outage):
    """The storage did not answer (refused, timed out, disconnected, overloaded) or its root is not there
    (unmounted, renamed away): nothing is known of the file."""

    service = "storage"


class AccessRefused(StorageUnavailable):
    """The storage refuses this process, not the file: no credential, an expired one, one without the right
    asked, or a server whose certificate the CA folder does not vouch for. Nothing is known of the file, so
    no file is marked: the work waits, and resumes once a valid credential is in place."""

    service = "credentials"


class ChecksumMismatch(OSError):
    """The bytes of a copy do not have the checksum of their source; the copy was removed."""

    def __init__(self, location: str, expected: dict[str, str], found: dict[str, str], what: str) -> None:
        problems = "; ".join(f"{name} {found.get(name)} != {value}" for name, value in expected.items()
                             if found.get(name) != value)
        super().__init__(errno.EIO, f"{what} checksum mismatch: {problems}", location)
        self.expected, self.found = expected, found


@dataclass(frozen=True)
class ProvenChecksums:
    """Checksums and how each was obtained: answered by the storage, or computed here from streamed bytes."""

    values: dict[str, str]
    by_storage: frozenset[str] = frozenset()
    streamed: frozenset[str] = frozenset()
    bytes_read: int = 0  # what computing the streamed ones read
    #: What the storage answered when it did not give an algorithm asked for (for the logs).
    notes: tuple[str, ...] = field(default=())
    scheme: str = ""  # of the storage that answered, to name its server

    @property
    def storage_side(self) -> bool:
        """True when no byte of the file was read here."""
        return not self.streamed

    def how(self, algorithm: str) -> str:
        if algorithm in self.by_storage:
            return f"by the {self.scheme}:// server"
        return f"computed here from {self.bytes_read} bytes"

    def ways(self) -> str:
        """How every value was proven: ``adler32 by the root:// server, md5 computed here from 1024 bytes``."""
        return ", ".join(f"{name} {self.how(name)}" for name in sorted(self.values))


def copied_blocks(
    reader: io.RawIOBase, digest: StreamingChecksum, progress: ProgressCallback | None
) -> Iterator[memoryview]:
    """The reader's blocks for a copy to write; each one written is then counted in `digest` and reported."""
    for block in read_blocks(reader):
        yield block
        digest.update(block)
        if progress is not None:
            progress(digest.size)


def stream_size(reader: io.RawIOBase) -> int:
    """The size of what an open stream reads, the stream left at its start."""
    size = reader.seek(0, io.SEEK_END)
    reader.seek(0)
    return size


class Storage(ABC):
    """File operations on one storage endpoint; a missing file raises FileNotFoundError. Every operation takes
    its locations through `path_of`, so with a root none reaches outside it."""

    #: URL scheme served, as in Rucio protocol definitions ('file', 'root', 'davs').
    scheme: ClassVar[str]
    #: True when the storage computes checksums itself, without streaming the bytes here.
    storage_side_checksum: ClassVar[bool] = False
    #: Native path that every location must be at or under; None: not confined.
    root: str | None = None

    def __init__(self, root: str | None = None, logger: LoggerFunction = logging.log) -> None:
        """`root`: the RSE protocol's prefix, as a URL of this scheme or a native path."""
        self.logger = logger
        if root is not None:
            native = self.native_path(root)
            if ".." in native.split("/") or not native.startswith("/"):
                raise ValueError(f"a storage root must be absolute, without '..': {root}")
            self.root = normalise(native)

    def path_of(self, location: str) -> str:
        """Native path of a URL (or of a path already native), normalised; OutsideRoot if it leaves the root."""
        return confine(self.native_path(location), self.root, location)

    def _locate(self, location: str) -> tuple[Any, str]:
        """Where a location is (its server; None on a local file system) and its confined native path."""
        return None, self.path_of(location)

    # -- what a backend supplies ----------------------------------------------------------------------------

    @abstractmethod
    def native_path(self, location: str) -> str:
        """The path a URL names on this storage (a native path as it is), not yet normalised nor confined."""

    @abstractmethod
    def _listing(self, where: Any, folder: str, files: bool = True) -> tuple[list[Entry], list[Folder]]:
        """The files (a Refused for an entry not taken) and the folders directly in `folder` (a confined native
        path on `where`), each in path order; FileNotFoundError when it is gone. Without `files`, the files
        may be left out (only the folders are wanted)."""

    @abstractmethod
    def _folder(self, where: Any, path: str) -> Folder:
        """A folder (a confined native path on `where`) with its mtime; FileNotFoundError when it is gone."""

    @abstractmethod
    def stat(self, location: str) -> Entry: ...

    def _stored_checksums(self, location: str, algorithms: tuple[str, ...]) -> tuple[dict[str, str], tuple[str, ...]]:
        """The checksums the storage computes itself, of those asked, and what it said of the others."""
        return {}, ()

    @abstractmethod
    def open_read(self, location: str) -> io.RawIOBase:
        """A raw binary stream of the file's bytes, supporting `readinto` and `seek`."""

    @abstractmethod
    def _write(self, reader: io.RawIOBase, destination: str, digest: StreamingChecksum,
               progress: ProgressCallback | None) -> None:
        """Write the reader's bytes (`copied_blocks`) into a new file `destination`, its folders made, durably;
        FileExistsError, before anything is written, when the name is taken."""

    @abstractmethod
    def rename(self, source: str, destination: str) -> None:
        """Atomically, replacing `destination` if it exists."""

    @abstractmethod
    def remove(self, location: str) -> bool:
        """Delete one file; False when it was already absent."""

    # -- the walks ------------------------------------------------------------------------------------------

    def list(self, prefix: str) -> Iterator[Entry]:
        """Every file under `prefix`, lazily; a Refused entry is no file, a folder that cannot be read is skipped."""
        where, top = self._locate(prefix)
        pending = [top]
        while pending:
            directory = pending.pop()
            try:
                files, folders = self._listing(where, directory)
            except FileNotFoundError:
                if directory == top:
                    raise
                continue  # removed while the tree was being walked
            except PermissionError as error:
                self.logger(logging.WARNING, "Cannot list %s: %s", directory, error)
                continue
            yield from (entry for entry in files if not isinstance(entry, Refused))
            pending.extend(folder.path for folder in reversed(folders))

    def folders(self, prefix: str) -> Iterator[Folder]:
        """Every folder under `prefix` (itself included), recursively, lazily, without listing files.

        A folder's mtime is read before it is listed, so a name created in between shows as a change later. One
        whose subfolders cannot be read is still given (listing its files then fails where the caller can record
        it); one that cannot be stat'ed comes with a NaN mtime, which equals no mtime a ledger keeps.
        """
        where, top = self._locate(prefix)
        try:
            pending = [self._folder(where, top)]
        except FileNotFoundError:
            return
        while pending:
            folder = pending.pop()
            try:
                subfolders = self._listing(where, folder.path, files=False)[1]
            except FileNotFoundError:
                continue  # removed while the tree was being walked
            except StorageUnavailable:
                raise
            except OSError as error:
                self.logger(logging.WARNING, "Cannot list %s: %s", folder.path, error)
                subfolders = []
            yield folder
            pending.extend(reversed(subfolders))

    def files(self, folder: str) -> builtins.list[Entry]:  # `list` is the walk below, in this class
        """The files directly in `folder`, a Refused for each entry not taken; empty when the folder is gone."""
        where, path = self._locate(folder)
        try:
            return self._listing(where, path)[0]
        except FileNotFoundError:
            return []

    # -- checksums ------------------------------------------------------------------------------------------

    def checksum(self, location: str, algorithms: Iterable[str] = (ADLER32,)) -> dict[str, str]:
        return self.checksum_detail(location, algorithms).values

    def checksum_detail(
        self, location: str, algorithms: Iterable[str] = (ADLER32,), stream: bool = True
    ) -> ProvenChecksums:
        """Checksums, and whether the storage computed each or they were streamed: an algorithm the storage does
        not answer is computed here over the file's bytes, in one pass, unless `stream` is False (then left out)."""
        wanted = wanted_algorithms(algorithms)
        values, notes = self._stored_checksums(location, wanted)
        by_storage = frozenset(values)
        remaining = [name for name in wanted if name not in values]
        if not remaining or not stream:
            return ProvenChecksums(values, by_storage, notes=notes, scheme=self.scheme)
        if notes:
            self.logger(logging.DEBUG, "Streaming %s for %s: %s", remaining, location, "; ".join(notes))
        digest = StreamingChecksum(remaining)
        with self.open_read(location) as reader:
            for block in read_file_blocks(reader, stream_size(reader)):
                digest.update(block)
        values.update(digest.hexdigests())
        return ProvenChecksums({name: values[name] for name in wanted}, by_storage, frozenset(remaining),
                               digest.size, notes, self.scheme)

    def _verify(self, location: str, expected: dict[str, str], what: str, size: int | None = None,
                stream: bool = True) -> None:
        """Raise ChecksumMismatch (or OSError on a size mismatch) unless the file holds these bytes; without
        `stream` only the checksums the storage keeps are compared, and no byte is read here."""
        if size is not None:
            stored = self.stat(location).size
            if stored != size:
                raise OSError(errno.EIO, f"{what} size mismatch: {stored} != {size} bytes", self.path_of(location))
        found = self.checksum_detail(location, tuple(expected), stream=stream).values
        if any(found[name] != expected[name] for name in found):
            raise ChecksumMismatch(self.path_of(location), {name: expected[name] for name in found}, found, what)

    # -- copies ---------------------------------------------------------------------------------------------

    def copy(
        self,
        source: str,
        destination: str,
        algorithms: Iterable[str] = (ADLER32,),
        progress: ProgressCallback | None = None,
        source_storage: Storage | None = None,
    ) -> CopyResult:
        """Copy `source` (on `source_storage`, of this scheme; this storage when None) to a new file `destination`,
        durably. On any failure the partial destination is removed, but a FileExistsError leaves the file found
        there, someone else's, as it is."""
        if self._exists(destination):
            raise FileExistsError(errno.EEXIST, "the copy's destination exists", self.path_of(destination))
        try:
            return self._copy(source_storage or self, source, destination, wanted_algorithms(algorithms), progress)
        except FileExistsError:
            raise
        except BaseException:
            self._remove_quietly(destination)
            raise

    def _copy(self, origin: Storage, source: str, destination: str, wanted: tuple[str, ...],
              progress: ProgressCallback | None) -> CopyResult:
        """Stream the bytes through here, then hold them against every checksum kept at no cost: the source's
        catches bytes that rotted after they were checksummed, the destination's bytes that did not arrive.
        A destination that computes its own is asked for them (its server reads the copy); any other is
        only stat'ed, its bytes read back by whoever proves the copy."""
        digest = StreamingChecksum(wanted)
        with origin.open_read(source) as reader:
            self._write(reader, destination, digest, progress)
        streamed = digest.hexdigests()
        origin._verify(source, streamed, "SOURCE (stored checksum against the bytes read)", stream=False)
        self._verify(destination, streamed, "DESTINATION (streamed copy)", digest.size, self.storage_side_checksum)
        return CopyResult(digest.size, streamed)

    def _exists(self, location: str) -> bool:
        try:
            self.stat(location)
        except FileNotFoundError:
            return False
        return True

    def _remove_quietly(self, location: str) -> None:
        try:
            self.remove(location)
        except Exception as error:  # the original failure matters more
            self.logger(logging.WARNING, "Could not remove the partial copy %s: %s", location, error)
