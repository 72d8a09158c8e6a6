"""Stock Rucio moving real bytes: ORM-ONSITE -> PIC-DISK through the conveyor and the project's transfer tool,
then the source copy reaped once a purge_replicas carrier rule is released. And what must fail, failing."""

from __future__ import annotations

import os
import signal
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tools.devstack.waiting import in_rounds, wait_until

pytestmark = pytest.mark.integration

ORM, PIC = "ORM-ONSITE", "PIC-DISK"
# The transfers of these tests have an activity of their own, so that what other tests left queued does not
# stand in front of them.
ACTIVITY = "Functional Test"
CONVEYOR = ("conveyor-preparer", "conveyor-submitter", "conveyor-poller", "conveyor-finisher")
OPTIONS = {
    "conveyor-preparer": ("--bulk", "100000"),  # all that is waiting, in one pass
    "conveyor-poller": ("--older-than", "0"),
    "conveyor-submitter": ("--activities", ACTIVITY),
}


class Site:
    """The stack's two storages, seen as a test needs them."""

    def __init__(self, stack: Any, client: Any) -> None:
        self.stack = stack
        self.client = client
        self.orm_prefix = Path(client.get_protocols(ORM)[0]["prefix"])
        self.pic_prefix = Path(client.get_protocols(PIC)[0]["prefix"])

    def observatory_file(self, name: str, folder: str, data: bytes | None = None, size: int = 0) -> tuple[Path, str]:
        """A file written at the observatory, and its PFN."""
        path = self.orm_prefix / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if data is not None:
            path.write_bytes(data)
        elif size:
            with open(path, "wb") as stream:
                block = os.urandom(1 << 20)
                for _ in range(size >> 20):
                    stream.write(block)
        return path, f"file://localhost:0{path}"

    def register(self, scope: str, name: str, pfn: str, size: int, adler32: str) -> None:
        self.client.add_replicas(ORM, [{"scope": scope, "name": name, "bytes": size, "adler32": adler32, "pfn": pfn}])

    def replica_states(self, scope: str, name: str) -> dict[str, str]:
        replicas = list(self.client.list_replicas([{"scope": scope, "name": name}], all_states=True))
        return replicas[0]["states"] if replicas else {}


@pytest.fixture
def site(rucio_stack: Any, rucio_client: Any) -> Site:
    return Site(rucio_stack, rucio_client)


def _adler32(path: Path) -> str:
    value = 1
    with open(path, "rb") as stream:
        while block := stream.read(1 << 22):
            value = zlib.adler32(block, value)
    return f"{value:08x}"


def _request(scope: str, name: str, rse: str) -> dict[str, Any]:
    from rucio.common.types import InternalScope
    from rucio.core.request import get_request_by_did
    from rucio.core.rse import get_rse_id

    return get_request_by_did(InternalScope(scope), name, get_rse_id(rse))


def drive(run_daemon_once: Callable[..., None], done: Callable[[], bool], daemons=CONVEYOR, rounds: int = 8) -> None:
    """Run the daemons' passes in order until ``done()``: the copier works between the passes."""

    def passes() -> None:
        for daemon in daemons:
            run_daemon_once(daemon, *OPTIONS.get(daemon, ()))
            if done():
                return

    if in_rounds(passes, done, rounds, pause=0.5) is None:
        pytest.fail(f"not done after {rounds} rounds of {', '.join(daemons)}")


def test_a_file_moves_end_to_end_and_its_source_is_reaped_after_the_carrier_goes(
    site: Site, run_daemon_once: Callable[..., None]
) -> None:
    name = "20200103_M2_05088072.001_D_BLLac-W0.40+090.raw.gz"
    data = os.urandom(3_000_000)
    source, pfn = site.observatory_file(name, "M2/DAQ/RAW/2020_01_03", data)
    site.register("magic_raw", name, pfn, len(data), f"{zlib.adler32(data):08x}")
    did = [{"scope": "magic_raw", "name": name}]
    carrier = site.client.add_replication_rule(did, 1, ORM, purge_replicas=True, activity="MAGIC Carrier")[0]
    permanent = site.client.add_replication_rule(did, 1, PIC, activity=ACTIVITY)[0]

    drive(run_daemon_once, lambda: site.client.get_replication_rule(permanent)["state"] == "OK")

    destination = site.pic_prefix / "M2/RAW/2020/01/03" / name
    assert site.replica_states("magic_raw", name) == {ORM: "AVAILABLE", PIC: "AVAILABLE"}
    assert destination.read_bytes() == data and _adler32(destination) == f"{zlib.adler32(data):08x}"
    assert not list(destination.parent.glob(".*.part"))

    # Released as Rucio's own move_rule releases a rule: it expires now, judge-cleaner removes it, its
    # purge_replicas makes the unlocked source replica OBSOLETE, and the reaper deletes it.
    site.client.update_replication_rule(carrier, {"lifetime": 0})
    run_daemon_once("judge-cleaner")
    run_daemon_once("reaper", "--rses", ORM)

    assert not source.exists()
    assert site.replica_states("magic_raw", name) == {PIC: "AVAILABLE"}
    assert destination.read_bytes() == data
    assert site.client.get_replication_rule(permanent)["state"] == "OK"


def test_a_missing_source_fails_the_request_with_the_reason(site: Site, run_daemon_once: Callable[..., None]) -> None:
    name = "20200103_M2_05088073.001_D_BLLac-W0.40+270.raw.gz"
    _, pfn = site.observatory_file(name, "M2/DAQ/RAW/2020_01_03")  # registered, but never written
    site.register("magic_raw", name, pfn, 1000, "0badc0de")
    site.client.add_replication_rule([{"scope": "magic_raw", "name": name}], 1, PIC, activity=ACTIVITY)

    drive(run_daemon_once, lambda: _request("magic_raw", name, PIC)["state"].name == "FAILED", CONVEYOR[:3])

    failed = _request("magic_raw", name, PIC)
    assert "SOURCE" in failed["err_msg"] and "not found" in failed["err_msg"]
    assert site.replica_states("magic_raw", name).get(PIC) != "AVAILABLE"
    assert not list((site.pic_prefix / "M2/RAW/2020/01/03").glob(f"*{name}*"))


def test_a_destination_corrupted_mid_copy_fails_and_leaves_no_file(
    site: Site, run_daemon_once: Callable[..., None]
) -> None:
    from rucio_magic_ext.transfertool.tool import MagicCopyTransfertool

    name = "20200103_M1_05088074.001_D_BLLac-W0.40+000.raw.gz"
    source, pfn = site.observatory_file(name, "M1/DAQ/RAW/2020_01_03", size=256 << 20)
    site.register("magic_raw", name, pfn, source.stat().st_size, _adler32(source))
    site.client.add_replication_rule([{"scope": "magic_raw", "name": name}], 1, PIC, activity=ACTIVITY)
    run_daemon_once("conveyor-preparer", *OPTIONS["conveyor-preparer"])
    run_daemon_once("conveyor-submitter", *OPTIONS["conveyor-submitter"])

    folder = site.pic_prefix / "M1/RAW/2020/01/03"
    store = MagicCopyTransfertool().store
    job = _request("magic_raw", name, PIC)["external_id"]

    def writing() -> tuple[int, Path] | None:  # freeze the copier while it writes, damage what it wrote, let it go on
        parts = list(folder.glob(".*.part")) if folder.exists() else []
        pid = store.read_status(job).get("pid")
        return (pid, parts[0]) if pid and parts and parts[0].stat().st_size >= 16 << 20 else None

    pid, part = wait_until(writing, 60, "the copier never started writing", every=0.001)
    os.kill(pid, signal.SIGSTOP)
    try:
        with open(part, "r+b") as stream:
            stream.seek(1 << 20)
            stream.write(b"\0" * 4096)
    finally:
        os.kill(pid, signal.SIGCONT)

    drive(run_daemon_once, lambda: _request("magic_raw", name, PIC)["state"].name == "FAILED", CONVEYOR[2:3])

    assert "DESTINATION checksum mismatch" in _request("magic_raw", name, PIC)["err_msg"]
    assert not (folder / name).exists()
    assert not list(folder.glob(".*.part"))
    assert site.replica_states("magic_raw", name).get(PIC) != "AVAILABLE"


def test_the_copier_reports_to_rucio_without_waiting_for_the_poller(
    site: Site, run_daemon_once: Callable[..., None]
) -> None:
    name = "20200103_M2_05088075.001_D_BLLac-W0.40+180.raw.gz"
    data = os.urandom(100_000)
    _, pfn = site.observatory_file(name, "M2/DAQ/RAW/2020_01_03", data)
    site.register("magic_raw", name, pfn, len(data), f"{zlib.adler32(data):08x}")
    rule = site.client.add_replication_rule([{"scope": "magic_raw", "name": name}], 1, PIC, activity=ACTIVITY)[0]
    run_daemon_once("conveyor-preparer", *OPTIONS["conveyor-preparer"])
    run_daemon_once("conveyor-submitter", *OPTIONS["conveyor-submitter"])

    done = lambda: _request("magic_raw", name, PIC)["state"].name == "DONE"  # noqa: E731
    wait_until(done, 30, "the copier did not report", every=0.2)  # no poller runs
    run_daemon_once("conveyor-finisher")
    assert site.client.get_replication_rule(rule)["state"] == "OK"
