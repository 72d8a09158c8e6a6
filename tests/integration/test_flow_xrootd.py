"""The whole flow over real XRootD servers: scanner, transfer, carrier and reaper reach the files only over root://.

Two XRootD servers (tools/devstack/xrootd.py: root:// and WebDAV, adler32 computed by the server, root://
third-party copy) serve two RSEs added to the test stack, ORM-XRD (non-deterministic, the observatory) and
PIC-XRD (deterministic, lfn2pfn magic), with Rucio's own protocols (tests/integration/site-xrootd.cfg: gfal at
ORM-XRD's root:// door, xrootd at PIC-XRD's).
The night is written straight into the ORM server's data folder, as the DAQ writes on site; from then on
every daemon goes through the RSEs' protocols: the scanner lists and checksums on the server, the transfer
tool copies server to server and proves the copy with the destination server's checksum, the carrier asks
PIC's server for each copy's adler32, Rucio's reaper deletes through gfal2's XRootD plugin. The scanner and the
carrier run with a rucio.cfg of their own (same database and REST server) that points them at ORM-XRD.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from scenery import flow_steps

from rucio_magic_ext import layout
from rucio_magic_ext.ledger import FileState, Ledger
from rucio_magic_ext.ledger.models import LedgerFile
from tools.devstack import xrootd
from tools.devstack.config import write_configs
from tools.devstack.stack import Stack
from tools.devstack.waiting import in_rounds
from tools.make_night import PlannedFile, plan_night, write_night

pytestmark = pytest.mark.integration

ORM, PIC = "ORM-XRD", "PIC-XRD"
HERE = Path(__file__).parent


@dataclasses.dataclass
class XrootdSite:
    """The two servers, and a stack whose daemons watch ORM-XRD (its own rucio.cfg, the tests' database)."""

    orm: xrootd.XrootdServer
    pic: xrootd.XrootdServer
    daemons: Stack
    watched: list[PlannedFile] = dataclasses.field(default_factory=list)  # named when the flow does not get there
    rses: tuple[str, str] = (ORM, PIC)  # each server's RSE, whose folder under the server's '/' is its name

    @property
    def orm_folder(self) -> Path:
        return self.orm.data / self.rses[0].lower()

    @property
    def pic_folder(self) -> Path:
        return self.pic.data / self.rses[1].lower()

    def write(self, plan: list[PlannedFile], stamp_times: bool = True) -> None:
        """Write files straight into ORM's data folder, owned by the server's account as the DAQ's would be."""
        write_night(plan, self.orm_folder, stamp_times=stamp_times,
                    observe=lambda planned, _size, _closed: self.orm.adopt(self.orm_folder / planned.path))

    def flow(self, done: Callable[[], bool], without: tuple[str, ...] = (), rounds: int = 12,
             patience: float = 90) -> None:
        """Rounds of every daemon of the flow (the reaper at ORM-XRD last) until ``done()``; fail if it is not
        after ``rounds`` rounds and ``patience`` seconds. A third-party copy waits on the servers (XRootD's
        client polls the destination every 2.5 s), so how many rounds a night needs depends on their pace."""
        steps = [step for step in flow_steps(self.rses[0])
                 if (step if isinstance(step, str) else step[0]) not in without]
        started = time.monotonic()
        if in_rounds(lambda: self.daemons.run_round(*steps), done, rounds, patience=patience) is None:
            log = self.daemons.settings.log_dir / "round.once.log"
            lines = log.read_text(errors="replace").splitlines()
            said = [line for line in lines if "ERROR" in line or "CRITICAL" in line]
            pytest.fail(f"the flow did not get there in {rounds} rounds and {time.monotonic() - started:.0f} s: "
                        f"{states(self.watched, self.rses[0])}; the daemons' last errors:\n" + "\n".join(said[-12:]),
                        pytrace=False)


@pytest.fixture(scope="module")
def site(rucio_stack: Stack) -> Iterator[XrootdSite]:
    """Two XRootD servers for ORM-XRD and PIC-XRD, registered in the test stack; stopped at the end."""
    reason = xrootd.missing() or xrootd.gfal_missing()
    if reason:
        pytest.skip(f"no XRootD site here: {reason}")
    pytest.importorskip("XRootD.client", reason="root:// storage needs XRootD's Python client", exc_type=ImportError)
    state = Path(tempfile.mkdtemp(prefix="rucio-magic-xrd-flow-"))
    state.chmod(0o755)  # the servers run as nobody under root
    orm = xrootd.XrootdServer("orm-xrd", state / "orm", xrootd.free_port(), xrootd.free_port(), unix_auth=False)
    pic = xrootd.XrootdServer("pic-xrd", state / "pic", xrootd.free_port(), xrootd.free_port(), unix_auth=False)
    try:
        for server, folder in ((orm, "orm-xrd"), (pic, "pic-xrd"), (pic, "scratch-xrd")):
            server.start()
            (server.data / folder).mkdir(exist_ok=True)
            server.adopt(server.data / folder)
        rucio_stack.bootstrap_site(HERE / "site-xrootd.cfg", defines={
            "host": "127.0.0.1",
            "orm_root_port": str(orm.port), "orm_web_port": str(orm.http_port),
            "pic_root_port": str(pic.port), "pic_web_port": str(pic.http_port),
        })
        extra = copy.deepcopy(rucio_stack.settings.extra)
        extra["magic-scanner"].update(rse=ORM, replication_policy=str(HERE / "replication-policy-xrootd.toml"))
        # root:// at both ends; the copies wait on the servers, not on this machine's two cores.
        extra["conveyor"] = {"scheme": "root", "magic_max_active": "4"}
        daemons = Stack(state / "daemons")
        daemons.settings = dataclasses.replace(rucio_stack.settings, state=state / "daemons", extra=extra)
        write_configs(daemons.settings)
        yield XrootdSite(orm, pic, daemons)
    finally:
        orm.stop()
        pic.stop()
        shutil.rmtree(state, ignore_errors=True)


def site_as(folder: Path, orm: str, pic: str, *replacements: tuple[str, str]) -> tuple[Path, Path]:
    """This module's site (site-xrootd.cfg, without its scratch area) and replication policy under other RSE names,
    with further text ``replacements``, written into ``folder``: another module's two RSEs on its own servers."""
    text = (HERE / "site-xrootd.cfg").read_text()
    text = text[: text.index("# A scratch area")] + text[text.index("[distances]") : text.index("[scopes]")]
    for old, new in (("ORM-XRD", orm), ("PIC-XRD", pic), ("orm-xrd", orm.lower()), ("pic-xrd", pic.lower()),
                     ("SCRATCH-XRD = -1\n", ""), *replacements):
        text = text.replace(old, new)
    site, policy = folder / f"site-{orm.lower()}.cfg", folder / f"replication-policy-{pic.lower()}.toml"
    site.write_text(text)
    policy.write_text((HERE / "replication-policy-xrootd.toml").read_text().replace("PIC-XRD", pic))
    return site, policy


# -- looks into the ledger, Rucio and the servers' disks ---------------------------------------------------------


def night_files(night: date, seed: int, count: int) -> list[PlannedFile]:
    """A small night: its first files (pedestal, calibration and data runs of both telescopes), then the
    stereo ones (SuperStar, Melibea, DL3), ``count`` in all."""
    plan = plan_night(night, runs=3, seed=seed, scale=1e-5)
    stereo = [planned for planned in plan if planned.path.startswith("ST/")][: max(0, count - 2)]
    return plan[: count - len(stereo)] + stereo


def rows_of(plan: list[PlannedFile], rse: str = ORM) -> dict[str, LedgerFile]:
    return Ledger.from_config().known(rse, [planned.path for planned in plan])


def states(plan: list[PlannedFile], rse: str = ORM) -> Counter[str]:
    return Counter(row.state.value for row in rows_of(plan, rse).values())


def all_in(plan: list[PlannedFile], state: FileState, rse: str = ORM) -> bool:
    rows = rows_of(plan, rse)
    return len(rows) == len(plan) and all(row.state is state for row in rows.values())


def events_of(path: str, rse: str = ORM) -> list[Any]:
    ((_, events),) = Ledger.from_config().history(rse, path)
    return events


def dids_of(plan: list[PlannedFile]) -> list[dict[str, str]]:
    return [{"scope": layout.scope(planned.record), "name": planned.name} for planned in plan]


def replicas_at(rucio_client: Any, plan: list[PlannedFile], rse: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (replica state, PFNs) at ``rse``."""
    found = rucio_client.list_replicas(dids_of(plan), rse_expression=rse, all_states=True)
    return {r["name"]: (r["states"][rse], list(r["rses"].get(rse, []))) for r in found if rse in r["states"]}


def all_available_at_pic(rucio_client: Any, plan: list[PlannedFile], rse: str = PIC) -> bool:
    return {name: state for name, (state, _) in replicas_at(rucio_client, plan, rse).items()} == {
        planned.name: "AVAILABLE" for planned in plan
    }


def pic_copy(site: XrootdSite, planned: PlannedFile) -> Path:
    """Where PIC's server keeps the copy on its disk (lfn2pfn magic under PIC-XRD's prefix)."""
    folder = layout.observatory_folder("/" + planned.path)
    return site.pic_folder / layout.placement(planned.record, folder.night if folder else None).path


def adler32_of(path: Path) -> str:
    return f"{zlib.adler32(path.read_bytes()):08x}"


def assert_safe_at_pic(site: XrootdSite, rucio_client: Any, plan: list[PlannedFile]) -> None:
    """Each file's PIC copy is on PIC's disk with the bytes registered from the source, AVAILABLE in Rucio at a
    root:// PFN of PIC's server; nothing is left at ORM, neither on its disk nor in Rucio."""
    rows = rows_of(plan)
    at_pic = replicas_at(rucio_client, plan, PIC)
    for planned in plan:
        row = rows[planned.path]
        copy_path = pic_copy(site, planned)
        assert (copy_path.stat().st_size, adler32_of(copy_path)) == (row.size, row.adler32), planned.path
        state, pfns = at_pic[planned.name]
        assert state == "AVAILABLE"
        assert pfns == [f"{site.pic.root_url}//pic-xrd/{copy_path.relative_to(site.pic_folder)}"]
        assert not (site.orm_folder / planned.path).exists(), f"{planned.path} still on ORM's disk"
    assert replicas_at(rucio_client, plan, ORM) == {}


def copier_lines(site: XrootdSite) -> list[str]:
    """The 'Done' lines of every copy the transfer tool made for the XRootD RSEs."""
    logs = (site.daemons.settings.state / "transfers" / "jobs").glob("*/copier.log")
    return [line for log in logs for line in log.read_text().splitlines() if "\tDone " in line]


# -- the flow -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def night_at_pic(site: XrootdSite) -> list[PlannedFile]:
    """A night written at ORM and taken by the flow all the way to DELETED."""
    plan = night_files(date(2020, 6, 1), seed=61, count=13)
    site.watched = plan
    site.write(plan)
    site.flow(lambda: all_in(plan, FileState.DELETED))
    return plan


def test_a_night_travels_over_root_and_every_copy_is_proven_by_the_servers_checksum(
    site: XrootdSite, rucio_client: Any, night_at_pic: list[PlannedFile]
) -> None:
    plan = night_at_pic
    assert_safe_at_pic(site, rucio_client, plan)

    for planned in plan:  # the ledger says which copy was proven, where, and how
        story = {event.state: event.detail or "" for event in events_of(planned.path)}
        assert f"verified at the destination: {PIC} {site.pic.root_url}//pic-xrd/" in story[FileState.VERIFIED]
        assert story[FileState.VERIFIED].endswith("(by the root:// server)"), story[FileState.VERIFIED]
        assert f"deleted from {ORM}" in story[FileState.DELETED]

    # The transfer tool copied server to server and proved each copy with PIC's own checksum.
    done = [line for line in copier_lines(site) if any(planned.name in line for planned in plan)]
    assert len(done) == len(plan)
    assert all("third-party copy" in line and "adler32 by the root:// server" in line for line in done), done[:2]


def test_rucio_download_reads_a_copy_at_pic_with_rucios_xrootd_protocol(
    site: XrootdSite, night_at_pic: list[PlannedFile], tmp_path: Path
) -> None:
    planned = next(planned for planned in night_at_pic if planned.name.endswith(".raw.gz"))
    did = f"{layout.scope(planned.record)}:{planned.name}"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "rucio"), "-v", "download", "--rses", PIC, "--dir", str(tmp_path),
         "--no-subdir", did],
        capture_output=True, text=True, timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert f"{site.pic.root_url}//pic-xrd/" in output  # the PFN of Rucio's xrootd protocol (xrdcp)
    downloaded = tmp_path / planned.name
    assert downloaded.read_bytes() == pic_copy(site, planned).read_bytes()
    assert adler32_of(downloaded) == rows_of([planned])[planned.path].adler32


def test_rucio_upload_writes_to_a_scratch_rse_with_rucios_xrootd_protocol(site: XrootdSite, tmp_path: Path) -> None:
    from rucio.client import Client

    upload = tmp_path / f"notes-{uuid.uuid4().hex[:8]}.txt"
    upload.write_bytes(os.urandom(4096))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "rucio"), "-v", "upload", "--rse", "SCRATCH-XRD", "--scope", "scratch",
         str(upload)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    (replica,) = Client().list_replicas([{"scope": "scratch", "name": upload.name}], rse_expression="SCRATCH-XRD")
    (pfn,) = replica["pfns"]
    assert pfn.startswith(f"{site.pic.root_url}//scratch-xrd/") and replica["adler32"] == adler32_of(upload)
    on_disk = site.pic.data / pfn.split("//", 2)[2]  # root://host:port//<path below the server's data root>
    assert on_disk.read_bytes() == upload.read_bytes()


# -- faults on the real servers ---------------------------------------------------------------------------------


def test_the_scanner_waits_while_orms_server_is_down_and_quarantines_nothing(
    site: XrootdSite, rucio_client: Any
) -> None:
    plan = night_files(date(2020, 6, 2), seed=62, count=4)
    site.watched = plan
    site.write(plan)
    closing = time.time() + 8  # still being written: seen, but not settled before settle_seconds after this
    for planned in plan:
        os.utime(site.orm_folder / planned.path, (closing, closing))
    site.daemons.run_round("magic-scanner")
    assert states(plan) == Counter({FileState.SEEN.value: len(plan)})

    site.orm.stop()  # mid-cycle: the files are known, not yet settled; settle asks the server for each
    try:
        site.daemons.run_round("magic-scanner")
        rows = rows_of(plan)
        assert {row.state for row in rows.values()} == {FileState.SEEN}, [(r.path, r.state) for r in rows.values()]
        stories = [[event.state for event in events_of(planned.path)] for planned in plan]
        assert all(story == [FileState.SEEN] for story in stories), stories  # nothing quarantined or rejected
    finally:
        site.orm.start()

    site.flow(lambda: all_in(plan, FileState.DELETED))
    assert_safe_at_pic(site, rucio_client, plan)


def test_a_copy_pics_server_cannot_serve_holds_and_one_it_proves_wrong_is_sent_again(
    site: XrootdSite, rucio_client: Any
) -> None:
    plan = night_files(date(2020, 6, 3), seed=63, count=4)
    site.watched = plan
    site.write(plan)
    site.flow(lambda: all_available_at_pic(rucio_client, plan), without=("magic-carrier", "reaper"))

    site.pic.stop()  # during verification: no copy can be read, none is proven wrong
    try:
        site.daemons.run_round("magic-carrier")
    finally:
        site.pic.start()
    rows = rows_of(plan)
    for planned in plan:
        row = rows[planned.path]
        assert row.state in (FileState.PROTECTED, FileState.REPLICATED), (planned.path, row.state)
        assert "copy unreadable, source kept" in (row.last_error or ""), row.last_error
        assert not any("declared bad" in (event.detail or "") for event in events_of(planned.path))
        assert (site.orm_folder / planned.path).exists()

    victim = plan[0]  # now a copy rewritten on PIC's disk after its transfer: same size, other bytes
    copy_path = pic_copy(site, victim)
    data = bytearray(copy_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy_path.write_bytes(bytes(data))
    site.daemons.run_round("magic-carrier")
    row = rows_of([victim])[victim.path]
    assert row.state is FileState.PROTECTED
    assert "declared bad" in events_of(victim.path)[-1].detail
    assert "adler32" in (row.last_error or "")
    assert (site.orm_folder / victim.path).exists()  # the source stays

    site.flow(lambda: all_in(plan, FileState.DELETED))  # sent again by the necromancer, proven, released
    assert_safe_at_pic(site, rucio_client, plan)
    story = [(event.state, event.detail or "") for event in events_of(victim.path)]
    failed = next(index for index, (_, detail) in enumerate(story) if "verification failed" in detail)
    assert [state for state, _ in story[failed:]] == [
        FileState.PROTECTED, FileState.REPLICATED, FileState.VERIFIED, FileState.RELEASED, FileState.DELETED,
    ]
