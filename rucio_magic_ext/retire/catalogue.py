"""A scope as Rucio holds it, and the changes that retire it, each through Rucio's core API.

Each step runs in transactions of its own and can be run again: a retirement cut short is finished by
running the command once more. Rucio's daemons do the deleting: the undertaker removes the expired
collections, the reaper the OBSOLETE replicas and, with a file's last replica, the file's DID.
"""

from __future__ import annotations

from collections.abc import Callable

from rucio.common.types import InternalAccount, InternalScope
from sqlalchemy import func, or_, select

from rucio_magic_ext import rucio_db
from rucio_magic_ext.common import chunks
from rucio_magic_ext.retire.plan import Inventory, Link, Plan, ReplicaEntry, RuleEntry

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
        found_replicas = tuple(
            ReplicaEntry((scope, name), rse, int(size or 0), bool(deterministic), state == ReplicaState.AVAILABLE)
            for name, rse, size, deterministic, state in session.execute(
                select(replicas.name, rses.rse, replicas.bytes, rses.deterministic, replicas.state)
                .join(rses, rses.id == replicas.rse_id)
                .where(replicas.scope == internal)
            )
        )
    return Inventory(
        scope,
        files=tuple(sorted(by_type["FILE"])),
        datasets=tuple(sorted(by_type["DATASET"])),
        containers=tuple(sorted(by_type["CONTAINER"])),
        rules=tuple(sorted(found_rules, key=lambda rule: (rule.did, rule.rule_id))),
        links=tuple(sorted(found_links, key=lambda link: (link.parent, link.child))),
        replicas=found_replicas,
    )


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
    for link in plan.foreign_parents:
        rucio_db.detach(link.parent, [link.child], account)
        say(f"detached {_did(link.child)} from {_did(link.parent)}")
    for rule in plan.inventory.rules:
        if remove_rule(rule.rule_id, unlock=rule.locked):
            say(f"removed rule {rule.rule_id} on {_did(rule.did)}" + (" (unlocked first)" if rule.locked else ""))
    for parent, children in plan.contents:
        for chunk in chunks(list(children)):
            rucio_db.detach(parent, chunk, account)
        say(f"detached the {len(children)} DIDs in {_did(parent)}")
    still_locked = obsolete(plan.inventory.replicas)
    say(f"gave {len(plan.inventory.replicas) - len(still_locked)} replicas an OBSOLETE tombstone")
    for replica in still_locked:
        say(f"replica still locked, left: {replica.rse} {_did(replica.did)}")
    collections = [(plan.inventory.scope, name) for name in (*plan.inventory.containers, *plan.inventory.datasets)]
    expire(collections)
    say(f"gave {len(collections)} collections an expiry for Rucio's undertaker")


@rucio_db.retried_when_locked
def remove_rule(rule_id: str, unlock: bool) -> bool:
    """Unlock (as an admin would, so a locked rule is never deleted behind its lock) and remove one rule; its
    replicas keep their tombstones as Rucio sets them, and get OBSOLETE ones afterwards only if they belong to
    the scope. False for a rule already gone."""
    from rucio.common.exception import RuleNotFound
    from rucio.core.rule import delete_rule, update_rule

    try:
        with rucio_db.writing() as session:
            if unlock:
                update_rule(rule_id, {"locked": False}, session=session)
            delete_rule(rule_id, purge_replicas=False, delete_parent=True, session=session)
    except RuleNotFound:
        return False
    return True


@rucio_db.retried_when_locked
def obsolete(replicas: tuple[ReplicaEntry, ...]) -> list[ReplicaEntry]:
    """Give every replica without a lock the OBSOLETE tombstone (Rucio's ``set_tombstone``); return those still
    locked (a lock this plan did not know of)."""
    from rucio.common.exception import ReplicaIsLocked, ReplicaNotFound
    from rucio.core.replica import set_tombstone

    locked = []
    for chunk in chunks(list(replicas)):
        with rucio_db.writing() as session:
            for replica in chunk:
                try:
                    with session.begin_nested():
                        set_tombstone(rucio_db.rse_id(replica.rse), InternalScope(replica.did[0]), replica.did[1],
                                      session=session)  # fmt: skip
                except ReplicaIsLocked:
                    locked.append(replica)
                except ReplicaNotFound:
                    pass  # reaped meanwhile
    return locked


@rucio_db.retried_when_locked
def expire(collections: list[tuple[str, str]]) -> None:
    """Expire now: the undertaker deletes expired collections that no locked rule holds."""
    from rucio.common.exception import DataIdentifierNotFound
    from rucio.core.did import set_metadata

    for chunk in chunks(collections):
        with rucio_db.writing() as session:
            for scope, name in chunk:
                try:
                    with session.begin_nested():
                        set_metadata(InternalScope(scope), name, "lifetime", 0, session=session)
                except DataIdentifierNotFound:
                    pass


def _did(did: tuple[str, str]) -> str:
    return f"{did[0]}:{did[1]}"
