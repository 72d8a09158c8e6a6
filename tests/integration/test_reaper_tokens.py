"""Rucio's reaper deletes on a token-guarded XRootD server's HTTPS door with a WLCG token of the run's issuer, as at a
site with an IAM: nothing of the extension takes part.

What Rucio needs (rucio/daemons/reaper/reaper.py, rucio/core/oidc.py), all given here as a site gives it:

- the RSE attribute ``oidc_support = true`` and a delete protocol of scheme ``davs`` (first WAN delete priority);
- ``[oidc] idpsecrets`` (a JSON file: ``{<admin_issuer>: {"issuer", "client_id", "client_secret"}}``) and
  ``[oidc] admin_issuer`` in the daemon's rucio.cfg (``Grid.oidc_options``); Rucio finds the issuer's
  ``token_endpoint`` in its openid-configuration and asks a ``client_credentials`` grant with HTTP basic auth;
- that grant asks the audience ``determine_audience_for_rse`` (the davs protocols' host names: ``127.0.0.1``,
  which the server lists beside WLCG's ``any``) and the scope ``determine_scope_for_rse``
  (``storage.modify:<prefix> storage.read:<prefix>``);
- REQUESTS_CA_BUNDLE naming a bundle with the run's CA (``Grid.ca_bundle``): Rucio's OIDC calls use ``requests``
  with its default verification, and an issuer it does not trust raises out of ``request_token``. Rucio's webdav
  protocol itself verifies nothing (``verify=False`` on every request).

The davs doors are Rucio's gfal protocol (``rucio.rse.protocols.gfal.Default``), as sites name them: Debian's
gfal2 with its HTTP plugin (``.ci/run`` installs them; ``tools/devstack/venv.py`` links Debian's gfal2 module into
the venv). Rucio's webdav protocol cannot serve a davs door: it joins the scheme into its URLs, and ``requests``
has no adapter for davs://.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import tempfile
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tools.devstack import xrootd
from tools.devstack.config import write_configs
from tools.devstack.grid import Grid
from tools.devstack.stack import Stack
from tools.devstack.waiting import in_rounds

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
DELETED, KEPT = "TOKEN-DEL", "TOKEN-KEEP"
SCOPE = "tokens"


@pytest.fixture(scope="module")
def door(rucio_stack: Stack, grid: Grid) -> Iterator[xrootd.XrootdServer]:
    """A token-guarded XRootD server whose HTTPS door serves TOKEN-DEL and TOKEN-KEEP, registered in the stack."""
    reason = xrootd.missing("token")
    if reason:
        pytest.skip(f"no token-guarded XRootD server here: {reason}")
    pytest.importorskip("gfal2", reason="the davs doors are Rucio's gfal protocol: apt-get install python3-gfal2 "
                        "gfal2-plugin-http (tools/devstack/venv.py links it into the venv)", exc_type=ImportError)
    state = Path(tempfile.mkdtemp(prefix="rucio-magic-reaper-tokens-"))
    state.chmod(0o755)  # the server runs as nobody under root
    server = xrootd.XrootdServer("token-del", state / "server", xrootd.free_port(), xrootd.free_port(), auth="token",
                                 grid=grid)
    try:
        server.start()
        for rse in (DELETED, KEPT):
            (server.data / rse.lower()).mkdir()
            server.adopt(server.data / rse.lower())
        rucio_stack.bootstrap_site(HERE / "site-tokens.cfg",
                                   defines={"host": server.host, "web_port": str(server.http_port)})
        yield server
    finally:
        server.stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def reaper_env(grid: Grid, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemons' environment at a site: `requests` trusts the run's CA (the issuer's certificate) beside the
    system's; no X.509 proxy, so that the token alone opens the door."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(grid.ca_bundle()))
    monkeypatch.delenv("X509_USER_PROXY", raising=False)


def daemons_with(rucio_stack: Stack, folder: Path, oidc: dict[str, str]) -> Stack:
    """A stack whose daemons have a rucio.cfg of their own (the tests' database) with `oidc` as [oidc]."""
    extra = copy.deepcopy(rucio_stack.settings.extra)
    extra["oidc"] = oidc
    daemons = Stack(folder)
    daemons.settings = dataclasses.replace(rucio_stack.settings, state=folder, extra=extra)
    write_configs(daemons.settings)
    return daemons


def obsolete_file(server: xrootd.XrootdServer, rucio_client: Any, rse: str) -> tuple[str, Path, bytes]:
    """A file written on the server's disk under the RSE's folder, its replica registered at its davs PFN with an
    OBSOLETE tombstone (as when the last rule with purge_replicas goes): what the reaper deletes."""
    name = f"token-{uuid.uuid4().hex[:12]}.dat"
    data = os.urandom(4096)
    path = server.data / rse.lower() / name
    path.write_bytes(data)
    server.adopt(path)
    pfn = f"davs://{server.host}:{server.http_port}/{rse.lower()}/{name}"
    rucio_client.add_replicas(rse, [{"scope": SCOPE, "name": name, "bytes": len(data),
                                     "adler32": f"{zlib.adler32(data):08x}", "pfn": pfn}])
    rucio_client.set_tombstone([{"scope": SCOPE, "name": name, "rse": rse}])
    return name, path, data


def replica_at(rucio_client: Any, name: str, rse: str) -> str | None:
    """The replica's state at `rse`, None when Rucio has none there."""
    found = rucio_client.list_replicas([{"scope": SCOPE, "name": name}], rse_expression=rse, all_states=True)
    return next((replica["states"].get(rse) for replica in found), None)


def reap(daemons: Stack, rse: str) -> str:
    """One pass of Rucio's reaper at `rse`; what it logged in that pass."""
    log = daemons.settings.log_dir / "round.once.log"
    before = log.stat().st_size if log.exists() else 0
    daemons.run_round(("reaper", "--rses", rse))
    return log.read_text(errors="replace")[before:]


def test_the_reaper_deletes_with_a_token_it_asks_the_issuer_for(
    door: xrootd.XrootdServer, rucio_stack: Stack, rucio_client: Any, grid: Grid, reaper_env: None, tmp_path: Path
) -> None:
    name, path, _ = obsolete_file(door, rucio_client, DELETED)
    daemons = daemons_with(rucio_stack, tmp_path / "daemons", grid.oidc_options(tmp_path / "idpsecrets.json"))
    granted = len(grid.grants)
    try:
        said = reap(daemons, DELETED)
        assert f"Using a token to delete on RSE {DELETED}" in said, said[-3000:]
        # What Rucio asked: the davs door's host name, and modify and read on the RSE's prefix.
        assert grid.grants[granted:] == [(door.host, "storage.modify:/token-del/ storage.read:/token-del/")]
        assert not path.exists(), f"still on the server's disk; the server says:\n{door.log_tail()}"
        # XRootD's 200 to the DELETE is not Rucio's 204: the replica goes on the next pass (the file is gone: 404).
        passes = in_rounds(lambda: reap(daemons, DELETED), lambda: replica_at(rucio_client, name, DELETED) is None,
                           rounds=3, pause=0.2)
        assert passes is not None, f"the replica stays: {replica_at(rucio_client, name, DELETED)}"
    finally:
        daemons.down()


def test_without_the_right_client_secret_the_reaper_gets_no_token_and_the_file_stays(
    door: xrootd.XrootdServer, rucio_stack: Stack, rucio_client: Any, grid: Grid, reaper_env: None, tmp_path: Path
) -> None:
    name, path, data = obsolete_file(door, rucio_client, KEPT)
    oidc = grid.oidc_options(tmp_path / "idpsecrets.json", client_secret="not-" + grid.client_secret)
    daemons = daemons_with(rucio_stack, tmp_path / "daemons", oidc)
    granted = len(grid.grants)
    try:
        said = reap(daemons, KEPT)
    finally:
        daemons.down()
    assert f"Failed to procure a token to delete on RSE {KEPT}" in said, said[-3000:]
    assert grid.grants[granted:] == []  # the issuer answered 401
    assert path.read_bytes() == data
    assert replica_at(rucio_client, name, KEPT) is not None
