"""The storage contract against servers guarded as a site guards them: TLS on root:// and HTTPS, and either an
X.509 proxy with VOMS attributes or a WLCG token (tools/devstack/grid.py, XrootdServer's `auth`).

The storages present the credentials `rucio_magic_ext.storage.credentials` finds; what the flow must never see is
a refused credential taken for a missing file or a bad copy. Every test ends on the disk.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from rucio_magic_ext.storage import StorageUnavailable
from rucio_magic_ext.storage.base import AccessRefused
from rucio_magic_ext.storage.credentials import Credentials
from tests.storage.conftest import Place
from tools.devstack import grid as grid_module
from tools.devstack import xrootd

NAME = "20240101_M1_05012345.001_D_CrabNebula-W0.40+035.root"
GUARDED = [(scheme, auth) for auth in ("x509", "token") for scheme in ("root", "davs")]
IDS = [f"{scheme}-{auth}" for scheme, auth in GUARDED]
GSI_SERVER_NAMES = "XrdSecGSISRVNAMES"


def adler32(data: bytes) -> str:
    return f"{zlib.adler32(data):08x}"


@pytest.fixture(scope="module", autouse=True)
def server_names() -> Iterator[None]:
    """GSI matches the server certificate's CN (localhost) with the URL's host (127.0.0.1) unless told the name;
    what the storages put in the environment is taken back after the module."""
    kept = {name: os.environ.get(name) for name in ("X509_USER_PROXY", "BEARER_TOKEN_FILE")}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(GSI_SERVER_NAMES, "localhost")
        yield
    for name, value in kept.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def servers(grid: grid_module.Grid) -> Iterator[dict[tuple[str, str], xrootd.XrootdServer]]:
    """orm and pic, guarded by each mechanism (short folders: the servers' admin paths have a length limit)."""
    reason = xrootd.missing("x509") or xrootd.missing("token")
    if reason:
        pytest.skip(f"no guarded XRootD server here: {reason}")
    state = Path(tempfile.mkdtemp(prefix="rmg-"))
    state.chmod(0o755)
    started = {}
    try:
        for auth in ("x509", "token"):
            for name in ("orm", "pic"):
                server = xrootd.XrootdServer(f"{name}-{auth}", state / f"{name}{auth[0]}", xrootd.free_port(),
                                             xrootd.free_port(), auth=auth, grid=grid)
                started[(name, auth)] = server
                server.start(timeout=30)
        yield started
    finally:
        for server in started.values():
            server.stop()
        shutil.rmtree(state, ignore_errors=True)


def credentials(grid: grid_module.Grid, auth: str, folder: Path, **given: str) -> Credentials:
    """What an RSE's section in rucio.cfg would say: the run's CA folder, and its proxy or a token file."""
    if auth == "x509":
        return Credentials("x509", str(grid.ca_dir), given.get("proxy", str(grid.proxy)), rse="PIC-DISK")
    token = given.get("token") or grid.mint_token()
    path = grid.write_token(folder / f"bt-{zlib.adler32(token.encode()):08x}", token)
    return Credentials("token", str(grid.ca_dir), token_file=str(path), rse="PIC-DISK")


def place(servers, scheme: str, auth: str, name: str, folder: str) -> Place:
    server = servers[(name, auth)]
    if scheme == "root":
        pytest.importorskip("XRootD.client", reason="root:// needs XRootD's Python client", exc_type=ImportError)
    base_url = f"{server.root_url}/" if scheme == "root" else server.http_url
    return Place(scheme, server.data, folder, base_url, server)


@pytest.mark.parametrize(("scheme", "auth"), GUARDED, ids=IDS)
def test_a_guarded_storage_lists_reads_checksums_and_copies_with_its_credential(
    scheme, auth, servers, grid, folder, tmp_path
):
    orm, pic = (place(servers, scheme, auth, name, folder) for name in ("orm", "pic"))
    given = credentials(grid, auth, tmp_path)
    data = os.urandom(70_000)
    orm.write(NAME, data)
    source, target = orm.storage(credentials=given), pic.storage(credentials=given)

    assert [entry.size for entry in source.files(orm.path())] == [len(data)]
    assert source.stat(orm.path(NAME)).size == len(data)
    proven = source.checksum_detail(orm.path(NAME), ("adler32",))
    assert proven.values == {"adler32": adler32(data)}
    with source.open_read(orm.path(NAME)) as stream:
        assert stream.read() == data
    copied = target.copy(orm.path(NAME), pic.path(f"tmp/{NAME}"), ("adler32",), source_storage=source)
    assert copied.checksums == {"adler32": adler32(data)}
    assert copied.method == "streamed"  # the proxy or token is not handed to the destination server
    target.rename(pic.path(f"tmp/{NAME}"), pic.path(NAME))
    assert pic.disk(NAME).read_bytes() == data
    assert target.remove(pic.path(NAME)) and not pic.disk(NAME).exists()
    assert orm.disk(NAME).read_bytes() == data


def operations(storage, where: Place):
    return {
        "stat": lambda: storage.stat(where.path(NAME)),
        "files": lambda: storage.files(where.path()),
        "checksum": lambda: storage.checksum(where.path(NAME)),
        "read": lambda: storage.open_read(where.path(NAME)).read(),
        "remove": lambda: storage.remove(where.path(NAME)),
    }


def refused_everywhere(storage, where: Place, *, token: str = "") -> list[str]:
    """Every operation refused as the credential's fault: never a missing file, never the token's content."""
    said = []
    for name, operation in operations(storage, where).items():
        with pytest.raises(AccessRefused) as caught:
            operation()
        assert isinstance(caught.value, StorageUnavailable) and not isinstance(caught.value, FileNotFoundError), name
        message = str(caught.value)
        assert "PIC-DISK" in message, message
        if token:
            assert token not in message and token.split(".")[1] not in message, name
        said.append(message)
    return said


@pytest.mark.parametrize(("scheme", "auth"), GUARDED, ids=IDS)
def test_no_credential_an_expired_one_or_one_without_the_right_is_refused_and_the_file_stays(
    scheme, auth, servers, grid, folder, tmp_path
):
    orm = place(servers, scheme, auth, "orm", folder)
    data = os.urandom(5_000)
    orm.write(NAME, data)
    if auth == "x509":
        missing = credentials(grid, auth, tmp_path, proxy=str(tmp_path / "no-proxy"))
        said = refused_everywhere(orm.storage(credentials=missing), orm)
        assert all("no X.509 proxy at" in message for message in said), said
        expired = credentials(grid, auth, tmp_path, proxy=str(grid.expired_proxy))
        said = refused_everywhere(orm.storage(credentials=expired), orm)
        assert all("expired at" in message for message in said), said
    else:
        empty = tmp_path / "empty"
        empty.write_text("")
        missing = Credentials("token", str(grid.ca_dir), token_file=str(empty), rse="PIC-DISK")
        said = refused_everywhere(orm.storage(credentials=missing), orm)
        assert all("no bearer token" in message for message in said), said
        token = grid.mint_token(lifetime=-600)
        said = refused_everywhere(orm.storage(credentials=credentials(grid, auth, tmp_path, token=token)), orm,
                                  token=token)
        assert all("expired at" in message for message in said), said
        token = grid.mint_token(scope="storage.modify:/ storage.create:/")  # may write, may not read
        without_read = orm.storage(credentials=credentials(grid, auth, tmp_path, token=token))
        for name in ("stat", "read", "checksum"):
            with pytest.raises(AccessRefused) as caught:
                operations(without_read, orm)[name]()
            assert token.split(".")[1] not in str(caught.value) and "token from" in str(caught.value)
    assert orm.disk(NAME).read_bytes() == data


@pytest.fixture(scope="module")
def strangers(grid: grid_module.Grid) -> Iterator[dict[str, xrootd.XrootdServer]]:
    """A server of each mechanism showing a certificate from a CA the run's clients do not trust."""
    state = Path(tempfile.mkdtemp(prefix="rms-"))
    state.chmod(0o755)
    shown = dataclasses.replace(grid, host_cert=grid.rogue_cert, host_key=grid.rogue_key, ca_dir=grid.rogue_ca_dir)
    started = {}
    try:
        for auth in ("x509", "token"):
            server = xrootd.XrootdServer(f"stranger-{auth}", state / auth[0], xrootd.free_port(), xrootd.free_port(),
                                         auth=auth, grid=shown)
            started[auth] = server
            server.start(timeout=30, check=False)
        yield started
    finally:
        for server in started.values():
            server.stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.mark.parametrize(("scheme", "auth"), GUARDED, ids=IDS)
def test_a_server_whose_certificate_no_trusted_ca_signed_is_refused(scheme, auth, strangers, grid, folder, tmp_path):
    server = strangers[auth]
    stranger = Place(scheme, server.data, folder, f"{server.root_url}/" if scheme == "root" else server.http_url,
                     server)
    stranger.write(NAME, b"kept")
    storage = stranger.storage(credentials=credentials(grid, auth, tmp_path))
    for name, operation in operations(storage, stranger).items():
        with pytest.raises(AccessRefused) as caught:
            operation()
        assert "PIC-DISK" in str(caught.value), name
    assert stranger.disk(NAME).read_bytes() == b"kept"


@pytest.mark.parametrize("scheme", ["root", "davs"])
def test_a_token_renewed_on_disk_is_used_from_the_next_request_without_a_restart(scheme, servers, grid, folder,
                                                                                  tmp_path):
    orm = place(servers, scheme, "token", "orm", folder)
    data = os.urandom(3_000)
    orm.write(NAME, data)
    token_file = tmp_path / "bt_renewed"
    grid.write_token(token_file, grid.mint_token(scope="storage.modify:/ storage.create:/"))
    storage = orm.storage(credentials=Credentials("token", str(grid.ca_dir), token_file=str(token_file),
                                                  rse="PIC-DISK"))
    with pytest.raises(AccessRefused):
        storage.stat(orm.path(NAME))
    grid.write_token(token_file, grid.mint_token())  # the sidecar renews it, now with storage.read
    assert storage.stat(orm.path(NAME)).size == len(data)
    assert storage.checksum(orm.path(NAME), ("adler32",)) == {"adler32": adler32(data)}
    assert orm.disk(NAME).read_bytes() == data
