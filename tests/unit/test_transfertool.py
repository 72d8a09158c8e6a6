"""The magic transfertool: submit -> detached copier process -> bulk_query, on real files.

The transfers are Rucio's own objects (RseData, RequestWithSources, RequestSource, TransferDestination)
in a DirectTransfer whose URLs are already resolved, which is what the submitter hands to a transfertool.
No database is needed, and Rucio's global state is left as found (other tests may run a real stack).
"""

import configparser
import datetime
import os
import signal
import time
import types
import zlib
from pathlib import Path

import pytest

from rucio_magic_ext import layout
from rucio_magic_ext.transfertool import jobs
from tools.devstack.waiting import wait_until

MiB = 1024 * 1024
CLIENT_CONFIG = "[common]\nloglevel = INFO\n[client]\n[policy]\npermission = generic\nschema = generic\n"


@pytest.fixture(scope="module")
def rucio(tmp_path_factory):
    """Rucio's classes, imported under a database-less config when no Rucio config is set up."""
    from rucio.common.config import clean_cached_config, get_config_dirs

    configured = "RUCIO_CONFIG" in os.environ or any(
        os.path.exists(os.path.join(directory, "rucio.cfg")) for directory in get_config_dirs())
    with pytest.MonkeyPatch.context() as patch:
        if not configured:
            config = tmp_path_factory.mktemp("rucio-etc") / "rucio.cfg"
            config.write_text(CLIENT_CONFIG)
            patch.setenv("RUCIO_CONFIG", str(config))
            clean_cached_config()
        yield _import_rucio()
    if not configured:
        clean_cached_config()


def _import_rucio() -> types.SimpleNamespace:
    from rucio.common.types import InternalAccount, InternalScope
    from rucio.core.request import DirectTransfer, RequestSource, RequestWithSources, TransferDestination
    from rucio.core.rse import RseData
    from rucio.core.transfer import TRANSFERTOOL_CLASSES_BY_NAME, ProtocolFactory
    from rucio.db.sqla.constants import RequestState, RequestType

    from rucio_magic_ext.transfertool.register import register, stock_script
    from rucio_magic_ext.transfertool.tool import MagicCopyTransfertool

    class ResolvedTransfer(DirectTransfer):
        """A one-hop transfer with its source and destination URLs computed, as the submitter passes it on.

        Its protocols are Rucio's own, made by Rucio's ProtocolFactory from the RSEs' protocol definitions.
        """

        def __init__(self, source, destination, rws, source_url, dest_url):
            super().__init__(sources=[source], rws=rws)
            self.destination = destination
            self.protocols = ProtocolFactory()  # it caches by RSE id: one per transfer, as RSEs differ per test
            self._source_url = source_url
            self._dest_url = dest_url

        @property
        def src(self):
            return self.sources[0]

        @property
        def dst(self):
            return self.destination

        @property
        def dest_url(self):
            return self._dest_url

        def source_url(self, source):
            return self._source_url

        def dest_protocol(self):
            return self.protocols.protocol(self.dst.rse, self.dst.scheme, "third_party_copy_write")

        def source_protocol(self, source):
            return self.protocols.protocol(source.rse, source.scheme, "third_party_copy_read")

    return types.SimpleNamespace(
        InternalAccount=InternalAccount, InternalScope=InternalScope, RequestSource=RequestSource,
        RequestWithSources=RequestWithSources, TransferDestination=TransferDestination, RseData=RseData,
        TRANSFERTOOL_CLASSES_BY_NAME=TRANSFERTOOL_CLASSES_BY_NAME, RequestState=RequestState, RequestType=RequestType,
        register=register, stock_script=stock_script, MagicCopyTransfertool=MagicCopyTransfertool,
        ResolvedTransfer=ResolvedTransfer)


class Site:
    """An observatory RSE and a data-centre RSE, as folders in tmp_path, with the tool between them."""

    def __init__(self, rucio, tmp_path: Path):
        self.rucio = rucio
        self.origin_root = tmp_path / "orm"
        self.destination_root = tmp_path / "pic"
        self.origin = self.rse("ORM-ONSITE", self.origin_root)
        self.destination = self.rse("PIC-DISK", self.destination_root)
        self.tool = rucio.MagicCopyTransfertool(transfer_dir=tmp_path / "transfers", group_bulk=10, max_active=2)

    def rse(self, name: str, root: Path, rse_type: str = "DISK", scheme: str = "file"):
        """An RSE with one protocol whose prefix is `root`, defined as Rucio returns RSE info."""
        root.mkdir(parents=True, exist_ok=True)
        operations = ("read", "write", "delete", "third_party_copy_read", "third_party_copy_write")
        protocol = {"scheme": scheme, "hostname": "localhost", "port": 0, "prefix": f"{root}/",
                    "impl": "rucio.rse.protocols.posix.Default", "extended_attributes": None,
                    "domains": {domain: dict.fromkeys(operations, 1) for domain in ("lan", "wan")}}
        return self.rucio.RseData(id_=f"{name}-id", name=name, attributes={},
                                  info={"rse": name, "id": f"{name}-id", "rse_type": rse_type, "deterministic": False,
                                        "domain": ["lan", "wan"], "protocols": [protocol]})

    @staticmethod
    def prefix(rse) -> str:
        return rse.info["protocols"][0]["prefix"]

    def write(self, relative: str, data: bytes) -> Path:
        path = self.origin_root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def write_large(self, relative: str, size: int) -> Path:
        path = self.origin_root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        block = os.urandom(MiB)
        with open(path, "wb") as stream:
            for _ in range(size // MiB):
                stream.write(block)
        return path

    def hop(self, relative: str, size: int, adler32: str, request_id: str, destination=None, scheme: str = "file",
            dest_relative: str | None = None):
        """One transfer of the replica at `relative` on the origin to the same path (or `dest_relative`)."""
        r = self.rucio
        destination = destination or self.destination
        dest_relative = relative if dest_relative is None else dest_relative
        rws = r.RequestWithSources(
            id_=request_id, request_type=r.RequestType.TRANSFER, rule_id="rule", scope=r.InternalScope("magic"),
            name=Path(relative).name, md5=None, adler32=adler32, byte_count=size, activity="MAGIC Data",
            attributes=None, previous_attempt_id=None, dest_rse=destination, account=r.InternalAccount("root"),
            retry_count=0, priority=3, transfertool=None)
        source = r.RequestSource(rse=self.origin, file_path=relative, scheme="file")
        # The URLs as Rucio's protocols write them: scheme://hostname:port + prefix + path, joined as they are.
        return r.ResolvedTransfer(
            source, r.TransferDestination(rse=destination, scheme=scheme), rws,
            source_url=f"file://localhost:0{self.prefix(self.origin)}{relative}",
            dest_url=f"{scheme}://localhost:0{self.prefix(destination)}{dest_relative}")

    def hop_for(self, relative: str, data_path: Path, request_id: str, adler32: str | None = None):
        data = data_path.read_bytes()
        return self.hop(relative, len(data), adler32 or f"{zlib.adler32(data):08x}", request_id)

    @staticmethod
    def final_path(hop) -> Path:
        return Path(hop.dest_url.removeprefix("file://localhost:0"))


def poll_until_final(tool, job_id: str, request_ids, timeout: float = 60.0) -> dict:
    """bulk_query as the poller does, until every request has a final report."""

    def final() -> dict | None:
        reports = tool.bulk_query({job_id: {rid: {"request_id": rid} for rid in request_ids}})[job_id]
        return reports if reports is not None and set(reports) == set(request_ids) else None

    return wait_until(final, timeout, lambda: f"job {job_id} did not finish: {tool.query([job_id])}", every=0.05)


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".part")]


@pytest.fixture
def site(rucio, tmp_path):
    return Site(rucio, tmp_path)


def test_registration_adds_the_tool_for_the_conveyor_daemons(rucio):
    rucio.register()
    assert rucio.TRANSFERTOOL_CLASSES_BY_NAME["magic"] is rucio.MagicCopyTransfertool
    assert rucio.TRANSFERTOOL_CLASSES_BY_NAME["fts3"].external_name == "fts3"
    for daemon in ("rucio-conveyor-preparer", "rucio-conveyor-submitter", "rucio-conveyor-poller"):
        assert rucio.stock_script(daemon).is_file()


def test_the_tool_takes_one_hop_it_can_copy(rucio, site, tmp_path):
    hop = site.hop("a/f1", 1, "00000001", "r1")
    sub_path, builder = rucio.MagicCopyTransfertool.submission_builder_for_path([hop, hop])
    assert sub_path == [hop]
    assert builder.make_transfertool(transfer_dir=tmp_path, group_bulk=1, max_active=1).external_name == "magic"

    remote = site.rse("PIC-ROOT", tmp_path / "root", scheme="root")
    unreachable = site.hop("a/f1", 1, "00000001", "r2", destination=remote, scheme="root")
    assert rucio.MagicCopyTransfertool.submission_builder_for_path([unreachable]) == ([], None)


def test_transfers_are_grouped_into_jobs_of_group_bulk(site):
    hops = [[site.hop(f"a/f{i}", 1, "00000001", f"r{i}")] for i in range(25)]
    site.tool.group_bulk = 10
    assert [len(job["transfers"]) for job in site.tool.group_into_submit_jobs(hops)] == [10, 10, 5]


def test_submit_copies_verifies_and_reports_done(site):
    hops = []
    for index in range(3):
        relative = f"2024/01/01/M1_20240101_0501234{index}.001_D_CrabNebula-W0.40+035.root"
        path = site.write(relative, os.urandom(100_000 + index))
        hops.append(site.hop_for(relative, path, f"request-{index}"))

    job_id = site.tool.submit(hops, job_params={})
    # The poller makes its own instance, from the external_host stored with the requests.
    poller_side = type(site.tool)(external_host=site.tool.external_host, transfer_dir=site.tool.store.root,
                                 group_bulk=1, max_active=1)
    reports = poll_until_final(poller_side, job_id, [h.rws.request_id for h in hops])

    for hop in hops:
        report = reports[hop.rws.request_id]
        assert report.state == site.rucio.RequestState.DONE
        assert report.external_id == job_id
        assert report.source_rse_id == site.origin.id
        fields = report.get_db_fields_to_update(session=None)
        assert fields["state"] == site.rucio.RequestState.DONE and fields["external_id"] == job_id
        assert "err_msg" not in fields
        assert isinstance(fields["transferred_at"], datetime.datetime)
        source = site.origin_root / hop.src.file_path
        assert site.final_path(hop).read_bytes() == source.read_bytes()
    assert leftovers(site.destination_root) == []


def test_missing_source_fails_with_the_reason(site):
    hop = site.hop("2024/01/01/never-written.root", 10, "00000001", "request-missing")
    job_id = site.tool.submit([hop], job_params={})
    report = poll_until_final(site.tool, job_id, ["request-missing"])["request-missing"]

    assert report.state == site.rucio.RequestState.FAILED
    assert "SOURCE file not found" in report.reason and "No such file or directory" in report.reason
    assert "TRANSFER_FAILED:SOURCE file not found" in report.get_db_fields_to_update(session=None)["err_msg"]
    assert not site.final_path(hop).exists()


def test_checksum_differing_from_the_catalogue_fails_and_leaves_no_file(site):
    relative = "2024/01/01/f.root"
    path = site.write(relative, os.urandom(50_000))
    hop = site.hop_for(relative, path, "request-bad-catalogue", adler32="deadbeef")
    job_id = site.tool.submit([hop], job_params={})
    report = poll_until_final(site.tool, job_id, ["request-bad-catalogue"])["request-bad-catalogue"]

    assert report.state == site.rucio.RequestState.FAILED
    assert "checksum mismatch" in report.reason and "deadbeef" in report.reason
    assert not site.final_path(hop).exists()
    assert leftovers(site.destination_root) == []


def test_destination_corrupted_during_the_copy_fails_and_leaves_no_file(site):
    relative = "2024/01/01/big.root"
    path = site.write_large(relative, 256 * MiB)
    hop = site.hop_for(relative, path, "request-corrupted")
    job_id = site.tool.submit([hop], job_params={})

    # Freeze the copier while it writes the temporary file, damage the bytes already written, resume.

    def writing() -> tuple[list[Path], dict] | None:
        parts = leftovers(site.destination_root)
        status = site.tool.store.read_status(job_id)
        return (parts, status) if parts and status.get("pid") and parts[0].stat().st_size >= 16 * MiB else None

    parts, status = wait_until(writing, 30, "the copier did not start writing", every=0.001)
    os.kill(status["pid"], signal.SIGSTOP)
    try:
        assert parts[0].stat().st_size < 256 * MiB, "the copy finished before it could be interrupted"
        with open(parts[0], "r+b") as stream:
            stream.write(b"\xff" * 64)
    finally:
        os.kill(status["pid"], signal.SIGCONT)

    report = poll_until_final(site.tool, job_id, ["request-corrupted"])["request-corrupted"]
    assert report.state == site.rucio.RequestState.FAILED
    assert "DESTINATION checksum mismatch" in report.reason
    assert not site.final_path(hop).exists()
    assert leftovers(site.destination_root) == []


def test_a_big_file_does_not_block_submit(site):
    relative = "2024/01/01/huge.root"
    path = site.write_large(relative, 512 * MiB)
    hop = site.hop_for(relative, path, "request-big")

    started = time.monotonic()
    job_id = site.tool.submit([hop], job_params={})
    submit_seconds = time.monotonic() - started
    pid = site.tool.store.read_status(job_id).get("pid")
    poll_until_final(site.tool, job_id, ["request-big"], timeout=300)
    copy_seconds = time.monotonic() - started

    assert submit_seconds < 0.5
    assert submit_seconds * 5 < copy_seconds
    assert pid is None or os.getsid(pid) != os.getsid(0), "the copier must run in its own session"
    assert site.final_path(hop).stat().st_size == 512 * MiB


def test_cancel_stops_the_copy_and_leaves_no_file(site):
    relative = "2024/01/01/cancelled.root"
    path = site.write_large(relative, 256 * MiB)
    hop = site.hop_for(relative, path, "request-cancelled")
    job_id = site.tool.submit([hop], job_params={})
    site.tool.cancel([job_id])

    report = poll_until_final(site.tool, job_id, ["request-cancelled"])["request-cancelled"]
    assert report.state == site.rucio.RequestState.FAILED and "cancelled" in report.reason
    assert not site.final_path(hop).exists()
    assert leftovers(site.destination_root) == []


def test_an_existing_identical_destination_counts_as_done(site):
    relative = "2024/01/01/again.root"
    path = site.write(relative, os.urandom(1000))
    hop = site.hop_for(relative, path, "request-again")
    final = site.final_path(hop)
    final.parent.mkdir(parents=True, exist_ok=True)
    final.write_bytes(path.read_bytes())

    job_id = site.tool.submit([hop], job_params={})
    report = poll_until_final(site.tool, job_id, ["request-again"])["request-again"]
    assert report.state == site.rucio.RequestState.DONE and "already holds" in report.reason


def test_a_differing_file_on_tape_is_not_overwritten(site, tmp_path):
    tape = site.rse("PIC-TAPE", tmp_path / "tape", rse_type="TAPE")
    relative = "2024/01/01/tape.root"
    path = site.write(relative, os.urandom(1000))
    data = path.read_bytes()
    hop = site.hop(relative, len(data), f"{zlib.adler32(data):08x}", "request-tape", destination=tape)
    final = site.final_path(hop)
    final.parent.mkdir(parents=True)
    final.write_bytes(b"older, different bytes")

    job_id = site.tool.submit([hop], job_params={})
    report = poll_until_final(site.tool, job_id, ["request-tape"])["request-tape"]
    assert report.state == site.rucio.RequestState.FAILED and "overwrite is not allowed" in report.reason
    assert final.read_bytes() == b"older, different bytes"


def test_unknown_jobs_are_lost_and_dead_copiers_fail(site):
    assert site.tool.bulk_query({"no-such-job": {"r": {}}}) == {"no-such-job": None}

    job_id = site.tool.store.create({"files": [{"request_id": "r1"}], "max_active": 1})
    assert site.tool.bulk_query({job_id: {"r1": {}}}) == {job_id: {}}  # queued, copier starting

    status = site.tool.store.read_status(job_id)
    status.update(state=jobs.ACTIVE, pid=1)
    status["files"]["r1"] = {"state": jobs.ACTIVE}
    site.tool.store.write_status(job_id, status)  # but nobody holds the job's lock
    report = site.tool.bulk_query({job_id: {"r1": {}}})[job_id]["r1"]
    assert report.state == site.rucio.RequestState.FAILED and "copier process ended" in report.reason


# --- no source is read and no destination written outside its RSE's root ---------------------------------

def files_outside(tmp_path: Path, *inside: Path) -> dict[str, bytes]:
    """Every file under tmp_path but not under `inside` (the job store, the RSE roots), with its bytes."""
    return {str(p): p.read_bytes() for p in sorted(tmp_path.rglob("*"))
            if p.is_file() and not any(p.is_relative_to(folder) for folder in inside)}


def test_the_job_records_each_url_with_its_rse_root(site):
    relative = "2024/01/01/rooted.root"
    path = site.write(relative, b"bytes")
    spec = site.tool.file_spec(site.hop_for(relative, path, "request-rooted"))
    assert spec["dest_root"] == f"file://localhost:0{site.destination_root}"
    assert [source["root"] for source in spec["sources"]] == [f"file://localhost:0{site.origin_root}"]


def test_a_dot_dot_destination_is_refused_and_nothing_is_written_outside_the_root(site, tmp_path):
    """Rucio's hash layout of a non-MAGIC DID named `../../../../escaped.root` climbs out of PIC's prefix."""
    relative = "2024/01/01/escape.root"
    path = site.write(relative, os.urandom(10_000))
    dest_relative = layout.hashed_path("user.jdoe", "../../../../escaped.root")
    assert os.path.normpath(site.destination_root / dest_relative) == str(tmp_path / "escaped.root")
    data = path.read_bytes()
    hop = site.hop(relative, len(data), f"{zlib.adler32(data):08x}", "request-escape", dest_relative=dest_relative)
    before = files_outside(tmp_path, site.tool.store.root)

    job_id = site.tool.submit([hop], job_params={})
    report = poll_until_final(site.tool, job_id, ["request-escape"])["request-escape"]

    assert report.state == site.rucio.RequestState.FAILED
    assert report.reason.startswith("DESTINATION outside its RSE's root")
    assert hop.dest_url in report.reason and str(site.destination_root) in report.reason
    assert "TRANSFER_FAILED:DESTINATION outside" in report.get_db_fields_to_update(session=None)["err_msg"]
    assert files_outside(tmp_path, site.tool.store.root) == before
    assert not (tmp_path / "escaped.root").exists()
    assert [p for p in tmp_path.rglob("*") if "escaped" in p.name] == []


def test_a_dot_dot_source_is_refused_and_not_read(site, tmp_path):
    secret = tmp_path / "secret.root"
    secret.write_bytes(b"not a replica of this RSE")
    data = secret.read_bytes()
    hop = site.hop("../secret.root", len(data), f"{zlib.adler32(data):08x}", "request-secret",
                   dest_relative="2024/01/01/secret.root")

    job_id = site.tool.submit([hop], job_params={})
    report = poll_until_final(site.tool, job_id, ["request-secret"])["request-secret"]

    assert report.state == site.rucio.RequestState.FAILED
    assert report.reason.startswith("SOURCE outside its RSE's root") and str(site.origin_root) in report.reason
    assert not site.final_path(hop).exists()
    assert list(site.destination_root.rglob("*")) == []


def test_a_normal_copy_next_to_a_refused_one_still_works(site, tmp_path):
    good_relative, bad_relative = "2024/01/02/good.root", "2024/01/02/bad.root"
    good, bad = site.write(good_relative, os.urandom(5000)), site.write(bad_relative, os.urandom(5000))
    good_hop = site.hop_for(good_relative, good, "request-good")
    bad_data = bad.read_bytes()
    bad_hop = site.hop(bad_relative, len(bad_data), f"{zlib.adler32(bad_data):08x}", "request-bad",
                       dest_relative=f"2024/../../{bad_relative}")
    before = files_outside(tmp_path, site.tool.store.root, site.destination_root)

    job_id = site.tool.submit([bad_hop, good_hop], job_params={})
    reports = poll_until_final(site.tool, job_id, ["request-bad", "request-good"])

    assert reports["request-bad"].state == site.rucio.RequestState.FAILED
    assert reports["request-good"].state == site.rucio.RequestState.DONE
    assert site.final_path(good_hop).read_bytes() == good.read_bytes()
    assert files_outside(tmp_path, site.tool.store.root, site.destination_root) == before
    assert leftovers(tmp_path) == []


def test_a_job_that_records_no_root_is_not_copied(site, tmp_path):
    """A job written without roots (say, by an older submitter) fails rather than copy unconfined."""
    from rucio_magic_ext.transfertool.copier import run_job

    relative = "2024/01/03/old.root"
    path = site.write(relative, b"old job")
    spec = site.tool.file_spec(site.hop_for(relative, path, "request-old"))
    del spec["dest_root"]
    job_id = site.tool.store.create({"files": [spec], "max_active": 1, "report": False})
    run_job(site.tool.store, job_id)

    outcome = site.tool.store.read_status(job_id)["files"]["request-old"]
    assert outcome["state"] == jobs.FAILED and "root unknown" in outcome["reason"]
    assert list(site.destination_root.rglob("*")) == []

    spec = site.tool.file_spec(site.hop_for(relative, path, "request-old-source"))
    del spec["sources"][0]["root"]
    job_id = site.tool.store.create({"files": [spec], "max_active": 1, "report": False})
    run_job(site.tool.store, job_id)
    outcome = site.tool.store.read_status(job_id)["files"]["request-old-source"]
    assert outcome["state"] == jobs.FAILED and outcome["reason"].startswith("SOURCE storage root unknown")
    assert list(site.destination_root.rglob("*")) == []


def test_a_copier_never_serves_the_submitters_metrics_port(tmp_path, monkeypatch):
    from rucio_magic_ext.transfertool.tool import copier_config

    served = tmp_path / "served.cfg"
    database = "[database]\ndefault = sqlite:////tmp/x.db\n"
    served.write_text(database + "\n[monitor]\nenable_metrics = True\nmetrics_port = 8091\n")
    monkeypatch.setenv("RUCIO_CONFIG", str(served))
    job = tmp_path / "job"
    job.mkdir()
    quiet = copier_config(job)
    assert quiet == job / "rucio.cfg"
    written = configparser.ConfigParser()
    written.read(quiet)
    assert written.getboolean("monitor", "enable_metrics") is False
    assert written.get("database", "default") == "sqlite:////tmp/x.db"  # it still reports through the database

    plain = tmp_path / "plain.cfg"
    plain.write_text(database)
    monkeypatch.setenv("RUCIO_CONFIG", str(plain))
    assert copier_config(job) is None
