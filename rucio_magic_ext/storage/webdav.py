"""Storage reached over WebDAV (Rucio schemes `davs`, `https`, `http`), with `requests`.

Sites whose doors speak HTTP (dCache, EOS, XRootD's XrdHttp, StoRM) are reached with the WebDAV verbs:
`PROPFIND Depth: 1` lists a folder with sizes and mtimes in one request, `HEAD` with `Want-Digest: adler32`
asks the server for its checksum (RFC 3230 `Digest` header, so no byte of the file crosses the network),
`GET` with byte ranges reads, `PUT` writes, `MOVE` renames, `DELETE` removes, `MKCOL` makes folders.

A copy streams through this process (HTTP third-party copy wants TLS and delegated credentials). `PUT` replaces
an existing file on most servers whatever the request says, so a copy first checks that the destination is
absent: two writers racing for one new name are not told apart (the transfer tool writes to a name of its own
and renames).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import functools
import io
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import requests

from rucio_magic_ext.checksum import MD5, StreamingChecksum, normalise_checksum, read_blocks
from rucio_magic_ext.storage.base import (
    Entry,
    Folder,
    ProgressCallback,
    StorageUnavailable,
    copied_blocks,
    stream_size,
)
from rucio_magic_ext.storage.server import PositionalReader, ServerStorage, split_server_url

#: URL schemes served, and the transport each one means.
TRANSPORTS = {"davs": "https", "https": "https", "dav": "http", "http": "http"}
DEFAULT_PORTS = {"https": 443, "http": 80}
_DAV = "{DAV:}"
_PROPFIND_BODY = (
    '<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop>'
    "<D:resourcetype/><D:getcontentlength/><D:getlastmodified/></D:prop></D:propfind>"
)
# Characters left as they are in a URL path: '+' is common in MAGIC names and means itself in a path.
_SAFE = "/+:@!$&'()*,;=~-._"
_ENCODED = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
_UNAVAILABLE_STATUSES = frozenset({502, 503, 504})
_OPENSSL_REASON = re.compile(r"\[SSL[^\]]*\] ([^(']+)")


def _reason(error: BaseException) -> str:
    """OpenSSL's own words of a TLS failure ("certificate verify failed: ..."), without the layers around them."""
    said = _OPENSSL_REASON.search(str(error))
    return said.group(1).strip() if said else str(error)[:200]


def split_dav_url(url: str) -> tuple[str, str]:
    """`davs://host[:port]/path` as its transport endpoint `https://host:port` and its absolute path."""
    parts, host = split_server_url(url, TRANSPORTS, "WebDAV")
    transport = TRANSPORTS[parts.scheme]
    port = parts.port or DEFAULT_PORTS[transport]
    return f"{transport}://{host}:{port}", "/" + unquote(parts.path).lstrip("/")


def _href_path(href: str) -> str:
    """The path of a PROPFIND href; servers differ on percent-encoding (XrdHttp sends names as they are)."""
    if "://" in href:
        href = urlsplit(href).path
    if _ENCODED.fullmatch(href):
        href = unquote(href)
    return "/" + href.strip("/") if href.strip("/") else "/"


def _parse_digest(header: str) -> dict[str, str]:
    """RFC 3230 `Digest: adler32=0a1b2c3d, md5=<base64>` as {algorithm: value in Rucio's format}."""
    found = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        name, value = name.strip().lower(), value.strip()
        if not value:
            continue
        if name == MD5 and not re.fullmatch(r"[0-9a-fA-F]{32}", value):
            with contextlib.suppress(binascii.Error, ValueError):
                value = base64.b64decode(value, validate=True).hex()
        found[name] = normalise_checksum(name, value)
    return found


class _RangeReader(PositionalReader):
    """A remote file as a raw stream: each `readinto` is one ranged GET at the current offset."""

    def __init__(self, storage: WebDAVStorage, url: str, path: str, size: int) -> None:
        super().__init__(path)
        self._storage, self._url, self._length = storage, url, size

    def _size(self) -> int:
        return self._length

    def _read_at(self, offset: int, view: memoryview) -> int:
        end = min(offset + len(view), self._length)
        if end <= offset:
            return 0
        wanted = end - offset
        headers = {"Range": f"bytes={offset}-{end - 1}"}
        with self._storage._request("GET", self._url, self._path, headers=headers, stream=True) as response:
            whole_file = offset == 0 and end == self._length
            if response.status_code != 206 and not (response.status_code == 200 and whole_file):
                raise OSError(errno.EIO, f"ranged GET answered {response.status_code}", self._path)
            count = 0
            while count < wanted:
                got = response.raw.readinto(view[count:wanted])
                if not got:
                    break
                count += got
        if count < wanted:
            raise OSError(errno.EIO, f"short read: {count} of {wanted} bytes at {offset}", self._path)
        return count


class _BodyAborted(Exception):
    """Raised inside a PUT body: not an OSError, so that urllib3 drops the connection instead of retrying."""


class _Body:
    """A PUT body read from a source stream, of known length (so no chunked encoding), checksummed on the way."""

    def __init__(self, reader: io.RawIOBase, size: int, digest: StreamingChecksum, progress: ProgressCallback | None):
        self.reader, self.size, self.digest, self.progress = reader, size, digest, progress
        self.error: BaseException | None = None

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[memoryview]:
        try:
            for block in copied_blocks(self.reader, self.digest, self.progress):
                if self.digest.size + len(block) > self.size:
                    raise OSError(errno.EIO, f"the source grew past {self.size} bytes while being copied")
                yield block
            if self.digest.size != self.size:
                raise OSError(errno.EIO, f"the source gave {self.digest.size} bytes of {self.size}")
        except BaseException as error:
            self.error = error
            raise _BodyAborted() from error


class WebDAVStorage(ServerStorage):
    """Files on a WebDAV server; URLs look like `davs://host:port/abs/path` (or https://, http://).

    `credentials` (an X.509 proxy as the client certificate, or a bearer token) are found afresh at each request.
    A refusal of the credential or of the server's certificate is AccessRefused, never the file's.
    """

    scheme = "davs"

    @functools.cached_property
    def session(self) -> requests.Session:
        """One HTTP session, its connections kept (servers are verified per request: ``_presenting``)."""
        return requests.Session()

    # -- locations --------------------------------------------------------------------------------------

    split_url = staticmethod(split_dav_url)

    @staticmethod
    def join_url(endpoint: str, path: str) -> str:
        return _url(endpoint, path)

    # -- requests ---------------------------------------------------------------------------------------

    def _request(self, method: str, url: str, path: str, timeout: float | None = None, **kwargs: Any) -> Any:
        """One request with the credential found now; StorageUnavailable when the server does not answer or says
        it cannot serve now, AccessRefused when it refuses the credential or TLS fails."""
        kwargs.update(self._presenting(kwargs.pop("headers", None)))
        try:
            response = self.session.request(method, url, timeout=timeout or self.timeout, allow_redirects=False,
                                            **kwargs)
        except requests.exceptions.SSLError as error:
            raise self.credentials.refused(f"TLS with {urlsplit(url).netloc} failed: {_reason(error)}", path) from None
        except (requests.ConnectionError, requests.Timeout) as error:
            raise StorageUnavailable(errno.EHOSTUNREACH, f"{urlsplit(url).netloc} does not answer: {error}",
                                     path) from error
        said = f"{method} answered {response.status_code} {response.reason}"
        if response.status_code in _UNAVAILABLE_STATUSES:
            response.close()
            raise StorageUnavailable(errno.EAGAIN, said, path)
        if response.status_code == 401 or (response.status_code == 403 and self.credentials.mechanism != "none"):
            response.close()
            raise self.credentials.refused(said, path)
        if response.status_code == 403:
            response.close()
            raise PermissionError(errno.EACCES, said, path)
        return response

    def _presenting(self, headers: dict[str, str] | None) -> dict[str, Any]:
        """The request's arguments that present the credential: a client certificate or a bearer header."""
        found = self.credentials.presented()
        if found is not None and self.credentials.mechanism == "token":
            headers = {**(headers or {}), "Authorization": f"Bearer {found.value}"}
        presented: dict[str, Any] = {} if headers is None else {"headers": headers}
        presented["verify"] = self.credentials.tls_verify()  # per request: REQUESTS_CA_BUNDLE overrides a session's
        if found is not None and self.credentials.mechanism == "x509":
            presented["cert"] = found.value
        return presented

    def _propfind(self, endpoint: str, path: str, depth: int) -> list[Entry | Folder]:
        """The node itself first, then (depth 1) its children; FileNotFoundError when absent."""
        url = _url(endpoint, path)
        headers = {"Depth": str(depth), "Content-Type": "application/xml; charset=utf-8"}
        response = self._request("PROPFIND", url, path, headers=headers, data=_PROPFIND_BODY)
        if response.status_code == 404:
            raise FileNotFoundError(errno.ENOENT, "no such file or directory", path)
        if response.status_code != 207:
            raise OSError(errno.EIO, f"PROPFIND answered {response.status_code} {response.reason}", path)
        try:
            tree = ElementTree.fromstring(response.content)
        except ElementTree.ParseError as error:
            raise OSError(errno.EIO, f"PROPFIND answer is not XML: {error}", path) from None
        nodes = [_node(item) for item in tree.iter(f"{_DAV}response")]
        itself = [node for node in nodes if node is not None and node.path == path]
        children = sorted((node for node in nodes if node is not None and node.path != path),
                          key=lambda node: node.path)
        if not itself:
            raise OSError(errno.EIO, "PROPFIND answer does not describe the path asked for", path)
        return itself[:1] + children

    # -- what the walks, checksums and copies of Storage ask --------------------------------------------------

    def _stat(self, endpoint: str, path: str) -> Entry | Folder:
        return self._propfind(endpoint, path, 0)[0]

    def _children(self, endpoint: str, folder: str) -> list[Entry | Folder]:
        itself, *children = self._propfind(endpoint, folder, 1)
        if not isinstance(itself, Folder):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", folder)
        return children

    def _digests(self, endpoint: str, path: str, algorithms: tuple[str, ...]) -> tuple[dict[str, str], str]:
        """The digests the server answers to HEAD with Want-Digest, and what it said (for the logs)."""
        headers = {"Want-Digest": ",".join(algorithms)}
        with self._request("HEAD", _url(endpoint, path), path, timeout=self.checksum_timeout,
                           headers=headers) as response:
            if response.status_code == 404:
                raise FileNotFoundError(errno.ENOENT, "no such file or directory", path)
            if response.status_code >= 400:
                # XrdHttp answers 405 to Want-Digest when it computes no checksum.
                return {}, f"HEAD with Want-Digest answered {response.status_code}"
            header = response.headers.get("Digest")
        if not header:
            return {}, "no Digest header"
        return _parse_digest(header), f"Digest: {header}"

    def _stored_checksums(self, location: str, algorithms: tuple[str, ...]) -> tuple[dict[str, str], tuple[str, ...]]:
        endpoint, path = self._locate(location)
        answered, said = self._digests(endpoint, path, algorithms)
        values = {name: answered[name] for name in algorithms if name in answered}
        # Servers answer the algorithms they know: ask again one by one for those left out.
        for name in algorithms:
            if name not in values and len(algorithms) > 1:
                single, _ = self._digests(endpoint, path, (name,))
                if name in single:
                    values[name] = single[name]
        return values, tuple(f"{endpoint} gave no {name} ({said})" for name in algorithms if name not in values)

    def open_read(self, location: str) -> io.RawIOBase:
        entry = self.stat(location)
        return _RangeReader(self, self.url_of(location), entry.path, entry.size)

    # -- changes ----------------------------------------------------------------------------------------

    def _makedirs(self, endpoint: str, path: str) -> None:
        """MKCOL `path` and any missing folder above it (servers other than XrdHttp do not create them)."""
        missing = []
        while path != "/":
            try:
                node = self._stat(endpoint, path)
            except FileNotFoundError:
                missing.append(path)
                path = path.rsplit("/", 1)[0] or "/"
                continue
            if not isinstance(node, Folder):
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
            break
        for folder in reversed(missing):
            with self._request("MKCOL", _url(endpoint, folder), folder) as response:
                if response.status_code not in (200, 201, 405):  # 405: made meanwhile
                    raise OSError(errno.EIO, f"MKCOL answered {response.status_code} {response.reason}", folder)

    def _write(self, reader: io.RawIOBase, destination: str, digest: StreamingChecksum,
               progress: ProgressCallback | None) -> None:
        """A PUT of the reader's bytes: `PUT` replaces a file on most servers, so `copy` checked that none is there."""
        endpoint, path = self._locate(destination)
        size = stream_size(reader)
        self._makedirs(endpoint, path.rsplit("/", 1)[0] or "/")
        body = _Body(reader, size, digest, progress)
        try:
            response = self._request("PUT", _url(endpoint, path), path, data=body if size else b"")
        except _BodyAborted:
            assert body.error is not None  # _Body keeps the error before it aborts
            raise body.error from None
        with response:
            if response.status_code not in (200, 201, 204):
                raise OSError(errno.EIO, f"PUT answered {response.status_code} {response.reason}", path)
        if not size:
            for block in read_blocks(reader):  # an empty file: the source must still be empty
                digest.update(block)

    def _move(self, endpoint: str, path: str, target: str) -> None:
        headers = {"Destination": _url(endpoint, target), "Overwrite": "T"}
        for attempt in range(2):
            with self._request("MOVE", _url(endpoint, path), path, headers=headers) as response:
                status = response.status_code
                if status in (200, 201, 204):
                    return
                if status == 404:
                    raise FileNotFoundError(errno.ENOENT, "no such file or directory", path)
                if status != 409 or attempt:
                    raise OSError(errno.EIO, f"MOVE answered {status} {response.reason}", path)
            self._makedirs(endpoint, target.rsplit("/", 1)[0] or "/")  # 409: the target's folder is missing

    def remove(self, location: str) -> bool:
        endpoint, path = self._locate(location)
        with self._request("DELETE", _url(endpoint, path), path) as response:
            if response.status_code == 404:
                return False
            if response.status_code not in (200, 202, 204):
                raise OSError(errno.EIO, f"DELETE answered {response.status_code} {response.reason}", path)
        return True


def _url(endpoint: str, path: str) -> str:
    return endpoint + quote(path, safe=_SAFE)


def _node(item: ElementTree.Element) -> Entry | Folder | None:
    """One PROPFIND response as a node; None when its properties were not found."""
    href = item.findtext(f"{_DAV}href")
    if href is None:
        return None
    props = None
    for propstat in item.iter(f"{_DAV}propstat"):
        status = propstat.findtext(f"{_DAV}status") or ""
        if " 200 " in f"{status} ":
            props = propstat.find(f"{_DAV}prop")
            break
    if props is None:
        return None
    resourcetype = props.find(f"{_DAV}resourcetype")
    is_dir = (resourcetype is not None and resourcetype.find(f"{_DAV}collection") is not None) or (
        (props.findtext(f"{_DAV}iscollection") or "").strip() == "1"
    )
    length = (props.findtext(f"{_DAV}getcontentlength") or "0").strip()
    modified = (props.findtext(f"{_DAV}getlastmodified") or "").strip()
    try:
        mtime = parsedate_to_datetime(modified).timestamp() if modified else 0.0
    except (TypeError, ValueError):
        mtime = 0.0
    if is_dir:
        return Folder(_href_path(href), mtime)
    return Entry(_href_path(href), int(length) if length.isdigit() else 0, mtime)
