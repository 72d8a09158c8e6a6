"""The storages of the contract suite: "orm" and "pic" as local folders (posix) or as real XRootD servers, each
serving root:// and WebDAV, as `Place`s.

The servers run as the dev stack runs them (tools/devstack/xrootd.py): unprivileged, adler32 computed by the
server, root:// third-party copy allowed. Further servers (one without checksums, one that is stopped on
purpose) start on demand through `start_server`. Everything lives in one folder under the system's temporary
folder, not pytest's (which only its owner may enter, while the servers run as `nobody` under root). A posix
place is a folder of the test's own under pytest's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rucio_magic_ext.storage import Storage
from rucio_magic_ext.storage.posix import PosixStorage
from rucio_magic_ext.storage.webdav import WebDAVStorage
from tools.devstack import xrootd

StartServer = Callable[..., xrootd.XrootdServer]


@pytest.fixture(scope="session")
def start_server() -> Iterator[StartServer]:
    """Start an XRootD server with its own ports and folder (kwargs as XrootdServer's); all stop at the end."""
    reason = xrootd.missing()
    if reason:
        pytest.skip(f"no XRootD server here: {reason}")
    state = Path(tempfile.mkdtemp(prefix="rucio-magic-xrootd-"))
    state.chmod(0o755)
    started: list[xrootd.XrootdServer] = []

    def start(name: str, **settings: object) -> xrootd.XrootdServer:
        server = xrootd.XrootdServer(name, state / name, xrootd.free_port(), xrootd.free_port(), **settings)
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def orm(start_server: StartServer) -> xrootd.XrootdServer:
    """The observatory's storage."""
    return start_server("orm")


@pytest.fixture(scope="session")
def pic(start_server: StartServer) -> xrootd.XrootdServer:
    """The data centre's storage."""
    return start_server("pic")


@pytest.fixture(scope="session")
def plain(start_server: StartServer) -> xrootd.XrootdServer:
    """A storage that computes no checksum and refuses third-party copies."""
    return start_server("plain", checksum=None, tpc=False)


@pytest.fixture
def folder() -> str:
    """A folder name of the test's own, so that tests on the shared servers do not see each other's files."""
    return f"/t-{uuid.uuid4().hex[:12]}"


def _write_on_disk(server: xrootd.XrootdServer | Place, path: str, data: bytes) -> Path:
    """Write a file straight into the server's disk, as the DAQ writes at the observatory, owned by the server."""
    target = server.data / path.lstrip("/")
    owner = server.data.stat()
    created = [folder for folder in reversed(target.parents) if not folder.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    for item in (*created, target):
        os.chown(item, owner.st_uid, owner.st_gid)
    return target


def _rot_on_disk(path: Path, offset: int = 1000) -> None:
    """Flip one byte of a file and keep its mtime: a disk's silent corruption after the file was checksummed."""
    info = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


@pytest.fixture
def write_on_disk() -> Callable[[xrootd.XrootdServer, str, bytes], Path]:
    return _write_on_disk


@pytest.fixture
def rot_on_disk() -> Callable[..., None]:
    return _rot_on_disk


@dataclass(frozen=True)
class Place:
    """One storage under test (`scheme` 'file', 'root' or 'davs'), the test's folder on it, and its disk here.

    `data` is the folder on this machine's disk that the storage's native paths start from, after `prefix`
    (a server's '/': its data folder, no prefix; a posix place's folder, its own path as prefix). Paths given
    to `path`, `url`, `disk`, `write` and `mtime` are relative to the test's folder.
    """

    scheme: str
    data: Path
    folder: str
    base_url: str
    server: xrootd.XrootdServer | None = None

    @property
    def prefix(self) -> str:
        return "" if self.server else str(self.data)

    def storage(self, **options: Any) -> Storage:
        """A storage of this place, not confined; a server's endpoint given."""
        if self.server is None:
            return PosixStorage(**options)
        if self.scheme == "davs":
            return WebDAVStorage(self.server.http_url, **options)
        from rucio_magic_ext.storage.xroot import XRootDStorage

        return XRootDStorage(self.server.root_url, **options)

    def path(self, relative: str = "") -> str:
        return self.prefix + f"{self.folder}/{relative}".rstrip("/")

    def url(self, relative: str = "") -> str:
        return self.base_url + self.path(relative)

    def disk(self, relative: str = "") -> Path:
        return self.data / f"{self.folder}/{relative}".strip("/")

    def write(self, relative: str, data: bytes) -> Path:
        return _write_on_disk(self, f"{self.folder}/{relative}", data)

    def mtime(self, relative: str = "") -> float:
        """The mtime the storage gives of a path: a server's in whole seconds, the file system's as it is."""
        mtime = self.disk(relative).stat().st_mtime
        return mtime if self.server is None else int(mtime)

    @property
    def computes_checksums(self) -> bool:
        return self.server is not None


@pytest.fixture(params=["file", "root", "davs"])
def scheme(request: pytest.FixtureRequest) -> str:
    """The storage under test; a test of what servers alone do parametrises it itself."""
    return request.param


@pytest.fixture
def place(request: pytest.FixtureRequest, scheme: str, folder: str, tmp_path: Path) -> Callable[..., Place]:
    """``place(name)``: the place `name` of the scheme under test (a server: the session's fixture of that name,
    or the one given), with the test's folder on it."""

    def make(name: str, server: xrootd.XrootdServer | None = None) -> Place:
        if scheme == "file":
            mine = tmp_path / name
            mine.mkdir(exist_ok=True)
            return Place(scheme, mine, folder, "file://localhost")
        if scheme == "root":
            pytest.importorskip("XRootD.client", reason="root:// needs XRootD's Python client", exc_type=ImportError)
        server = server or request.getfixturevalue(name)
        base_url = f"{server.root_url}/" if scheme == "root" else server.http_url
        return Place(scheme, server.data, folder, base_url, server)

    return make


@pytest.fixture
def orm_place(place: Callable[..., Place]) -> Place:
    return place("orm")


@pytest.fixture
def pic_place(place: Callable[..., Place]) -> Place:
    return place("pic")
