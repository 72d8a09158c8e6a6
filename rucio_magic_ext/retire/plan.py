"""What retiring a scope would do, decided from a snapshot of the scope in Rucio: pure, so every refusal can
be tested case by case.

Rucio 41 has no scope deletion. Its own ways to empty one, which the plan lists: rules removed (their locks go),
collections detached and given an expiry (the undertaker deletes them), replicas without locks given an OBSOLETE
tombstone (the reaper deletes the bytes, and with a file's last replica its DID).

At a non-deterministic RSE the reaper deleting a replica deletes the file on storage, whoever else's replica
names its path too: such a replica is kept in place (its file's DID stays). A copy elsewhere counts for a file
only when it was read at its storage and holds the registered bytes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from rucio_magic_ext.common import DID


@dataclass(frozen=True)
class RuleEntry:
    rule_id: str
    did: DID
    account: str
    rse_expression: str
    locked: bool
    state: str


@dataclass(frozen=True)
class Link:
    """One attachment: ``child`` is in ``parent``."""

    parent: DID
    child: DID
    child_type: str  # FILE, DATASET, CONTAINER


@dataclass(frozen=True)
class ReplicaEntry:
    did: DID
    rse: str
    bytes: int
    deterministic: bool  # a copy Rucio placed itself; a non-deterministic RSE holds source copies
    available: bool = True  # only an AVAILABLE replica is a copy; one being written is not yet
    path: str | None = None  # the stored path at a non-deterministic RSE: a file on storage
    unproven: str | None = None  # why the copy, read at its storage, does not hold the registered bytes


@dataclass(frozen=True)
class OnPath:
    """Every DID, of any scope, whose replica names ``path`` at the non-deterministic RSE ``rse``."""

    rse: str
    path: str
    dids: tuple[DID, ...]


@dataclass(frozen=True)
class Kept:
    """A replica of the scope left in place, and why: its bytes are another DID's too."""

    replica: ReplicaEntry
    reason: str


@dataclass(frozen=True)
class Inventory:
    """Everything of one scope that Rucio holds, and what ties it to other scopes."""

    scope: str
    files: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    containers: tuple[str, ...] = ()
    rules: tuple[RuleEntry, ...] = ()
    links: tuple[Link, ...] = ()  # every attachment with the parent or the child in the scope
    replicas: tuple[ReplicaEntry, ...] = ()
    on_paths: tuple[OnPath, ...] = ()  # who else names the paths of the scope's replicas at non-deterministic RSEs

    @property
    def empty(self) -> bool:
        return not (self.files or self.datasets or self.containers or self.rules or self.replicas)


@dataclass(frozen=True)
class Refusal:
    """Why nothing is done; ``names`` lists what the reason is about."""

    reason: str
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    inventory: Inventory
    refusals: tuple[Refusal, ...] = ()
    only_copies: tuple[str, ...] = ()  # files whose every copy is at a non-deterministic RSE (forced through)
    foreign_parents: tuple[Link, ...] = ()  # collections of the scope to detach from other scopes' collections
    contents: tuple[tuple[DID, tuple[DID, ...]], ...] = ()  # each collection of the scope and what it holds
    without_replica: tuple[str, ...] = ()  # files Rucio 41 cannot remove: only a last replica's deletion does
    kept: tuple[Kept, ...] = ()  # replicas whose path another scope's DID names: left in place, DIDs too

    @property
    def refused(self) -> bool:
        return bool(self.refusals)

    @property
    def obsolete(self) -> tuple[ReplicaEntry, ...]:
        """The replicas given an OBSOLETE tombstone: all but those kept."""
        kept = {entry.replica for entry in self.kept}
        return tuple(replica for replica in self.inventory.replicas if replica not in kept)


def protected_scopes(
    magic_scopes: Iterable[str], policy_scopes: Iterable[str], site_scopes: Iterable[str]
) -> frozenset[str]:
    """Scopes retirement never touches: MAGIC's, the carrier's, the policy's and ``[magic-policy] scopes``."""
    return frozenset(s.strip() for s in (*magic_scopes, *policy_scopes, *site_scopes) if s.strip())


def scope_refusal(scope: str, protected: frozenset[str]) -> Refusal | None:
    """Checked before the scope is read: MAGIC's scopes hold the observatory's data and the flow's carriers."""
    if scope in protected:
        shown = ", ".join(sorted(protected))
        return Refusal(f"scope {scope} holds MAGIC data or the flow's carriers (protected: {shown})")
    return None


def make_plan(inventory: Inventory, protected: frozenset[str], force_only_copies: bool = False) -> Plan:
    scope = inventory.scope
    refusals: list[Refusal] = []
    refused_scope = scope_refusal(scope, protected)
    if refused_scope:
        return Plan(inventory, (refused_scope,))

    crossing = [link for link in inventory.links if link.child[0] == scope and link.parent[0] != scope]
    foreign_parents = tuple(link for link in crossing if link.child_type != "FILE")
    shared_files = sorted(
        f"{link.child[0]}:{link.child[1]} (in {link.parent[0]}:{link.parent[1]})"
        for link in crossing
        if link.child_type == "FILE"
    )
    if shared_files:
        refusals.append(
            Refusal(
                "files of the scope are attached to collections of other scopes, whose data they are "
                "part of; detach them there first",
                tuple(shared_files),
            )
        )

    kept = shared_paths(inventory)
    where: dict[str, list[ReplicaEntry]] = defaultdict(list)
    for replica in inventory.replicas:
        where[replica.did[1]].append(replica)
    staying = {entry.replica for entry in kept}
    going = {name: [replica for replica in replicas if replica not in staying] for name, replicas in where.items()}
    only_copies = tuple(sorted(
        _only_copy(scope, name, replicas) for name, replicas in going.items() if _only_at_sources(replicas)
    ))  # fmt: skip
    if only_copies and not force_only_copies:
        refusals.append(
            Refusal(
                "files whose only copies are at non-deterministic (source) RSEs would be lost for "
                "good; give --force-only-copies to retire them too",
                only_copies,
            )
        )

    held: dict[DID, list[DID]] = {(scope, name): [] for name in (*inventory.containers, *inventory.datasets)}
    for link in inventory.links:
        if link.parent in held:
            held[link.parent].append(link.child)
    contents = tuple((parent, tuple(sorted(children))) for parent, children in sorted(held.items()) if children)
    without_replica = tuple(sorted(set(inventory.files) - set(where)))
    return Plan(inventory, tuple(refusals), only_copies, foreign_parents, contents, without_replica, kept)


def shared_paths(inventory: Inventory) -> tuple[Kept, ...]:
    """The scope's replicas at non-deterministic RSEs whose path another scope's DID names too: they stay."""
    named = {(entry.rse, entry.path.lstrip("/")): entry.dids for entry in inventory.on_paths}
    kept = []
    for replica in sorted(inventory.replicas, key=_replica_key):
        if replica.deterministic or not replica.path:
            continue
        path = replica.path.lstrip("/")
        others = sorted(did for did in named.get((replica.rse, path), ()) if did[0] != inventory.scope)
        if others:
            kept.append(Kept(replica, f"path {path} at {replica.rse} is also the replica of {_few(others)}"))
    return tuple(kept)


def render(plan: Plan) -> list[str]:
    """The plan as lines of text: what would go, with RSEs and bytes."""
    inventory = plan.inventory
    scope = inventory.scope
    lines = [f"scope {scope}:"]
    if inventory.empty:
        lines.append("  no DID, rule or replica left")
    lines += _section(
        "rules removed (locked ones unlocked first)",
        [f"{r.rule_id}  {r.did[0]}:{r.did[1]}  {r.rse_expression}  account {r.account}  {r.state}"
         + ("  locked" if r.locked else "") for r in inventory.rules],
    )  # fmt: skip
    lines += _section(
        "collections detached from other scopes' collections",
        [f"{link.child[0]}:{link.child[1]}  from {link.parent[0]}:{link.parent[1]}" for link in plan.foreign_parents],
    )
    lines += _section(
        "collections emptied and given an expiry (Rucio's undertaker deletes them)",
        [f"{kind}  {scope}:{name}" for kind, names in (("CONTAINER", inventory.containers),
                                                       ("DATASET", inventory.datasets)) for name in names],
    )  # fmt: skip
    foreign = [f"{child[0]}:{child[1]}  out of {parent[0]}:{parent[1]} (kept)"
               for parent, children in plan.contents for child in children if child[0] != scope]  # fmt: skip
    lines += _section("content of other scopes detached", foreign)
    lines += _section("files (their DIDs go with their last replica)", [f"{scope}:{name}" for name in inventory.files])
    lines += _section(
        "replicas made OBSOLETE (Rucio's reaper deletes the bytes)",
        [
            f"{r.rse}  {r.bytes} bytes  {r.did[0]}:{r.did[1]}" + ("" if r.available else "  (not yet written)")
            + (f"  (no copy: {r.unproven})" if r.unproven else "")
            for r in sorted(plan.obsolete, key=_replica_key)
        ],
    )  # fmt: skip
    lines += _section(
        "replicas kept in place, their file's DID with them: another scope's DID names the same file on storage",
        [f"{k.replica.rse}  {k.replica.bytes} bytes  {k.replica.did[0]}:{k.replica.did[1]}: {k.reason}"
         for k in plan.kept],
    )  # fmt: skip
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for replica in plan.obsolete:
        totals[replica.rse][0] += 1
        totals[replica.rse][1] += replica.bytes
    lines += _section("per RSE", [f"{rse}  {n} replicas  {size} bytes" for rse, (n, size) in sorted(totals.items())])
    lines += _section("files forced through with their only copies", list(plan.only_copies) if not plan.refused else [])
    lines += _section("files without any replica (Rucio 41 removes a file's DID only with its last replica: "
                      "they stay)", [f"{scope}:{name}" for name in plan.without_replica])  # fmt: skip
    return lines


def _only_at_sources(replicas: list[ReplicaEntry]) -> bool:
    """Copies at non-deterministic RSEs and none that Rucio placed and its storage was seen to hold: the data
    exists nowhere else. A copy registered without its bytes, or not yet written, is no copy."""
    copies = [replica for replica in replicas if replica.available]
    return any(not copy.deterministic for copy in copies) and not any(_counts(copy) for copy in copies)


def _counts(replica: ReplicaEntry) -> bool:
    return replica.deterministic and replica.available and replica.unproven is None


def _only_copy(scope: str, name: str, replicas: list[ReplicaEntry]) -> str:
    sources = ", ".join(sorted(r.rse for r in replicas if r.available and not r.deterministic))
    refused = "; ".join(f"{r.rse} not counted: {r.unproven}" for r in sorted(replicas, key=_replica_key)
                        if r.deterministic and r.available and r.unproven)  # fmt: skip
    return f"{scope}:{name} (at {sources}" + (f"; {refused}" if refused else "") + ")"


def _few(dids: list[DID], shown: int = 3) -> str:
    names = ", ".join(f"{scope}:{name}" for scope, name in dids[:shown])
    return names + (f" and {len(dids) - shown} more" if len(dids) > shown else "")


def _replica_key(replica: ReplicaEntry) -> tuple[str, str]:
    return replica.rse, replica.did[1]


def _section(title: str, items: list[str]) -> list[str]:
    return [f"  {title} ({len(items)}):", *(f"    {item}" for item in items)] if items else []
