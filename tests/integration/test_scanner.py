"""rucio-magic-scanner on the real stack: one cycle registers, organises and protects a night; half-written
and foreign files wait or are refused; two scanners share the work; a scanner killed anywhere converges."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from scenery import (
    ORM,
    adler32_of,
    assert_all_in,
    dids_of,
    events_of,
    ledger,
    orm_root,
    placement,
    rows_of,
    states_of,
    write_file,
    write_observed_night,
)

from rucio_magic_ext import layout
from rucio_magic_ext.carrier.model import CARRIER_SCOPE, SOURCE_RULE_COMMENT
from rucio_magic_ext.ledger import FileState

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def no_copy_left_queued() -> Iterator[None]:
    """This module registers nights and never copies them. At its end their permanent rules go, and with them
    their queued transfers: Rucio's submitter takes requests oldest first, so later modules' copies would
    otherwise wait behind them."""
    from rucio.common.types import InternalScope
    from rucio.db.sqla import models
    from sqlalchemy import select

    from rucio_magic_ext import rucio_db
    from rucio_magic_ext.common import utcnow

    started = utcnow()
    yield
    table = models.ReplicationRule
    with rucio_db.writing() as session:
        scopes = [InternalScope(scope) for scope in layout.SCOPES]  # the carriers keep their source rules
        query = select(table.id).where(table.created_at >= started, table.scope.in_(scopes))
        for rule_id in session.scalars(query).all():
            rucio_db.delete_rule(str(rule_id), purge_replicas=False, session=session)


def scan(run_daemon_once: Any) -> None:
    run_daemon_once("magic-scanner")


def test_one_cycle_registers_organises_and_protects_a_night(
    rucio_stack: Any, rucio_client: Any, run_daemon_once: Any
) -> None:
    plan = write_observed_night(rucio_stack, date(2020, 2, 1))
    raw_folder = "M1/DAQ/RAW/2020_02_01"
    foreign = [write_file(rucio_stack, f"{raw_folder}/notes.txt", b"shift log"),
               write_file(rucio_stack, "M1/OSA/Calibrated/2020/02/01/Output_flute.root", b"flute")]  # fmt: skip
    growing = write_file(
        rucio_stack, f"{raw_folder}/20200201_M1_05099999.001_D_CrabNebula-W0.40+035.raw", b"x" * 10, time.time() + 3600
    )  # written "now" as far as any cycle can tell

    scan(run_daemon_once)

    assert_all_in(plan, FileState.PROTECTED)
    replicas = {r["name"]: r for r in rucio_client.list_replicas(dids_of(plan), rse_expression=ORM, all_states=True)}
    assert len(replicas) == len(plan)
    for planned in plan:
        replica = replicas[planned.name]
        path = orm_root(rucio_stack) / planned.path
        assert replica["states"][ORM] == "AVAILABLE"
        assert list(replica["pfns"]) == [f"file://localhost{path}"]  # registered where it was written
        assert (replica["bytes"], replica["adler32"]) == (planned.size, adler32_of(path))

    sample = next(p for p in plan if p.record.run_type == "Y" and p.record.source)
    meta = rucio_client.get_metadata(layout.scope(sample.record), sample.name, plugin="ALL")
    assert meta["night"] == "2020-02-01" and meta["source"] == sample.record.source
    assert meta["run_number"] == sample.record.run and meta["telescope"] == sample.record.telescope.value
    assert meta["datatype"] == sample.record.level.value and meta["subrun"] == sample.record.subrun

    placed = layout.placement(sample.record)
    assert sample.name in {d["name"] for d in rucio_client.list_content(placed.scope, placed.dataset)}
    chain = [placed.dataset, *placed.containers]
    for child, parent in zip(chain, chain[1:]):
        assert child in {d["name"] for d in rucio_client.list_content(placed.scope, parent)}
    rules = list(rucio_client.list_did_rules(placed.scope, placed.dataset))
    assert [(r["rse_expression"], r["comments"]) for r in rules] == [("PIC-DISK", "magic-policy:analysis-to-pic")]

    carriers = {row.carrier for row in rows_of(plan).values()}
    assert None not in carriers
    for carrier in carriers:
        assert rucio_client.get_did(CARRIER_SCOPE, carrier)["open"] is False
        carrier_rules = {r["comments"]: r for r in rucio_client.list_did_rules(CARRIER_SCOPE, carrier)}
        assert carrier_rules[SOURCE_RULE_COMMENT]["rse_expression"] == ORM
        assert carrier_rules[SOURCE_RULE_COMMENT]["purge_replicas"] is True
        assert list(carrier_rules) == [SOURCE_RULE_COMMENT]  # the copies are the policy rules' work

    known = ledger().known(ORM, [f"{raw_folder}/notes.txt", "M1/OSA/Calibrated/2020/02/01/Output_flute.root"])
    assert {row.state for row in known.values()} == {FileState.REJECTED}
    assert "not a MAGIC name" in known[f"{raw_folder}/notes.txt"].last_error
    assert "not unique by itself" in known["M1/OSA/Calibrated/2020/02/01/Output_flute.root"].last_error
    assert all(path.exists() for path in foreign)  # left on storage, untouched

    grown = f"{raw_folder}/{growing.name}"
    assert ledger().known(ORM, [grown])[grown].state is FileState.SEEN  # still being written: waits
    with open(growing, "ab") as stream:
        stream.write(b"more")
    os.utime(growing, (time.time() + 3600, time.time() + 3600))
    scan(run_daemon_once)
    row = ledger().known(ORM, [grown])[grown]
    assert (row.state, row.size) == (FileState.SEEN, 14)
    os.utime(growing, (time.time() - 60, time.time() - 60))  # closed a minute ago, longer than the settle time
    scan(run_daemon_once)  # sees the new mtime: one more look
    scan(run_daemon_once)  # unchanged and old enough: settled, and on through the stages
    assert ledger().known(ORM, [grown])[grown].state is FileState.PROTECTED


def test_bad_files_are_quarantined_not_registered(rucio_stack: Any, run_daemon_once: Any) -> None:
    folder = "M2/DAQ/RAW/2020_02_02"
    old = time.time() - 3600
    empty = write_file(rucio_stack, f"{folder}/20200202_M2_05099001.001_D_CrabNebula-W0.40+035.raw", b"", old)
    truncated_name = "20200202_M2_05099001.002_D_CrabNebula-W0.40+035.raw.gz"
    import gzip

    whole = gzip.compress(os.urandom(50_000))
    write_file(rucio_stack, f"{folder}/{truncated_name}", whole[:-8], old)  # trailer never written
    scan(run_daemon_once)
    rows = ledger().known(ORM, [f"{folder}/{empty.name}", f"{folder}/{truncated_name}"])
    assert rows[f"{folder}/{empty.name}"].state is FileState.QUARANTINED
    assert "empty" in rows[f"{folder}/{empty.name}"].last_error
    assert rows[f"{folder}/{truncated_name}"].state is FileState.QUARANTINED
    assert "gzip" in rows[f"{folder}/{truncated_name}"].last_error


def test_a_replica_registered_elsewhere_before_is_an_error_not_overwritten(
    rucio_stack: Any, rucio_client: Any, run_daemon_once: Any
) -> None:
    name = "20200203_M1_05099100.001_D_CrabNebula-W0.40+035.raw"
    real = f"M1/DAQ/RAW/2020_02_03/{name}"
    path = write_file(rucio_stack, real, os.urandom(1000), time.time() - 3600)
    elsewhere = f"file://localhost:0{orm_root(rucio_stack)}/old/{name}"
    rucio_client.add_replicas(ORM, [{"scope": "magic_raw", "name": name, "bytes": 1000,
                                     "adler32": adler32_of(path), "pfn": elsewhere}])  # fmt: skip
    scan(run_daemon_once)
    row = ledger().known(ORM, [real])[real]
    assert row.state is FileState.CHECKSUMMED
    assert "already registered" in row.last_error and "old/" in row.last_error and row.attempts == 1


def test_two_scanners_share_one_source_without_duplicates(rucio_stack: Any, rucio_client: Any) -> None:
    plan = write_observed_night(rucio_stack, date(2020, 2, 4), runs=4, seed=4)
    command = [f"{sys.prefix}/bin/rucio-magic-scanner", "--run-once", "--partition-wait-time", "3"]
    scanners = [subprocess.Popen(command, env=rucio_stack.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                for _ in range(2)]  # fmt: skip
    for scanner in scanners:
        assert scanner.wait(timeout=300) == 0, scanner.stderr.read().decode()[-2000:] if scanner.stderr else ""
    for _ in range(3):  # what a race set aside, the next cycles finish
        if states_of(plan) == Counter({FileState.PROTECTED: len(plan)}):
            break
        subprocess.run(command, env=rucio_stack.env, capture_output=True, check=True, timeout=300)
    _assert_converged(rucio_client, plan)
    registered = Counter(
        p.path for p in plan for e in events_of(p.path) if e.actor == "scanner.register" and not e.detail
    )
    assert set(registered.values()) == {1}  # each file registered exactly once, by one of the two


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from rucio_magic_ext.ledger.store import Ledger
    from rucio_magic_ext.scanner import cycle
    from rucio_magic_ext.scanner.daemon import build_context

    stage, when = sys.argv[1], sys.argv[2]
    context = build_context()
    original = Ledger.move

    def move(self, files, target, *args, **kwargs):
        # "after-rucio": Rucio has committed, the ledger does not know yet
        if when == "after-rucio" and files and cycle_stage[0] == stage:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, files, target, *args, **kwargs)

    Ledger.move = move
    cycle_stage = [None]
    stages = []
    for name, function in cycle.STAGES:
        def run(context, name=name, function=function):
            cycle_stage[0] = name
            return function(context)
        stages.append((name, run))
        if when == "between" and name == stage:
            stages.append(("kill", lambda context: os.kill(os.getpid(), signal.SIGKILL)))
    cycle.run_cycle(context, tuple(stages))
    sys.exit(3)  # the kill point was never reached
    """
)


@pytest.mark.parametrize(
    ("stage", "when"),
    [(stage, "between") for stage in ("discover", "settle", "checksum", "register", "protect")]
    + [("register", "after-rucio"), ("protect", "after-rucio")],
)
def test_killed_anywhere_the_scanner_converges(
    rucio_stack: Any, rucio_client: Any, run_daemon_once: Any, stage: str, when: str
) -> None:
    night = date(2020, 3, 1 + ["discover", "settle", "checksum", "register", "protect"].index(stage)
                 + (10 if when == "after-rucio" else 0))  # fmt: skip
    plan = write_observed_night(rucio_stack, night, runs=3, seed=night.day)
    killed = subprocess.run([sys.executable, "-c", KILLER, stage, when], env=rucio_stack.env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-3000:]
    for _ in range(3):
        scan(run_daemon_once)
    _assert_converged(rucio_client, plan)


def _assert_converged(rucio_client: Any, plan: list) -> None:
    """Every file registered once, in place, protected once: no duplicate DID, attachment or rule."""
    assert_all_in(plan, FileState.PROTECTED)
    replicas = list(rucio_client.list_replicas(dids_of(plan), rse_expression=ORM))
    assert sorted(r["name"] for r in replicas) == sorted(p.name for p in plan)
    datasets = {(placement(p).scope, placement(p).dataset) for p in plan}
    for scope, dataset in datasets:
        comments = [r["comments"] for r in rucio_client.list_did_rules(scope, dataset)]
        assert len(comments) == len(set(comments)), f"duplicate rules on {dataset}: {comments}"
        content = [d["name"] for d in rucio_client.list_content(scope, dataset)]
        assert len(content) == len(set(content))
    rows = rows_of(plan)
    for carrier in {row.carrier for row in rows.values()}:
        members = [d["name"] for d in rucio_client.list_content(CARRIER_SCOPE, carrier)]
        assert sorted(members) == sorted(row.name for row in rows.values() if row.carrier == carrier)
        comments = [r["comments"] for r in rucio_client.list_did_rules(CARRIER_SCOPE, carrier)]
        assert len(comments) == len(set(comments)) and SOURCE_RULE_COMMENT in comments
    for planned in plan:  # each file in exactly one carrier dataset
        parents = [p for p in rucio_client.list_parent_dids(layout.scope(planned.record), planned.name)
                   if p["scope"] == CARRIER_SCOPE]  # fmt: skip
        assert len(parents) == 1, f"{planned.name} in carriers {parents}"


def test_a_finished_night_gets_its_run_datasets_closed(
    rucio_stack: Any, rucio_client: Any, run_daemon_once: Any
) -> None:
    import dataclasses
    from datetime import timedelta

    from rucio_magic_ext.scanner.daemon import build_context
    from rucio_magic_ext.scanner.nights import close_nights

    plan = write_observed_night(rucio_stack, date(2020, 2, 20), seed=20)
    scan(run_daemon_once)
    datasets = {(placement(p).scope, placement(p).dataset) for p in plan}
    assert all(rucio_client.get_did(scope, name)["open"] for scope, name in datasets)

    context = build_context()
    assert close_nights(context) == 0  # the configured 36 hours have not passed: the night may still grow
    context.config = dataclasses.replace(context.config, night_closed_after=timedelta(0))
    assert close_nights(context) >= 1
    assert not any(rucio_client.get_did(scope, name)["open"] for scope, name in datasets)
    assert close_nights(context) == 0  # closed once
