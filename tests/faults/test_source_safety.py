"""Nothing leaves La Palma unproven. Each test attacks the source copy as a careless operator, another account,
a flaky disk or a killed daemon would, and ends by reading the bytes at ORM-ONSITE and at PIC-DISK.

(MAGIC writers trying to delete, update, reduce or move the carrier's rules, or to detach its files, are
refused by the policy package: tests/integration/test_policy_package.py, ending with a reaper pass.)
"""

from __future__ import annotations

import configparser
import dataclasses
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from rucio_magic_ext.carrier.model import CARRIER_SCOPE, OpenCarrier
from rucio_magic_ext.ledger import FileState
from rucio_magic_ext.ledger.states import CarrierState
from rucio_magic_ext.naming import Level
from tests.integration.scenery import (
    ORM,
    PIC,
    adler32_of,
    assert_all_in,
    dids_of,
    events_of,
    ledger,
    orm_root,
    placement,
    rows_of,
    write_observed_night,
)

pytestmark = pytest.mark.integration

BEFORE_PROTECT = ("discover", "settle", "checksum", "register")


# -- looks at the bytes ----------------------------------------------------------------------------------


def pic_copy(stack: Any, planned: Any) -> Path:
    return stack.settings.storage_dir / "pic-disk" / placement(planned).path


def assert_sources_intact(stack: Any, plan: list) -> None:
    """Every file still at ORM-ONSITE, with the bytes registered from it."""
    rows = rows_of(plan)
    for planned in plan:
        source = orm_root(stack) / planned.path
        assert source.is_file(), f"{planned.path} is gone from ORM-ONSITE"
        assert adler32_of(source) == rows[planned.path].adler32


def assert_safe_at_pic(stack: Any, plan: list) -> None:
    """Every file at PIC-DISK with its registered bytes, and gone from ORM-ONSITE."""
    rows = rows_of(plan)
    for planned in plan:
        copy = pic_copy(stack, planned)
        assert (copy.stat().st_size, adler32_of(copy)) == (rows[planned.path].size, rows[planned.path].adler32)
        assert not (orm_root(stack) / planned.path).exists()


def all_in(plan: list, state: FileState) -> bool:
    rows = rows_of(plan)
    return len(rows) == len(plan) and all(row.state is state for row in rows.values())


def available_at(client: Any, plan: list, rse: str) -> bool:
    found = client.list_replicas(dids_of(plan), rse_expression=rse, all_states=True)
    return {r["name"]: r["states"].get(rse) for r in found if rse in r["states"]} == {p.name: "AVAILABLE" for p in plan}


def copies_in_place(client: Any, plan: list) -> bool:
    """Every copy the tests' policy asks for is AVAILABLE: at PIC-DISK, and DL3 also at PIC-ANALYSIS."""
    dl3 = [p for p in plan if p.record.level is Level.DL3]
    return available_at(client, plan, PIC) and available_at(client, dl3, "PIC-ANALYSIS")


@contextmanager
def directory_in_place_of(path: Path) -> Iterator[None]:
    """A directory where the file was, for the block: the storage answers, but not with the file."""
    aside = path.with_name(path.name + ".aside")
    path.rename(aside)
    path.mkdir()
    try:
        yield
    finally:
        path.rmdir()
        aside.rename(path)


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))  # same size, other bytes


# -- the flow's parts, in this process -------------------------------------------------------------------


def scan(stages: tuple[str, ...] = BEFORE_PROTECT) -> None:
    from rucio_magic_ext.scanner import cycle
    from rucio_magic_ext.scanner.daemon import build_context

    moved = cycle.run_cycle(build_context(), tuple(s for s in cycle.STAGES if s[0] in stages))
    assert moved, moved


def hook(dwell: timedelta = timedelta(0)) -> Any:
    from rucio_magic_ext.release.hook import Hook

    built = Hook.from_config()
    built.config = dataclasses.replace(built.config, dwell=dwell)
    return built


def carriers_of(plan: list) -> dict[str, list]:
    rows = rows_of(plan)
    grouped: dict[str, list] = {}
    for planned in plan:
        grouped.setdefault(str(rows[planned.path].carrier), []).append(planned)
    return grouped


def carrier_row(name: str) -> Any:
    from rucio_magic_ext.carrier.book import CarrierBook

    (row,) = CarrierBook(ledger(), ORM).named([name])
    return row


# -- the attacks -----------------------------------------------------------------------------------------


def test_a_rule_made_and_removed_at_the_source_before_the_carrier_closes_reaps_nothing(
    rucio_stack: Any, rucio_client: Any, flow: Any
) -> None:
    """The reproduced loss: with greedy deletion, removing any other lock used to leave the replica reapable."""
    from rucio.core.rule import delete_rule

    from rucio_magic_ext import rucio_db

    plan = write_observed_night(rucio_stack, date(2021, 7, 1), seed=71)
    scan()
    assert_all_in(plan, FileState.REGISTERED)
    for name, members in carriers_of(plan).items():  # held from registration: one lock per file already
        (source_rule,) = [r for r in rucio_client.list_replication_rules({"scope": CARRIER_SCOPE, "name": name})]
        assert source_rule["locked"] and source_rule["rse_expression"] == ORM
        assert source_rule["locks_ok_cnt"] == len(members)

    (did,) = dids_of(plan[:1])
    rule_id = rucio_client.add_replication_rule([did], 1, ORM, purge_replicas=True)[0]
    with rucio_db.writing() as session:  # removed for good, as the judge-cleaner does once a deletion expires
        delete_rule(rule_id, purge_replicas=True, soft=False, session=session)
    rucio_stack.run_once("reaper", "--rses", ORM)
    rucio_stack.run_once("reaper", "--rses", ORM)

    assert_sources_intact(rucio_stack, plan)
    assert available_at(rucio_client, plan, ORM)
    flow(lambda: all_in(plan, FileState.DELETED))
    assert_safe_at_pic(rucio_stack, plan)


def test_a_copy_damaged_and_one_lost_during_the_dwell_are_caught_by_the_proof_before_release(
    rucio_stack: Any, rucio_client: Any, flow: Any
) -> None:
    plan = write_observed_night(rucio_stack, date(2021, 7, 2), seed=72)
    flow(lambda: copies_in_place(rucio_client, plan), without=("magic-carrier", "reaper"))
    hook(dwell=timedelta(hours=1)).run_cycle()  # verified, but they must dwell
    assert_all_in(plan, FileState.VERIFIED)
    damaged, lost = plan[0], plan[-1]
    corrupt(pic_copy(rucio_stack, damaged))
    pic_copy(rucio_stack, lost).unlink()

    hook().run_cycle()  # the dwell is over: the release reads every copy again first
    rows = rows_of(plan)
    for victim in (damaged, lost):
        assert rows[victim.path].state is FileState.PROTECTED
        assert "declared bad" in (events_of(victim.path)[-1].detail or "")
        assert "release stopped" in (carrier_row(str(rows[victim.path].carrier)).detail or "")
    assert_sources_intact(rucio_stack, [damaged, lost])

    flow(lambda: all_in(plan, FileState.DELETED))
    assert_safe_at_pic(rucio_stack, plan)  # sent again, proven, and only then released


def test_a_copy_that_cannot_be_read_holds_its_source_and_is_not_declared_bad(
    rucio_stack: Any, rucio_client: Any, flow: Any
) -> None:
    plan = write_observed_night(rucio_stack, date(2021, 7, 3), seed=73)
    flow(lambda: copies_in_place(rucio_client, plan), without=("magic-carrier", "reaper"))
    victim = plan[0]
    with directory_in_place_of(pic_copy(rucio_stack, victim)):  # its copy cannot be read
        for _ in range(2):
            rucio_stack.run_round("magic-carrier", ("reaper", "--rses", ORM))
        row = rows_of([victim])[victim.path]
        assert row.state is FileState.REPLICATED and "unreadable" in str(row.last_error)
        assert available_at(rucio_client, [victim], PIC)  # not declared bad: nothing proves it wrong
        assert_sources_intact(rucio_stack, carriers_of(plan)[str(row.carrier)])
    flow(lambda: all_in(plan, FileState.DELETED))
    assert_safe_at_pic(rucio_stack, plan)


def test_a_file_attached_to_a_carrier_by_hand_holds_that_carrier(
    rucio_stack: Any, rucio_client: Any, flow: Any
) -> None:
    plan = write_observed_night(rucio_stack, date(2021, 7, 4), seed=74)
    rucio_stack.run_once("magic-scanner")
    assert_all_in(plan, FileState.PROTECTED)
    carriers = carriers_of(plan)
    assert len(carriers) >= 2
    (target, held), (_, others) = list(carriers.items())[:2]
    stranger = dids_of(others[:1])
    rucio_client.set_status(CARRIER_SCOPE, target, open=True)
    rucio_client.attach_dids(CARRIER_SCOPE, target, stranger)

    with pytest.raises(pytest.fail.Exception):
        flow(lambda: all_in(held, FileState.DELETED), rounds=3)
    assert_sources_intact(rucio_stack, held)
    assert "differs from the ledger" in (carrier_row(target).detail or "")

    rucio_client.detach_dids(CARRIER_SCOPE, target, stranger)
    flow(lambda: all_in(plan, FileState.DELETED))
    assert_safe_at_pic(rucio_stack, plan)


def test_copies_under_a_rule_that_expires_do_not_count(rucio_stack: Any, rucio_client: Any, flow: Any) -> None:
    plan = write_observed_night(rucio_stack, date(2021, 7, 5), seed=75)
    flow(lambda: copies_in_place(rucio_client, plan), without=("magic-carrier", "reaper"))
    datasets = {(placement(p).scope, placement(p).dataset) for p in plan}
    policy_rules = [rule for scope, name in datasets for rule in rucio_client.list_did_rules(scope, name)]
    for rule in policy_rules:  # someone gives the permanent copies a lifetime
        rucio_client.update_replication_rule(rule["id"], {"lifetime": 30 * 86400})
    for _ in range(2):
        rucio_stack.run_round("magic-carrier", ("reaper", "--rses", ORM))
    assert {row.state for row in rows_of(plan).values()} <= {FileState.PROTECTED, FileState.REPLICATED}
    assert_sources_intact(rucio_stack, plan)

    for rule in policy_rules:
        rucio_client.update_replication_rule(rule["id"], {"lifetime": None})
    flow(lambda: all_in(plan, FileState.DELETED))
    assert_safe_at_pic(rucio_stack, plan)


def test_a_file_that_keeps_failing_gets_a_carrier_of_its_own_and_the_others_leave(
    rucio_stack: Any, rucio_client: Any, flow: Any
) -> None:
    plan = write_observed_night(rucio_stack, date(2021, 7, 7), seed=77)
    flow(lambda: copies_in_place(rucio_client, plan), without=("magic-carrier", "reaper"))
    victim = plan[0]
    first = str(rows_of([victim])[victim.path].carrier)
    batch = [p for p in carriers_of(plan)[first] if p is not victim]
    assert batch
    with directory_in_place_of(pic_copy(rucio_stack, victim)):  # its copy cannot be read
        flow(lambda: all_in(batch, FileState.DELETED))  # the others of its batch do not wait for it
        row = rows_of([victim])[victim.path]
        assert row.carrier != first and row.state is FileState.REPLICATED
        assert any("moved from carrier" in (e.detail or "") for e in events_of(victim.path))
        assert_sources_intact(rucio_stack, [victim])
        assert_safe_at_pic(rucio_stack, batch)
    flow(lambda: all_in(plan, FileState.DELETED))
    assert_safe_at_pic(rucio_stack, plan)


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from rucio_magic_ext.carrier import life
    from rucio_magic_ext.release import hook

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    life.Carriers.remove_from_rucio = die  # every check passed, RELEASING recorded, nothing removed yet
    hook.Hook.from_config().run_cycle()
    sys.exit(3)
    """
)


def test_the_carrier_killed_after_its_checks_proves_again_before_it_releases(
    rucio_stack: Any, rucio_client: Any, flow: Any
) -> None:
    plan = write_observed_night(rucio_stack, date(2021, 7, 6), seed=76)
    flow(lambda: copies_in_place(rucio_client, plan), without=("magic-carrier", "reaper"))
    killed = subprocess.run([sys.executable, "-c", KILLER], env=rucio_stack.env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-3000:]
    releasing = [name for name in carriers_of(plan) if carrier_row(name).state is CarrierState.RELEASING]
    assert releasing
    victim = carriers_of(plan)[releasing[0]][0]
    corrupt(pic_copy(rucio_stack, victim))  # while nobody watched

    rucio_stack.run_round("magic-carrier", ("reaper", "--rses", ORM))
    assert carrier_row(releasing[0]).state is CarrierState.PROTECTING
    assert rows_of([victim])[victim.path].state is FileState.PROTECTED
    assert_sources_intact(rucio_stack, carriers_of(plan)[releasing[0]])

    flow(lambda: all_in(plan, FileState.DELETED))
    assert_safe_at_pic(rucio_stack, plan)


def test_an_empty_carrier_is_discarded_not_released(rucio_stack: Any, rucio_client: Any) -> None:
    from rucio.common.exception import DataIdentifierNotFound

    from rucio_magic_ext.carrier.model import CarrierLimits
    from rucio_magic_ext.common import utcnow
    from rucio_magic_ext.scanner.daemon import build_context

    context = build_context()
    name = f"carrier_{ORM}_empty_{uuid.uuid4().hex[:8]}"
    context.carriers.book.record([OpenCarrier(name, "raw-to-pic", 0, 0, utcnow() - timedelta(days=1))], {}, {})
    context.carriers.hold_at_source([name])
    assert rucio_client.get_did(CARRIER_SCOPE, name)
    context.carriers.close_due(CarrierLimits(max_age=timedelta(0)), "test")
    row = carrier_row(name)
    assert row.state is CarrierState.GONE and "empty" in str(row.detail)
    with pytest.raises(DataIdentifierNotFound):
        rucio_client.get_did(CARRIER_SCOPE, name)


def test_the_daemons_refuse_a_setup_where_a_source_copy_could_go_unproven(rucio_stack: Any, rucio_client: Any) -> None:
    from rucio_magic_ext.carrier import preflight
    from rucio_magic_ext.replication import parse_policy

    policy = parse_policy({"rule": [{"name": "anywhere", "levels": ["RAW"], "rse_expression": f"{ORM}|{PIC}"}]})
    assert any("matches the source" in problem for problem in preflight.problems(ORM, "magic_scanner", policy))
    assert any("owned by magic_scanner" in problem for problem in preflight.problems(ORM, "root", policy))
    rucio_client.add_rse_attribute(ORM, "tombstone_delay", 3600)
    try:
        assert any("tombstone_delay" in p for p in preflight.problems(ORM, "magic_scanner", parse_policy(
            {"rule": [{"name": "raw", "levels": ["RAW"], "rse_expression": PIC}]})))  # fmt: skip
    finally:
        rucio_client.delete_rse_attribute(ORM, "tombstone_delay")

    config = configparser.ConfigParser(interpolation=None)
    config.read(rucio_stack.settings.rucio_cfg)
    config.set("magic-scanner", "account", "root")  # an account that does not own the carrier scope
    unsafe = rucio_stack.settings.rucio_cfg.with_name("rucio-unsafe.cfg")
    with open(unsafe, "w") as handle:
        config.write(handle)
    for daemon in ("rucio-magic-scanner", "rucio-magic-carrier"):
        refused = subprocess.run(
            [str(Path(sys.executable).parent / daemon), "--run-once"],
            env={**rucio_stack.env, "RUCIO_CONFIG": str(unsafe)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        said = refused.stdout + refused.stderr  # Rucio's daemons log to stdout
        assert refused.returncode == 2, said[-2000:]
        assert "refusing to run" in said and "magic_carrier" in said
