"""Storage on a locally mounted file system (Rucio scheme `file`)."""

from __future__ import annotations

import errno
import io
import logging
import math
import os
import stat as stat_module
from typing import BinaryIO
from urllib.parse import urlsplit

from rucio_magic_ext.checksum import StreamingChecksum
from rucio_magic_ext.storage.base import Entry, Folder, ProgressCallback, Refused, Storage, copied_blocks

KINDS = {
    stat_module.S_IFIFO: "a FIFO (named pipe)",
    stat_module.S_IFSOCK: "a socket",
    stat_module.S_IFCHR: "a character device",
    stat_module.S_IFBLK: "a block device",
    stat_module.S_IFDIR: "a directory",
}


class NotARegularFile(OSError):
    """The entry is not a regular file (FIFO, socket, device, directory, a link leading out of the root): refused
    without being opened, since reading a FIFO blocks until someone writes, a device never ends."""

    def __init__(self, path: str, what: str, link: bool = False) -> None:
        super().__init__(errno.EINVAL, f"not a regular file: {what}", path)
        self.what = what
        self.link = link  # a symbolic link not followed, rather than a FIFO, socket or device


def kind_of(mode: int) -> str:
    return KINDS.get(stat_module.S_IFMT(mode), f"a file of type {stat_module.S_IFMT(mode):o}")


class PosixStorage(Storage):
    """Files reached through the local file system; URLs look like `file://host/abs/path`.

    Symlinks below the root are followed when they lead to a regular file below it; a link that leads out of the
    root (or nowhere) is refused. Only regular files are read: a FIFO, socket or device is refused unopened.
    """

    scheme = "file"

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

    def _listing(self, where: None, folder: str, files: bool = True) -> tuple[list[Entry], list[Folder]]:
        """Regular files as :class:`Entry`, every other entry that is not a folder (FIFO, socket, device, a symlink
        leading out of the root or nowhere) as :class:`Refused` with the reason; a link to a folder is neither.
        Without `files`, no file is stat'ed."""
        found: list[Entry] = []
        folders: list[Folder] = []
        with os.scandir(folder) as iterator:
            for child in sorted(iterator, key=lambda child: child.name):
                try:
                    if child.is_dir(follow_symlinks=False):
                        folders.append(self._folder(where, child.path))
                    elif files and (entry := self._entry(child)) is not None:
                        found.append(entry)
                except FileNotFoundError:
                    continue  # removed meanwhile
        return found, folders

    def _folder(self, where: None, path: str) -> Folder:
        try:
            return Folder(path, os.stat(path).st_mtime)
        except FileNotFoundError:
            raise
        except OSError as error:
            self.logger(logging.WARNING, "Cannot stat %s: %s", path, error)
            return Folder(path, math.nan)

    def _entry(self, child: os.DirEntry[str]) -> Entry | None:
        info = child.stat(follow_symlinks=False)
        if stat_module.S_ISLNK(info.st_mode):
            if why := self._link_refused(child.path, os.path.realpath(child.path)):
                return Refused(child.path, 0, info.st_mtime, why, link=True)
            followed = os.stat(child.path)
            if stat_module.S_ISDIR(followed.st_mode):
                return None  # a link to a folder below the root: not walked, not a file
            if not stat_module.S_ISREG(followed.st_mode):
                return Refused(child.path, 0, info.st_mtime, f"a symbolic link to {kind_of(followed.st_mode)}", True)
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
            if why := self._link_refused(path, os.path.realpath(path)):
                raise NotARegularFile(path, why, link=True)
            info = os.stat(path)
        if stat_module.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "a directory where a file was expected", path)
        if not stat_module.S_ISREG(info.st_mode):
            raise NotARegularFile(path, kind_of(info.st_mode))
        return Entry(path, info.st_size, info.st_mtime)

    def open_read(self, location: str) -> io.RawIOBase:
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

    def _write(self, reader: io.RawIOBase, destination: str, digest: StreamingChecksum,
               progress: ProgressCallback | None) -> None:
        path = self.path_of(destination)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        with open(fd, "wb", buffering=0, closefd=True) as writer:
            for block in copied_blocks(reader, digest, progress):
                _write_all(writer, block)
            os.fsync(fd)
            # The bytes are on disk: drop them from the page cache, so that a checksum
            # taken afterwards reads what the storage holds, not what was written.
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)

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
