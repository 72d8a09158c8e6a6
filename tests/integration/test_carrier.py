"""The source-deletion hook on the real stack: the observatory copy goes only after every copy is verified."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from scenery import (
    ORM,
    PIC,
    adler32_of,
    assert_all_in,
    dids_of,
    events_of,
    orm_root,
    placement,
    rows_of,
    unavailable,
    write_observed_night,
)

from rucio_magic_ext import cli
from rucio_magic_ext.carrier.model import CARRIER_SCOPE
from rucio_magic_ext.ledger import FileState
from rucio_magic_ext.naming import Level

pytestmark = pytest.mark.integration


def all_in(plan: list, state: FileState) -> bool:
    return all(row.state is state for row in rows_of(plan).values()) and len(rows_of(plan)) == len(plan)


def at_rse(rucio_client: Any, plan: list, rse: str) -> dict[str, str]:
    """name -> replica state at ``rse``."""
    found = rucio_client.list_replicas(dids_of(plan), rse_expression=rse, all_states=True)
    return {replica["name"]: replica["states"].get(rse) for replica in found if rse in replica["states"]}


def all_available_at(rucio_client: Any, plan: list, rse: str) -> bool:
    return at_rse(rucio_client, plan, rse) == {p.name: "AVAILABLE" for p in plan}


def all_copies_in_place(rucio_client: Any, plan: list) -> bool:
    """Every copy the policy asks for is AVAILABLE: at PIC-DISK, and DL3 also at PIC-ANALYSIS."""
    dl3 = [p for p in plan if p.record.level is Level.DL3]
    return all_available_at(rucio_client, plan, PIC) and all_available_at(rucio_client, dl3, "PIC-ANALYSIS")


def copy_at(stack: Any, rse_folder: str, planned: Any) -> Path:
    return stack.settings.storage_dir / rse_folder / placement(planned).path


def assert_safe_at_pic(rucio_stack: Any, rucio_client: Any, plan: list) -> None:
    """Every file: its PIC copy AVAILABLE, with the bytes registered from the source, and nothing left at ORM."""
    rows = rows_of(plan)
    assert at_rse(rucio_client, plan, PIC) == {p.name: "AVAILABLE" for p in plan}
    assert at_rse(rucio_client, plan, ORM) == {}
    for planned in plan:
        copy = copy_at(rucio_stack, "pic-disk", planned)
        assert (copy.stat().st_size, adler32_of(copy)) == (rows[planned.path].size, rows[planned.path].adler32)
        assert not (orm_root(rucio_stack) / planned.path).exists()


def assert_carriers_gone(rucio_client: Any, plan: list) -> None:
    from rucio.common.exception import DataIdentifierNotFound

    for carrier in {row.carrier for row in rows_of(plan).values()}:
        with pytest.raises(DataIdentifierNotFound):
            rucio_client.get_did(CARRIER_SCOPE, carrier)
        assert not list(rucio_client.list_replication_rules({"scope": CARRIER_SCOPE, "name": carrier}))


def test_a_night_leaves_la_palma_only_with_verified_copies(rucio_stack: Any, rucio_client: Any, flow: Any) -> None:
    plan = write_observed_night(rucio_stack, date(2020, 4, 1), seed=41)
    flow(lambda: all_in(plan, FileState.DELETED))

    assert_safe_at_pic(rucio_stack, rucio_client, plan)
    assert_carriers_gone(rucio_client, plan)
    for scope, dataset in {(placement(p).scope, placement(p).dataset) for p in plan}:
        rules = list(rucio_client.list_did_rules(scope, dataset))
        assert rules and all(rule["state"] == "OK" for rule in rules)  # the permanent rules keep the copies

    history = {event.state: event for event in events_of(plan[0].path)}  # when did it leave, with which copies?
    assert "verified at the destination: PIC-DISK" in history[FileState.VERIFIED].detail
    assert history[FileState.VERIFIED].at <= history[FileState.RELEASED].at <= history[FileState.DELETED].at
    assert "deleted from ORM-ONSITE" in history[FileState.DELETED].detail


def test_a_copy_damaged_or_lost_before_verification_is_sent_again_and_only_then_released(
    rucio_stack: Any, rucio_client: Any, flow: Any
) -> None:
    plan = write_observed_night(rucio_stack, date(2020, 4, 2), seed=42)
    flow(lambda: all_copies_in_place(rucio_client, plan), without=("magic-carrier", "reaper"))
    damaged, lost = plan[0], plan[-1]
    copy = copy_at(rucio_stack, "pic-disk", damaged)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))  # same size, other bytes
    copy_at(rucio_stack, "pic-disk", lost).unlink()

    rucio_stack.run_round("magic-carrier")  # verification: both fail, their sources stay
    for victim in (damaged, lost):
        assert (orm_root(rucio_stack) / victim.path).exists()
        row = rows_of([victim])[victim.path]
        assert row.state is FileState.PROTECTED
        assert "declared bad" in [e.detail for e in events_of(victim.path)][-1]
    assert "adler32" in rows_of([damaged])[damaged.path].last_error
    assert "missing at the storage" in rows_of([lost])[lost.path].last_error

    flow(lambda: all_in(plan, FileState.DELETED))
    assert_safe_at_pic(rucio_stack, rucio_client, plan)  # sent again, verified, then released
    story = [(e.state, e.detail or "") for e in events_of(damaged.path)]
    failed = next(i for i, (_, detail) in enumerate(story) if "verification failed" in detail)
    assert [state for state, _ in story[failed:]] == [
        FileState.PROTECTED,
        FileState.REPLICATED,
        FileState.VERIFIED,
        FileState.RELEASED,
        FileState.DELETED,
    ]


def test_nothing_leaves_la_palma_while_the_destination_refuses_writes(
    rucio_stack: Any, rucio_client: Any, flow: Any
) -> None:
    plan = write_observed_night(rucio_stack, date(2020, 4, 3), seed=43)
    rucio_stack.run_once("magic-scanner")  # the rules exist; then the destination stops taking writes
    assert_all_in(plan, FileState.PROTECTED)
    with unavailable(rucio_client, PIC, "write"):
        with pytest.raises(pytest.fail.Exception):
            flow(lambda: False, rounds=3)
        assert all((orm_root(rucio_stack) / p.path).exists() for p in plan)
        assert {row.state for row in rows_of(plan).values()} == {FileState.PROTECTED}
        assert at_rse(rucio_client, plan, ORM) == {p.name: "AVAILABLE" for p in plan}
        runs = {(placement(p).scope, placement(p).dataset) for p in plan}
        states = {r["state"] for scope, name in runs for r in rucio_client.list_did_rules(scope, name)}
        assert states <= {"OK", "REPLICATING", "STUCK"} and states & {"REPLICATING", "STUCK"}
        for carrier in {row.carrier for row in rows_of(plan).values()}:  # it holds the source, it copies nothing
            rules = rucio_client.list_replication_rules({"scope": CARRIER_SCOPE, "name": carrier})
            assert [r["rse_expression"] for r in rules] == [ORM]
    flow(lambda: all_in(plan, FileState.DELETED))
    assert_safe_at_pic(rucio_stack, rucio_client, plan)


def test_policy_rules_removed_by_another_account_keep_the_source_until_the_audit_makes_them_stand(
    rucio_stack: Any, rucio_client: Any, flow: Any, capsys: Any
) -> None:
    """The carrier asks for no copy of its own. An admin removes one run's permanent rule (Rucio's API only
    sets it to expire within the hour) and cuts another's life short, so that the judge-cleaner deletes it,
    before any copy: nothing of those two runs leaves La Palma while the rest of their carrier and night does,
    the carrier says why, the audit names both runs, and its fix makes both rules stand again, after which the
    held runs go through."""
    night = date(2020, 4, 5)
    plan = write_observed_night(rucio_stack, night, seed=46)
    rucio_stack.run_once("magic-scanner")
    assert_all_in(plan, FileState.PROTECTED)
    rows = rows_of(plan)
    held = [p for p in plan if rows[p.path].carrier == rows[plan[0].path].carrier]
    removed = placement(held[0])
    deleted = next(placement(p) for p in held if placement(p).dataset != removed.dataset)
    wanted = {}
    for run in (removed, deleted):
        wanted[run.dataset] = {rule["comments"] for rule in rucio_client.list_did_rules(run.scope, run.dataset)}
    for rule in rucio_client.list_did_rules(removed.scope, removed.dataset):
        rucio_client.delete_replication_rule(rule["id"], purge_replicas=False)
    for rule in rucio_client.list_did_rules(deleted.scope, deleted.dataset):
        rucio_client.update_replication_rule(rule["id"], {"lifetime": -1})  # expired a second ago
    rucio_stack.run_once("judge-cleaner")
    assert not list(rucio_client.list_did_rules(deleted.scope, deleted.dataset))
    assert all(rule["expires_at"] for rule in rucio_client.list_did_rules(removed.scope, removed.dataset))

    unruled = [p for p in plan if placement(p).dataset in wanted]
    others = [p for p in plan if p not in unruled]
    flow(lambda: all_in(others, FileState.DELETED))  # what holds two runs concerns them alone
    for planned in unruled:
        source = orm_root(rucio_stack) / planned.path
        assert adler32_of(source) == rows[planned.path].adler32, planned.path
        assert rows_of([planned])[planned.path].state in (FileState.PROTECTED, FileState.REPLICATED)
    assert at_rse(rucio_client, unruled, ORM) == {p.name: "AVAILABLE" for p in unruled}
    assert {rows_of([p])[p.path].state for p in unruled} == {FileState.PROTECTED}  # no copy of theirs counts
    notes = [str(event.detail) for event in events_of(unruled[0].path)]
    assert any("rucio-magic audit RSE --fix" in note for note in notes), notes

    def audit(*options: str) -> tuple[int, str]:
        capsys.readouterr()
        code = cli.main(["audit", ORM, "--night", night.isoformat(), *options])
        said = capsys.readouterr()
        return code, said.out + said.err

    code, out = audit()
    assert code == 1, out
    assert f"{removed.scope}:{removed.dataset}  policy entry" in out and "has only a rule set to expire" in out
    assert f"{deleted.scope}:{deleted.dataset}  policy entry" in out and "has no rule on it" in out
    assert "held at the source until it is made again" in out
    code, out = audit("--fix")
    assert f"missing-rule {removed.scope}:{removed.dataset}: rule " in out and "kept, its expiry taken off" in out
    assert f"missing-rule {deleted.scope}:{deleted.dataset}: rule " in out and "made again" in out
    for run in (removed, deleted):
        standing = rucio_client.list_did_rules(run.scope, run.dataset)
        assert {(rule["comments"], rule["expires_at"]) for rule in standing} == {(c, None) for c in wanted[run.dataset]}
    flow(lambda: all_in(plan, FileState.DELETED))
    assert_safe_at_pic(rucio_stack, rucio_client, plan)
    for rse in (ORM, PIC):
        code, out = cli.main(["audit", rse, "--night", night.isoformat()]), capsys.readouterr().out
        assert code == 0, out


def test_a_two_destination_policy_waits_for_both_copies(rucio_stack: Any, rucio_client: Any, flow: Any) -> None:
    plan = write_observed_night(rucio_stack, date(2020, 4, 4), seed=44)
    dl3 = [p for p in plan if p.record.level is Level.DL3]
    others = [p for p in plan if p.record.level is not Level.DL3]
    assert dl3
    rucio_stack.run_once("magic-scanner")
    assert_all_in(plan, FileState.PROTECTED)
    with unavailable(rucio_client, "PIC-ANALYSIS", "write"):
        flow(lambda: all_in(others, FileState.DELETED))
        assert all((orm_root(rucio_stack) / p.path).exists() for p in dl3)  # one of two copies is not enough
        assert {row.state for row in rows_of(dl3).values()} <= {FileState.PROTECTED, FileState.REPLICATED}
    flow(lambda: all_in(dl3, FileState.DELETED))
    for planned in dl3:
        verified = next(e for e in events_of(planned.path) if e.state is FileState.VERIFIED)
        assert "PIC-DISK" in verified.detail and "PIC-ANALYSIS" in verified.detail
        assert adler32_of(copy_at(rucio_stack, "pic-analysis", planned)) == rows_of([planned])[planned.path].adler32
    assert_safe_at_pic(rucio_stack, rucio_client, plan)


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from rucio_magic_ext.carrier import book, life
    from rucio_magic_ext.ledger import store
    from rucio_magic_ext.release import hook
    from rucio_magic_ext.ledger.states import CarrierState, FileState

    point = sys.argv[1]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def wrap(owner, name, before=None, after=None):
        original = getattr(owner, name)
        def wrapped(self, *args, **kwargs):
            if before and before(*args, **kwargs):
                die()
            result = original(self, *args, **kwargs)
            if after and after(*args, **kwargs):
                die()
            return result
        setattr(owner, name, wrapped)

    if point == "before-release":
        wrap(life.Carriers, "remove_from_rucio", before=lambda *a, **k: True)
    elif point == "after-release":
        wrap(life.Carriers, "remove_from_rucio", after=lambda *a, **k: True)
    elif point == "after-files-released":
        wrap(store.Ledger, "move", after=lambda files, target, *a, **k: target is FileState.RELEASED and files)
    elif point == "before-gone":
        wrap(book.CarrierBook, "move", before=lambda carrier, target, **k: target is CarrierState.GONE)
    hook_ = hook.Hook.from_config()
    hook_.run_cycle()
    sys.exit(3)
    """
)


@pytest.mark.parametrize("point", ["before-release", "after-release", "after-files-released", "before-gone"])
def test_the_hook_killed_between_its_steps_loses_nothing_and_leaves_no_carrier(
    rucio_stack: Any, rucio_client: Any, flow: Any, point: str
) -> None:
    night = date(2020, 4, 10 + ["before-release", "after-release", "after-files-released", "before-gone"].index(point))
    plan = write_observed_night(rucio_stack, night, seed=night.day)
    flow(lambda: all_copies_in_place(rucio_client, plan), without=("magic-carrier", "reaper"))
    killed = subprocess.run([sys.executable, "-c", KILLER, point], env=rucio_stack.env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-3000:]
    flow(lambda: all_in(plan, FileState.DELETED))
    assert_safe_at_pic(rucio_stack, rucio_client, plan)
    assert_carriers_gone(rucio_client, plan)


def test_dry_run_releases_nothing_and_says_what_it_would(rucio_stack: Any, rucio_client: Any, flow: Any) -> None:
    plan = write_observed_night(rucio_stack, date(2020, 4, 20), seed=45)
    flow(lambda: all_copies_in_place(rucio_client, plan), without=("magic-carrier", "reaper"))
    for _ in range(2):
        rucio_stack.run_round(("magic-carrier", "--dry-run"))
    assert all((orm_root(rucio_stack) / p.path).exists() for p in plan)
    assert {row.state for row in rows_of(plan).values()} == {FileState.VERIFIED}
    assert any("dry run: would release carrier" in (e.detail or "") for e in events_of(plan[0].path))
    assert_all_in(plan, FileState.VERIFIED)
