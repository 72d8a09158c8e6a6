"""What storages behind a server share (root://, davs://): which server a location is on, and keeping to it;
a stat, a listing and a rename over the server's own answers. The server is the endpoint given, else the root's
when the root is a URL, else that of the first URL seen. With a root, a URL on another server is outside it.
"""

from __future__ import annotations

import errno
import io
import logging
from abc import abstractmethod
from collections.abc import Collection
from typing import Any
from urllib.parse import SplitResult, urlsplit

from rucio_magic_ext.common import LoggerFunction
from rucio_magic_ext.storage.base import Entry, Folder, OutsideRoot, Storage
from rucio_magic_ext.storage.credentials import OPEN, Credentials


def split_server_url(url: str, schemes: Collection[str], what: str) -> tuple[SplitResult, str]:
    """A URL of one of `schemes` split, with its host as a URL writes it; ValueError for any other."""
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise ValueError(f"not a {what} location ({', '.join(f'{scheme}://' for scheme in schemes)}): {url}")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        # Rucio joins prefix and path as they are: '?' or '#' in a name would cut the path short.
        raise ValueError(f"'?' and '#' have no meaning in a {what} location: {url}")
    if not parts.hostname:
        raise ValueError(f"a {what} location needs a host: {url}")
    return parts, f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname


class ServerStorage(Storage):
    #: What makes a bare endpoint (``root://host:port``) a URL that ``split_url`` parses.
    endpoint_suffix = "/"
    storage_side_checksum = True

    def __init__(
        self,
        endpoint: str | None = None,
        root: str | None = None,
        credentials: Credentials = OPEN,
        logger: LoggerFunction = logging.log,
        timeout: int = 60,
        checksum_timeout: int = 1800,
    ) -> None:
        """`timeout` bounds each request in seconds, `checksum_timeout` a checksum query (the server may read a
        large file first); `credentials`: what a guarded server asks (``credentials.for_rse``)."""
        self.credentials = credentials
        self.timeout, self.checksum_timeout = timeout, checksum_timeout
        self.endpoint: str | None = None
        if endpoint is not None:
            self.endpoint = self.split_url(endpoint.rstrip("/") + self.endpoint_suffix)[0]
        elif root is not None and "://" in root:
            self.endpoint = self.split_url(root)[0]
        self._confined_endpoint = self.endpoint if root is not None else None
        super().__init__(root, logger)

    # -- what a server's backend supplies -------------------------------------------------------------------

    @abstractmethod
    def _stat(self, endpoint: str, path: str) -> Entry | Folder:
        """What is at a path: a file or a folder; FileNotFoundError when nothing is."""

    @abstractmethod
    def _children(self, endpoint: str, folder: str) -> list[Entry | Folder]:
        """The files and folders directly in a folder, in path order; FileNotFoundError or NotADirectoryError."""

    @abstractmethod
    def _move(self, endpoint: str, path: str, target: str) -> None:
        """Rename `path` to `target` on the server, replacing it."""

    @staticmethod
    @abstractmethod
    def split_url(url: str) -> tuple[str, str]:
        """(endpoint, native path) of a URL of this scheme."""

    @staticmethod
    @abstractmethod
    def join_url(endpoint: str, path: str) -> str: ...

    def native_path(self, location: str) -> str:
        return self._split(location)[1]

    def url_of(self, location: str) -> str:
        """The URL of a location, confined like every other."""
        return self.join_url(*self._locate(location))

    def _split(self, location: str) -> tuple[str | None, str]:
        """Endpoint (None for a native path while no server is known) and path, not yet confined, of a location."""
        if "://" in location:
            endpoint, path = self.split_url(location)
            if self._confined_endpoint is not None and endpoint != self._confined_endpoint:
                root = self.join_url(self._confined_endpoint, str(self.root))
                raise OutsideRoot(location, root, f"{endpoint} is another server")
            if self.endpoint is None:  # native paths given later are on the server first named
                self.endpoint = endpoint
                if self.root is not None:  # and a root given as a native path is on that server only
                    self._confined_endpoint = endpoint
            return endpoint, path
        if not location.startswith("/"):
            raise ValueError(f"{self.scheme}:// native paths must be absolute: {location}")
        return self.endpoint, location

    def _locate(self, location: str) -> tuple[str, str]:
        endpoint, _ = self._split(location)
        if endpoint is None:
            raise ValueError(f"no server known for {location}: give a {self.scheme}:// URL or an endpoint")
        return endpoint, self.path_of(location)

    def stat(self, location: str) -> Entry:
        found = self._stat(*self._locate(location))
        if isinstance(found, Folder):
            raise IsADirectoryError(errno.EISDIR, "is a directory", found.path)
        return found

    def _folder(self, where: str, path: str) -> Folder:
        found = self._stat(where, path)
        return Folder(found.path, found.mtime)

    def _listing(self, where: str, folder: str, files: bool = True) -> tuple[list[Entry], list[Folder]]:
        children = self._children(where, folder)
        return ([child for child in children if isinstance(child, Entry)],
                [child for child in children if isinstance(child, Folder)])

    def rename(self, source: str, destination: str) -> None:
        endpoint, path = self._locate(source)
        target_endpoint, target = self._locate(destination)
        if target_endpoint != endpoint:
            raise ValueError(f"a rename stays on one server: {source} -> {destination}")
        self._move(endpoint, path, target)


class PositionalReader(io.RawIOBase):
    """A file on a server as a raw stream: each `readinto` is one read at the current offset."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path
        self._position = 0

    @abstractmethod
    def _read_at(self, offset: int, view: memoryview) -> int:
        """Fill ``view`` from ``offset`` on; how many bytes came (0 at the end of the file)."""

    @abstractmethod
    def _size(self) -> int:
        """The file's size, for seeks from its end."""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if not len(view):
            return 0
        count = self._read_at(self._position, view)
        self._position += count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position}.get(whence)
        self._position = (self._size() if base is None else base) + offset
        return self._position

    def tell(self) -> int:
        return self._position
