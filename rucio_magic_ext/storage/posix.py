"""Storage on a locally mounted file system (Rucio scheme `file`)."""

from __future__ import annotations

import contextlib
import logging
import os
import stat as stat_module
from collections.abc import Iterable, Iterator
from typing import BinaryIO
from urllib.parse import urlsplit

from rucio_magic_ext.checksum import ADLER32, StreamingChecksum, checksum_file, read_blocks
from rucio_magic_ext.common import LoggerFunction
from rucio_magic_ext.storage.base import CopyResult, Entry, Folder, ProgressCallback, Storage


class PosixStorage(Storage):
    """Files reached through the local file system; URLs look like `file://host/abs/path`.

    With a root (`PosixStorage(root="/data/pic")`), no location outside `/data/pic` is read or written.
    Symlinks below the root are followed as the file system does; only the path's own text is confined.
    """

    scheme = "file"
    storage_side_checksum = False

    def __init__(self, logger: LoggerFunction = logging.log, root: str | None = None) -> None:
        self.logger = logger
        super().__init__(root)

    def native_path(self, location: str) -> str:
        if "://" in location:
            parts = urlsplit(location)
            if parts.scheme != self.scheme:
                raise ValueError(f"not a {self.scheme}:// location: {location}")
            if "?" in location or "#" in location:
                # Rucio joins prefix and path as they are: '?' or '#' in a name would cut the path short.
                raise ValueError(f"'?' and '#' have no meaning in a {self.scheme}:// location: {location}")
            location = parts.path
        if not location.startswith("/"):
            raise ValueError(f"posix locations must be absolute: {location}")
        return location

    def list(self, prefix: str) -> Iterator[Entry]:
        root = self.path_of(prefix)
        pending = [root]
        while pending:
            directory = pending.pop()
            try:
                with os.scandir(directory) as iterator:
                    children = sorted(iterator, key=lambda child: child.name)
            except FileNotFoundError:
                if directory == root:
                    raise
                continue  # removed while the tree was being walked
            except PermissionError as error:
                self.logger(logging.WARNING, "Cannot list %s: %s", directory, error)
                continue
            subdirectories = []
            for child in children:
                try:
                    if child.is_dir(follow_symlinks=False):
                        subdirectories.append(child.path)
                        continue
                    info = child.stat()
                except FileNotFoundError:
                    continue  # removed, or a dangling link
                if stat_module.S_ISREG(info.st_mode):
                    yield Entry(child.path, info.st_size, info.st_mtime)
            pending.extend(reversed(subdirectories))

    def folders(self, prefix: str) -> Iterator[Folder]:
        pending = [self.path_of(prefix)]
        while pending:
            directory = pending.pop()
            try:
                mtime = os.stat(directory).st_mtime
                with os.scandir(directory) as iterator:
                    subdirectories = sorted(
                        (child.path for child in iterator if child.is_dir(follow_symlinks=False)), reverse=True
                    )
            except FileNotFoundError:
                continue  # removed while the tree was being walked
            except PermissionError as error:
                self.logger(logging.WARNING, "Cannot list %s: %s", directory, error)
                continue
            yield Folder(directory, mtime)
            pending.extend(subdirectories)

    def files(self, folder: str) -> list[Entry]:
        found = []
        try:
            with os.scandir(self.path_of(folder)) as iterator:
                for child in iterator:
                    try:
                        if child.is_file(follow_symlinks=False):
                            info = child.stat(follow_symlinks=False)
                            found.append(Entry(child.path, info.st_size, info.st_mtime))
                    except FileNotFoundError:
                        continue  # removed meanwhile
        except FileNotFoundError:
            return []
        return sorted(found, key=lambda entry: entry.path)

    def stat(self, location: str) -> Entry:
        path = self.path_of(location)
        info = os.stat(path)
        if stat_module.S_ISDIR(info.st_mode):
            raise IsADirectoryError(path)
        return Entry(path, info.st_size, info.st_mtime)

    def checksum(self, location: str, algorithms: Iterable[str] = (ADLER32,)) -> dict[str, str]:
        return checksum_file(self.path_of(location), algorithms)

    def open_read(self, location: str) -> BinaryIO:
        return open(self.path_of(location), "rb", buffering=0)

    def copy(
        self,
        source: str,
        destination: str,
        algorithms: Iterable[str] = (ADLER32,),
        progress: ProgressCallback | None = None,
        source_storage: Storage | None = None,
    ) -> CopyResult:
        target_path = self.path_of(destination)
        digest = StreamingChecksum(algorithms)
        with (source_storage or self).open_read(source) as reader:
            os.makedirs(os.path.dirname(target_path), exist_ok=True)
            fd = os.open(target_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            try:
                with open(fd, "wb", buffering=0, closefd=True) as writer:
                    for block in read_blocks(reader):
                        _write_all(writer, block)
                        digest.update(block)
                        if progress is not None:
                            progress(digest.size)
                    os.fsync(fd)
                    # The bytes are on disk: drop them from the page cache, so that a checksum
                    # taken afterwards reads what the storage holds, not what was written.
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(target_path)
                raise
        return CopyResult(digest.size, digest.hexdigests())

    def rename(self, source: str, destination: str) -> None:
        target_path = self.path_of(destination)
        os.replace(self.path_of(source), target_path)
        _fsync_directory(os.path.dirname(target_path))

    def remove(self, location: str) -> bool:
        try:
            os.unlink(self.path_of(location))
        except FileNotFoundError:
            return False
        return True


def _write_all(writer: BinaryIO, block: memoryview) -> None:
    written = 0
    while written < len(block):
        written += writer.write(block[written:])


def _fsync_directory(path: str) -> None:
    """Make a rename durable: the source may be deleted as soon as the new name is reported."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
