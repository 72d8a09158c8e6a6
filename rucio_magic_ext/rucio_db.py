"""The project's access to Rucio's catalogue: its core API and tables, in process and in bulk.

What reaches past Rucio's core API (tables written directly, cache regions) is named in ``rucio_internals``.
Functions that take a ``session`` join the caller's transaction; the others open their own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

from dogpile.cache import make_region
from dogpile.cache.api import NO_VALUE
from rucio.common.types import InternalAccount, InternalScope
from rucio.db.sqla.constants import DatabaseOperationType, DIDType
from rucio.db.sqla.session import db_session
from sqlalchemy import event, or_, select
from sqlalchemy.orm import Session

from rucio_magic_ext.common import DID, chunks
from rucio_magic_ext.rucio_internals import did_clause as did_clause  # the catalogues call it from here
from rucio_magic_ext.rucio_internals import drop_re_evaluations, metadata_plugin_takes, site_settings_kept

REGION = make_region().configure("dogpile.cache.memory", expiration_time=600)
LOCKED_ATTEMPTS = 6

F = TypeVar("F", bound=Callable[..., Any])


def retried_when_locked(function: F) -> F:
    """Run a write transaction again when SQLite refuses it at once ("database is locked"), as it does to one of
    two transactions that both read before they write. Other databases lock rows and wait instead."""

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(LOCKED_ATTEMPTS):
            try:
                return function(*args, **kwargs)
            except Exception as error:
                if "database is locked" not in str(error) or attempt == LOCKED_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0.2, 1.0) * (attempt + 1))
        raise AssertionError("unreachable")

    return cast(F, run)


@contextlib.contextmanager
def reading() -> Iterator[Session]:
    with db_session(DatabaseOperationType.READ) as session:
        yield session


@contextlib.contextmanager
def writing() -> Iterator[Session]:
    with db_session(DatabaseOperationType.WRITE) as session:
        yield session


# -- RSEs -------------------------------------------------------------------------------------------------


@REGION.cache_on_arguments()
def rse_settings(rse: str) -> dict[str, Any]:
    from rucio.core.rse import get_rse_id
    from rucio.rse import rsemanager

    return cast(dict[str, Any], rsemanager.get_rse_info(rse_id=get_rse_id(rse)))


def rse_id(rse: str) -> str:
    return cast(str, rse_settings(rse)["id"])  # the cache's decorator returns Any


def rse_name(rse_id: str, session: Session | None = None) -> str:
    from rucio.core.rse import get_rse_name

    return cast(str, get_rse_name(rse_id=rse_id, session=session))


def pfn(rse: str, did: DID, path: str | None, operation: str = "read") -> str | None:
    """The URL of a replica as Rucio builds it (stored path on a non-deterministic RSE), or None when the
    RSE has no protocol for the operation or Rucio no path for the replica; any other error is raised."""
    from rucio.common.exception import ReplicaUnAvailable, RSEProtocolNotSupported
    from rucio.rse import rsemanager

    lfn: dict[str, Any] = {"scope": did[0], "name": did[1]}
    if path:
        lfn["path"] = path
    try:
        found = rsemanager.lfns2pfns(rse_settings(rse), [lfn], operation=operation)
    except (RSEProtocolNotSupported, ReplicaUnAvailable):
        return None
    return next(iter(found.values()), None)  # empty: Rucio found no path for it (ReplicaNotFound, logged)


# -- DIDs -------------------------------------------------------------------------------------------------


def existing_dids(dids: Sequence[DID], session: Session) -> set[DID]:
    return set(makers(dids, session))


@dataclass(frozen=True)
class Maker:
    """Who made a DID, and its expiry: Rucio's undertaker deletes an expired collection with its rules."""

    account: str
    expired_at: datetime | None


def makers(dids: Sequence[DID], session: Session) -> dict[DID, Maker]:
    from rucio.db.sqla import models

    table = models.DataIdentifier
    found: dict[DID, Maker] = {}
    for chunk in chunks(sorted(set(dids))):
        query = select(table.scope, table.name, table.account, table.expired_at).where(did_clause(table, chunk))
        for scope, name, account, expired_at in session.execute(query):
            found[(scope.external, name)] = Maker(account.external, expired_at)
    return found


def json_metadata_kept(session: Session) -> bool:
    """Whether a configured metadata plugin takes keys beyond Rucio's DID columns (``source``) on this database."""
    return metadata_plugin_takes("source", session)


def ensure_collections(wanted: Mapping[DID, DIDType], account: InternalAccount, session: Session) -> None:
    """Create the datasets and containers not yet there; one that another worker creates meanwhile is fine."""
    from rucio.common.exception import DataIdentifierAlreadyExists
    from rucio.core.did import add_did

    keys = {did: f"collection:{did[0]}:{did[1]}" for did in wanted}
    unknown = [did for did, key in keys.items() if REGION.get(key) is NO_VALUE]
    present = existing_dids(unknown, session)
    for did in (did for did in unknown if did not in present):
        with contextlib.suppress(DataIdentifierAlreadyExists), session.begin_nested():
            add_did(scope=InternalScope(did[0]), name=did[1], did_type=wanted[did], account=account, session=session)
    seen = [keys[did] for did in unknown]
    if seen:  # remembered only once they are committed: a rolled-back creation must be tried again

        def remember(_: Session) -> None:
            for key in seen:
                REGION.set(key, True)

        event.listen(session, "after_commit", remember, once=True)


@retried_when_locked
def ensure_datasets(dids: Iterable[DID], account: InternalAccount) -> None:
    with writing() as session:
        ensure_collections(dict.fromkeys(dids, DIDType.DATASET), account, session)


def reopen_closed(dids: Sequence[DID], session: Session) -> list[DID]:
    """Reopen the closed ones of ``dids`` (attaching to one fails a whole registration batch); returns them."""
    from rucio.core.did import set_status
    from rucio.db.sqla import models

    table = models.DataIdentifier
    closed: list[DID] = []
    for chunk in chunks(sorted(set(dids))):
        query = select(table.scope, table.name).where(did_clause(table, chunk), table.is_open.is_(False))
        closed += [(scope.external, name) for scope, name in session.execute(query)]
    for scope, name in closed:
        set_status(InternalScope(scope), name, open=True, session=session)
    return closed


@retried_when_locked
def attach_missing(collections: Mapping[DID, Sequence[DID]], account: InternalAccount) -> None:
    """Create the datasets that are missing and attach the files not yet in them, their rules' locks made at
    once, in one transaction. A dataset closed by a run cut short is reopened; the caller closes it."""
    from rucio.core.did import attach_dids_to_dids, get_did, set_status

    with writing() as session:
        ensure_collections(dict.fromkeys(collections, DIDType.DATASET), account, session)
        attachments = []
        for (scope, name), files in collections.items():
            present = content(scope, name, session)
            missing = [file for file in files if file not in present]
            if not missing:
                continue
            if not get_did(InternalScope(scope), name, session=session).get("open"):
                set_status(InternalScope(scope), name, open=True, session=session)
            dids = [{"scope": InternalScope(s), "name": n} for s, n in missing]
            attachments.append({"scope": InternalScope(scope), "name": name, "dids": dids})
        if attachments:
            attach_dids_to_dids(attachments=attachments, account=account, session=session)
            evaluate_attachments([(a["scope"].external, a["name"]) for a in attachments], session)


@retried_when_locked
def detach(collection: DID, files: Sequence[DID], account: InternalAccount) -> None:
    """Take files out of a collection, its rules' locks on them removed at once (as the judge-evaluator would)."""
    from rucio.core.did import detach_dids
    from rucio.core.rule import re_evaluate_did
    from rucio.db.sqla.constants import DIDReEvaluation

    if not files:
        return
    scope, name = InternalScope(collection[0]), collection[1]
    with writing() as session:
        detach_dids(scope, name, [{"scope": InternalScope(s), "name": n} for s, n in files], session=session)
        re_evaluate_did(scope, name, DIDReEvaluation.DETACH, session=session)
        drop_re_evaluations([collection], "DETACH", session)


def content(scope: str, name: str, session: Session | None = None) -> set[DID]:
    """A collection's direct children."""
    from rucio.core.did import list_content

    if session is None:
        with reading() as own:
            return content(scope, name, own)
    children = list_content(InternalScope(scope), name, session=session)
    return {(child["scope"].external, child["name"]) for child in children}


@retried_when_locked
def close(dids: Iterable[DID]) -> None:
    from rucio.core.did import get_did, set_status

    with writing() as session:
        for scope, name in dids:
            if get_did(InternalScope(scope), name, session=session).get("open"):
                set_status(InternalScope(scope), name, open=False, session=session)


def delete_dataset(did: DID, account: InternalAccount, session: Session) -> None:
    """Remove a dataset (not its files' replicas); one already gone is fine."""
    from rucio.common.exception import DataIdentifierNotFound
    from rucio.core.did import delete_dids

    dataset = {"scope": InternalScope(did[0]), "name": did[1], "did_type": DIDType.DATASET}
    with contextlib.suppress(DataIdentifierNotFound):
        delete_dids([{**dataset, "purge_replicas": False, "created_at": None}], account, session=session)


# -- rules ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleRequest:
    """A rule the project wants on a DID, found again as the one its account made with this comment, RSE
    expression and copies: never a rule another account wrote the same comment on."""

    scope: str
    name: str
    rse_expression: str
    copies: int
    comment: str
    activity: str
    lifetime: int | None = None
    grouping: str = "DATASET"
    purge_replicas: bool = False
    locked: bool = False
    source_replica_expression: str | None = None  # copy only from replicas there; Rucio waits for one to exist


RuleKey = tuple[str, str, str, str, int]  # scope, name, comment, RSE expression, copies


def rules_on(dids: Iterable[DID], session: Session) -> dict[str, bool]:
    """Rule id -> whether it purges its replicas when it goes, of every rule on ``dids``, whoever made it."""
    from rucio.db.sqla import models

    table = models.ReplicationRule
    found = {}
    for chunk in chunks(sorted(set(dids))):
        query = select(table.id, table.purge_replicas).where(did_clause(table, chunk))
        found.update({str(rule_id): bool(purges) for rule_id, purges in session.execute(query)})
    return found


def own_rules(dids: Iterable[DID], account: InternalAccount, session: Session) -> dict[RuleKey, str]:
    """The rules ``account`` made on ``dids``, by what they ask; expiring ones too (removed through Rucio's API,
    they still hold Rucio's unique index until the judge-cleaner deletes them)."""
    from rucio.db.sqla import models

    table = models.ReplicationRule
    found: dict[RuleKey, str] = {}
    columns = (table.scope, table.name, table.comments, table.rse_expression, table.copies, table.id)
    for chunk in chunks(sorted(set(dids))):
        query = select(*columns).where(did_clause(table, chunk), table.account == account)
        for scope, name, comment, expression, copies, rule_id in session.execute(query):
            found[(scope.external, name, comment or "", expression, copies)] = rule_id
    return found


@retried_when_locked
def ensure_rules(wanted: Sequence[RuleRequest], account: InternalAccount) -> dict[RuleRequest, str]:
    """Rule id for each wanted rule, created only where ``account`` has made none like it on its DID.

    Rules alike but for their DID are made by one ``add_rule`` call: the RSE expression is resolved and the
    quota weighed once. Two workers may want the same rule at once: the second gets DuplicateRule (Rucio's unique
    index on rules), and the call is made again DID by DID, using the rule the other one made.
    """
    from rucio.common.exception import DuplicateRule

    with site_settings_kept(), writing() as session:  # each lock of a new rule asks for two RSE attributes
        existing = own_rules({(r.scope, r.name) for r in wanted}, account, session)
        missing: dict[RuleKey, RuleRequest] = {}
        for request in wanted:
            if _rule_key(request) not in existing:
                missing.setdefault(_rule_key(request), request)  # the first asks: as if made one by one
        for alike in _alike(missing.values()):
            for chunk in chunks(alike):
                try:
                    with session.begin_nested():
                        made = _add_rules(chunk, account, session)
                except DuplicateRule:
                    made = [_add_rule_unless_made(request, account, session) for request in chunk]
                existing.update({_rule_key(request): rule_id for request, rule_id in zip(chunk, made)})
        return {request: existing[_rule_key(request)] for request in wanted}


def _rule_key(request: RuleRequest) -> RuleKey:
    return request.scope, request.name, request.comment, request.rse_expression, request.copies


def _alike(requests: Iterable[RuleRequest]) -> list[list[RuleRequest]]:
    """The requests grouped by everything but their DID, in their first order."""
    groups: dict[RuleRequest, list[RuleRequest]] = {}
    for request in requests:
        groups.setdefault(dataclasses.replace(request, scope="", name=""), []).append(request)
    return list(groups.values())


def _add_rule_unless_made(request: RuleRequest, account: InternalAccount, session: Session) -> str:
    from rucio.common.exception import DuplicateRule

    try:
        with session.begin_nested():
            (rule_id,) = _add_rules([request], account, session)
            return rule_id
    except DuplicateRule:  # the account's rule asking the same, made meanwhile or under another comment
        made = own_rules([(request.scope, request.name)], account, session)
        for (_, _, _, expression, copies), rule_id in made.items():
            if (expression, copies) == (request.rse_expression, request.copies):
                return rule_id
        raise


def _add_rules(alike: Sequence[RuleRequest], account: InternalAccount, session: Session) -> list[str]:
    """One rule per request (alike but for their DID); ids in the requests' order."""
    from rucio.core.rule import add_rule

    first = alike[0]
    ids: list[str] = add_rule(
        dids=[{"scope": InternalScope(request.scope), "name": request.name} for request in alike],
        account=account,
        copies=first.copies,
        rse_expression=first.rse_expression,
        grouping=first.grouping,
        weight=None,
        lifetime=first.lifetime,
        locked=first.locked,
        subscription_id=None,
        source_replica_expression=first.source_replica_expression,
        activity=first.activity,
        purge_replicas=first.purge_replicas,
        comment=first.comment,
        session=session,
    )
    return ids


@dataclass(frozen=True)
class Rule:
    rule_id: str
    state: str  # OK, REPLICATING, STUCK, SUSPENDED, ...
    account: str
    rse_expression: str
    locked: bool
    expires_at: datetime | None
    purge_replicas: bool


def rules(rule_ids: Iterable[str]) -> dict[str, Rule | None]:
    """Each rule as Rucio holds it now; None for a rule that is gone."""
    from rucio.db.sqla import models

    ids = [rule_id for rule_id in rule_ids if rule_id]
    table = models.ReplicationRule
    found: dict[str, Rule | None] = dict.fromkeys(ids)
    columns = (table.id, table.state, table.account, table.rse_expression, table.locked, table.expires_at)
    with reading() as session:
        for chunk in chunks(ids):
            query = select(*columns, table.purge_replicas).where(table.id.in_(chunk))
            for rule_id, state, account, expression, locked, expires, purge in session.execute(query):
                found[rule_id] = Rule(rule_id, state.name, account.external, expression, bool(locked), expires, purge)
    return found


def delete_rule(rule_id: str, purge_replicas: bool, session: Session) -> None:
    """Remove a rule at once (not Rucio's soft delete), locked or not; one already gone is fine."""
    from rucio.common.exception import RuleNotFound
    from rucio.core.rule import delete_rule as rucio_delete_rule

    with contextlib.suppress(RuleNotFound):
        rucio_delete_rule(rule_id, purge_replicas=purge_replicas, soft=False, ignore_rule_lock=True, session=session)


def evaluate_attachments(collections: Iterable[DID], session: Session) -> None:
    """Give the files just attached to ``collections`` their rules' locks now, as the judge-evaluator would
    later: a file attached to a carrier is held from the moment its attachment commits."""
    from rucio.core.rule import re_evaluate_did
    from rucio.db.sqla.constants import DIDReEvaluation

    collections = list(collections)
    for scope, name in collections:
        re_evaluate_did(InternalScope(scope), name, DIDReEvaluation.ATTACH, session=session)
    drop_re_evaluations(collections, "ATTACH", session)


# -- replicas ---------------------------------------------------------------------------------------------


def replica_paths(rse: str, dids: Sequence[DID], session: Session) -> dict[DID, str]:
    """The stored path of each of ``dids`` that has a replica at ``rse``."""
    from rucio.db.sqla import models

    table = models.RSEFileAssociation
    found = {}
    for chunk in chunks(list(dids)):
        query = select(table.scope, table.name, table.path).where(table.rse_id == rse_id(rse), did_clause(table, chunk))
        found.update({(scope.external, name): path or "" for scope, name, path in session.execute(query)})
    return found


def replicas_on_paths(rse: str, paths: Sequence[str], session: Session) -> dict[str, set[DID]]:
    """Path (without its leading slash) -> every DID, of any scope, with a replica stored at that path of
    ``rse``. At a non-deterministic RSE a path is a file on storage: the reaper deleting one replica's path
    deletes the bytes of every DID that names it."""
    from rucio.db.sqla import models

    table = models.RSEFileAssociation
    found: dict[str, set[DID]] = {}
    # Rucio stores a path relative to the prefix with and without its leading slash (PFNs parsed by Rucio keep it).
    forms = sorted({form for path in paths for form in (path.lstrip("/"), "/" + path.lstrip("/"))})
    for chunk in chunks(forms):
        query = select(table.scope, table.name, table.path).where(table.rse_id == rse_id(rse), table.path.in_(chunk))
        for scope, name, path in session.execute(query):
            found.setdefault(path.lstrip("/"), set()).add((scope.external, name))
    return found


def replicas_at(rse: str, dids: Sequence[DID]) -> set[DID]:
    with reading() as session:
        return set(replica_paths(rse, dids, session))


# -- an RSE's records, streamed (the audit) ---------------------------------------------------------------


@dataclass(frozen=True)
class ReplicaRow:
    scope: str
    name: str
    path: str | None  # as stored; None where the RSE's lfn2pfn makes it
    bytes: int | None
    adler32: str | None
    state: str  # ReplicaState name: AVAILABLE, COPYING, BEING_DELETED, BAD, ...


def replicas_of_rse(rse: str, batch: int = 5000) -> Iterator[ReplicaRow]:
    """Every replica of an RSE, ``batch`` rows at a time on one cursor: a whole RSE never sits in memory."""
    from rucio.db.sqla import models

    table = models.RSEFileAssociation
    query = select(table.scope, table.name, table.path, table.bytes, table.adler32, table.state)
    for scope, name, path, size, adler32, state in _streamed(query.where(table.rse_id == rse_id(rse)), batch):
        yield ReplicaRow(scope.external, name, path, size, adler32, state.name)


def _streamed(query: Any, batch: int) -> Iterator[Any]:
    """The rows of ``query``, fetched ``batch`` at a time on one cursor."""
    with reading() as session:
        yield from session.execute(query.execution_options(yield_per=batch))


def rse_protocol(rse: str, operation: str = "read") -> Any:
    """The RSE's protocol for ``operation`` as Rucio chooses it (WAN), to build its PFNs in bulk."""
    from rucio.rse import rsemanager

    return rsemanager.create_protocol(rse_settings(rse), operation, domain="wan")


def rses_of_expression(expression: str) -> frozenset[str]:
    """The RSEs an RSE expression names now; empty when the expression names none or is not valid."""
    from rucio.common.exception import InvalidRSEExpression
    from rucio.core.rse_expression_parser import parse_expression

    with reading() as session:
        try:
            return frozenset(entry["rse"] for entry in parse_expression(expression, session=session))
        except InvalidRSEExpression:
            return frozenset()


def empty_collections(scopes: Sequence[str], batch: int = 5000) -> Iterator[tuple[str, str, str]]:
    """(scope, name, DID type) of every dataset and container of ``scopes`` that holds nothing."""
    from rucio.db.sqla import models
    from sqlalchemy import exists

    did, link = models.DataIdentifier, models.DataIdentifierAssociation
    content = exists().where(link.scope == did.scope, link.name == did.name)
    query = select(did.scope, did.name, did.did_type).where(
        did.scope.in_([InternalScope(scope) for scope in scopes]),
        did.did_type.in_([DIDType.DATASET, DIDType.CONTAINER]),
        ~content,
    )
    for scope, name, did_type in _streamed(query, batch):
        yield scope.external, name, did_type.name


def collections_not_made_by(
    scopes: Sequence[str], account: str, batch: int = 5000
) -> Iterator[tuple[str, str, str, str, datetime | None]]:
    """(scope, name, DID type, account, expiry) of the collections of ``scopes`` not ``account``'s, or set to expire."""
    from rucio.db.sqla import models

    did = models.DataIdentifier
    query = select(did.scope, did.name, did.did_type, did.account, did.expired_at).where(
        did.scope.in_([InternalScope(scope) for scope in scopes]),
        did.did_type.in_([DIDType.DATASET, DIDType.CONTAINER]),
        or_(did.account != InternalAccount(account), did.expired_at.is_not(None)),
    )
    for scope, name, did_type, maker, expired_at in _streamed(query, batch):
        yield scope.external, name, did_type.name, maker.external, expired_at


def collections_of_scope(scope: str, batch: int = 5000) -> Iterator[str]:
    """The names of a scope's datasets."""
    from rucio.db.sqla import models

    did = models.DataIdentifier
    query = select(did.name).where(did.scope == InternalScope(scope), did.did_type == DIDType.DATASET)
    for (name,) in _streamed(query, batch):
        yield name


@dataclass(frozen=True)
class RuleRow:
    rule_id: str
    scope: str
    name: str
    comment: str
    rse_expression: str
    copies: int
    account: str
    expires_at: datetime | None = None


def rules_in_scopes(scopes: Sequence[str], batch: int = 5000) -> Iterator[RuleRow]:
    """Every rule on a DID of ``scopes``."""
    from rucio.db.sqla import models

    table = models.ReplicationRule
    columns = (table.id, table.scope, table.name, table.comments, table.rse_expression, table.copies)
    query = select(*columns, table.account, table.expires_at)
    rows = _streamed(query.where(table.scope.in_([InternalScope(scope) for scope in scopes])), batch)
    for rule_id, scope, name, comment, expression, copies, account, expires in rows:
        yield RuleRow(str(rule_id), scope.external, name, comment or "", expression, copies, account.external, expires)


def keep_rules(rule_ids: Iterable[str]) -> list[str]:
    """Take the expiry off rules (Rucio's API removes a rule by setting it to expire); returns the rules kept."""
    from rucio.core.rule import update_rule

    expiring = [rule_id for rule_id, rule in rules(rule_ids).items() if rule and rule.expires_at is not None]
    with writing() as session:
        for rule_id in expiring:
            update_rule(rule_id, {"lifetime": None}, session=session)
    return expiring


@retried_when_locked
def declare_bad_replicas(rse: str, dids: Sequence[DID], reason: str, account: str) -> list[str]:
    """Declare replicas of ``rse`` BAD through Rucio's own API, so that the necromancer and the replica recoverer
    have them copied again from another replica; returns what Rucio could not declare, with its reason."""
    from rucio.core.replica import declare_bad_file_replicas

    if not dids:
        return []
    replicas: list[str | dict[str, Any]] = [
        {"scope": InternalScope(scope), "name": name, "rse_id": rse_id(rse)} for scope, name in dids
    ]
    with writing() as session:
        refused = declare_bad_file_replicas(replicas, reason, InternalAccount(account), force=True, session=session)
    return [entry for entries in refused.values() for entry in entries]
