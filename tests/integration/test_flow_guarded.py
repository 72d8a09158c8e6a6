"""A night over storage guarded as a grid site guards it: both XRootD servers require TLS and an X.509 proxy with
VOMS attributes of VO magic (tools/devstack/grid.py, XrootdServer's auth="x509").

The daemons find their credentials as a site gives them: ``[magic-credentials]`` in their rucio.cfg for the
scanner, the carrier and the transfer tool; X509_USER_PROXY and X509_CERT_DIR in their environment for Rucio's own
xrootd protocol (the reaper's ``xrdfs rm``). Every test ends on the servers' disks.
"""

from __future__ import annotations

import copy
import dataclasses
import json
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
)

from rucio_magic_ext.ledger import FileState
from tools.devstack import xrootd
from tools.devstack.config import write_configs
from tools.devstack.grid import Grid
from tools.devstack.stack import Stack

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
ORM, PIC = "ORM-X509", "PIC-X509"


def site_cfg(folder: Path) -> Path:
    """The XRootD site of test_flow_xrootd under names of its own, with HTTPS doors (davs)."""
    text = (HERE / "site-xrootd.cfg").read_text()
    text = text[: text.index("# A scratch area")] + text[text.index("[distances]"):]
    for old, new in (("ORM-XRD", ORM), ("PIC-XRD", PIC), ("orm-xrd", ORM.lower()), ("pic-xrd", PIC.lower()),
                     ("scheme = http", "scheme = davs"), ("SCRATCH-XRD = -1\n", "")):
        text = text.replace(old, new)
    text = text[: text.index("[scopes]")]
    path = folder / "site-x509.cfg"
    path.write_text(text)
    return path


def policy(folder: Path) -> Path:
    path = folder / "replication-policy-x509.toml"
    path.write_text((HERE / "replication-policy-xrootd.toml").read_text().replace("PIC-XRD", PIC))
    return path


@pytest.fixture(scope="module")
def site(rucio_stack: Stack, grid: Grid) -> Iterator[XrootdSite]:
    """Two servers guarded by X.509 for ORM-X509 and PIC-X509, registered in the test stack; a stack of daemons
    that watches ORM-X509 with the run's proxy."""
    reason = xrootd.missing("x509")
    if reason:
        pytest.skip(f"no guarded XRootD server here: {reason}")
    pytest.importorskip("XRootD.client", reason="root:// storage needs XRootD's Python client", exc_type=ImportError)
    state = Path(tempfile.mkdtemp(prefix="rmx-"))  # short: the servers' admin paths have a length limit
    state.chmod(0o755)
    orm = xrootd.XrootdServer("orm-x509", state / "o", xrootd.free_port(), xrootd.free_port(), auth="x509", grid=grid)
    pic = xrootd.XrootdServer("pic-x509", state / "p", xrootd.free_port(), xrootd.free_port(), auth="x509", grid=grid)
    try:
        for server, folder in ((orm, ORM.lower()), (pic, PIC.lower())):
            server.start()
            (server.data / folder).mkdir(exist_ok=True)
            server.adopt(server.data / folder)
        rucio_stack.bootstrap_site(site_cfg(state), defines={
            "host": "127.0.0.1",
            "orm_root_port": str(orm.port), "orm_web_port": str(orm.http_port),
            "pic_root_port": str(pic.port), "pic_web_port": str(pic.http_port),
        })
        extra = copy.deepcopy(rucio_stack.settings.extra)
        extra["magic-scanner"].update(rse=ORM, replication_policy=str(policy(state)))
        extra["conveyor"] = {"scheme": "root", "magic_max_active": "4"}
        extra["magic-credentials"] = {"mechanism": "x509", "ca_dir": str(grid.ca_dir), "x509_proxy": str(grid.proxy)}
        daemons = Stack(state / "daemons")
        daemons.settings = dataclasses.replace(
            rucio_stack.settings, state=state / "daemons", extra=extra,
            environment={"X509_USER_PROXY": str(grid.proxy), "X509_CERT_DIR": str(grid.ca_dir),
                         "XrdSecGSISRVNAMES": "localhost"},  # GSI: the host certificate's CN, not 127.0.0.1
        )
        write_configs(daemons.settings)
        yield XrootdSite(orm, pic, daemons, rses=(ORM, PIC))
    finally:
        orm.stop()
        pic.stop()
        shutil.rmtree(state, ignore_errors=True)


def assert_safe_at_pic(site: XrootdSite, plan: list) -> None:
    rows = rows_of(plan, ORM)
    for planned in plan:
        row = rows[planned.path]
        copy_path = pic_copy(site, planned)
        assert (copy_path.stat().st_size, adler32_of(copy_path)) == (row.size, row.adler32), planned.path
        assert not (site.orm_folder / planned.path).exists(), f"{planned.path} still on ORM's disk"


def test_a_night_travels_between_guarded_servers_with_the_sites_proxy(site: XrootdSite, rucio_client: Any) -> None:
    plan = night_files(date(2020, 7, 1), seed=71, count=8)
    site.watched = plan
    site.write(plan)
    site.flow(lambda: all_in(plan, FileState.DELETED, ORM))
    assert_safe_at_pic(site, plan)
    for planned in plan:
        story = {event.state: event.detail or "" for event in events_of(planned.path, ORM)}
        assert story[FileState.VERIFIED].endswith("(by the root:// server)"), story[FileState.VERIFIED]
        assert f"deleted from {ORM}" in story[FileState.DELETED]
    copies = (site.daemons.settings.state / "transfers" / "jobs").glob("*/copier.log")
    done = [line for log in copies for line in log.read_text().splitlines() if "\tDone " in line]
    assert any(planned.name in line and "streamed" in line for line in done for planned in plan), done[:2]


def test_an_expired_proxy_holds_the_night_without_marking_a_file_and_a_renewed_one_lets_it_go(
    site: XrootdSite, rucio_client: Any, grid: Grid
) -> None:
    plan = night_files(date(2020, 7, 2), seed=72, count=4)
    site.watched = plan
    site.write(plan)
    site.flow(lambda: all_available_at_pic(rucio_client, plan, PIC), without=("magic-carrier", "reaper"))

    live = grid.proxy.read_bytes()
    shutil.copyfile(grid.expired_proxy, grid.proxy)  # the renewal job is late: the proxy in place has expired
    try:
        site.daemons.run_round("magic-scanner", "magic-carrier")  # the copies are in place: REPLICATED
        site.daemons.run_round("magic-scanner", "magic-carrier")  # and none can be read back to be proven
        rows = rows_of(plan, ORM)
        for planned in plan:
            row = rows[planned.path]
            assert row.state in (FileState.PROTECTED, FileState.REPLICATED), (planned.path, row.state)
            assert not any("declared bad" in (e.detail or "") for e in events_of(planned.path, ORM)), planned.path
            assert (site.orm_folder / planned.path).exists()  # nothing released
            assert (pic_copy(site, planned).stat().st_size, adler32_of(pic_copy(site, planned))) == (
                row.size, row.adler32)  # and the copies at PIC are the ones sent
        notes = " ".join(row.last_error or "" for row in rows.values())
        assert "expired at" in notes and PIC in notes, notes
        assert live.decode(errors="replace")[:200] not in notes
    finally:
        grid.proxy.write_bytes(live)  # renewed
    site.flow(lambda: all_in(plan, FileState.DELETED, ORM))
    assert_safe_at_pic(site, plan)


def test_status_tells_the_credential_each_rse_is_given_never_its_content(site: XrootdSite, grid: Grid) -> None:
    result = subprocess.run([str(Path(sys.executable).parent / "rucio-magic"), "status", "--rse", ORM, "--json"],
                            env=site.daemons.env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("{"), (result.stdout[:1500], result.stderr[-1500:])
    told = {item["rse"]: item for item in json.loads(result.stdout)["credentials"]}
    assert told[ORM]["told"].startswith(f"X.509 proxy from {grid.proxy}") and told[ORM]["seconds_left"] > 3600
    assert told[ORM]["warning"] is None
    assert grid.proxy.read_text().splitlines()[1] not in result.stdout  # a line of the certificate itself
