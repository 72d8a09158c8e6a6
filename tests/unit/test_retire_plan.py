"""Retiring a scope, decided from a snapshot: refusals and what would go (rucio_magic_ext.retire.plan)."""

from __future__ import annotations

from rucio_magic_ext import layout
from rucio_magic_ext.carrier.model import CARRIER_SCOPE
from rucio_magic_ext.retire.plan import (
    Inventory,
    Link,
    OnPath,
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


MAGIC_FILE = ("magic_raw", "20200103_M1_05086952.001_D_CrabNebula-W0.40+035.raw.gz")
MAGIC_PATH = "M1/DAQ/RAW/2020_01_03/20200103_M1_05086952.001_D_CrabNebula-W0.40+035.raw.gz"


def test_a_source_replica_whose_path_another_scope_names_is_kept_and_the_other_did_named() -> None:
    """The observatory's file registered again under the scope's own name: deleting the path deletes MAGIC's bytes."""
    at_source = ReplicaEntry((S, "f1"), "ORM", 10, False, path="/" + MAGIC_PATH)
    replicas = (at_source, ReplicaEntry((S, "f1"), "DISK", 10, True), ReplicaEntry((S, "f2"), "DISK", 20, True))
    on_paths = (OnPath("ORM", MAGIC_PATH, tuple(sorted([(S, "f1"), MAGIC_FILE]))),)
    plan = make_plan(inventory(replicas=replicas, on_paths=on_paths), PROTECTED)
    assert not plan.refused
    (kept,) = plan.kept
    assert kept.replica == at_source
    assert kept.reason == f"path {MAGIC_PATH} at ORM is also the replica of {MAGIC_FILE[0]}:{MAGIC_FILE[1]}"
    assert at_source not in plan.obsolete and len(plan.obsolete) == 2
    text = "\n".join(render(plan))
    obsolete = text.split("replicas made OBSOLETE")[1].split("replicas kept in place")[0]
    assert "ORM" not in obsolete
    assert f"ORM  10 bytes  commissioning:f1: path {MAGIC_PATH} at ORM is also the replica of magic_raw:" in text
    assert "ORM  1 replicas" not in text and "DISK  2 replicas  30 bytes" in text


def test_a_kept_source_replica_is_no_only_copy_and_a_catalogue_only_copy_beside_it_goes() -> None:
    at_source = ReplicaEntry((S, "f1"), "ORM", 10, False, path=MAGIC_PATH)
    fake = ReplicaEntry((S, "f1"), "DISK", 10, True, unproven="missing at the storage (file://x)")
    on_paths = (OnPath("ORM", MAGIC_PATH, ((S, "f1"), MAGIC_FILE)),)
    plan = make_plan(inventory(replicas=(at_source, fake), on_paths=on_paths), PROTECTED)
    assert not plan.refused and plan.only_copies == ()
    assert plan.obsolete == (fake,) and [entry.replica for entry in plan.kept] == [at_source]


def test_dids_of_the_scope_itself_sharing_a_path_go_together() -> None:
    one = ReplicaEntry((S, "f1"), "ORM", 10, False, path="a/x.dat")
    two = ReplicaEntry((S, "f2"), "ORM", 10, False, path="a/x.dat")
    copies = (ReplicaEntry((S, "f1"), "DISK", 10, True), ReplicaEntry((S, "f2"), "DISK", 10, True))
    on_paths = (OnPath("ORM", "a/x.dat", ((S, "f1"), (S, "f2"))),)
    plan = make_plan(inventory(replicas=(one, two, *copies), on_paths=on_paths), PROTECTED)
    assert not plan.refused and plan.kept == () and len(plan.obsolete) == 4


def test_a_copy_registered_without_its_bytes_is_no_copy() -> None:
    """An AVAILABLE replica at a deterministic RSE that its storage does not hold proves nothing."""
    replicas = (
        ReplicaEntry((S, "f1"), "ORM", 10, False, path="a/f1"),
        ReplicaEntry((S, "f1"), "DISK", 10, True, unproven="missing at the storage (file://localhost/disk/f1)"),
        ReplicaEntry((S, "f2"), "ORM", 20, False, path="a/f2"),
        ReplicaEntry((S, "f2"), "DISK", 20, True),  # read back: the registered bytes
    )
    plan = make_plan(inventory(replicas=replicas), PROTECTED)
    assert plan.refused
    (refusal,) = plan.refusals
    assert refusal.names == (
        "commissioning:f1 (at ORM; DISK not counted: missing at the storage (file://localhost/disk/f1))",
    )
    text = "\n".join(render(make_plan(inventory(replicas=replicas), PROTECTED, force_only_copies=True)))
    assert "DISK  10 bytes  commissioning:f1  (no copy: missing at the storage" in text
