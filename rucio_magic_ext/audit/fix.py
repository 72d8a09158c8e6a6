"""Acting on an audit, only when asked: each class goes to whoever repairs it in the flow, and no source copy
that is not proven is ever let go.

- a copy lost at a destination is declared BAD (``declare_bad_file_replicas``): Rucio's necromancer and replica
  recoverer have it copied again from another replica;
- a dark file at the observatory is put in the ledger as SEEN, for the scanner;
- a ledger row of the observatory that neither its storage nor Rucio has any longer: a RELEASED file was
  deleted (the reaper's work), any other is set aside QUARANTINED for a person;
- an orphan carrier goes only when every file it holds is DELETED or RELEASED in the ledger (then its source rule
  purges), or held by another live carrier. While a file's replica is still at the source the ledger's word is
  not enough: its copies must stand in Rucio as the carrier asks before a release (``release.verify.assess``), or
  another carrier's source rule must lock it there, and no other DID's replica may name its path (the reaper
  deleting that path deletes the other DID's bytes too);
- a policy rule found gone is made again as the scanner made it (an entry no longer wanted is taken out of the
  policy instead).

Copies lost at the observatory, sizes and checksums that differ, empty collections and unexplained rules are
reported only: they need a person. Every action is written in the ledger's history where a file has one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from rucio.common.types import InternalAccount, InternalScope
from sqlalchemy import select
from sqlalchemy.orm import Session

from rucio_magic_ext import rucio_db
from rucio_magic_ext.audit.classes import Finding, Findings, Kind
from rucio_magic_ext.carrier.book import CarrierBook
from rucio_magic_ext.carrier.model import CARRIER_SCOPE, SOURCE_RULE_COMMENT
from rucio_magic_ext.common import DID, LoggerFunction, chunks
from rucio_magic_ext.ledger import FileState, Ledger, LostRace, Seen
from rucio_magic_ext.ledger.models import LedgerCarrier, LedgerFile
from rucio_magic_ext.ledger.states import CarrierState
from rucio_magic_ext.permanent_rules import permanent_rule
from rucio_magic_ext.release.catalogue import ReleaseCatalogue
from rucio_magic_ext.release.verify import Assessment, Readiness, assess
from rucio_magic_ext.replication import RuleSpec
from rucio_magic_ext.rucio_db import RuleRequest
from rucio_magic_ext.trust import shared_path

ACTOR = "audit"
PROVEN = frozenset({FileState.DELETED, FileState.RELEASED})
REASON = "magic audit: available in Rucio, missing at the storage"


@dataclass
class Outcome:
    """What was done (or, in a dry run, would be done), and what was left for a person, one line each."""

    done: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)


@dataclass
class Fixer:
    ledger: Ledger
    rse: str
    source: bool
    account: str
    dry_run: bool = False
    logger: LoggerFunction = logging.log
    policy: Sequence[RuleSpec] = ()  # the replication policy's entries, to make a missing rule again

    def fix(self, findings: Findings) -> Outcome:
        outcome = Outcome()
        self._lost(findings.of(Kind.LOST), outcome)
        self._dark(findings.of(Kind.DARK), outcome)
        self._ledger_only(findings.of(Kind.LEDGER_ONLY), outcome)
        for finding in findings.of(Kind.ORPHAN_CARRIER):
            self._carrier(finding, outcome)
        self._missing_rules(findings.of(Kind.MISSING_RULE), outcome)
        for kind in (Kind.SIZE, Kind.CHECKSUM, Kind.EMPTY_COLLECTION, Kind.UNEXPLAINED_RULE):
            outcome.left += [f"{kind.value} {f.key}: {f.detail} (for a person)" for f in findings.of(kind)]
        return outcome

    @property
    def _would(self) -> str:
        return "would be " if self.dry_run else ""

    def _lost(self, lost: Sequence[Finding], outcome: Outcome) -> None:
        if self.source:
            outcome.left += [f"lost {f.key}: at the observatory, there is no copy to restore it from" for f in lost]
            return
        dids: list[DID] = [(f.scope, f.name) for f in lost if f.scope and f.name]
        refused = [] if self.dry_run else rucio_db.declare_bad_replicas(self.rse, dids, REASON, self.account)
        outcome.done += [f"lost {f.key}: {self._would}declared bad at {self.rse}, to be copied again" for f in lost]
        outcome.left += [f"lost: Rucio refused to declare {entry}" for entry in refused]
        if dids and not self.dry_run:
            self.logger(logging.WARNING, "declared %d lost replica(s) of %s bad", len(dids) - len(refused), self.rse)

    def _dark(self, dark: Sequence[Finding], outcome: Outcome) -> None:
        if not self.source:
            outcome.left += [f"dark {f.key}: at a destination, no flow claims it (Rucio's dark reaper's)" for f in dark]
            return
        seen = [Seen(f.key, f.bytes, f.mtime or 0.0) for f in dark]
        added = len(seen) if self.dry_run else self.ledger.add_seen(self.rse, seen, ACTOR)
        outcome.done += [f"dark {f.key}: {self._would}handed to the scanner (SEEN)" for f in dark]
        if added and not self.dry_run:
            self.logger(logging.INFO, "%d dark file(s) of %s handed to the scanner", added, self.rse)

    def _ledger_only(self, rows: Sequence[Finding], outcome: Outcome) -> None:
        if not self.source:
            outcome.left += [
                f"ledger-only {f.key}: {f.detail}; its copy is gone from Rucio (for a person)" for f in rows
            ]
            return
        known = self.ledger.known(self.rse, [f.key for f in rows])
        for finding in rows:
            row = known.get(finding.key)
            if row is None or row.state.value != finding.state:
                outcome.left.append(f"ledger-only {finding.key}: changed since the audit read it, left alone")
                continue
            try:
                if row.state is FileState.RELEASED:
                    outcome.done.append(f"ledger-only {finding.key}: {self._would}recorded DELETED (released, reaped)")
                    if not self.dry_run:
                        why = f"deleted from {self.rse}: neither its storage nor Rucio has it (noticed by the audit)"
                        self.ledger.move([row], FileState.DELETED, ACTOR, why)
                else:
                    outcome.done.append(f"ledger-only {finding.key}: {self._would}set aside QUARANTINED")
                    if not self.dry_run:
                        why = f"gone from {self.rse} and from Rucio while {row.state.value} (found by the audit)"
                        self.ledger.set_aside([row], FileState.QUARANTINED, ACTOR, why)
            except LostRace:
                outcome.left.append(f"ledger-only {finding.key}: moved on meanwhile, left alone")

    def _missing_rules(self, missing: Sequence[Finding], outcome: Outcome) -> None:
        """Made again where gone, kept (expiry taken off) where removed through Rucio's API and not yet deleted."""
        specs = {spec.name: spec for spec in self.policy}
        wanted: dict[RuleRequest, Finding] = {}
        for finding in missing:
            spec = specs.get(str(finding.state))
            if spec is None or not finding.scope or not finding.name:
                outcome.left.append(f"missing-rule {finding.key}: {finding.detail}; no such policy entry to make it")
                continue
            wanted[permanent_rule(spec, finding.scope, finding.name)] = finding
        if not wanted:
            return
        if self.dry_run:
            outcome.done += [f"missing-rule {f.key}: would stand again ({f.detail})" for f in wanted.values()]
            return
        try:
            made = rucio_db.ensure_rules(list(wanted), InternalAccount(self.account))
            kept = set(rucio_db.keep_rules(made.values()))
        except Exception as error:  # a dataset gone since the audit read it, a quota, an RSE expression
            outcome.left.append(f"missing-rule: Rucio refused to make {len(wanted)} rule(s) stand again: {error}")
            return
        for request, finding in wanted.items():
            how = "kept, its expiry taken off" if made[request] in kept else "made again"
            outcome.done.append(f"missing-rule {finding.key}: rule {made[request]} {how} ({request.comment})")
        self.logger(logging.WARNING, "policy rule(s) made to stand again: %s", ", ".join(made.values()))

    # -- carriers -------------------------------------------------------------------------------------------

    def _carrier(self, finding: Finding, outcome: Outcome) -> None:
        name = str(finding.name)
        if not self.source:
            return
        book = CarrierBook(self.ledger, self.rse, CARRIER_SCOPE)
        (row,) = book.named([name]) or (None,)
        with rucio_db.reading() as session:
            in_rucio = bool(rucio_db.existing_dids([(CARRIER_SCOPE, name)], session))
        files = self._files_of(name, in_rucio=in_rucio, recorded=row is not None)
        unproven = self._unproven(name, files) or self._unproven_in_rucio(name, files)
        if unproven:
            outcome.left.append(f"orphan-carrier {finding.key}: kept, {unproven}")
            return
        purge = all(state in PROVEN for state in files.values())
        closing = row is not None and row.state is not CarrierState.GONE
        what = "closed (GONE)" if closing else "removed from Rucio"
        outcome.done.append(f"orphan-carrier {finding.key}: {self._would}{what}, every file proven")
        if self.dry_run:
            return
        self._remove(name, purge)
        if row is not None and closing:
            try:
                book.move(row, CarrierState.GONE, detail=f"closed by the audit: {finding.detail}; every file proven")
            except LostRace:
                outcome.left.append(f"orphan-carrier {finding.key}: moved on meanwhile")

    def _files_of(self, name: str, in_rucio: bool, recorded: bool) -> dict[DID, FileState | None]:
        """The carrier's files, Rucio's content and the ledger's, each with its ledger state (None: unknown)."""
        dids: set[DID] = rucio_db.content(CARRIER_SCOPE, name) if in_rucio else set()
        with self.ledger.session() as session:
            if recorded:
                carried = select(LedgerFile.scope, LedgerFile.name).where(
                    LedgerFile.rse == self.rse, LedgerFile.carrier == name
                )
                dids |= {(str(scope), str(file)) for scope, file in session.execute(carried)}
            found: dict[DID, FileState | None] = dict.fromkeys(dids)
            names = sorted({file for _, file in dids})
            query = select(LedgerFile.scope, LedgerFile.name, LedgerFile.state).where(
                LedgerFile.rse == self.rse, LedgerFile.name.in_(names)
            )
            for scope, file, state in session.execute(query):
                if (scope, file) in found:
                    found[(scope, file)] = state
        return found

    def _unproven(self, name: str, files: dict[DID, FileState | None]) -> str | None:
        """Why letting the carrier go could leave a source copy unheld, or None."""
        waiting = [did for did, state in files.items() if state not in PROVEN]
        if not waiting:
            return None
        with self.ledger.session() as session:
            query = (
                select(LedgerFile.scope, LedgerFile.name)
                .join(
                    LedgerCarrier, (LedgerCarrier.scope == CARRIER_SCOPE) & (LedgerCarrier.name == LedgerFile.carrier)
                )
                .where(
                    LedgerFile.rse == self.rse,
                    LedgerFile.name.in_(sorted({file for _, file in waiting})),
                    LedgerFile.carrier != name,
                    LedgerCarrier.state != CarrierState.GONE,
                )
            )
            held = {(str(scope), str(file)) for scope, file in session.execute(query)}
        bare = [did for did in waiting if did not in held]
        if not bare:
            return None
        shown = ", ".join(f"{scope}:{file} ({_state(files[(scope, file)])})" for scope, file in sorted(bare)[:3])
        return f"{len(bare)} file(s) not proven nor held by another carrier: {shown}"

    def _unproven_in_rucio(self, name: str, files: dict[DID, FileState | None]) -> str | None:
        """Why Rucio does not bear out what the ledger says of the carrier's files still at the source, or None.
        Only their replicas there can be lost: the files already deleted at the source need nothing more."""
        with rucio_db.reading() as session:
            at_source = rucio_db.replica_paths(self.rse, sorted(files), session)
            if not at_source:
                return None
            sharers = rucio_db.replicas_on_paths(self.rse, sorted(set(at_source.values())), session)
            held = self._held_elsewhere(name, sorted(at_source), session)
        rows = self._rows(sorted(did for did in at_source if files[did] in PROVEN))
        found = doubts(at_source, files, sharers, self._assess(list(rows.values())), held)
        if not found:
            return None
        more = f" and {len(found) - 3} more" if len(found) > 3 else ""
        return f"{len(found)} file(s) whose source copy Rucio does not prove may go: {'; '.join(found[:3])}{more}"

    def _held_elsewhere(self, name: str, dids: Sequence[DID], session: Session) -> dict[DID, str]:
        """The files whose replica at the source another carrier's source rule locks: a rule of the flow's
        account, locked and without expiry, in ``magic_carrier`` (which only that account and admins touch).
        Any other rule holds the file too, but may go at its owner's word: it stands in for no carrier."""
        from rucio.db.sqla import models

        locks, rules = models.ReplicaLock, models.ReplicationRule
        held: dict[DID, str] = {}
        for chunk in chunks(list(dids)):
            query = (
                select(locks.scope, locks.name, rules.name)
                .join(rules, rules.id == locks.rule_id)
                .where(
                    locks.rse_id == rucio_db.rse_id(self.rse),
                    rucio_db.did_clause(locks, chunk),
                    rules.scope == InternalScope(CARRIER_SCOPE),
                    rules.name != name,
                    rules.account == InternalAccount(self.account),
                    rules.comments == SOURCE_RULE_COMMENT,
                    rules.locked.is_(True),
                    rules.expires_at.is_(None),
                )
            )
            held.update({(scope.external, file): carrier for scope, file, carrier in session.execute(query)})
        return held

    def _rows(self, dids: Sequence[DID]) -> dict[DID, LedgerFile]:
        found: dict[DID, LedgerFile] = {}
        with self.ledger.session() as session:
            for chunk in chunks(sorted({file for _, file in dids})):
                query = select(LedgerFile).where(LedgerFile.rse == self.rse, LedgerFile.name.in_(chunk))
                found.update((row.did, row) for row in session.scalars(query) if row.did in dids)
        return found

    def _assess(self, rows: Sequence[LedgerFile]) -> dict[DID, Assessment]:
        """Each file's copies as Rucio holds them, judged as the carrier judges them before a release: the flow's
        own policy rules on its run dataset, their locks OK and replicas AVAILABLE away from the source."""
        catalogue = ReleaseCatalogue(self.account, self.logger)
        by_policy: dict[tuple[str, ...], list[LedgerFile]] = {}
        for row in rows:
            specs = [spec for spec in self.policy if spec.matches(row.record.level, row.record.telescope)]
            by_policy.setdefault(tuple(spec.name for spec in specs), []).append(row)
        found: dict[DID, Assessment] = {}
        for names, alike in by_policy.items():
            specs = [spec for spec in self.policy if spec.name in names]
            files = [(row.did, (row.placement.scope, row.placement.dataset)) for row in alike]
            facts = catalogue.requirements(files, specs, pfns=False)
            found.update((row.did, assess(facts[row.did], self.rse)) for row in alike)
        return found

    def _remove(self, name: str, purge: bool) -> None:
        """Every rule of the carrier's dataset, then the dataset, in one transaction; what is gone is skipped."""
        with rucio_db.writing() as session:
            for rule_id, purges in rucio_db.rules_on([(CARRIER_SCOPE, name)], session).items():
                # the source rule was made to purge its replicas; a rule is never judged by its comment
                rucio_db.delete_rule(rule_id, purge_replicas=purge and purges, session=session)
            rucio_db.delete_dataset((CARRIER_SCOPE, name), InternalAccount(self.account), session)
        self.logger(logging.INFO, "orphan carrier %s removed from Rucio (purge %s)", name, purge)


def doubts(
    at_source: dict[DID, str],
    states: dict[DID, FileState | None],
    sharers: dict[str, set[DID]],
    assessments: dict[DID, Assessment],
    held: dict[DID, str],
) -> list[str]:
    """What keeps a carrier whose files the ledger lets go, one line per file still at the source: its path
    named by another DID's replica; proven in the ledger but not in Rucio (``assessments``, by the carrier's
    ``assess``); or neither proven nor locked there by another carrier of the flow (``held``)."""
    found = []
    for did, path in sorted(at_source.items()):
        shown = f"{did[0]}:{did[1]} ({_state(states.get(did))})"
        if why := shared_path(path.lstrip("/"), did, sharers.get(path.lstrip("/"), set())):
            found.append(f"{shown}: {why}")
        elif states.get(did) in PROVEN:
            assessment = assessments.get(did)
            if assessment is None or assessment.readiness is not Readiness.READY:
                reason = assessment.reason if assessment else "no ledger row to find its policy by"
                found.append(f"{shown}: its copies are not proven in Rucio: {reason}")
        elif did not in held:
            found.append(f"{shown}: no other carrier's source rule of the flow locks it at the source")
    return found


def _state(state: FileState | None) -> str:
    return state.value if state else "not in the ledger"
