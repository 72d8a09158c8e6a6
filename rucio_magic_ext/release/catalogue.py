"""What the release daemon reads from Rucio beyond ``rucio_db``: each file's policy rules with their locks and
replicas, in bulk; and what it tells Rucio: destination copies found bad."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from rucio.common.types import InternalAccount, InternalScope
from sqlalchemy import and_, select

from rucio_magic_ext import rucio_db
from rucio_magic_ext.common import DID, LoggerFunction, chunks
from rucio_magic_ext.release.verify import Copy, Requirement


class ReleaseCatalogue:
    def __init__(self, account: str, logger: LoggerFunction = logging.log) -> None:
        self.account = InternalAccount(account)
        self.logger = logger

    def requirements(
        self, files: Sequence[tuple[DID, DID]], policy: dict[str, int], pfns: bool = True
    ) -> dict[DID, list[Requirement]]:
        """For each (file, run dataset): the policy's rules on the dataset, and the file's locks and replicas
        under them. ``policy`` maps each required rule's comment to the copies it asks. Without ``pfns`` the
        copies come without their PFNs (None): enough to tell whether they are in place, not to read them."""
        from rucio.db.sqla import models

        rules_table, locks, replicas = models.ReplicationRule, models.ReplicaLock, models.RSEFileAssociation
        result: dict[DID, list[Requirement]] = {}
        with rucio_db.reading() as session:
            datasets = sorted({dataset for _, dataset in files})
            rules: dict[tuple[DID, str], tuple[str, str, datetime | None]] = {}
            for chunk in chunks(datasets):
                query = select(
                    rules_table.scope,
                    rules_table.name,
                    rules_table.comments,
                    rules_table.id,
                    rules_table.state,
                    rules_table.expires_at,
                ).where(rucio_db.did_clause(rules_table, chunk))
                for scope, name, comment, rule_id, state, expires_at in session.execute(query):
                    if comment in policy:
                        rules[((scope.external, name), comment)] = (rule_id, state.name, expires_at)
            rule_ids = [rule_id for rule_id, _, _ in rules.values()]
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
                    .where(locks.rule_id.in_(rule_ids), rucio_db.did_clause(locks, chunk))
                )
                for scope, name, rule_id, rse_id, lock_state, replica_state, path in session.execute(query):
                    found.setdefault(((scope.external, name), rule_id), []).append(
                        (rse_id, lock_state.name, replica_state.name if replica_state else None, path)
                    )
            for file, dataset in files:
                needs = []
                for comment, copies in policy.items():
                    rule_id, state, expires_at = rules.get((dataset, comment), (None, None, None))
                    copies_found = []
                    for rse_id, lock, replica, path in found.get((file, rule_id), []):
                        rse = rucio_db.rse_name(rse_id)
                        pfn = rucio_db.pfn(rse, file, path) if pfns else None
                        copies_found.append(Copy(rse, lock, replica, pfn))
                    needs.append(Requirement(comment, rule_id, state, copies, tuple(copies_found), expires_at))
                result[file] = needs
        return result

    def declare_bad(self, copies: Iterable[tuple[DID, str]], reason: str) -> None:
        """Declare destination copies bad, so that Rucio's necromancer has them transferred again."""
        from rucio.core.replica import declare_bad_file_replicas

        replicas: list[str | dict[str, Any]] = [
            {"scope": InternalScope(scope), "name": name, "rse_id": rucio_db.rse_id(rse)}
            for (scope, name), rse in copies
        ]
        if replicas:
            with rucio_db.writing() as session:
                declare_bad_file_replicas(replicas, reason, self.account, force=True, session=session)
