"""Storage reached over XRootD (Rucio scheme `root`), with XRootD's own Python client (PyPI `xrootd`).

The observatory and the data centre serve their disks over XRootD, so the scanner lists, stats and
checksums there without mounting anything, and the transfer tool copies server to server.

XRootD.client rather than fsspec-xrootd (which wraps the same client): every failure keeps its XRootD
status (kXR error number, client error code), so a missing file, a refused permission and a server that
does not answer become distinct exceptions; fsspec-xrootd turns them all into a bare OSError. It also
offers third-party copy (`CopyProcess`), which fsspec-xrootd does not, and costs no event loop thread.
Measured against an xrootd 5.5.3 server on loopback: listing a folder of 10,000 files with sizes and
mtimes 136 ms (fsspec-xrootd 156 ms); 100 stats 14 ms (52 ms); 100 checksum queries 12 ms (32 ms).

Checksums are the server's (`xrootd.chksum adler32`): a checksum query costs no bytes on the network
and, once the server has computed it, is answered from the file's extended attributes. Where the server
answers another algorithm or none, the bytes are streamed and the checksum computed here; `checksum_detail`
says which way each value was obtained. A server keeps the checksum it computed while the file's mtime
is unchanged, so a copy compares the source's stored checksum with the destination's fresh one: a source
whose bytes rotted after they were checksummed is caught at the copy.

The client retries a refused connection for up to ten minutes by default; unless `XRD_CONNECTIONRETRY`,
`XRD_CONNECTIONWINDOW` or `XRD_STREAMERRORWINDOW` are set, this module makes it give up at once (ten seconds
for a host that does not even refuse) and try again five seconds after a failure rather than thirty minutes,
so that a stopped server is reported (StorageUnavailable) rather than waited for, and a restarted one is used.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from rucio_magic_ext.checksum import ADLER32, StreamingChecksum, normalise_checksum, read_blocks, wanted_algorithms
from rucio_magic_ext.common import LoggerFunction
from rucio_magic_ext.storage.base import (
    ChecksumMismatch,
    CopyResult,
    Entry,
    Folder,
    ProgressCallback,
    ProvenChecksums,
    Storage,
    StorageUnavailable,
    check_source,
)
from rucio_magic_ext.storage.server import PositionalReader, ServerStorage

try:
    from XRootD import client as xrd_client
    from XRootD.client.flags import DirListFlags, OpenFlags, QueryCode, StatInfoFlags
except ImportError:  # the storage says so when used; the rest of the package does not need it
    xrd_client = None

DEFAULT_PORT = 1094
#: Client settings that make a stopped server an error, not a wait (a site's XRD_* variables win).
CLIENT_SETTINGS = {"ConnectionRetry": 1, "ConnectionWindow": 10, "StreamErrorWindow": 5}

# XrdCl status codes meaning that the server was not reached or stopped answering.
_UNREACHABLE_CODES = frozenset({101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 202, 206, 207})
_ERROR_RESPONSE = 400
# kXR error numbers of a server's error response (XProtocol.h).
_KXR_NOT_AUTHORIZED, _KXR_NOT_FOUND, _KXR_UNSUPPORTED, _KXR_NO_SERVER = 3010, 3011, 3013, 3014
_KXR_IS_DIRECTORY, _KXR_ITEM_EXISTS, _KXR_OVERLOADED = 3016, 3018, 3024
_KXR_NO_SPACE, _KXR_OVER_QUOTA, _KXR_FS_READ_ONLY = 3009, 3021, 3025
_KXR_FILE_LOCKED = 3003
#: How long a new file's name may stay held by a writer that is going away (a refused third-party copy).
LOCKED_NAME_GRACE = 10.0


def configure_client() -> None:
    """Apply CLIENT_SETTINGS to the process's XRootD client, except those the environment sets."""
    for name, value in CLIENT_SETTINGS.items():
        if f"XRD_{name.upper()}" not in os.environ:
            xrd_client.EnvPutInt(name, value)


if xrd_client is not None:
    configure_client()


def split_root_url(url: str) -> tuple[str, str]:
    """`root://host[:port]//path` as its endpoint `root://host:port` and its absolute path."""
    parts = urlsplit(url)
    if parts.scheme not in ("root", "xroot"):
        raise ValueError(f"not a root:// location: {url}")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        # Rucio joins prefix and path as they are: '?' or '#' in a name would cut the path short.
        raise ValueError(f"'?' and '#' have no meaning in a root:// location: {url}")
    if not parts.hostname:
        raise ValueError(f"a root:// location needs a host: {url}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"root://{host}:{parts.port or DEFAULT_PORT}", "/" + parts.path.lstrip("/")


def _raise_for(status: Any, endpoint: str, path: str) -> None:
    """Raise the exception that an XRootD status means; nothing when it succeeded."""
    if status.ok:
        return
    message = status.message.strip()
    if status.code in _UNREACHABLE_CODES:
        raise StorageUnavailable(errno.EHOSTUNREACH, f"{endpoint} does not answer: {message}", path)
    if status.code == _ERROR_RESPONSE:
        number = status.errno
        if number == _KXR_NOT_FOUND:
            raise FileNotFoundError(errno.ENOENT, message, path)
        if number == _KXR_NOT_AUTHORIZED:
            raise PermissionError(errno.EACCES, message, path)
        if number == _KXR_IS_DIRECTORY:
            raise IsADirectoryError(errno.EISDIR, message, path)
        if number == _KXR_ITEM_EXISTS:
            raise FileExistsError(errno.EEXIST, message, path)
        if number in (_KXR_NO_SERVER, _KXR_OVERLOADED):
            raise StorageUnavailable(errno.EAGAIN, f"{endpoint} cannot serve now: {message}", path)
        if number in (_KXR_NO_SPACE, _KXR_OVER_QUOTA):
            raise OSError(errno.ENOSPC, message, path)
        if number == _KXR_FS_READ_ONLY:
            raise OSError(errno.EROFS, message, path)
        if number == _KXR_UNSUPPORTED:
            raise OSError(errno.EOPNOTSUPP, message, path)
        if "not a directory" in message:
            raise NotADirectoryError(errno.ENOTDIR, message, path)
    raise OSError(errno.EIO, message, path)


class _XRootDReader(PositionalReader):
    """An open XRootD file as a raw stream: each `readinto` is one read request at the current offset."""

    def __init__(self, handle: Any, endpoint: str, path: str, timeout: int) -> None:
        super().__init__()
        self._handle = handle
        self._endpoint = endpoint
        self._path = path
        self._timeout = timeout

    def _read_at(self, offset: int, view: memoryview) -> int:
        status, data = self._handle.read(offset, len(view), self._timeout)
        _raise_for(status, self._endpoint, self._path)
        view[: len(data)] = data
        return len(data)

    def _size(self) -> int:
        status, info = self._handle.stat(timeout=self._timeout)
        _raise_for(status, self._endpoint, self._path)
        return int(info.size)

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._handle.close(timeout=self._timeout)
        super().close()


class _CopyHandler:
    """Progress of an XRootD copy job handed to the caller's callback; an exception there cancels the job."""

    def __init__(self, progress: ProgressCallback | None) -> None:
        self.progress = progress
        self.error: BaseException | None = None

    def begin(self, job: int, total: int, source: Any, target: Any) -> None:
        pass

    def end(self, job: int, results: Any) -> None:
        pass

    def update(self, job: int, processed: int, total: int) -> None:
        if self.progress is not None and self.error is None:
            try:
                self.progress(processed)
            except BaseException as error:  # handed back to copy() once the job has stopped
                self.error = error

    def should_cancel(self, job: int) -> bool:
        return self.error is not None


class _TpcRefused(Exception):
    """The destination does not accept third-party copies: stream instead."""


class XRootDStorage(ServerStorage):
    """Files on an XRootD server; URLs look like `root://host:port//abs/path`.

    `endpoint` (`root://host:port`) is where native paths are looked up; without it, the root's when the
    root is a URL, else that of the first URL given. With a root, every location must be on that endpoint
    and under that path (OutsideRoot otherwise). `timeout` bounds each request in seconds,
    `checksum_timeout` a checksum query (the server may read a large file first). `tpc`: copy server to
    server when both ends are root:// (falls back to streaming through here where the destination refuses).
    """

    scheme = "root"
    storage_side_checksum = True

    def __init__(
        self,
        endpoint: str | None = None,
        root: str | None = None,
        logger: LoggerFunction = logging.log,
        timeout: int = 60,
        checksum_timeout: int = 1800,
        tpc: bool = True,
    ) -> None:
        if xrd_client is None:
            raise ImportError("root:// storage needs XRootD's Python client: pip install xrootd")
        self.logger = logger
        self.timeout = timeout
        self.checksum_timeout = checksum_timeout
        self.tpc = tpc
        self._filesystems: dict[str, Any] = {}
        self._tpc_refused: set[str] = set()
        super().__init__(endpoint, root)

    # -- locations --------------------------------------------------------------------------------------

    endpoint_suffix = "//"
    split_url = staticmethod(split_root_url)

    @staticmethod
    def join_url(endpoint: str, path: str) -> str:
        return f"{endpoint}/{path}"

    def _fs(self, endpoint: str) -> Any:
        filesystem = self._filesystems.get(endpoint)
        if filesystem is None:
            filesystem = self._filesystems[endpoint] = xrd_client.FileSystem(endpoint)
        return filesystem

    # -- listing ----------------------------------------------------------------------------------------

    def _dirlist(self, endpoint: str, directory: str) -> list[tuple[str, Any]]:
        status, listing = self._fs(endpoint).dirlist(directory, DirListFlags.STAT, timeout=self.timeout)
        _raise_for(status, endpoint, directory)
        return sorted((item.name, item.statinfo) for item in listing if item.statinfo is not None)

    def list(self, prefix: str) -> Iterator[Entry]:
        endpoint, top = self._locate(prefix)
        pending = [top]
        while pending:
            directory = pending.pop()
            try:
                children = self._dirlist(endpoint, directory)
            except FileNotFoundError:
                if directory == top:
                    raise
                continue  # removed while the tree was being walked
            except PermissionError as error:
                self.logger(logging.WARNING, "Cannot list %s: %s", directory, error)
                continue
            subdirectories = []
            for name, info in children:
                path = _join(directory, name)
                if info.flags & StatInfoFlags.IS_DIR:
                    subdirectories.append(path)
                elif not info.flags & StatInfoFlags.OTHER:
                    yield Entry(path, info.size, float(info.modtime))
            pending.extend(reversed(subdirectories))

    def folders(self, prefix: str) -> Iterator[Folder]:
        endpoint, top = self._locate(prefix)
        try:
            info = self._stat(endpoint, top)
        except FileNotFoundError:
            return
        # A folder's mtime is read before it is listed, so a name created in between shows as a change later.
        pending = [(top, float(info.modtime))]
        while pending:
            directory, mtime = pending.pop()
            try:
                children = self._dirlist(endpoint, directory)
            except FileNotFoundError:
                continue  # removed while the tree was being walked
            except PermissionError as error:
                self.logger(logging.WARNING, "Cannot list %s: %s", directory, error)
                continue
            yield Folder(directory, mtime)
            pending.extend(sorted(((_join(directory, name), float(info.modtime)) for name, info in children
                                   if info.flags & StatInfoFlags.IS_DIR), reverse=True))

    def files(self, folder: str) -> list[Entry]:
        endpoint, directory = self._locate(folder)
        try:
            children = self._dirlist(endpoint, directory)
        except FileNotFoundError:
            return []
        return [Entry(_join(directory, name), info.size, float(info.modtime)) for name, info in children
                if not info.flags & (StatInfoFlags.IS_DIR | StatInfoFlags.OTHER)]

    # -- one file ---------------------------------------------------------------------------------------

    def _stat(self, endpoint: str, path: str) -> Any:
        status, info = self._fs(endpoint).stat(path, timeout=self.timeout)
        _raise_for(status, endpoint, path)
        return info

    def stat(self, location: str) -> Entry:
        endpoint, path = self._locate(location)
        info = self._stat(endpoint, path)
        if info.flags & StatInfoFlags.IS_DIR:
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        return Entry(path, info.size, float(info.modtime))

    def _exists(self, endpoint: str, path: str) -> bool:
        try:
            self._stat(endpoint, path)
        except FileNotFoundError:
            return False
        return True

    def _query_checksum(self, endpoint: str, path: str, algorithm: str) -> tuple[str, str] | None:
        """(algorithm, value) as the server answers for `algorithm`; None when it computes no checksum."""
        filesystem = self._fs(endpoint)
        answer = None
        for query in (path, f"{path}?cks.type={algorithm}"):
            status, response = filesystem.query(QueryCode.CHECKSUM, query, timeout=self.checksum_timeout)
            if status.code == _ERROR_RESPONSE and status.errno == _KXR_UNSUPPORTED:
                return None
            _raise_for(status, endpoint, path)
            words = response.rstrip(b"\x00").decode(errors="replace").split()
            if len(words) < 2:
                return None
            answer = (words[0].lower(), words[1])
            if answer[0] == algorithm:
                break
        return answer

    def checksum(self, location: str, algorithms: Iterable[str] = (ADLER32,)) -> dict[str, str]:
        return self.checksum_detail(location, algorithms).values

    def checksum_detail(
        self, location: str, algorithms: Iterable[str] = (ADLER32,), stream: bool = True
    ) -> ProvenChecksums:
        """Checksums, and whether the server computed each (no byte read here) or they were streamed.

        The server is asked first; an algorithm it does not answer is computed here over the file's bytes,
        in one pass for all of them, unless `stream` is False (then it is left out).
        """
        wanted = wanted_algorithms(algorithms)
        endpoint, path = self._locate(location)
        values: dict[str, str] = {}
        notes = []
        for algorithm in wanted:
            answer = self._query_checksum(endpoint, path, algorithm)
            if answer is not None and answer[0] == algorithm:
                values[algorithm] = normalise_checksum(algorithm, answer[1])
            else:
                notes.append(f"{endpoint} gave no {algorithm} (answers {answer[0] if answer else 'no checksum'})")
        by_storage = frozenset(values)
        remaining = [algorithm for algorithm in wanted if algorithm not in values]
        if not remaining or not stream:
            return ProvenChecksums(values, by_storage, notes=tuple(notes))
        self.logger(logging.DEBUG, "Streaming %s for %s: %s", remaining, path, "; ".join(notes))
        digest = StreamingChecksum(remaining)
        with self.open_read(location) as reader:
            for block in read_blocks(reader):
                digest.update(block)
        values.update(digest.hexdigests())
        return ProvenChecksums({name: values[name] for name in wanted}, by_storage, frozenset(remaining),
                               digest.size, tuple(notes))

    def open_read(self, location: str) -> BinaryIO:
        endpoint, path = self._locate(location)
        handle = xrd_client.File()
        status, _ = handle.open(f"{endpoint}/{path}", OpenFlags.READ, timeout=self.timeout)
        _raise_for(status, endpoint, path)
        return _XRootDReader(handle, endpoint, path, self.timeout)  # type: ignore[return-value]

    # -- changes ----------------------------------------------------------------------------------------

    def copy(
        self,
        source: str,
        destination: str,
        algorithms: Iterable[str] = (ADLER32,),
        progress: ProgressCallback | None = None,
        source_storage: Storage | None = None,
    ) -> CopyResult:
        """Copy server to server where both ends are root:// and the destination allows, else stream.

        Either way the destination's checksum is then asked of its server and compared: with the source's
        stored checksum after a third-party copy, with the bytes read here after a streamed one.
        """
        origin = source_storage or self
        wanted = wanted_algorithms(algorithms)
        endpoint, path = self._locate(destination)
        if self._exists(endpoint, path):
            raise FileExistsError(errno.EEXIST, "the copy's destination exists", path)
        if isinstance(origin, XRootDStorage) and self.tpc and endpoint not in self._tpc_refused:
            try:
                return self._third_party_copy(origin, source, endpoint, path, wanted, progress)
            except _TpcRefused as refusal:
                self._tpc_refused.add(endpoint)
                self.logger(logging.WARNING, "%s refuses third-party copies (%s): streaming instead", endpoint, refusal)
        return self._streamed_copy(origin, source, endpoint, path, wanted, progress)

    def _third_party_copy(
        self,
        origin: XRootDStorage,
        source: str,
        endpoint: str,
        path: str,
        wanted: tuple[str, ...],
        progress: ProgressCallback | None,
    ) -> CopyResult:
        size = origin.stat(source).size
        stored = origin.checksum_detail(source, wanted)
        handler = _CopyHandler(progress)
        process = xrd_client.CopyProcess()
        process.add_job(origin.url_of(source), f"{endpoint}/{path}", thirdparty="only", force=False, mkdir=True)
        try:
            _raise_for(process.prepare(), endpoint, path)
            status, results = process.run(handler)
            job = results[0]["status"] if results else status
            if handler.error is not None:
                raise handler.error
            if job.code == _ERROR_RESPONSE and job.errno == _KXR_ITEM_EXISTS:
                raise FileExistsError(errno.EEXIST, job.message.strip(), path)
            if job.code == _ERROR_RESPONSE and job.errno == _KXR_UNSUPPORTED and "tpc" in job.message.lower():
                self._remove_quietly(endpoint, path)  # the refusing destination leaves an empty file
                raise _TpcRefused(job.message.strip())
            _raise_for(job, endpoint, path)
            self._verify(endpoint, path, size, stored.values, "DESTINATION (third-party copy)")
        except (FileExistsError, _TpcRefused):
            raise
        except BaseException:
            self._remove_quietly(endpoint, path)
            raise
        return CopyResult(size, stored.values, "third-party copy")

    def _streamed_copy(
        self,
        origin: Storage,
        source: str,
        endpoint: str,
        path: str,
        wanted: tuple[str, ...],
        progress: ProgressCallback | None,
    ) -> CopyResult:
        digest = StreamingChecksum(wanted)
        with origin.open_read(source) as reader:
            handle = self._create(endpoint, path)  # FileExistsError here: someone else's file, left alone
            try:
                try:
                    for block in read_blocks(reader):
                        status, _ = handle.write(bytes(block), digest.size, timeout=self.timeout)
                        _raise_for(status, endpoint, path)
                        digest.update(block)
                        if progress is not None:
                            progress(digest.size)
                    _raise_for(handle.sync(timeout=self.timeout)[0], endpoint, path)
                finally:
                    status, _ = handle.close(timeout=self.timeout)
                _raise_for(status, endpoint, path)
                streamed = digest.hexdigests()
                check_source(origin, source, wanted, streamed)
                self._verify(endpoint, path, digest.size, streamed, "DESTINATION (streamed copy)")
            except BaseException:
                self._remove_quietly(endpoint, path)
                raise
        return CopyResult(digest.size, streamed)

    def _create(self, endpoint: str, path: str) -> Any:
        """A new file open for writing; a name still held by a closing writer is waited for a few seconds.

        A destination that refused a third-party copy keeps the name open for a moment after answering.
        """
        deadline = time.monotonic() + LOCKED_NAME_GRACE
        while True:
            handle = xrd_client.File()
            status, _ = handle.open(f"{endpoint}/{path}", OpenFlags.NEW | OpenFlags.MAKEPATH, timeout=self.timeout)
            locked = status.code == _ERROR_RESPONSE and status.errno == _KXR_FILE_LOCKED
            if not locked or time.monotonic() > deadline:
                _raise_for(status, endpoint, path)
                return handle
            time.sleep(0.2)

    def _verify(self, endpoint: str, path: str, size: int, expected: dict[str, str], what: str) -> None:
        """Raise ChecksumMismatch (or OSError on a size mismatch) unless the server holds these bytes."""
        found = self._stat(endpoint, path).size
        if found != size:
            raise OSError(errno.EIO, f"{what} size mismatch: {found} != {size} bytes", path)
        proven = self.checksum_detail(f"{endpoint}/{path}", tuple(expected))
        if proven.values != expected:
            raise ChecksumMismatch(path, expected, proven.values, what)

    def _remove_quietly(self, endpoint: str, path: str) -> None:
        try:
            self._fs(endpoint).rm(path, timeout=self.timeout)
        except Exception as error:  # the original failure matters more
            self.logger(logging.WARNING, "Could not remove the partial copy %s: %s", path, error)

    def rename(self, source: str, destination: str) -> None:
        endpoint, path = self._locate(source)
        target_endpoint, target = self._locate(destination)
        if target_endpoint != endpoint:
            raise ValueError(f"a rename stays on one server: {source} -> {destination}")
        status, _ = self._fs(endpoint).mv(path, target, timeout=self.timeout)
        _raise_for(status, endpoint, path)

    def remove(self, location: str) -> bool:
        endpoint, path = self._locate(location)
        status, _ = self._fs(endpoint).rm(path, timeout=self.timeout)
        if status.code == _ERROR_RESPONSE and status.errno == _KXR_NOT_FOUND:
            return False
        _raise_for(status, endpoint, path)
        return True


def _join(directory: str, name: str) -> str:
    return f"{directory.rstrip('/')}/{name}"


__all__ = [
    "ChecksumMismatch",
    "ProvenChecksums",
    "StorageUnavailable",
    "XRootDStorage",
]
