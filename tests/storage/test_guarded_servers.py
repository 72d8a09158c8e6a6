"""XRootD servers guarded as a site guards its storage (tools/devstack/grid.py, XrootdServer's `auth`): TLS on
root:// and HTTPS, X.509 proxies with VOMS attributes or WLCG tokens, all made for the run.

Each root:// access runs XRootD's Python client in a process of its own: the client's security plugins read their
environment (X509_USER_PROXY, BEARER_TOKEN_FILE, ...) once a connection authenticates, and keep the connection.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("XRootD.client", reason="root:// needs XRootD's Python client: pip install xrootd",
                    exc_type=ImportError)
requests = pytest.importorskip("requests")

from tools.devstack import grid as grid_module  # noqa: E402
from tools.devstack import xrootd  # noqa: E402

pytestmark = pytest.mark.timeout(120)

#: One root:// read or write with XRootD's Python client; prints what it read, or the error, as JSON.
CLIENT = """
import json, sys
from XRootD import client
from XRootD.client.flags import OpenFlags
op, url = sys.argv[1], sys.argv[2]
with client.File() as handle:
    if op == "write":
        status, _ = handle.open(url, OpenFlags.NEW | OpenFlags.MAKEPATH | OpenFlags.DELETE)
        if status.ok:
            status, _ = handle.write(sys.argv[3].encode())
    else:
        status, _ = handle.open(url)
        if status.ok:
            status, data = handle.read()
print(json.dumps({"ok": status.ok, "message": status.message, "data": data.decode() if status.ok and op == "read"
                  else None}))
"""

#: A token file changed between two reads in one process: the first with a token that may not read, the second
#: after the file got one that may, first on the same URL (same connection), then with another user name in it.
IN_PROCESS = """
import json, sys
from pathlib import Path
from XRootD import client
url, again, token_file, good = sys.argv[1:5]
results = []
for target in (url, url, again):
    with client.File() as handle:
        status, _ = handle.open(target)
        results.append(status.ok)
    Path(token_file).write_text(good)
print(json.dumps(results))
"""


@dataclasses.dataclass
class Guarded:
    grid: grid_module.Grid
    server: xrootd.XrootdServer
    folder: Path

    def root(self, path: str) -> str:
        return f"{self.server.root_url}//{path.lstrip('/')}"

    def https(self, path: str) -> str:
        return f"{self.server.http_url}/{path.lstrip('/')}"

    def token_file(self, token: str, name: str = "token") -> Path:
        return self.grid.write_token(self.folder / name, token)


def xrd(op: str, url: str, env: dict[str, str], data: str = "") -> dict:
    """Run one root:// read or write in a fresh process with the client environment `env` (and no other
    credential of this machine)."""
    clean = {key: value for key, value in os.environ.items()
             if not key.startswith(("X509_", "XrdSec", "BEARER_TOKEN", "XRD_"))}
    result = subprocess.run([sys.executable, "-c", CLIENT, op, url, data], capture_output=True, text=True, timeout=60,
                            env={**clean, "XRD_CONNECTIONRETRY": "1", "XRD_REQUESTTIMEOUT": "20", **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def state() -> Iterator[Path]:
    """The servers' folders, under the system's temporary folder (the servers run as nobody under root)."""
    folder = Path(tempfile.mkdtemp(prefix="rucio-magic-guarded-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def guarded(tmp_path: Path, state: Path) -> Iterator[Callable[..., Guarded]]:
    """``guarded(auth)``: a server of its own guarded with a fresh grid made in tmp_path."""
    made: list[Guarded] = []

    def make(auth: str, rogue: bool = False) -> Guarded:
        reason = xrootd.missing(auth) or grid_module.missing()
        if reason:
            pytest.skip(f"no guarded XRootD server here: {reason}")
        grid = grid_module.Grid.make(tmp_path / "grid", issuer=auth == "token")
        served = grid
        if rogue:  # the server shows a certificate of a CA that clients of the run do not know
            served = dataclasses.replace(grid, host_cert=grid.rogue_cert, host_key=grid.rogue_key,
                                         ca_dir=grid.rogue_ca_dir)
        name = f"{auth}{'-rogue' if rogue else ''}"
        folder = Path(tempfile.mkdtemp(dir=state))  # short: the server's admin paths have a length limit
        folder.chmod(0o755)
        server = xrootd.XrootdServer(name, folder, xrootd.free_port(), xrootd.free_port(), auth=auth, grid=served)
        made.append(Guarded(grid, server, tmp_path))
        server.start(timeout=30, check=not rogue)
        return made[-1]

    yield make
    for item in made:
        item.server.stop()
        item.grid.stop()


def test_x509_a_voms_proxy_reads_and_writes_anyone_else_is_refused(guarded):
    site = guarded("x509")
    grid = site.grid
    env = grid.x509_env()

    assert xrd("write", site.root("/x/a"), env, "over root")["ok"]
    assert xrd("read", site.root("/x/a"), env)["data"] == "over root"
    assert xrd("read", site.root("/x/a").replace("roots://", "root://"), env)["data"] == "over root"  # upgraded
    proxy = (str(grid.proxy), str(grid.proxy))
    assert requests.put(site.https("/x/b"), data=b"over https", cert=proxy, verify=str(grid.ca_cert)).ok
    assert requests.get(site.https("/x/a"), cert=proxy, verify=str(grid.ca_cert)).text == "over root"
    assert xrd("read", site.root("/x/b"), env)["data"] == "over https"

    # Anonymous: no GSI credential at all, or no client certificate.
    anonymous = {"X509_CERT_DIR": str(grid.ca_dir), "X509_USER_PROXY": str(site.folder / "none"),
                 "XrdSecGSISRVNAMES": "localhost"}
    assert not xrd("read", site.root("/x/a"), anonymous)["ok"]
    assert requests.get(site.https("/x/a"), verify=str(grid.ca_cert)).status_code == 403
    # A certificate of the run's CA but no VOMS attributes: authenticated, not of the VO.
    bare = (str(grid.user_cert), str(grid.user_key))
    assert requests.get(site.https("/x/a"), cert=bare, verify=str(grid.ca_cert)).status_code == 403
    # An expired proxy, and a certificate from a CA the server does not know.
    assert not xrd("read", site.root("/x/a"), grid.x509_env(grid.expired_proxy))["ok"]
    expired = (str(grid.expired_proxy), str(grid.expired_proxy))
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(site.https("/x/a"), cert=expired, verify=str(grid.ca_cert))
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(site.https("/x/a"), cert=(str(grid.rogue_user_cert), str(grid.rogue_user_key)),
                     verify=str(grid.ca_cert))


def test_token_scopes_decide_what_a_bearer_may_do(guarded):
    site = guarded("token")
    grid = site.grid
    full = grid.mint_token()
    read_only = grid.mint_token(scope="storage.read:/")
    no_read = grid.mint_token(scope="storage.modify:/ storage.create:/")

    assert xrd("write", site.root("/t/a"), grid.token_env(site.token_file(full)), "over root")["ok"]
    assert xrd("read", site.root("/t/a"), grid.token_env(site.token_file(read_only)))["data"] == "over root"
    bearer = {"Authorization": f"Bearer {full}"}
    assert requests.put(site.https("/t/b"), data=b"over https", headers=bearer, verify=str(grid.ca_cert)).ok
    assert requests.get(site.https("/t/a"), headers=bearer, verify=str(grid.ca_cert)).text == "over root"

    # A token without storage.read may not read; without storage.modify/create may not write.
    assert not xrd("read", site.root("/t/a"), grid.token_env(site.token_file(no_read)))["ok"]
    assert requests.get(site.https("/t/a"), headers={"Authorization": f"Bearer {no_read}"},
                        verify=str(grid.ca_cert)).status_code == 403
    assert not xrd("write", site.root("/t/c"), grid.token_env(site.token_file(read_only)), "no")["ok"]
    assert requests.put(site.https("/t/c"), data=b"no", headers={"Authorization": f"Bearer {read_only}"},
                        verify=str(grid.ca_cert)).status_code == 403
    # Anonymous, expired, for another audience: refused.
    assert not xrd("read", site.root("/t/a"), {"X509_CERT_DIR": str(grid.ca_dir)})["ok"]
    assert requests.get(site.https("/t/a"), verify=str(grid.ca_cert)).status_code == 403
    for token in (grid.mint_token(lifetime=-600), grid.mint_token(audience="https://elsewhere.example")):
        assert not xrd("read", site.root("/t/a"), grid.token_env(site.token_file(token)))["ok"]
        assert requests.get(site.https("/t/a"), headers={"Authorization": f"Bearer {token}"},
                            verify=str(grid.ca_cert)).status_code == 403


def test_a_changed_token_file_counts_from_the_next_connection(guarded):
    site = guarded("token")
    token_file = site.token_file(site.grid.mint_token(scope="storage.modify:/ storage.create:/"))
    site.server.data.joinpath("a").write_text("x")
    again = site.root("/a").replace("://", "://again@")  # another user name: another connection
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("X509_", "XrdSec", "BEARER"))}
    result = subprocess.run([sys.executable, "-c", IN_PROCESS, site.root("/a"), again, str(token_file),
                             site.grid.mint_token()], capture_output=True, text=True, timeout=60,
                            env={**clean, **site.grid.token_env(token_file)})
    assert json.loads(result.stdout) == [False, False, True], result.stderr


@pytest.mark.parametrize("auth", ["x509", "token"])
def test_a_server_certificate_from_an_unknown_ca_is_refused(guarded, auth):
    site = guarded(auth, rogue=True)
    grid = site.grid
    env = grid.x509_env() if auth == "x509" else grid.token_env(site.token_file(grid.mint_token()))
    assert not xrd("read", site.root("/"), env)["ok"]
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(site.https("/"), cert=(str(grid.proxy), str(grid.proxy)), verify=str(grid.ca_cert))
