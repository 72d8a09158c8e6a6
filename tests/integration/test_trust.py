"""The flow trusts only what it made: run datasets, rules and paths that another account made in its place, or set
to expire, hold their own files with the reason and never stand in for the flow's own. Each attack goes through
the REST API as a MAGIC writer or an operator (an account with the attribute admin) would try it, and ends with
the bytes at the observatory."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from rucio.common.exception import AccessDenied
from scenery import (
    ORM,
    PIC,
    all_in,
    assert_bytes_kept,
    assert_proven_at_pic,
    client_for,
    dids_of,
    events_of,
    orm_root,
    placement,
    register_beside_the_api,
    rows_of,
    write_observed_night,
)

from rucio_magic_ext import cli
from rucio_magic_ext.ledger import FileState
from rucio_magic_ext.replication import load_policy
from tools.make_night import plan_night, write_night

pytestmark = pytest.mark.integration

POLICY = load_policy(Path(__file__).parent / "replication-policy.toml")
FLOW_ACCOUNT = "magic_scanner"


def with_quota(rucio_client: Any, account: str, attributes: dict[str, str]) -> Any:
    """A REST client of a new account, with quota at both ends as the project's own writers get."""
    client = client_for(rucio_client, account, attributes)
    for rse in (ORM, PIC):
        rucio_client.set_local_account_limit(account, rse, -1)
    return client


@pytest.fixture(scope="module")
def writer(rucio_stack: Any, rucio_client: Any) -> Any:
    """An ordinary MAGIC writer."""
    return with_quota(rucio_client, "magic_trust_writer", {"magic": "writer"})


@pytest.fixture(scope="module")
def operator(rucio_stack: Any, rucio_client: Any) -> Any:
    """An operator: may do everything, and copies what it sees."""
    return with_quota(rucio_client, "magic_trust_operator", {"admin": "True"})


def comment_of(planned: Any) -> str:
    (spec,) = [s for s in POLICY.rules_for(planned.record.level, planned.record.telescope) if s.rse_expression == PIC]
    return spec.rule_comment


def run_of(plan: list, planned: Any) -> list:
    return [p for p in plan if placement(p).dataset == placement(planned).dataset]


def copied_to_pic(rucio_client: Any, plan: list) -> bool:
    found = rucio_client.list_replicas(dids_of(plan), rse_expression=PIC)
    return sorted(r["name"] for r in found if r["states"].get(PIC) == "AVAILABLE") == sorted(p.name for p in plan)


def notes_of(plan: list) -> list[str]:
    return [str(event.detail) for planned in plan for event in events_of(planned.path)]


def expire_now(rucio_client: Any, rucio_stack: Any, rule_ids: list[str]) -> None:
    """Rules gone, as an admin removes them through Rucio's API and the judge-cleaner finishes the job."""
    for rule_id in rule_ids:
        rucio_client.update_replication_rule(rule_id, {"lifetime": -1})  # expired a second ago
    rucio_stack.run_once("judge-cleaner")


@pytest.mark.parametrize("who", ["writer", "operator"])
def test_a_run_dataset_made_first_by_another_account_holds_only_its_own_files(
    who: str, rucio_stack: Any, rucio_client: Any, writer: Any, operator: Any, flow: Any
) -> None:
    """A writer makes a run dataset before the scanner does (its name follows from the grammar) and puts a rule of
    its own on it; an operator does the same with a lifetime and the policy's comment. The scanner registers
    nothing into it: that run's files wait at the observatory with the reason, the night's other runs leave;
    once an admin removes the collection, the held files go through too."""
    night = date(2021, 3, 1) if who == "writer" else date(2021, 3, 2)
    plan = write_observed_night(rucio_stack, night, seed=51 if who == "writer" else 52)
    victims = run_of(plan, plan[0])
    others = [p for p in plan if p not in victims]
    taken = placement(victims[0])
    dataset = [{"scope": taken.scope, "name": taken.dataset}]
    if who == "writer":
        writer.add_dataset(taken.scope, taken.dataset)
        with pytest.raises(AccessDenied):  # only the flow writes the flow's comments
            writer.add_replication_rule(dataset, 1, PIC, comment=comment_of(victims[0]))
        with pytest.raises(AccessDenied):  # and a writer sets no DID lifetime, as argument or as metadata
            writer.add_dataset(taken.scope, f"{taken.dataset}_short", lifetime=60)
        writer.add_replication_rule(dataset, 1, PIC, purge_replicas=True)
        maker = "magic_trust_writer"
    else:
        operator.add_dataset(taken.scope, taken.dataset, lifetime=3600)
        operator.add_replication_rule(dataset, 1, PIC, comment=comment_of(victims[0]))
        maker = "magic_trust_operator"

    flow(lambda: all_in(others, FileState.DELETED))
    assert_proven_at_pic(rucio_stack, others)
    assert_bytes_kept(rucio_stack, victims)
    for row in rows_of(victims).values():
        assert row.state is FileState.CHECKSUMMED
        assert f"{taken.scope}:{taken.dataset} is not the flow's: made by account {maker}" in str(row.last_error)
    assert not list(rucio_client.list_replicas(dids_of(victims), rse_expression=ORM))  # nothing registered
    assert not list(rucio_client.list_content(taken.scope, taken.dataset))

    # The way out: an admin removes the collection (Rucio's undertaker), and the held files go on.
    rucio_client.set_metadata(taken.scope, taken.dataset, "lifetime", -1)  # expired a second ago
    rucio_stack.run_once("undertaker", fast=False)
    assert cli.main(["retry", *[p.path for p in victims], "--why", "the foreign run dataset was removed"]) == 0
    flow(lambda: all_in(victims, FileState.DELETED))
    assert_proven_at_pic(rucio_stack, victims)
    assert copied_to_pic(rucio_client, victims)
    rules = rucio_client.list_did_rules(taken.scope, taken.dataset)
    assert {(r["account"], r["comments"]) for r in rules} == {(FLOW_ACCOUNT, comment_of(victims[0]))}


def test_a_rule_with_the_policy_comment_beside_the_flows_stands_in_for_nothing(
    rucio_stack: Any, rucio_client: Any, operator: Any, flow: Any
) -> None:
    """An operator adds a rule with a policy entry's comment next to the flow's own, then the flow's rule is
    removed: the copies at PIC are still there under the operator's rule, but it is not the flow's, so the run's
    files stay at the observatory and the carrier says why."""
    plan = write_observed_night(rucio_stack, date(2021, 3, 3), seed=53)
    flow(lambda: copied_to_pic(rucio_client, plan), without=("magic-carrier", "reaper"))
    victims = run_of(plan, plan[0])
    run = placement(victims[0])
    operator.add_replication_rule(
        [{"scope": run.scope, "name": run.dataset}], 1, PIC, comment=comment_of(victims[0])
    )
    flows = [r["id"] for r in rucio_client.list_did_rules(run.scope, run.dataset) if r["account"] == FLOW_ACCOUNT]
    assert flows
    expire_now(rucio_client, rucio_stack, flows)

    others = [p for p in plan if p not in victims]
    flow(lambda: all_in(others, FileState.DELETED))  # what holds the run concerns it alone
    assert_proven_at_pic(rucio_stack, others)
    assert_bytes_kept(rucio_stack, victims)
    assert {row.state for row in rows_of(victims).values()} <= {FileState.PROTECTED, FileState.REPLICATED}
    assert copied_to_pic(rucio_client, victims)  # the copies are there: they are not the flow's to count
    notes = notes_of(victims)
    assert any("magic_trust_operator" in note and "stands in for nothing" in note for note in notes), notes


def test_a_run_dataset_given_a_lifetime_after_registration_holds_its_files(
    rucio_stack: Any, rucio_client: Any, operator: Any, flow: Any
) -> None:
    """Rucio's undertaker would delete an expired run dataset with the flow's rules, and with them what keeps the
    copies at PIC: a run dataset set to expire is no longer one the flow counts on, and its files stay."""
    plan = write_observed_night(rucio_stack, date(2021, 3, 4), seed=54)
    flow(lambda: copied_to_pic(rucio_client, plan), without=("magic-carrier", "reaper"))
    victims = run_of(plan, plan[0])
    run = placement(victims[0])
    operator.set_metadata(run.scope, run.dataset, "lifetime", 7 * 86400)

    others = [p for p in plan if p not in victims]
    flow(lambda: all_in(others, FileState.DELETED))
    assert_proven_at_pic(rucio_stack, others)
    assert_bytes_kept(rucio_stack, victims)
    assert {row.state for row in rows_of(victims).values()} <= {FileState.PROTECTED, FileState.REPLICATED}
    notes = notes_of(victims)
    assert any(f"{run.scope}:{run.dataset} set to expire" in note for note in notes), notes


def test_an_observatory_path_already_another_dids_replica_is_held(
    rucio_stack: Any, rucio_client: Any, operator: Any, flow: Any
) -> None:
    """An operator registers a file of a commissioning scope at ORM-ONSITE on the path of a MAGIC file the
    scanner has not registered yet: one file on storage, two DIDs. The reaper deleting either would delete both,
    so the MAGIC file is held with the reason, its bytes kept, and the rest of the night goes on."""
    plan = write_observed_night(rucio_stack, date(2021, 3, 5), seed=55)
    victim = plan[0]
    source = orm_root(rucio_stack) / victim.path
    rucio_client.add_scope("magic_trust_operator", "trust_commissioning")
    pfn = f"file://localhost{source}"
    decoy = f"decoy_{victim.name.replace('+', 'p')}"  # a name of the commissioning scope's own pattern
    operator.add_replica(ORM, "trust_commissioning", decoy, source.stat().st_size, "00000001", pfn)

    others = [p for p in plan if p is not victim]
    flow(lambda: all_in(others, FileState.DELETED))
    assert_proven_at_pic(rucio_stack, others)
    assert_bytes_kept(rucio_stack, [victim])
    row = rows_of([victim])[victim.path]
    assert row.state is FileState.CHECKSUMMED
    assert f"is also the replica of trust_commissioning:{decoy}" in str(row.last_error)


def test_a_run_dataset_and_night_container_closed_by_a_writer_keep_no_late_file_out(
    rucio_stack: Any, rucio_client: Any, writer: Any, flow: Any
) -> None:
    """A writer closes the flow's run dataset and night container while the run is still being written. Rucio
    refuses to attach to a closed collection, and one refusal would roll back a whole registration batch: the
    flow reopens its own collections for the late file, and every file of the batch leaves La Palma proven."""
    plan = plan_night(date(2021, 3, 6), runs=3, seed=56, scale=1e-5)
    late = max((run_of(plan, p) for p in plan), key=len)[-1]  # a run of several files, its last one late
    early = [p for p in plan if p is not late]
    write_night(early, orm_root(rucio_stack), stamp_times=True)
    flow(lambda: all_in(early, FileState.DELETED))
    run = placement(late)
    writer.close(run.scope, run.dataset)
    writer.close(run.scope, run.containers[0])
    assert not rucio_client.get_did(run.scope, run.dataset)["open"]

    write_night([late], orm_root(rucio_stack), stamp_times=True)
    flow(lambda: all_in(plan, FileState.DELETED))
    assert_proven_at_pic(rucio_stack, plan)
    assert late.name in {child["name"] for child in rucio_client.list_content(run.scope, run.dataset)}


def test_a_registered_file_whose_path_another_did_comes_to_name_is_not_released(
    rucio_stack: Any, rucio_client: Any, operator: Any, flow: Any
) -> None:
    """After registration, an operator registers another DID at a MAGIC file's path at ORM-ONSITE. Releasing the
    MAGIC file would delete the other replica's bytes, and the reaper deleting the other would delete the MAGIC
    file's: the carrier holds that file alone, with the reason, and the rest of its batch leaves."""
    plan = write_observed_night(rucio_stack, date(2021, 3, 7), seed=57)
    flow(lambda: copied_to_pic(rucio_client, plan), without=("magic-carrier", "reaper"))
    victim = plan[0]
    source = orm_root(rucio_stack) / victim.path
    rucio_client.add_scope("magic_trust_operator", "trust_late_decoys")
    pfn = f"file://localhost{source}"
    decoy = f"decoy_{victim.name.replace('+', 'p')}"
    with pytest.raises(AccessDenied, match="is already the replica of"):  # the REST API refuses it, even to admins
        operator.add_replica(ORM, "trust_late_decoys", decoy, source.stat().st_size, "00000001", pfn)
    register_beside_the_api(ORM, "trust_late_decoys", decoy, source.stat().st_size, "00000001", pfn)

    others = [p for p in plan if p is not victim]
    flow(lambda: all_in(others, FileState.DELETED))
    assert_proven_at_pic(rucio_stack, others)
    assert_bytes_kept(rucio_stack, [victim])
    assert rows_of([victim])[victim.path].state in (FileState.PROTECTED, FileState.REPLICATED)
    notes = notes_of([victim])
    assert any(f"is also the replica of trust_late_decoys:{decoy}" in note for note in notes), notes
