"""Retiring a scope, decided from a snapshot: refusals and what would go (rucio_magic_ext.retire.plan)."""

from __future__ import annotations

from rucio_magic_ext import layout
from rucio_magic_ext.carrier.model import CARRIER_SCOPE
from rucio_magic_ext.retire.plan import (
    Inventory,
    Link,
    ReplicaEntry,
    RuleEntry,
    make_plan,
    protected_scopes,
    render,
    scope_refusal,
)

PROTECTED = protected_scopes((*layout.SCOPES, CARRIER_SCOPE), ("magic_dl3",), ("magic_extra", " "))
S = "commissioning"


def inventory(**parts: object) -> Inventory:
    base: dict[str, object] = {
        "files": ("f1", "f2"),
        "datasets": ("ds",),
        "containers": ("top",),
        "rules": (RuleEntry("r1", (S, "ds"), "root", "DISK", True, "OK"),
                  RuleEntry("r2", (S, "f2"), "alice", "DISK", False, "REPLICATING")),
        "links": (Link((S, "top"), (S, "ds"), "DATASET"), Link((S, "ds"), (S, "f1"), "FILE"),
                  Link((S, "ds"), (S, "f2"), "FILE")),
        "replicas": (ReplicaEntry((S, "f1"), "DISK", 10, True), ReplicaEntry((S, "f2"), "DISK", 20, True)),
    }  # fmt: skip
    base.update(parts)
    return Inventory(S, **base)  # type: ignore[arg-type]


def test_protected_scopes_are_magics_the_carriers_the_policys_and_the_sites() -> None:
    assert {"magic_raw", "magic_cal", "magic_st", "magic_dl3", "magic_mc", "magic_carrier", "magic_extra"} == PROTECTED
    for scope in PROTECTED:
        refusal = scope_refusal(scope, PROTECTED)
        assert refusal and scope in refusal.reason
        assert make_plan(inventory(), PROTECTED).refused or scope != S
    assert scope_refusal(S, PROTECTED) is None


def test_a_magic_scope_is_refused_whatever_it_holds() -> None:
    plan = make_plan(Inventory("magic_raw"), PROTECTED)
    assert plan.refused and "magic_raw" in plan.refusals[0].reason


def test_a_plain_scope_is_planned_whole() -> None:
    plan = make_plan(inventory(), PROTECTED)
    assert not plan.refused
    assert plan.contents == (((S, "ds"), ((S, "f1"), (S, "f2"))), ((S, "top"), ((S, "ds"),)))
    assert plan.foreign_parents == () and plan.only_copies == () and plan.without_replica == ()
    text = "\n".join(render(plan))
    assert "r1  commissioning:ds  DISK  account root  OK  locked" in text
    assert "r2  commissioning:f2  DISK  account alice  REPLICATING" in text
    assert "DISK  2 replicas  30 bytes" in text
    assert "CONTAINER  commissioning:top" in text and "DATASET  commissioning:ds" in text


def test_a_collection_inside_another_scope_is_detached_not_refused() -> None:
    outside = Link(("physics", "analysis"), (S, "ds"), "DATASET")
    plan = make_plan(inventory(links=(*inventory().links, outside)), PROTECTED)
    assert not plan.refused and plan.foreign_parents == (outside,)
    assert "commissioning:ds  from physics:analysis" in "\n".join(render(plan))


def test_a_file_inside_another_scopes_collection_is_refused_and_named() -> None:
    shared = Link(("physics", "selection"), (S, "f1"), "FILE")
    plan = make_plan(inventory(links=(*inventory().links, shared)), PROTECTED)
    assert plan.refused
    (refusal,) = plan.refusals
    assert refusal.names == ("commissioning:f1 (in physics:selection)",)


def test_another_scopes_file_in_the_scopes_dataset_is_detached_and_kept() -> None:
    foreign = Link((S, "ds"), ("physics", "keep.root"), "FILE")
    plan = make_plan(inventory(links=(*inventory().links, foreign)), PROTECTED)
    assert not plan.refused
    assert ("physics", "keep.root") in dict(plan.contents)[(S, "ds")]
    assert "physics:keep.root  out of commissioning:ds (kept)" in "\n".join(render(plan))


def test_only_copies_at_a_non_deterministic_rse_are_refused_unless_forced() -> None:
    replicas = (
        ReplicaEntry((S, "f1"), "ORM", 10, False),  # only at the source
        ReplicaEntry((S, "f2"), "ORM", 20, False),
        ReplicaEntry((S, "f2"), "DISK", 20, True),  # copied: not an only copy
    )
    plan = make_plan(inventory(replicas=replicas), PROTECTED)
    assert plan.refused
    (refusal,) = plan.refusals
    assert refusal.names == ("commissioning:f1 (at ORM)",) and "--force-only-copies" in refusal.reason
    forced = make_plan(inventory(replicas=replicas), PROTECTED, force_only_copies=True)
    assert not forced.refused and forced.only_copies == ("commissioning:f1 (at ORM)",)
    assert "files forced through with their only copies (1)" in "\n".join(render(forced))


def test_both_refusals_are_given_at_once() -> None:
    links = (*inventory().links, Link(("physics", "selection"), (S, "f2"), "FILE"))
    plan = make_plan(inventory(links=links, replicas=(ReplicaEntry((S, "f1"), "ORM", 1, False),)), PROTECTED)
    assert len(plan.refusals) == 2


def test_a_file_without_replica_is_named_as_left() -> None:
    plan = make_plan(inventory(replicas=(ReplicaEntry((S, "f1"), "DISK", 10, True),)), PROTECTED)
    assert plan.without_replica == ("f2",)
    assert "files without any replica" in "\n".join(render(plan))


def test_an_empty_scope_says_so() -> None:
    plan = make_plan(Inventory(S), PROTECTED)
    assert not plan.refused and "no DID, rule or replica left" in "\n".join(render(plan))


def test_a_copy_still_being_written_is_no_copy() -> None:
    replicas = (ReplicaEntry((S, "f1"), "ORM", 10, False), ReplicaEntry((S, "f1"), "DISK", 10, True, available=False))
    plan = make_plan(inventory(replicas=replicas), PROTECTED)
    assert plan.refused and plan.refusals[0].names == ("commissioning:f1 (at ORM)",)
    assert "DISK  10 bytes  commissioning:f1  (not yet written)" in "\n".join(render(plan))
