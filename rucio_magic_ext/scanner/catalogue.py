"""The scanner's one door into Rucio: the core API, in process and in bulk, one transaction per call.

Every call can be repeated after a crash with the same outcome: replicas already registered at the same
path are left alone, attachments ignore duplicates, collections and rules are created only when missing
(rules are recognised by their comment).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dogpile.cache import make_region
from dogpile.cache.api import NO_VALUE
from rucio.common.types import InternalAccount, InternalScope
from rucio.db.sqla.constants import DatabaseOperationType, DIDType
from rucio.db.sqla.session import db_session
from sqlalchemy import and_, event, or_, select
from sqlalchemy.orm import Session

from rucio_magic_ext.ledger.store import chunks
from rucio_magic_ext.scanner import describe
from rucio_magic_ext.scanner.describe import DID_COLUMN_KEYS
from rucio_magic_ext.storage.base import LoggerFunction

REGION = make_region().configure("dogpile.cache.memory", expiration_time=600)

DID = tuple[str, str]  # (scope, name), external scope


@dataclass(frozen=True)
class Registration:
    """A file to register at the source RSE, where it was written."""

    scope: str
    name: str
    path: str  # relative to the RSE's prefix
    size: int
    adler32: str
    md5: str | None
    metadata: Mapping[str, Any]
    dataset: str
    containers: tuple[str, ...]  # innermost first


@dataclass(frozen=True)
class RuleRequest:
    """A rule the scanner wants on a DID, recognised afterwards by its comment."""

    scope: str
    name: str
    rse_expression: str
    copies: int
    comment: str
    activity: str
    lifetime: int | None = None
    grouping: str = "DATASET"
    purge_replicas: bool = False


@REGION.cache_on_arguments()
def rse_settings(rse: str) -> dict[str, Any]:
    """Rucio's description of an RSE (id, determinism, protocols); it rarely changes."""
    from rucio.core.rse import get_rse_id
    from rucio.rse import rsemanager

    return rsemanager.get_rse_info(rse_id=get_rse_id(rse))


class Catalogue:
    def __init__(self, rse: str, account: str, logger: LoggerFunction = logging.log) -> None:
        self.rse = rse
        self.account = InternalAccount(account)
        self.logger = logger

    # -- the source RSE ------------------------------------------------------------------------------------

    @property
    def rse_id(self) -> str:
        return rse_settings(self.rse)["id"]

    @functools.cached_property
    def _protocol(self) -> Any:
        """The source RSE's protocol, made once: every registered file needs its PFN."""
        from rucio.rse import rsemanager

        return rsemanager.create_protocol(rse_settings(self.rse), "read", domain="wan")

    def storage_root(self) -> str:
        """The URL of the RSE's prefix, where the storage listing starts."""
        return self.pfn("_")[:-1]  # Rucio's protocols take an empty path for "no path given"

    def pfn(self, path: str) -> str:
        """The PFN of a path relative to the RSE's prefix, as Rucio writes it."""
        (pfn,) = self._protocol.lfns2pfns({"scope": "-", "name": path.rsplit("/", 1)[-1], "path": path}).values()
        return pfn

    # -- register --------------------------------------------------------------------------------------------

    def register(self, files: Sequence[Registration]) -> dict[DID, str]:
        """Register, describe and organise ``files`` in one transaction.

        Returns the files that could not be registered as they are, with the reason: a replica that already
        exists at another path (Rucio would silently keep the old one).
        """
        from rucio.core.did import attach_dids_to_dids, set_dids_metadata_bulk
        from rucio.core.replica import add_replicas
        from rucio.db.sqla.util import json_implemented

        with db_session(DatabaseOperationType.WRITE) as session:
            existing = self._replica_paths([(f.scope, f.name) for f in files], session)
            conflicts: dict[DID, str] = {}
            new = []
            for file in files:
                stored = existing.get((file.scope, file.name))
                if stored is None:
                    new.append(file)
                elif stored.lstrip("/") != file.path:
                    conflicts[(file.scope, file.name)] = (
                        f"already registered at {self.rse} with path {stored}, not {file.path}: "
                        "Rucio would keep the old one"
                    )
            created = self._absent_dids([(f.scope, f.name) for f in new], session)
            for chunk in chunks(new):
                add_replicas(
                    rse_id=self.rse_id,
                    files=[self._replica(file) for file in chunk],
                    account=self.account,
                    ignore_availability=True,
                    session=session,
                )
            described = [f for f in files if (f.scope, f.name) not in conflicts]
            if describe.can_write_directly(session):
                fresh = [f for f in described if (f.scope, f.name) in created]
                describe.describe_created([(f.scope, f.name, f.metadata) for f in fresh], session)
                described_by_rucio = [f for f in described if (f.scope, f.name) not in created]
            else:
                described_by_rucio = described
            keep = None if json_implemented(session=session) else DID_COLUMN_KEYS
            set_dids_metadata_bulk(
                dids=[
                    {"scope": InternalScope(f.scope), "name": f.name, "meta": _only(f.metadata, keep)}
                    for f in described_by_rucio
                ],
                session=session,
            )
            self._ensure_collections(_collections_of(described), session)
            attach_dids_to_dids(
                attachments=_attachments(described), account=self.account, ignore_duplicate=True, session=session
            )
        return conflicts

    def _replica(self, file: Registration) -> dict[str, Any]:
        replica = {
            "scope": InternalScope(file.scope),
            "name": file.name,
            "bytes": file.size,
            "adler32": file.adler32,
            "pfn": self.pfn(file.path),
        }
        if file.md5:
            replica["md5"] = file.md5
        return replica

    def _absent_dids(self, dids: Sequence[DID], session: Session) -> set[DID]:
        """Which of ``dids`` Rucio does not know yet: registering them creates them."""
        from rucio.db.sqla import models

        table = models.DataIdentifier
        known: set[DID] = set()
        for chunk in chunks(list(dids)):
            query = select(table.scope, table.name).where(
                or_(*(and_(table.scope == InternalScope(scope), table.name == name) for scope, name in chunk))
            )
            known.update((scope.external, name) for scope, name in session.execute(query))
        return set(dids) - known

    def _replica_paths(self, dids: Sequence[DID], session: Session) -> dict[DID, str]:
        from rucio.db.sqla import models

        table = models.RSEFileAssociation
        found = {}
        for chunk in chunks(list(dids)):
            query = select(table.scope, table.name, table.path).where(
                table.rse_id == self.rse_id,
                or_(*(and_(table.scope == InternalScope(scope), table.name == name) for scope, name in chunk)),
            )
            found.update({(scope.external, name): path or "" for scope, name, path in session.execute(query)})
        return found

    def _ensure_collections(self, wanted: Mapping[DID, DIDType], session: Session) -> None:
        """Create the datasets and containers not yet there; one that another worker creates meanwhile is fine."""
        from rucio.common.exception import DataIdentifierAlreadyExists
        from rucio.core.did import add_did

        seen = []
        for (scope, name), did_type in wanted.items():
            key = f"collection:{scope}:{name}"
            if REGION.get(key) is not NO_VALUE:
                continue  # seen to exist within the cache's lifetime
            if not self._exists(scope, name, session):
                try:
                    with session.begin_nested():
                        add_did(
                            scope=InternalScope(scope),
                            name=name,
                            did_type=did_type,
                            account=self.account,
                            session=session,
                        )
                except DataIdentifierAlreadyExists:
                    pass
            seen.append(key)
        if seen:  # remembered only once they are committed: a rolled-back creation must be tried again
            event.listen(session, "after_commit", lambda _: [REGION.set(key, True) for key in seen], once=True)

    @staticmethod
    def _exists(scope: str, name: str, session: Session) -> bool:
        from rucio.db.sqla import models

        table = models.DataIdentifier
        query = select(table.name).where(table.scope == InternalScope(scope), table.name == name)
        return session.execute(query).first() is not None

    # -- protect ---------------------------------------------------------------------------------------------

    def ensure_rules(self, wanted: Sequence[RuleRequest]) -> dict[RuleRequest, str]:
        """Rule id for each wanted rule, created only where no rule with its comment exists on its DID.

        Two scanners may want the same rule at once: Rucio's unique index on rules turns the second creation
        into DuplicateRule, and the rule the other one made is used instead.
        """
        from rucio.common.exception import DuplicateRule

        found: dict[RuleRequest, str] = {}
        with db_session(DatabaseOperationType.WRITE) as session:
            existing = self._rules_by_comment({(r.scope, r.name) for r in wanted}, session)
            for request in wanted:
                key = (request.scope, request.name, request.comment)
                if key not in existing:
                    try:
                        with session.begin_nested():
                            existing[key] = self._add_rule(request, session)
                    except DuplicateRule:
                        existing.update(self._rules_by_comment([(request.scope, request.name)], session))
                found[request] = existing[key]
        return found

    def _add_rule(self, request: RuleRequest, session: Session) -> str:
        from rucio.core.rule import add_rule

        (rule_id,) = add_rule(
            dids=[{"scope": InternalScope(request.scope), "name": request.name}],
            account=self.account,
            copies=request.copies,
            rse_expression=request.rse_expression,
            grouping=request.grouping,  # type: ignore[arg-type]
            weight=None,
            lifetime=request.lifetime,
            locked=False,
            subscription_id=None,
            activity=request.activity,
            purge_replicas=request.purge_replicas,
            comment=request.comment,
            session=session,
        )
        return rule_id

    @staticmethod
    def _rules_by_comment(dids: Iterable[DID], session: Session) -> dict[tuple[str, str, str], str]:
        from rucio.db.sqla import models

        table = models.ReplicationRule
        found = {}
        for chunk in chunks(sorted(dids)):
            query = select(table.scope, table.name, table.comments, table.id).where(
                or_(*(and_(table.scope == InternalScope(scope), table.name == name) for scope, name in chunk))
            )
            found.update({(s.external, n, comment or ""): rule_id for s, n, comment, rule_id in session.execute(query)})
        return found

    def add_to_carriers(self, carriers: Mapping[DID, Sequence[DID]]) -> None:
        """Create the carrier datasets that are missing and attach the files not yet in them.

        A carrier closed by a run that was cut short is reopened for the files it lacks; the caller closes it.
        """
        from rucio.core.did import attach_dids_to_dids, get_did, list_content, set_status

        with db_session(DatabaseOperationType.WRITE) as session:
            self._ensure_collections({carrier: DIDType.DATASET for carrier in carriers}, session)
            attachments = []
            for (scope, name), files in carriers.items():
                present = {
                    (c["scope"].external, c["name"]) for c in list_content(InternalScope(scope), name, session=session)
                }
                missing = [file for file in files if file not in present]
                if not missing:
                    continue
                if not get_did(InternalScope(scope), name, session=session).get("open"):
                    set_status(InternalScope(scope), name, open=True, session=session)
                attachments.append(
                    {
                        "scope": InternalScope(scope),
                        "name": name,
                        "dids": [{"scope": InternalScope(s), "name": n} for s, n in missing],
                    }
                )
            if attachments:
                attach_dids_to_dids(attachments=attachments, account=self.account, session=session)

    def close(self, dids: Iterable[DID]) -> None:
        """Close datasets (no more content); closing a closed one changes nothing."""
        from rucio.core.did import get_did, set_status

        with db_session(DatabaseOperationType.WRITE) as session:
            for scope, name in dids:
                if get_did(InternalScope(scope), name, session=session).get("open"):
                    set_status(InternalScope(scope), name, open=False, session=session)


def _only(metadata: Mapping[str, Any], keys: frozenset[str] | None) -> dict[str, Any]:
    return dict(metadata) if keys is None else {key: value for key, value in metadata.items() if key in keys}


def _collections_of(files: Iterable[Registration]) -> dict[DID, DIDType]:
    wanted: dict[DID, DIDType] = {}
    for file in files:
        wanted[(file.scope, file.dataset)] = DIDType.DATASET
        for container in file.containers:
            wanted[(file.scope, container)] = DIDType.CONTAINER
    return wanted


def _attachments(files: Iterable[Registration]) -> list[dict[str, Any]]:
    """File -> run dataset -> night container -> top container, each parent once with all its children."""
    children: dict[DID, dict[DID, None]] = {}
    for file in files:
        chain = [file.name, file.dataset, *file.containers]
        for child, parent in zip(chain, chain[1:]):
            children.setdefault((file.scope, parent), {})[(file.scope, child)] = None
    return [
        {"scope": InternalScope(scope), "name": name, "dids": [{"scope": InternalScope(s), "name": n} for s, n in kids]}
        for (scope, name), kids in children.items()
    ]
