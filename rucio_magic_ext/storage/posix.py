"""Storage on a locally mounted file system (Rucio scheme `file`)."""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import stat as stat_module
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urlsplit

from rucio_magic_ext.checksum import ADLER32, StreamingChecksum, checksum_file, read_blocks
from rucio_magic_ext.common import LoggerFunction
from rucio_magic_ext.storage.base import CopyResult, Entry, Folder, ProgressCallback, Storage

KINDS = {
    stat_module.S_IFIFO: "a FIFO (named pipe)",
    stat_module.S_IFSOCK: "a socket",
    stat_module.S_IFCHR: "a character device",
    stat_module.S_IFBLK: "a block device",
    stat_module.S_IFDIR: "a directory",
}


class NotARegularFile(OSError):
    """The entry is not a regular file (FIFO, socket, device, directory, a link leading out of the root).

    Refused without being opened: reading a FIFO blocks until someone writes, a device never ends.
    """

    def __init__(self, path: str, what: str) -> None:
        super().__init__(errno.EINVAL, f"not a regular file: {what}", path)
        self.what = what


@dataclass(frozen=True)
class Refused(Entry):
    """An entry of a folder that is not taken, listed so that the one who watches can say why."""

    reason: str = ""


def kind_of(mode: int) -> str:
    return KINDS.get(stat_module.S_IFMT(mode), f"a file of type {stat_module.S_IFMT(mode):o}")


class PosixStorage(Storage):
    """Files reached through the local file system; URLs look like `file://host/abs/path`.

    With a root (`PosixStorage(root="/data/pic")`), no location outside `/data/pic` is read or written.
    Symlinks below the root are followed as the file system does when they lead to a regular file below it;
    a link that leads out of the root (or nowhere) is refused. Only regular files are read: a FIFO, socket or
    device is refused before it is opened.
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
        """Every folder below ``prefix``. One whose subfolders cannot be read is still given (listing its files
        then fails where the caller can record it); one that cannot even be stat'ed comes with a NaN mtime,
        which equals no mtime a ledger keeps, so that it is looked at (and its error met) every time."""
        pending = [self.path_of(prefix)]
        while pending:
            directory = pending.pop()
            try:
                mtime = os.stat(directory).st_mtime
            except FileNotFoundError:
                continue  # removed while the tree was being walked
            except OSError as error:
                self.logger(logging.WARNING, "Cannot stat %s: %s", directory, error)
                yield Folder(directory, math.nan)
                continue
            try:
                with os.scandir(directory) as iterator:
                    subdirectories = sorted(
                        (child.path for child in iterator if child.is_dir(follow_symlinks=False)), reverse=True
                    )
            except FileNotFoundError:
                continue  # removed while the tree was being walked
            except OSError as error:
                self.logger(logging.WARNING, "Cannot list %s: %s", directory, error)
                subdirectories = []
            yield Folder(directory, mtime)
            pending.extend(subdirectories)

    def files(self, folder: str) -> list[Entry]:
        """Regular files of the folder as :class:`Entry`, and every other entry that is not a folder (FIFO,
        socket, device, a symlink leading out of the root or nowhere) as :class:`Refused`, with the reason."""
        found: list[Entry] = []
        try:
            with os.scandir(self.path_of(folder)) as iterator:
                for child in iterator:
                    try:
                        entry = self._entry(child)
                    except FileNotFoundError:
                        continue  # removed meanwhile
                    if entry is not None:
                        found.append(entry)
        except FileNotFoundError:
            return []
        return sorted(found, key=lambda entry: entry.path)

    def _entry(self, child: os.DirEntry[str]) -> Entry | None:
        info = child.stat(follow_symlinks=False)
        if stat_module.S_ISDIR(info.st_mode):
            return None  # a folder: folders() walks it
        if stat_module.S_ISLNK(info.st_mode):
            target = os.path.realpath(child.path)
            why = self._link_refused(child.path, target)
            if why:
                return Refused(child.path, 0, info.st_mtime, why)
            followed = os.stat(child.path)
            if stat_module.S_ISDIR(followed.st_mode):
                return None  # a link to a folder below the root: not walked, not a file
            if not stat_module.S_ISREG(followed.st_mode):
                return Refused(child.path, 0, info.st_mtime, f"a symbolic link to {kind_of(followed.st_mode)}")
            return Entry(child.path, followed.st_size, followed.st_mtime)
        if not stat_module.S_ISREG(info.st_mode):
            return Refused(child.path, 0, info.st_mtime, f"not a regular file: {kind_of(info.st_mode)}")
        return Entry(child.path, info.st_size, info.st_mtime)

    def _link_refused(self, path: str, target: str) -> str | None:
        """Why a symbolic link is not followed, or None."""
        if not os.path.lexists(target) or not os.path.exists(path):
            return f"a dangling symbolic link (to {os.readlink(path)})"
        if self.root is not None:
            root = os.path.realpath(self.root)
            if target != root and not target.startswith(root.rstrip("/") + "/"):
                return f"a symbolic link leading out of the storage root {self.root} (to {target}): not followed"
        return None

    def stat(self, location: str) -> Entry:
        path = self.path_of(location)
        info = os.lstat(path)
        if stat_module.S_ISLNK(info.st_mode):
            why = self._link_refused(path, os.path.realpath(path))
            if why:
                raise NotARegularFile(path, why)
            info = os.stat(path)
        if stat_module.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "a directory where a file was expected", path)
        if not stat_module.S_ISREG(info.st_mode):
            raise NotARegularFile(path, kind_of(info.st_mode))
        return Entry(path, info.st_size, info.st_mtime)

    def checksum(self, location: str, algorithms: Iterable[str] = (ADLER32,)) -> dict[str, str]:
        self.stat(location)  # a FIFO or device is refused before it is opened
        return checksum_file(self.path_of(location), algorithms)

    def open_read(self, location: str) -> BinaryIO:
        """The file's bytes; a FIFO, device or link out of the root is refused (O_NONBLOCK: opening never waits)."""
        path = self.path_of(location)
        self.stat(path)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            info = os.fstat(fd)  # what was opened, not what the name pointed to a moment before
            if not stat_module.S_ISREG(info.st_mode):
                raise NotARegularFile(path, kind_of(info.st_mode))
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return open(fd, "rb", buffering=0, closefd=True)

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
