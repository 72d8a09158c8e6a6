"""A night between two sites joined by one slow link: ORM's XRootD server in a network namespace of its own, PIC's
on this host with Rucio and every daemon (tools/devstack/link.py). Nothing on PIC's side reads ORM's folder: the
scanner lists and checksums, the transfer tool's third-party copies pull, and the carrier re-reads the sources,
all across the link. The link is cut while the copies are under way; every byte is checked at both ends after."""

from __future__ import annotations

import copy
import dataclasses
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from test_flow_xrootd import XrootdSite, adler32_of, all_in, night_files, pic_copy, rows_of, site_as

from rucio_magic_ext.ledger import FileState
from tools.devstack import link as link_module
from tools.devstack import xrootd
from tools.devstack.config import write_configs
from tools.devstack.stack import Stack

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
ORM, PIC = "ORM-LINK", "PIC-LINK"
RATE_MBIT = 20


@dataclasses.dataclass
class TwoSites(XrootdSite):
    link: link_module.Link | None = None


@pytest.fixture(scope="module")
def sites(rucio_stack: Stack) -> Iterator[TwoSites]:
    reason = link_module.missing() or xrootd.missing()
    if reason:
        pytest.skip(f"no two sites here: {reason}")
    pytest.importorskip("XRootD.client", reason="root:// storage needs XRootD's Python client", exc_type=ImportError)
    link = link_module.Link(f"tl{uuid.uuid4().hex[:6]}", RATE_MBIT)
    state = Path(tempfile.mkdtemp(prefix="rm2-"))  # short, and open to the servers, which run as nobody
    state.chmod(0o755)
    link.up()
    orm = xrootd.XrootdServer("orm-link", state / "o", xrootd.free_port(), xrootd.free_port(), unix_auth=False,
                              host=link.there, netns=link.namespace)
    pic = xrootd.XrootdServer("pic-link", state / "p", xrootd.free_port(), xrootd.free_port(), unix_auth=False,
                              host=link.here)
    try:
        for server, folder in ((orm, ORM.lower()), (pic, PIC.lower())):
            server.start()
            (server.data / folder).mkdir(exist_ok=True)
            server.adopt(server.data / folder)
        site, policy = site_as(  # each RSE at its end of the link
            state, ORM, PIC,
            ("hostname = ${vars:host}\nport = ${vars:orm", "hostname = ${vars:orm_host}\nport = ${vars:orm"),
            ("hostname = ${vars:host}\nport = ${vars:pic", "hostname = ${vars:pic_host}\nport = ${vars:pic"))
        rucio_stack.bootstrap_site(site, defines={
            "orm_host": link.there, "pic_host": link.here,
            "orm_root_port": str(orm.port), "orm_web_port": str(orm.http_port),
            "pic_root_port": str(pic.port), "pic_web_port": str(pic.http_port),
        })
        extra = copy.deepcopy(rucio_stack.settings.extra)
        extra["magic-scanner"].update(rse=ORM, replication_policy=str(policy))
        extra["conveyor"] = {"scheme": "root", "magic_max_active": "4"}
        daemons = Stack(state / "daemons")
        daemons.settings = dataclasses.replace(rucio_stack.settings, state=state / "daemons", extra=extra)
        write_configs(daemons.settings)
        yield TwoSites(orm, pic, daemons, rses=(ORM, PIC), link=link)
    finally:
        orm.stop()
        pic.stop()
        link.down()
        shutil.rmtree(state, ignore_errors=True)


def test_a_night_crosses_the_link_survives_its_cut_and_every_byte_is_accounted_for(sites: TwoSites) -> None:
    assert sites.link is not None
    plan = night_files(date(2020, 8, 20), seed=82, count=8)
    night = sum(planned.size for planned in plan)
    sites.watched = plan
    sites.write(plan)
    before = sites.link.crossed()
    sites.flow(lambda: all_in(plan, FileState.PROTECTED, ORM) or all_in(plan, FileState.REPLICATED, ORM),
               without=("magic-carrier", "reaper"))

    sites.link.cut()  # while the copies are due: nothing crosses
    try:
        sites.daemons.run_round("magic-scanner", "conveyor-submitter", ("conveyor-poller", "--older-than", "0"),
                                "conveyor-finisher", "magic-carrier")
        rows = rows_of(plan, ORM)
        assert all(row.state in (FileState.PROTECTED, FileState.REPLICATED, FileState.VERIFIED)
                   for row in rows.values()), {row.path: row.state for row in rows.values()}
        assert all((sites.orm_folder / planned.path).exists() for planned in plan)
    finally:
        sites.link.mend()

    sites.flow(lambda: all_in(plan, FileState.DELETED, ORM), rounds=16, patience=150)
    rows = rows_of(plan, ORM)
    for planned in plan:
        row = rows[planned.path]
        copy_path = pic_copy(sites, planned)
        assert (copy_path.stat().st_size, adler32_of(copy_path)) == (row.size, row.adler32), planned.path
        assert not (sites.orm_folder / planned.path).exists()
    carried = sites.link.crossed()["from_orm"] - before["from_orm"]
    assert carried >= night  # every byte of the night crossed the link: nothing on PIC's side read ORM's disk
    print(f"link at {RATE_MBIT} Mbit/s carried {carried} bytes for a night of {night}: {carried / night:.3f} per byte")
