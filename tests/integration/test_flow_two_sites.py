"""A night between two sites joined by one slow link: ORM's XRootD server in a network namespace of its own, PIC's
on this host with Rucio and every daemon (tools/devstack/link.py). Nothing on PIC's side reads ORM's folder: the
scanner lists and checksums, the transfer tool's third-party copies pull, and the carrier re-reads the sources,
all across the link. The link is cut while the copies are under way; every byte is checked at both ends after.
What the bytes of a file prove of themselves (a gzip stream's end, a DL3 file's checksum cards) is proven on its
copy at PIC, so that no byte crosses twice: a file registered unsound is held there for a person."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from astropy.io import fits
from prometheus_client import REGISTRY
from test_flow_xrootd import XrootdSite, adler32_of, all_in, night_files, pic_copy, rows_of, site_as, states

from rucio_magic_ext import census, cli
from rucio_magic_ext.ledger import FileState, Ledger
from rucio_magic_ext.release.verify import UNSOUND
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


def _status(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert cli.main(["status", "--rse", ORM, "--json"]) == 0
    (source,) = json.loads(capsys.readouterr().out)["sources"]
    return dict(source)


def _outage_gauge() -> float | None:
    census.publish(census.take(Ledger.from_config(), errors=False))
    return REGISTRY.get_sample_value("magic_source_outage_seconds", {"rse": ORM, "service": "storage"})


def test_a_night_crosses_the_link_survives_its_cuts_and_every_byte_is_accounted_for(
    sites: TwoSites, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sites.link is not None
    night_of = date(2020, 8, 20)
    plan = night_files(night_of, seed=82, count=8)
    night = sum(planned.size for planned in plan)
    sites.watched = plan
    sites.write(plan)
    before = sites.link.crossed()
    sites.flow(lambda: all_in(plan, FileState.PROTECTED, ORM) or all_in(plan, FileState.REPLICATED, ORM),
               without=("magic-carrier", "reaper"))

    sites.link.cut()  # in the middle of the night, while the copies are due: nothing crosses
    try:
        sites.daemons.run_round("magic-scanner", "conveyor-submitter", ("conveyor-poller", "--older-than", "0"),
                                "conveyor-finisher", "magic-carrier")
        rows = rows_of(plan, ORM)
        assert all(row.state in (FileState.PROTECTED, FileState.REPLICATED, FileState.VERIFIED)
                   for row in rows.values()), {row.path: row.state for row in rows.values()}
        assert all((sites.orm_folder / planned.path).exists() for planned in plan)
        (outage,) = _status(capsys)["outages"]  # status and the gauges show it while it lasts
        assert outage["service"] == "storage" and outage["rse"] == ORM, outage
        assert _outage_gauge() is not None
        assert cli.main(["status", "--rse", ORM]) == 0
        assert "! its storage does not answer since" in capsys.readouterr().out
    finally:
        sites.link.mend()

    def copied() -> bool:  # copies the cut failed are sent again once Rucio's retry delay has passed
        return all((at := pic_copy(sites, p)).exists() and at.stat().st_size == p.size for p in plan)

    sites.flow(copied, without=("magic-carrier", "reaper"), rounds=16, patience=150)
    sites.daemons.run_round(("conveyor-poller", "--older-than", "0"), "conveyor-finisher")
    sites.link.cut()  # again, as the carrier releases: every copy is proven at PIC, no source may be read
    try:
        sites.daemons.run_round("magic-carrier", "magic-scanner")
        rows = rows_of(plan, ORM)
        assert FileState.VERIFIED in {row.state for row in rows.values()}, states(plan, ORM)  # release was next
        assert not [row.path for row in rows.values() if row.state in (FileState.RELEASED, FileState.DELETED)]
        assert all((sites.orm_folder / planned.path).exists() for planned in plan)
        assert _status(capsys)["outages"]
    finally:
        sites.link.mend()

    sites.flow(lambda: all_in(plan, FileState.DELETED, ORM), rounds=16, patience=150)
    rows = rows_of(plan, ORM)
    for planned in plan:
        row = rows[planned.path]
        copy_path = pic_copy(sites, planned)
        assert (copy_path.stat().st_size, adler32_of(copy_path)) == (row.size, row.adler32), planned.path
        assert not (sites.orm_folder / planned.path).exists()
    assert _status(capsys)["outages"] == [] and not _outage_gauge()  # the scanner found the storage back
    for rse in (ORM, PIC):  # with the daemons' rucio.cfg: their replication policy explains the rules
        audit = subprocess.run([str(Path(sys.executable).parent / "rucio-magic"), "audit", rse, "--night",
                                night_of.isoformat()], env=sites.daemons.env, capture_output=True, text=True)
        assert audit.returncode == 0, audit.stdout + audit.stderr
    carried = sites.link.crossed()["from_orm"] - before["from_orm"]
    assert carried >= night  # every byte of the night crossed the link: nothing on PIC's side read ORM's disk
    print(f"link at {RATE_MBIT} Mbit/s carried {carried} bytes for a night of {night}: {carried / night:.3f} per byte")


def _damage(path: Path, offset: int, keep: int | None = None) -> str:
    """Flip a byte at ``offset`` (or keep the first ``keep`` bytes), the mtime kept: the file a writer left."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    if keep is not None:
        del data[keep:]
    else:
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, (stat.st_atime, stat.st_mtime))
    return adler32_of(path)


def test_a_file_registered_unsound_is_held_at_the_source_until_a_person_says_it_is_final(sites: TwoSites) -> None:
    assert sites.link is not None
    plan = night_files(date(2020, 8, 22), seed=84, count=8)
    sites.watched = plan
    sites.write(plan)
    truncated = next(planned for planned in plan if planned.name.endswith(".raw.gz"))
    dl3 = next(planned for planned in plan if "_DL3_" in planned.name)
    with fits.open(sites.orm_folder / dl3.path) as hdus:
        events_data = hdus[1]._data_offset  # the EVENTS table's first byte: its DATASUM no longer holds
    damaged = {
        truncated.path: _damage(sites.orm_folder / truncated.path, 0, keep=truncated.size - 8),  # no trailer
        dl3.path: _damage(sites.orm_folder / dl3.path, events_data + 3),
    }
    good = [planned for planned in plan if planned.path not in damaged]
    before = sites.link.crossed()

    def settled() -> bool:
        rows = rows_of(plan, ORM)
        held = [rows[path] for path in damaged if path in rows and str(rows[path].last_error).startswith(UNSOUND)]
        return all_in(good, FileState.DELETED, ORM) and len(held) == 2

    sites.flow(settled, rounds=16, patience=180)
    rows = rows_of(plan, ORM)
    assert "gzip stream has no end yet" in str(rows[truncated.path].last_error)
    assert "DL3 refused (checksum)" in str(rows[dl3.path].last_error)
    for path, sums in damaged.items():  # both ends hold the bytes the writer left, and the source stays
        planned = next(planned for planned in plan if planned.path == path)
        assert rows[path].state is FileState.REPLICATED and rows[path].adler32 == sums
        assert adler32_of(sites.orm_folder / path) == sums
        assert adler32_of(pic_copy(sites, planned)) == sums
    for planned in good:
        assert not (sites.orm_folder / planned.path).exists()
        assert adler32_of(pic_copy(sites, planned)) == rows[planned.path].adler32
    carried = sites.link.crossed()["from_orm"] - before["from_orm"]
    night = sum((sites.orm_folder / path).stat().st_size for path in damaged) + sum(p.size for p in good)
    # Beyond the copies, less than the DL3 file alone: its checksum cards were verified on its copy at PIC, and
    # only its header blocks crossed, as the listings, stats and checksum queries of the others
    assert carried - night < dl3.size, (carried, night)

    Ledger.from_config().retry(ORM, "operator1", "the DAQ lost the run's end: what is there is final",
                               paths=[truncated.path])
    sites.flow(lambda: rows_of([truncated], ORM)[truncated.path].state is FileState.DELETED, rounds=12, patience=150)
    assert not (sites.orm_folder / truncated.path).exists()
    assert adler32_of(pic_copy(sites, truncated)) == damaged[truncated.path]
    assert adler32_of(sites.orm_folder / dl3.path) == damaged[dl3.path]  # still held: no person said so
    assert rows_of([dl3], ORM)[dl3.path].state is FileState.REPLICATED
