"""Storage reached over XRootD (Rucio scheme `root`), with XRootD's own Python client (PyPI `xrootd`).

XRootD.client rather than fsspec-xrootd (which wraps the same client): every failure keeps its XRootD status, so
a missing file, a refused permission and a server that does not answer become distinct exceptions (fsspec-xrootd
makes them all a bare OSError); it offers third-party copy (`CopyProcess`) and costs no event loop thread.
Measured against an xrootd 5.5.3 server on loopback: listing a folder of 10,000 files with sizes and mtimes
136 ms (fsspec-xrootd 156 ms); 100 stats 14 ms (52 ms); 100 checksum queries 12 ms (32 ms).

Checksums are the server's (`xrootd.chksum adler32`): a query costs no bytes on the network, and once computed
is answered from the file's extended attributes; another algorithm is streamed and computed here. A server keeps
its checksum while the file's mtime is unchanged, so a copy compares the source's stored checksum with the
destination's fresh one: a source whose bytes rotted after they were checksummed is caught at the copy.

The client retries a refused connection for up to ten minutes by default; unless the site sets `XRD_*` variables,
it gives up at once here (ten seconds for a host that does not even refuse) and tries again five seconds after a
failure, so that a stopped server is reported (StorageUnavailable) rather than waited for.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import logging
import os
import time
from typing import Any

from rucio_magic_ext.checksum import StreamingChecksum, normalise_checksum
from rucio_magic_ext.storage.base import (
    CopyResult,
    Entry,
    Folder,
    ProgressCallback,
    Storage,
    StorageUnavailable,
    copied_blocks,
)
from rucio_magic_ext.storage.credentials import OPEN, Credentials, Found
from rucio_magic_ext.storage.server import PositionalReader, ServerStorage, split_server_url

try:
    from XRootD import client as xrd_client
    from XRootD.client.flags import DirListFlags, OpenFlags, QueryCode, StatInfoFlags
except ImportError:  # the storage says so when used; the rest of the package does not need it
    xrd_client = None  # type: ignore[assignment]  # without it XRootDStorage() refuses to start: no use sees None

DEFAULT_PORT = 1094
#: Client settings that make a stopped server an error, not a wait (a site's XRD_* variables win).
CLIENT_SETTINGS = {"ConnectionRetry": 1, "ConnectionWindow": 10, "StreamErrorWindow": 5}

# XrdCl status codes meaning that the server was not reached or stopped answering.
_UNREACHABLE_CODES = frozenset({101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 202, 206, 207})
# ... and those meaning that it refused this client: TLS failed (errTlsError), login or authentication refused.
_REFUSED_CODES = frozenset({110, 203, 204})
_ERROR_RESPONSE = 400
# kXR error numbers of a server's error response (XProtocol.h).
_KXR_NOT_AUTHORIZED, _KXR_NOT_FOUND, _KXR_UNSUPPORTED, _KXR_NO_SERVER = 3010, 3011, 3013, 3014
_KXR_ITEM_EXISTS, _KXR_OVERLOADED, _KXR_FILE_LOCKED = 3018, 3024, 3003
# ... as errno values: OSError(number, ...) is then FileNotFoundError, PermissionError, FileExistsError and the like.
_KXR_ERRNOS = {
    _KXR_NOT_FOUND: errno.ENOENT, _KXR_NOT_AUTHORIZED: errno.EACCES, 3016: errno.EISDIR, _KXR_ITEM_EXISTS: errno.EEXIST,
    3009: errno.ENOSPC, 3021: errno.ENOSPC, 3025: errno.EROFS, _KXR_UNSUPPORTED: errno.EOPNOTSUPP,
}
#: How long a new file's name may stay held by a writer that is going away (a refused third-party copy).
LOCKED_NAME_GRACE = 10.0


def configure_client() -> None:
    """Apply CLIENT_SETTINGS to the process's XRootD client, except those the environment sets."""
    for name, value in CLIENT_SETTINGS.items():
        if f"XRD_{name.upper()}" not in os.environ:
            xrd_client.EnvPutInt(name, value)


if xrd_client is not None:
    configure_client()


#: The CA folder XRootD's client reads once, from X509_CERT_DIR, when it is first used in a process.
_CLIENT_CA_DIR: dict[str, str] = {}


def present(credentials: Credentials) -> Found | None:
    """Put the credential found now where XRootD's client reads it at each authentication: the process's
    environment (``X509_USER_PROXY``, ``BEARER_TOKEN_FILE``). AccessRefused, before any request, when it is
    missing or has expired, or when the client already took another CA folder (it reads ``X509_CERT_DIR`` once,
    at its first use in a process)."""
    found = credentials.presented()
    ca_dir = credentials.ca_dir if credentials.ca_dir and os.path.isdir(credentials.ca_dir) else None
    taken = _CLIENT_CA_DIR.get("taken")
    if taken is None:  # the client's first use is this request's: it takes the folder set now
        if ca_dir:
            os.environ["X509_CERT_DIR"] = ca_dir
        _CLIENT_CA_DIR["taken"] = os.environ.get("X509_CERT_DIR", "")
    elif ca_dir and ca_dir != taken and credentials.mechanism != "none":
        raise credentials.refused(
            f"XRootD's client took its CA folder ({taken or 'none'}) at its first use in this process, not {ca_dir}: "
            "set X509_CERT_DIR to it in the daemon's environment"
        )
    wanted = {}
    if found is not None and credentials.mechanism == "x509":
        wanted["X509_USER_PROXY"] = found.value
    if found is not None and credentials.mechanism == "token" and found.where != "BEARER_TOKEN":
        wanted["BEARER_TOKEN_FILE"] = found.where
    for name, value in wanted.items():
        if os.environ.get(name) != value:
            os.environ[name] = value
    return found


def split_root_url(url: str) -> tuple[str, str]:
    """`root://host[:port]//path` as its endpoint `root://host:port` and its absolute path (`roots://`, TLS
    asked by the client, keeps its scheme; a server that requires TLS switches root:// to it anyway)."""
    parts, host = split_server_url(url, ("root", "xroot", "roots", "xroots"), "root://")
    scheme = "roots" if parts.scheme.endswith("s") else "root"
    return f"{scheme}://{host}:{parts.port or DEFAULT_PORT}", "/" + parts.path.lstrip("/")


def _raise_for(status: Any, endpoint: str, path: str, credentials: Credentials = OPEN) -> None:
    """Raise the exception that an XRootD status means; nothing when it succeeded. A guarded server's "not
    authorised" is the credential's refusal (a token without the scope), not the file's."""
    if status.ok:
        return
    message = status.message.strip()
    refused = status.code in _REFUSED_CODES
    if status.code == _ERROR_RESPONSE and status.errno == _KXR_NOT_AUTHORIZED and credentials.mechanism != "none":
        refused = True
    if refused:
        raise credentials.refused(f"{endpoint} refused: {message}", path)
    if status.code in _UNREACHABLE_CODES:
        raise StorageUnavailable(errno.EHOSTUNREACH, f"{endpoint} does not answer: {message}", path)
    if status.code == _ERROR_RESPONSE:
        if status.errno in (_KXR_NO_SERVER, _KXR_OVERLOADED):
            raise StorageUnavailable(errno.EAGAIN, f"{endpoint} cannot serve now: {message}", path)
        if status.errno in _KXR_ERRNOS:
            raise OSError(_KXR_ERRNOS[status.errno], message, path)
        if "not a directory" in message:
            raise NotADirectoryError(errno.ENOTDIR, message, path)
    raise OSError(errno.EIO, message, path)


class _XRootDReader(PositionalReader):
    """An open XRootD file as a raw stream: each `readinto` is one read request at the current offset."""

    def __init__(self, handle: Any, endpoint: str, path: str, timeout: int, credentials: Credentials) -> None:
        super().__init__(path)
        self._handle, self._endpoint, self._timeout, self._credentials = handle, endpoint, timeout, credentials

    def _read_at(self, offset: int, view: memoryview) -> int:
        status, data = self._handle.read(offset, len(view), self._timeout)
        _raise_for(status, self._endpoint, self._path, self._credentials)
        view[: len(data)] = data
        return len(data)

    def _size(self) -> int:
        status, info = self._handle.stat(timeout=self._timeout)
        _raise_for(status, self._endpoint, self._path, self._credentials)
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

    `tpc`: copy server to server when both ends are root:// (streamed through here where the destination
    refuses). `credentials` are put where XRootD's client reads them (``present``). The client keeps one
    connection per server and login name, authenticated once: each token gets a login name of its own, so a
    renewed token is used from the next request on. Under a credential, copies stream through here: handing a
    proxy or a token on to the destination server is a transfer service's work (FTS at a site).
    """

    scheme = "root"

    def __init__(self, *args: Any, tpc: bool = True, **kwargs: Any) -> None:
        if xrd_client is None:
            raise ImportError("root:// storage needs XRootD's Python client: pip install xrootd")
        super().__init__(*args, **kwargs)
        self.tpc = tpc and self.credentials.mechanism == "none"
        self._login = ""
        self._filesystems: dict[str, Any] = {}
        self._tpc_refused: set[str] = set()

    # -- locations --------------------------------------------------------------------------------------

    endpoint_suffix = "//"
    split_url = staticmethod(split_root_url)

    @staticmethod
    def join_url(endpoint: str, path: str) -> str:
        return f"{endpoint}/{path}"

    def _locate(self, location: str) -> tuple[str, str]:
        """Every request starts here: the credential found now is put where XRootD's client looks."""
        found = present(self.credentials)
        if found is not None and self.credentials.mechanism == "token":
            self._login = "t" + hashlib.sha256(found.value.encode()).hexdigest()[:12]
        return super()._locate(location)

    def _connect(self, endpoint: str) -> str:
        """The endpoint as the client connects to it: with the token's own login name under a token."""
        return endpoint.replace("://", f"://{self._login}@", 1) if self._login else endpoint

    def _fs(self, endpoint: str) -> Any:
        key = self._connect(endpoint)
        filesystem = self._filesystems.get(key)
        if filesystem is None:
            filesystem = self._filesystems[key] = xrd_client.FileSystem(key)
        return filesystem

    # -- what the walks, checksums and copies of Storage ask --------------------------------------------------

    def _stat(self, endpoint: str, path: str) -> Entry | Folder:
        status, info = self._fs(endpoint).stat(path, timeout=self.timeout)
        _raise_for(status, endpoint, path, self.credentials)
        return _found(path, info)

    def _children(self, endpoint: str, folder: str) -> list[Entry | Folder]:
        status, listing = self._fs(endpoint).dirlist(folder, DirListFlags.STAT, timeout=self.timeout)
        _raise_for(status, endpoint, folder, self.credentials)
        return [_found(_join(folder, item.name), item.statinfo) for item in sorted(listing, key=lambda item: item.name)
                if item.statinfo is not None and not item.statinfo.flags & StatInfoFlags.OTHER]

    def _query_checksum(self, endpoint: str, path: str, algorithm: str) -> tuple[str, str] | None:
        """(algorithm, value) as the server answers for `algorithm`; None when it computes no checksum."""
        filesystem = self._fs(endpoint)
        answer = None
        for query in (path, f"{path}?cks.type={algorithm}"):
            status, response = filesystem.query(QueryCode.CHECKSUM, query, timeout=self.checksum_timeout)
            if status.code == _ERROR_RESPONSE and status.errno == _KXR_UNSUPPORTED:
                return None
            _raise_for(status, endpoint, path, self.credentials)
            words = response.rstrip(b"\x00").decode(errors="replace").split()
            if len(words) < 2:
                return None
            answer = (words[0].lower(), words[1])
            if answer[0] == algorithm:
                break
        return answer

    def _stored_checksums(self, location: str, algorithms: tuple[str, ...]) -> tuple[dict[str, str], tuple[str, ...]]:
        endpoint, path = self._locate(location)
        values: dict[str, str] = {}
        notes = []
        for algorithm in algorithms:
            answer = self._query_checksum(endpoint, path, algorithm)
            if answer is not None and answer[0] == algorithm:
                values[algorithm] = normalise_checksum(algorithm, answer[1])
            else:
                notes.append(f"{endpoint} gave no {algorithm} (answers {answer[0] if answer else 'no checksum'})")
        return values, tuple(notes)

    def open_read(self, location: str) -> io.RawIOBase:
        endpoint, path = self._locate(location)
        handle = xrd_client.File()
        status, _ = handle.open(f"{self._connect(endpoint)}/{path}", OpenFlags.READ, timeout=self.timeout)
        _raise_for(status, endpoint, path, self.credentials)
        return _XRootDReader(handle, endpoint, path, self.timeout, self.credentials)

    # -- changes ----------------------------------------------------------------------------------------

    def _copy(self, origin: Storage, source: str, destination: str, wanted: tuple[str, ...],
              progress: ProgressCallback | None) -> CopyResult:
        """Server to server where both ends are root:// and the destination allows, else streamed. After a
        third-party copy the destination server's checksum is compared with the source's stored one."""
        endpoint, _ = self._locate(destination)
        if isinstance(origin, XRootDStorage) and self.tpc and endpoint not in self._tpc_refused:
            try:
                return self._third_party_copy(origin, source, destination, wanted, progress)
            except _TpcRefused as refusal:
                self._tpc_refused.add(endpoint)
                self.logger(logging.WARNING, "%s refuses third-party copies (%s): streaming instead", endpoint, refusal)
        return super()._copy(origin, source, destination, wanted, progress)

    def _third_party_copy(
        self,
        origin: XRootDStorage,
        source: str,
        destination: str,
        wanted: tuple[str, ...],
        progress: ProgressCallback | None,
    ) -> CopyResult:
        endpoint, path = self._locate(destination)
        size = origin.stat(source).size
        stored = origin.checksum_detail(source, wanted)
        handler = _CopyHandler(progress)
        process = xrd_client.CopyProcess()
        process.add_job(origin.url_of(source), f"{endpoint}/{path}", thirdparty="only", force=False, mkdir=True)
        _raise_for(process.prepare(), endpoint, path, self.credentials)
        status, results = process.run(handler)
        job = results[0]["status"] if results else status
        if handler.error is not None:
            raise handler.error
        if job.code == _ERROR_RESPONSE and job.errno == _KXR_ITEM_EXISTS:
            raise FileExistsError(errno.EEXIST, job.message.strip(), path)
        if job.code == _ERROR_RESPONSE and job.errno == _KXR_UNSUPPORTED and "tpc" in job.message.lower():
            self._remove_quietly(destination)  # the refusing destination leaves an empty file
            raise _TpcRefused(job.message.strip())
        _raise_for(job, endpoint, path, self.credentials)
        self._verify(destination, stored.values, "DESTINATION (third-party copy)", size)
        return CopyResult(size, stored.values, "third-party copy")

    def _write(self, reader: io.RawIOBase, destination: str, digest: StreamingChecksum,
               progress: ProgressCallback | None) -> None:
        endpoint, path = self._locate(destination)
        handle = self._create(endpoint, path)
        try:
            for block in copied_blocks(reader, digest, progress):
                status, _ = handle.write(bytes(block), digest.size, timeout=self.timeout)
                _raise_for(status, endpoint, path, self.credentials)
            _raise_for(handle.sync(timeout=self.timeout)[0], endpoint, path, self.credentials)
        finally:
            status, _ = handle.close(timeout=self.timeout)
        _raise_for(status, endpoint, path, self.credentials)

    def _create(self, endpoint: str, path: str) -> Any:
        """A new file open for writing; a name still held by a closing writer (a destination that refused a
        third-party copy, for a moment after answering) is waited for a few seconds."""
        deadline = time.monotonic() + LOCKED_NAME_GRACE
        while True:
            handle = xrd_client.File()
            status, _ = handle.open(f"{self._connect(endpoint)}/{path}", OpenFlags.NEW | OpenFlags.MAKEPATH,
                                    timeout=self.timeout)
            locked = status.code == _ERROR_RESPONSE and status.errno == _KXR_FILE_LOCKED
            if not locked or time.monotonic() > deadline:
                _raise_for(status, endpoint, path, self.credentials)
                return handle
            time.sleep(0.2)

    def _move(self, endpoint: str, path: str, target: str) -> None:
        status, _ = self._fs(endpoint).mv(path, target, timeout=self.timeout)
        _raise_for(status, endpoint, path, self.credentials)

    def remove(self, location: str) -> bool:
        endpoint, path = self._locate(location)
        status, _ = self._fs(endpoint).rm(path, timeout=self.timeout)
        if status.code == _ERROR_RESPONSE and status.errno == _KXR_NOT_FOUND:
            return False
        _raise_for(status, endpoint, path, self.credentials)
        return True


def _found(path: str, info: Any) -> Entry | Folder:
    if info.flags & StatInfoFlags.IS_DIR:
        return Folder(path, float(info.modtime))
    return Entry(path, info.size, float(info.modtime))


def _join(directory: str, name: str) -> str:
    return f"{directory.rstrip('/')}/{name}"
