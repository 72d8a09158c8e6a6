"""A scope as Rucio holds it, and the changes that retire it, each through Rucio's core API.

Each step runs in transactions of its own and can be run again: a retirement cut short is finished by running
the command once more. Rucio's daemons (undertaker, reaper) do the deleting. The facts the plan needs to keep
other scopes' bytes are gathered here too: who else names each path of the scope's replicas at non-deterministic
RSEs, and whether each copy a source copy's fate hangs on is really at its storage (size and adler32 read there).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Sequence

from rucio.common.types import InternalAccount, InternalScope
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from rucio_magic_ext import rucio_db
from rucio_magic_ext.common import DID, chunks
from rucio_magic_ext.retire.plan import Inventory, Kept, Link, OnPath, Plan, ReplicaEntry, RuleEntry, shared_paths

ADMIN = "root"
Say = Callable[[str], None]


def scope_exists(scope: str) -> bool:
    from rucio.core.scope import check_scope

    with rucio_db.reading() as session:
        return bool(check_scope(InternalScope(scope), session=session))


def read_inventory(scope: str) -> Inventory:
    """Every DID, rule and replica of ``scope``, and every attachment that crosses its border."""
    from rucio.db.sqla import models
    from rucio.db.sqla.constants import ReplicaState

    dids, rules, links = models.DataIdentifier, models.ReplicationRule, models.DataIdentifierAssociation
    replicas, rses = models.RSEFileAssociation, models.RSE
    internal = InternalScope(scope)
    by_type: dict[str, list[str]] = {"FILE": [], "DATASET": [], "CONTAINER": []}
    with rucio_db.reading() as session:
        for name, did_type in session.execute(select(dids.name, dids.did_type).where(dids.scope == internal)):
            by_type.setdefault(did_type.name, []).append(name)
        found_rules = tuple(
            RuleEntry(rule_id, (s.external, n), account.external, expression, bool(locked), state.name)
            for rule_id, s, n, account, expression, locked, state in session.execute(
                select(rules.id, rules.scope, rules.name, rules.account, rules.rse_expression, rules.locked,
                       rules.state).where(rules.scope == internal)
            )
        )  # fmt: skip
        found_links = tuple(
            Link((s.external, n), (cs.external, cn), child_type.name)
            for s, n, cs, cn, child_type in session.execute(
                select(links.scope, links.name, links.child_scope, links.child_name, links.child_type).where(
                    or_(links.scope == internal, links.child_scope == internal)
                )
            )
        )
        found_replicas = []
        adler32s: dict[ReplicaEntry, str | None] = {}
        for name, rse, size, deterministic, state, path, adler32 in session.execute(
            select(replicas.name, rses.rse, replicas.bytes, rses.deterministic, replicas.state, replicas.path,
                   replicas.adler32)
            .join(rses, rses.id == replicas.rse_id)
            .where(replicas.scope == internal)
        ):  # fmt: skip
            entry = ReplicaEntry(
                (scope, name), rse, int(size or 0), bool(deterministic), state == ReplicaState.AVAILABLE,
                None if deterministic else path,
            )  # fmt: skip
            found_replicas.append(entry)
            adler32s[entry] = adler32
        on_paths = _on_paths(found_replicas, session)
    return Inventory(
        scope,
        files=tuple(sorted(by_type["FILE"])),
        datasets=tuple(sorted(by_type["DATASET"])),
        containers=tuple(sorted(by_type["CONTAINER"])),
        rules=tuple(sorted(found_rules, key=lambda rule: (rule.did, rule.rule_id))),
        links=tuple(sorted(found_links, key=lambda link: (link.parent, link.child))),
        replicas=tuple(_proven(found_replicas, adler32s)),
        on_paths=on_paths,
    )


def _on_paths(replicas: Sequence[ReplicaEntry], session: Session) -> tuple[OnPath, ...]:
    """Every DID, of any scope, that names a path of the scope's replicas at non-deterministic RSEs."""
    paths: dict[str, set[str]] = {}
    for replica in replicas:
        if not replica.deterministic and replica.path:
            paths.setdefault(replica.rse, set()).add(replica.path)
    return tuple(
        OnPath(rse, path, tuple(sorted(dids)))
        for rse, wanted in sorted(paths.items())
        for path, dids in sorted(rucio_db.replicas_on_paths(rse, sorted(wanted), session).items())
    )


def _proven(replicas: list[ReplicaEntry], adler32s: dict[ReplicaEntry, str | None]) -> list[ReplicaEntry]:
    """Each AVAILABLE copy at a deterministic RSE of a file that has a source replica, read at its storage: one
    that does not hold the registered size and adler32 (or cannot be read) says why, and counts for nothing."""
    sourced = {replica.did for replica in replicas if not replica.deterministic}
    return [
        dataclasses.replace(replica, unproven=_read_back(replica, adler32s[replica]))
        if replica.deterministic and replica.available and replica.did in sourced
        else replica
        for replica in replicas
    ]


def _read_back(replica: ReplicaEntry, adler32: str | None) -> str | None:
    """Why the copy is not the registered file at its storage, or None when it is."""
    from rucio_magic_ext.storage import credentials, storage_for_pfn

    pfn = rucio_db.pfn(replica.rse, replica.did, None)
    if pfn is None:
        return "no protocol to read it with"
    if not adler32:
        return f"registered without an adler32 to prove it by ({pfn})"
    try:
        protocols = rucio_db.rse_settings(replica.rse)["protocols"]
        storage = storage_for_pfn(pfn, protocols, credentials.for_rse(replica.rse))
        size = storage.stat(pfn).size
        found = storage.checksum(pfn, ("adler32",))["adler32"]
    except FileNotFoundError:
        return f"missing at the storage ({pfn})"
    except Exception as error:  # a storage down, a PFN outside its protocol's root: proves nothing
        return f"unreadable at the storage ({pfn}): {error}"
    if size != replica.bytes:
        return f"size {size} at the storage, registered {replica.bytes} ({pfn})"
    if found.lower().zfill(8) != adler32.lower().zfill(8):
        return f"adler32 {found} at the storage, registered {adler32} ({pfn})"
    return None


def left(scope: str) -> dict[str, int]:
    """How many DIDs, rules and replicas of ``scope`` Rucio still holds."""
    from rucio.db.sqla import models

    internal = InternalScope(scope)
    counted = {}
    with rucio_db.reading() as session:
        for what, table in (("dids", models.DataIdentifier), ("rules", models.ReplicationRule),
                            ("replicas", models.RSEFileAssociation)):  # fmt: skip
            query = select(func.count()).select_from(table).where(table.scope == internal)
            counted[what] = session.execute(query).scalar_one()
    return counted


def carry_out(plan: Plan, say: Say) -> None:
    """Detach from other scopes, remove the rules, empty the collections, make the replicas OBSOLETE and give the
    collections an expiry, in that order: no rule of the scope is left to lock another scope's files when they
    are detached, and no lock of the scope's rules is left when its replicas get their tombstones."""
    account = InternalAccount(ADMIN)
    kept = [entry.replica for entry in plan.kept]
    for link in plan.foreign_parents:
        rucio_db.detach(link.parent, [link.child], account)
        say(f"detached {_did(link.child)} from {_did(link.parent)}")
    for rule in plan.inventory.rules:
        if remove_rule(rule.rule_id, unlock=rule.locked, kept=kept):
            say(f"removed rule {rule.rule_id} on {_did(rule.did)}" + (" (unlocked first)" if rule.locked else ""))
    for parent, children in plan.contents:
        for chunk in chunks(list(children)):
            rucio_db.detach(parent, chunk, account)
        say(f"detached the {len(children)} DIDs in {_did(parent)}")
    still_locked, shared = obsolete(plan.obsolete, plan.inventory.scope)
    say(f"gave {len(plan.obsolete) - len(still_locked) - len(shared)} replicas an OBSOLETE tombstone")
    for replica in still_locked:
        say(f"replica still locked, left: {replica.rse} {_did(replica.did)}")
    for entry in (*plan.kept, *shared):
        say(f"replica kept, no tombstone: {entry.replica.rse} {_did(entry.replica.did)}: {entry.reason}")
    collections = [(plan.inventory.scope, name) for name in (*plan.inventory.containers, *plan.inventory.datasets)]
    expire(collections)
    say(f"gave {len(collections)} collections an expiry for Rucio's undertaker")


@rucio_db.retried_when_locked
def remove_rule(rule_id: str, unlock: bool, kept: Sequence[ReplicaEntry] = ()) -> bool:
    """Unlock (as an admin would, so a locked rule is never deleted behind its lock) and remove one rule; its
    replicas keep their tombstones as Rucio sets them, and get OBSOLETE ones afterwards only if they belong to
    the scope. Rucio gives a replica that loses its last lock a tombstone the reaper may act on: the ``kept``
    replicas have theirs taken off in the same transaction. False for a rule already gone."""
    from rucio.common.exception import RuleNotFound
    from rucio.core.rule import delete_rule, update_rule

    try:
        with rucio_db.writing() as session:
            if unlock:
                update_rule(rule_id, {"locked": False}, session=session)
            delete_rule(rule_id, purge_replicas=False, delete_parent=True, session=session)
            untombstone(kept, session)
    except RuleNotFound:
        return False
    return True


def untombstone(replicas: Sequence[ReplicaEntry], session: Session) -> None:
    """No tombstone on ``replicas``: the reaper leaves them, as it leaves a source replica just registered."""
    from rucio.db.sqla import models

    table = models.RSEFileAssociation
    by_rse: dict[str, list[DID]] = {}
    for replica in replicas:
        by_rse.setdefault(replica.rse, []).append(replica.did)
    for rse, dids in by_rse.items():
        for chunk in chunks(dids):
            session.execute(
                update(table)
                .where(table.rse_id == rucio_db.rse_id(rse), rucio_db.did_clause(table, chunk))
                .values(tombstone=None)
                .execution_options(synchronize_session=False)
            )


@rucio_db.retried_when_locked
def obsolete(replicas: tuple[ReplicaEntry, ...], scope: str) -> tuple[list[ReplicaEntry], list[Kept]]:
    """Give every replica without a lock the OBSOLETE tombstone (Rucio's ``set_tombstone``); return those still
    locked (a lock this plan did not know of) and those at a non-deterministic RSE whose path another scope's DID
    names now (registered since the plan was made: asked again in the transaction that would give the
    tombstone), kept without one."""
    from rucio.common.exception import ReplicaIsLocked, ReplicaNotFound
    from rucio.core.replica import set_tombstone

    locked: list[ReplicaEntry] = []
    shared: list[Kept] = []
    for chunk in chunks(list(replicas)):
        with rucio_db.writing() as session:
            now = Inventory(scope, replicas=tuple(chunk), on_paths=_on_paths(chunk, session))
            sharing = {entry.replica: entry.reason for entry in shared_paths(now)}
            for replica in chunk:
                if replica in sharing:
                    shared.append(Kept(replica, sharing[replica]))
                    continue
                try:
                    with session.begin_nested():
                        set_tombstone(rucio_db.rse_id(replica.rse), InternalScope(replica.did[0]), replica.did[1],
                                      session=session)  # fmt: skip
                except ReplicaIsLocked:
                    locked.append(replica)
                except ReplicaNotFound:
                    pass  # reaped meanwhile
            untombstone([entry.replica for entry in shared if entry.replica in sharing], session)
    return locked, shared


@rucio_db.retried_when_locked
def expire(collections: list[tuple[str, str]]) -> None:
    """Expire now: the undertaker deletes expired collections that no locked rule holds."""
    from rucio.common.exception import DataIdentifierNotFound
    from rucio.core.did import set_metadata

    for chunk in chunks(collections):
        with rucio_db.writing() as session:
            for scope, name in chunk:
                with contextlib.suppress(DataIdentifierNotFound), session.begin_nested():
                    set_metadata(InternalScope(scope), name, "lifetime", 0, session=session)


def _did(did: tuple[str, str]) -> str:
    return f"{did[0]}:{did[1]}"
