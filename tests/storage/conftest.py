"""Real XRootD servers for the storage tests: "orm" and "pic", each serving root:// and WebDAV.

They run as the dev stack runs them (tools/devstack/xrootd.py): unprivileged, adler32 computed by the
server, root:// third-party copy allowed. Further servers (one without checksums, one that is stopped on
purpose) start on demand through `start_server`. Everything lives in one folder under the system's temporary
folder, not pytest's (which only its owner may enter, while the servers run as `nobody` under root).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

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


def _write_on_disk(server: xrootd.XrootdServer, path: str, data: bytes) -> Path:
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
