"""A night over storage guarded as grid sites guard it: both XRootD servers require TLS and either an X.509 proxy
with VOMS attributes of VO magic, or a WLCG token (tools/devstack/grid.py, XrootdServer's `auth`).

The daemons find their credentials as a site gives them: ``[magic-credentials]`` in their rucio.cfg for the
scanner, the carrier and the transfer tool; for Rucio's own reaper, X509_USER_PROXY and X509_CERT_DIR in its
environment (``xrdfs rm`` with GSI), or with tokens the RSE's ``oidc_support`` and ``[oidc]`` (a token asked of the
run's issuer, deleting through the HTTPS door). Every test ends on the servers' disks.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from test_flow_xrootd import (
    XrootdSite,
    adler32_of,
    all_available_at_pic,
    all_in,
    events_of,
    night_files,
    pic_copy,
    rows_of,
    site_as,
)

from rucio_magic_ext.ledger import FileState
from tools.devstack import xrootd
from tools.devstack.config import write_configs
from tools.devstack.grid import FULL_SCOPE, Grid
from tools.devstack.stack import Stack

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
MECHANISMS = ("x509", "token")


def site_files(folder: Path, orm: str, pic: str, mechanism: str) -> tuple[Path, Path]:
    """test_flow_xrootd's site under names of its own, with HTTPS doors (davs, Rucio's gfal protocol). With tokens
    ORM's door deletes (Rucio's reaper asks a token only for davs) and ORM has ``oidc_support``."""
    davs = (("scheme = http", "scheme = davs"),
            ("rucio.rse.protocols.webdav.Default", "rucio.rse.protocols.gfal.Default"))
    if mechanism == "x509":
        return site_as(folder, orm, pic, *davs)
    door = (f"[rse {orm} protocol http]\nscheme = davs\nhostname = ${{vars:host}}\n"
            f"port = ${{vars:orm_web_port}}\nprefix = /{orm.lower()}/\nimpl = rucio.rse.protocols.gfal.Default\n")
    deleting = (f"{door}lan = read=2\nwan = read=2\n", f"{door}lan = read=2, delete=1\nwan = read=2, delete=1\n")
    oidc = ("greedyDeletion = true\n", "greedyDeletion = true\noidc_support = true\n")
    site, policy = site_as(folder, orm, pic, *davs, deleting, oidc)
    text = site.read_text().replace("lan = read=1, write=1, delete=1\nwan = read=1, write=1, delete=1,",
                                    "lan = read=1, write=1, delete=2\nwan = read=1, write=1, delete=2,", 1)
    assert "gfal" in text and "oidc_support" in text and "delete=2" in text and "delete=1\n" in text
    site.write_text(text)
    return site, policy


def site_credentials(grid: Grid, mechanism: str, folder: Path) -> tuple[dict[str, str], dict[str, str], dict]:
    """[magic-credentials], the daemons' environment and further rucio.cfg sections, as a site sets them."""
    if mechanism == "x509":
        return ({"mechanism": "x509", "ca_dir": str(grid.ca_dir), "x509_proxy": str(grid.proxy)},
                {"X509_USER_PROXY": str(grid.proxy), "X509_CERT_DIR": str(grid.ca_dir),
                 "XrdSecGSISRVNAMES": "localhost"},  # GSI: the host certificate's CN, not 127.0.0.1
                {})
    token = grid.write_token(folder / "flow.token", grid.mint_token(lifetime=4 * 3600))
    return ({"mechanism": "token", "ca_dir": str(grid.ca_dir), "token_file": str(token)},
            {"X509_CERT_DIR": str(grid.ca_dir), "REQUESTS_CA_BUNDLE": str(grid.ca_bundle())},
            {"oidc": grid.oidc_options(folder / "idpsecrets.json")})


@pytest.fixture(scope="module", params=MECHANISMS)
def site(request: pytest.FixtureRequest, rucio_stack: Stack, grid: Grid) -> Iterator[XrootdSite]:
    """Two servers guarded by the mechanism, for ORM-<MECHANISM> and PIC-<MECHANISM>, registered in the test stack;
    a stack of daemons that watches the ORM one with the site's credentials."""
    mechanism = request.param
    reason = xrootd.missing(mechanism)
    if reason:
        pytest.skip(f"no guarded XRootD server here: {reason}")
    pytest.importorskip("XRootD.client", reason="root:// storage needs XRootD's Python client", exc_type=ImportError)
    if mechanism == "token":  # Rucio's reaper deletes through the davs door, Rucio's gfal protocol
        pytest.importorskip("gfal2", reason="apt-get install python3-gfal2 gfal2-plugin-http", exc_type=ImportError)
    orm_rse, pic_rse = f"ORM-{mechanism.upper()}", f"PIC-{mechanism.upper()}"
    state = Path(tempfile.mkdtemp(prefix="rmg-"))  # short: the servers' admin paths have a length limit
    state.chmod(0o755)
    orm = xrootd.XrootdServer(orm_rse.lower(), state / "o", xrootd.free_port(), xrootd.free_port(), auth=mechanism,
                              grid=grid)
    pic = xrootd.XrootdServer(pic_rse.lower(), state / "p", xrootd.free_port(), xrootd.free_port(), auth=mechanism,
                              grid=grid)
    try:
        for server, folder in ((orm, orm_rse.lower()), (pic, pic_rse.lower())):
            server.start()
            (server.data / folder).mkdir(exist_ok=True)
            server.adopt(server.data / folder)
        site, policy = site_files(state, orm_rse, pic_rse, mechanism)
        rucio_stack.bootstrap_site(site, defines={
            "host": "127.0.0.1",
            "orm_root_port": str(orm.port), "orm_web_port": str(orm.http_port),
            "pic_root_port": str(pic.port), "pic_web_port": str(pic.http_port),
        })
        credentials, environment, sections = site_credentials(grid, mechanism, state)
        extra = copy.deepcopy(rucio_stack.settings.extra)
        extra["magic-scanner"].update(rse=orm_rse, replication_policy=str(policy))
        extra["conveyor"] = {"scheme": "root", "magic_max_active": "4"}
        extra["magic-credentials"] = credentials
        extra.update(sections)
        daemons = Stack(state / "daemons")
        daemons.settings = dataclasses.replace(rucio_stack.settings, state=state / "daemons", extra=extra,
                                               environment=environment)
        write_configs(daemons.settings)
        yield XrootdSite(orm, pic, daemons, rses=(orm_rse, pic_rse))
    finally:
        orm.stop()
        pic.stop()
        shutil.rmtree(state, ignore_errors=True)


def assert_safe_at_pic(site: XrootdSite, plan: list) -> None:
    rows = rows_of(plan, site.rses[0])
    for planned in plan:
        row = rows[planned.path]
        copy_path = pic_copy(site, planned)
        assert (copy_path.stat().st_size, adler32_of(copy_path)) == (row.size, row.adler32), planned.path
        assert not (site.orm_folder / planned.path).exists(), f"{planned.path} still on ORM's disk"


def credential_file(site: XrootdSite) -> Path:
    """The file the daemons' credential is read from: the proxy, or the token file."""
    given = site.daemons.settings.extra["magic-credentials"]
    return Path(given["x509_proxy"] if given["mechanism"] == "x509" else given["token_file"])


@contextlib.contextmanager
def lapsed(site: XrootdSite, grid: Grid, kind: str) -> Iterator[str]:
    """The credential in place replaced for a while by a bad one, as when a renewal job is late (``expired``), or
    the site refuses what it is given (``refused``: a token without storage.read, a certificate of a CA the site
    does not know), or (``unknown-ca``) the daemons' CA folder swapped for one that knows only another CA; the
    good ones put back afterwards."""
    path = credential_file(site)
    good = path.read_bytes()
    settings = site.daemons.settings
    kept = copy.deepcopy(settings.extra), dict(settings.environment)
    if kind == "unknown-ca":
        strangers = settings.state / "unknown-cas"
        strangers.mkdir(exist_ok=True)
        for item in grid.rogue_ca_dir.iterdir():  # the unknown CA's files and links only
            if "unknown" in item.name or (item.is_symlink() and "unknown" in os.readlink(item)):
                shutil.copy(item, strangers / item.name, follow_symlinks=True)
        settings.extra["magic-credentials"]["ca_dir"] = str(strangers)
        settings.environment["X509_CERT_DIR"] = str(strangers)
        write_configs(settings)
    elif site.orm.auth == "x509" and kind == "expired":
        shutil.copyfile(grid.expired_proxy, path)
    elif site.orm.auth == "x509":  # certificate and key in one file, as a proxy file holds them
        path.write_bytes(grid.rogue_user_cert.read_bytes() + grid.rogue_user_key.read_bytes())
    else:
        scope = "storage.modify:/ storage.create:/" if kind == "refused" else FULL_SCOPE
        grid.write_token(path, grid.mint_token(scope=scope, lifetime=-600 if kind == "expired" else 3600))
    try:
        yield good.decode(errors="replace")
    finally:
        path.write_bytes(good)  # renewed
        settings.extra, settings.environment = kept
        write_configs(settings)


def test_a_night_travels_between_guarded_servers_with_the_sites_credential(site: XrootdSite) -> None:
    orm_rse = site.rses[0]
    plan = night_files(date(2020, 7, 1 + MECHANISMS.index(site.orm.auth)), seed=71, count=8)
    site.watched = plan
    site.write(plan)
    site.flow(lambda: all_in(plan, FileState.DELETED, orm_rse))
    assert_safe_at_pic(site, plan)
    for planned in plan:
        story = {event.state: event.detail or "" for event in events_of(planned.path, orm_rse)}
        assert story[FileState.VERIFIED].endswith("(by the root:// server)"), story[FileState.VERIFIED]
        assert f"deleted from {orm_rse}" in story[FileState.DELETED]
    copies = (site.daemons.settings.state / "transfers" / "jobs").glob("*/copier.log")
    done = [line for log in copies for line in log.read_text().splitlines() if "\tDone " in line]
    mine = [line for line in done if any(planned.name in line for planned in plan)]
    assert len(mine) == len(plan) and all("streamed" in line for line in mine), mine[:2]


@pytest.mark.parametrize("kind", ["expired", "refused", "unknown-ca"])
def test_a_lapsed_credential_holds_the_night_without_marking_a_file_and_a_renewed_one_lets_it_go(
    site: XrootdSite, rucio_client: Any, grid: Grid, kind: str
) -> None:
    orm_rse, pic_rse = site.rses
    kinds = ("expired", "refused", "unknown-ca")
    plan = night_files(date(2020, 7, 10 + 3 * MECHANISMS.index(site.orm.auth) + kinds.index(kind)), seed=72, count=4)
    site.watched = plan
    site.write(plan)
    site.flow(lambda: all_available_at_pic(rucio_client, plan, pic_rse), without=("magic-carrier", "reaper"))

    with lapsed(site, grid, kind) as good:
        site.daemons.run_round("magic-scanner", "magic-carrier")  # the copies are in place: REPLICATED
        site.daemons.run_round("magic-scanner", "magic-carrier")  # and none can be read back to be proven
        rows = rows_of(plan, orm_rse)
        for planned in plan:
            row = rows[planned.path]
            assert row.state in (FileState.PROTECTED, FileState.REPLICATED), (planned.path, row.state)
            story = events_of(planned.path, orm_rse)
            assert not any("declared bad" in (event.detail or "") for event in story), planned.path
            assert {event.state for event in story} <= {FileState.SEEN, FileState.STABLE, FileState.CHECKSUMMED,
                                                      FileState.REGISTERED, FileState.PROTECTED, FileState.REPLICATED}
            assert (site.orm_folder / planned.path).exists()  # nothing released
            copy_path = pic_copy(site, planned)
            assert (copy_path.stat().st_size, adler32_of(copy_path)) == (row.size, row.adler32)
        notes = " ".join(row.last_error or "" for row in rows.values())
        assert pic_rse in notes and ("expired at" in notes if kind == "expired" else "refused" in notes), notes
        if kind == "unknown-ca":
            assert "TLS" in notes, notes
        assert good.strip()[20:80] not in notes  # what is told is where the credential is, never what it says
    site.flow(lambda: all_in(plan, FileState.DELETED, orm_rse))
    assert_safe_at_pic(site, plan)


def test_status_tells_the_credential_each_rse_is_given_never_its_content(site: XrootdSite) -> None:
    orm_rse = site.rses[0]
    result = subprocess.run([str(Path(sys.executable).parent / "rucio-magic"), "status", "--rse", orm_rse, "--json"],
                            env=site.daemons.env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    told = {item["rse"]: item for item in json.loads(result.stdout)["credentials"]}
    kind = "X.509 proxy" if site.orm.auth == "x509" else "token"
    assert told[orm_rse]["told"].startswith(f"{kind} from {credential_file(site)}"), told
    assert told[orm_rse]["seconds_left"] > 3000 and told[orm_rse]["warning"] is None
    assert credential_file(site).read_text().strip()[20:80] not in result.stdout
