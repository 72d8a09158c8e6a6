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
from rucio_magic_ext.replication import RuleSpec
from rucio_magic_ext.trust import foreign_collection, foreign_rule, shared_path


class ReleaseCatalogue:
    def __init__(self, account: str, logger: LoggerFunction = logging.log) -> None:
        self.account = InternalAccount(account)
        self.logger = logger

    def requirements(
        self,
        files: Sequence[tuple[DID, DID]],
        policy: Sequence[RuleSpec],
        pfns: bool = True,
        source_rse: str | None = None,
    ) -> dict[DID, list[Requirement]]:
        """For each (file, run dataset): the flow's rule of each policy entry on the dataset, and the file's locks
        and replicas under it. Only the flow's own rules count (``trust.foreign_rule``), on a dataset the flow
        made; others with an entry's comment are named, never counted. With ``source_rse``, a file whose path
        there another DID's replica names is held: releasing it deletes that replica's bytes, and the reaper
        deleting that one deletes these. Without ``pfns`` the copies come without their PFNs (None): enough to
        tell whether they are in place, not to read them."""
        from rucio.db.sqla import models

        rules_table, locks, replicas = models.ReplicationRule, models.ReplicaLock, models.RSEFileAssociation
        wanted = {spec.rule_comment: spec for spec in policy}
        result: dict[DID, list[Requirement]] = {}
        with rucio_db.reading() as session:
            datasets = sorted({dataset for _, dataset in files})
            untrusted = self._untrusted(datasets, session)
            shared = self._shared(source_rse, [file for file, _ in files], session) if source_rse else {}
            rules: dict[tuple[DID, str], tuple[str, str, datetime | None]] = {}
            impostors: dict[tuple[DID, str], list[str]] = {}
            for chunk in chunks(datasets):
                query = select(
                    rules_table.scope,
                    rules_table.name,
                    rules_table.comments,
                    rules_table.id,
                    rules_table.state,
                    rules_table.expires_at,
                    rules_table.account,
                    rules_table.rse_expression,
                    rules_table.copies,
                ).where(rucio_db.did_clause(rules_table, chunk))
                for scope, name, comment, rule_id, state, expires_at, account, expression, copies in session.execute(
                    query
                ):
                    if comment not in wanted:
                        continue
                    row = rucio_db.RuleRow(
                        str(rule_id), scope.external, name, comment, expression, copies, account.external
                    )
                    why = foreign_rule(row, wanted[comment], self.account.external)
                    key = ((scope.external, name), comment)
                    if why is None:
                        rules[key] = (rule_id, state.name, expires_at)
                    else:
                        impostors.setdefault(key, []).append(f"rule {rule_id} ({why})")
            rule_ids = [rule_id for rule_id, _, _ in rules.values()]
            # keyed by (file, rule id); an entry without its rule looks up None, and finds no locks
            found_locks: dict[tuple[DID, str | None], list[tuple[str, str, str | None, str | None]]] = {}
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
                    found_locks.setdefault(((scope.external, name), rule_id), []).append(
                        (rse_id, lock_state.name, replica_state.name if replica_state else None, path)
                    )
            for file, dataset in files:
                needs = []
                for comment, spec in wanted.items():
                    rule_id, state, expires_at = rules.get((dataset, comment), (None, None, None))
                    copies_found = []
                    for rse_id, lock, replica, path in found_locks.get((file, rule_id), []):
                        rse = rucio_db.rse_name(rse_id)
                        pfn = rucio_db.pfn(rse, file, path) if pfns else None
                        copies_found.append(Copy(rse, lock, replica, pfn))
                    needs.append(
                        Requirement(
                            comment,
                            rule_id,
                            state,
                            spec.copies,
                            tuple(copies_found),
                            expires_at,
                            shared.get(file) or untrusted.get(dataset),
                            tuple(impostors.get((dataset, comment), ())),
                        )
                    )
                result[file] = needs
        return result

    def _shared(self, rse: str, files: Sequence[DID], session: Any) -> dict[DID, str]:
        """Why each file whose path at ``rse`` another DID's replica names too is not the flow's alone."""
        paths = rucio_db.replica_paths(rse, files, session)
        sharers = rucio_db.replicas_on_paths(rse, list(paths.values()), session)
        found = {}
        for file, path in paths.items():
            why = shared_path(path, file, sharers.get(path.lstrip("/"), set()))
            if why:
                found[file] = f"{why} at {rse}: releasing one deletes the other's bytes"
        return found

    def _untrusted(self, datasets: Sequence[DID], session: Any) -> dict[DID, str]:
        """Why each run dataset that the flow may not count on is not its own (gone counts as not its own)."""
        made = rucio_db.makers(datasets, session)
        found = {}
        for dataset in datasets:
            maker = made.get(dataset)
            why = "it is gone" if maker is None else foreign_collection(maker, self.account.external)
            if why:
                found[dataset] = f"its run dataset is not the flow's: {dataset[0]}:{dataset[1]} {why}"
        return found

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
