"""What the source-deletion hook reads from and does in Rucio, in bulk: rule states, the locks and replicas
of a carrier's files, declaring bad copies, and removing a carrier once its files are safe."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from rucio.common.types import InternalAccount, InternalScope
from rucio.db.sqla.constants import DatabaseOperationType, DIDType
from rucio.db.sqla.session import db_session
from sqlalchemy import and_, or_, select

from rucio_magic_ext.carrier.verify import Copy, Requirement
from rucio_magic_ext.ledger.store import chunks
from rucio_magic_ext.scanner.catalogue import rse_settings
from rucio_magic_ext.storage.base import LoggerFunction

DID = tuple[str, str]


class CarrierCatalogue:
    def __init__(self, account: str, logger: LoggerFunction = logging.log) -> None:
        self.account = InternalAccount(account)
        self.logger = logger

    def rule_states(self, rule_ids: Iterable[str]) -> dict[str, str]:
        """State of each rule; a rule that no longer exists is reported as GONE."""
        from rucio.db.sqla import models

        ids = [rule_id for rule_id in rule_ids if rule_id]
        with db_session(DatabaseOperationType.READ) as session:
            rows = session.execute(
                select(models.ReplicationRule.id, models.ReplicationRule.state).where(
                    models.ReplicationRule.id.in_(ids)
                )
            )
            found = {rule_id: state.name for rule_id, state in rows}
        return {rule_id: found.get(rule_id, "GONE") for rule_id in ids}

    def requirements(self, files: Sequence[tuple[DID, DID]], policy: dict[str, int]) -> dict[DID, list[Requirement]]:
        """For each (file, run dataset): the policy's rules on the dataset, and the file's locks and replicas
        under them. ``policy`` maps each required rule's comment to the copies it asks."""
        from rucio.db.sqla import models

        rules_table, locks, replicas = models.ReplicationRule, models.ReplicaLock, models.RSEFileAssociation
        result: dict[DID, list[Requirement]] = {}
        with db_session(DatabaseOperationType.READ) as session:
            datasets = sorted({dataset for _, dataset in files})
            rules: dict[tuple[DID, str], tuple[str, str]] = {}
            for chunk in chunks(datasets):
                query = select(
                    rules_table.scope, rules_table.name, rules_table.comments, rules_table.id, rules_table.state
                ).where(_dids(rules_table, chunk))
                for scope, name, comment, rule_id, state in session.execute(query):
                    if comment in policy:
                        rules[((scope.external, name), comment)] = (rule_id, state.name)
            rule_ids = [rule_id for rule_id, _ in rules.values()]
            found: dict[tuple[DID, str], list[tuple[str, str, str | None, str | None]]] = {}
            for chunk in chunks([file for file, _ in files]):
                query = (
                    select(
                        locks.scope, locks.name, locks.rule_id, locks.rse_id, locks.state, replicas.state, replicas.path
                    )
                    .outerjoin(
                        replicas,
                        and_(
                            replicas.scope == locks.scope, replicas.name == locks.name, replicas.rse_id == locks.rse_id
                        ),
                    )
                    .where(locks.rule_id.in_(rule_ids), _dids(locks, chunk))
                )
                for scope, name, rule_id, rse_id, lock_state, replica_state, path in session.execute(query):
                    found.setdefault(((scope.external, name), rule_id), []).append(
                        (rse_id, lock_state.name, replica_state.name if replica_state else None, path)
                    )
            for file, dataset in files:
                needs = []
                for comment, copies in policy.items():
                    rule_id, state = rules.get((dataset, comment), (None, None))
                    copies_found = tuple(
                        Copy(_rse_name(rse_id), lock, replica, self._pfn(rse_id, file, path))
                        for rse_id, lock, replica, path in found.get((file, rule_id), [])
                    )
                    needs.append(Requirement(comment, rule_id, state, copies, copies_found))
                result[file] = needs
        return result

    @staticmethod
    def _pfn(rse_id: str, file: DID, path: str | None) -> str | None:
        from rucio.rse import rsemanager

        settings = rse_settings(_rse_name(rse_id))
        lfn: dict[str, Any] = {"scope": file[0], "name": file[1]}
        if path:
            lfn["path"] = path
        try:
            return next(iter(rsemanager.lfns2pfns(settings, [lfn], operation="read").values()))
        except Exception:
            return None

    def declare_bad(self, copies: Iterable[tuple[DID, str]], reason: str) -> None:
        """Declare destination copies bad, so that Rucio's necromancer has them transferred again."""
        from rucio.core.replica import declare_bad_file_replicas
        from rucio.core.rse import get_rse_id

        replicas: list[str | dict[str, Any]] = [
            {"scope": InternalScope(scope), "name": name, "rse_id": get_rse_id(rse)} for (scope, name), rse in copies
        ]
        if replicas:
            with db_session(DatabaseOperationType.WRITE) as session:
                declare_bad_file_replicas(replicas, reason, self.account, force=True, session=session)

    def release(self, carrier: DID, source_rule: str | None, destination_rules: Sequence[str]) -> None:
        """Remove the source rule (its files' source copies become OBSOLETE), the destination rules and the
        carrier dataset. Parts already gone are skipped, so a release cut short can be repeated."""
        from rucio.common.exception import DataIdentifierNotFound, RuleNotFound
        from rucio.core.did import delete_dids
        from rucio.core.rule import delete_rule

        with db_session(DatabaseOperationType.WRITE) as session:
            for rule_id, purge in [(source_rule, True), *((rule, False) for rule in destination_rules)]:
                if not rule_id:
                    continue
                with contextlib.suppress(RuleNotFound):
                    delete_rule(rule_id, purge_replicas=purge, soft=False, session=session)
            with contextlib.suppress(DataIdentifierNotFound):
                dataset = {
                    "scope": InternalScope(carrier[0]),
                    "name": carrier[1],
                    "did_type": DIDType.DATASET,
                    "purge_replicas": False,
                    "created_at": None,
                }
                delete_dids([dataset], self.account, session=session)

    def still_at(self, rse: str, files: Sequence[DID]) -> set[DID]:
        """The files that still have a replica at ``rse``."""
        from rucio.core.rse import get_rse_id
        from rucio.db.sqla import models

        replicas = models.RSEFileAssociation
        rse_id = get_rse_id(rse)
        present: set[DID] = set()
        with db_session(DatabaseOperationType.READ) as session:
            for chunk in chunks(list(files)):
                query = select(replicas.scope, replicas.name).where(replicas.rse_id == rse_id, _dids(replicas, chunk))
                present.update((scope.external, name) for scope, name in session.execute(query))
        return present


def _dids(table: Any, dids: Sequence[DID]) -> Any:
    return or_(*(and_(table.scope == InternalScope(scope), table.name == name) for scope, name in dids))


def _rse_name(rse_id: str) -> str:
    from rucio.core.rse import get_rse_name

    return get_rse_name(rse_id)
