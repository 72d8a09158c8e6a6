"""Acting on an audit, only when asked: each class goes to whoever repairs it in the flow, and no source copy
that is not proven is ever let go.

- a copy lost at a destination is declared BAD through Rucio's own ``declare_bad_file_replicas``: the
  necromancer and the replica recoverer have it copied again from another replica, as for any bad copy;
- a dark file at the observatory is put in the ledger as SEEN: the scanner settles, checksums and registers it;
- a ledger row of the observatory that neither its storage nor Rucio has any longer says so: a RELEASED file
  was deleted (the reaper's work), any other is set aside QUARANTINED for a person, with the reason;
- an orphan carrier is closed only when every file it holds is DELETED or RELEASED in the ledger, or held by
  another live carrier: its rules and dataset go (the source rule purges only when every file is DELETED or
  RELEASED, that is proven by the flow's own verification); otherwise it stays, and the reason is said;
- a rule the policy asks on a run dataset and found gone is made again as the scanner made it (the policy is
  the site's word on which copies must exist; an entry no longer wanted is taken out of the policy instead).

Copies lost at the observatory, sizes and checksums that differ, empty collections and unexplained rules are
reported only: they need a person. Every action is written in the ledger's history where a file has one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from rucio.common.types import InternalAccount
from sqlalchemy import select

from rucio_magic_ext import rucio_db
from rucio_magic_ext.audit.classes import Finding, Findings, Kind
from rucio_magic_ext.carrier.book import CarrierBook
from rucio_magic_ext.carrier.model import CARRIER_SCOPE, SOURCE_RULE_COMMENT
from rucio_magic_ext.common import DID, LoggerFunction
from rucio_magic_ext.ledger import FileState, Ledger, LostRace, Seen
from rucio_magic_ext.ledger.models import LedgerCarrier, LedgerFile
from rucio_magic_ext.ledger.states import CarrierState
from rucio_magic_ext.permanent_rules import permanent_rule
from rucio_magic_ext.replication import RuleSpec
from rucio_magic_ext.rucio_db import RuleRequest

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
        for finding in lost:
            outcome.done.append(f"lost {finding.key}: {self._would}declared bad at {self.rse}, to be copied again")
        outcome.left += [f"lost: Rucio refused to declare {entry}" for entry in refused]
        if dids and not self.dry_run:
            self.logger(logging.WARNING, "declared %d lost replica(s) of %s bad", len(dids) - len(refused), self.rse)

    def _dark(self, dark: Sequence[Finding], outcome: Outcome) -> None:
        if not self.source:
            outcome.left += [f"dark {f.key}: at a destination, no flow claims it (Rucio's dark reaper's)" for f in dark]
            return
        seen = [Seen(f.key, f.bytes, f.mtime or 0.0) for f in dark]
        added = len(seen) if self.dry_run else self.ledger.add_seen(self.rse, seen, ACTOR)
        for finding in dark:
            outcome.done.append(f"dark {finding.key}: {self._would}handed to the scanner (SEEN)")
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
        """Made again where gone, kept (the expiry taken off) where removed through Rucio's API but not yet
        deleted: either way the rule the scanner made stands again."""
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
        unproven = self._unproven(name, files)
        if unproven:
            outcome.left.append(f"orphan-carrier {finding.key}: kept, {unproven}")
            return
        purge = all(state in PROVEN for state in files.values())
        if row is not None and row.state is not CarrierState.GONE:
            outcome.done.append(f"orphan-carrier {finding.key}: {self._would}closed (GONE), every file proven")
        else:
            outcome.done.append(f"orphan-carrier {finding.key}: {self._would}removed from Rucio, every file proven")
        if self.dry_run:
            return
        self._remove(name, purge)
        if row is not None and row.state is not CarrierState.GONE:
            try:
                book.move(row, CarrierState.GONE, detail=f"closed by the audit: {finding.detail}; every file proven")
            except LostRace:
                outcome.left.append(f"orphan-carrier {finding.key}: moved on meanwhile")

    def _files_of(self, name: str, in_rucio: bool, recorded: bool) -> dict[DID, FileState | None]:
        """The carrier's files, Rucio's content and the ledger's, each with its ledger state (None: unknown)."""
        dids: set[DID] = rucio_db.content(CARRIER_SCOPE, name) if in_rucio else set()
        with self.ledger.session() as session:
            if recorded:
                query = select(LedgerFile.scope, LedgerFile.name).where(
                    LedgerFile.rse == self.rse, LedgerFile.carrier == name
                )
                dids |= {(str(scope), str(file)) for scope, file in session.execute(query)}
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

    def _remove(self, name: str, purge: bool) -> None:
        """Every rule of the carrier's dataset, then the dataset, in one transaction; what is gone is skipped."""
        with rucio_db.writing() as session:
            rules = rucio_db.rules_by_comment([(CARRIER_SCOPE, name)], session)
            for (_, _, comment), rule_id in rules.items():
                source = comment == SOURCE_RULE_COMMENT
                rucio_db.delete_rule(rule_id, purge_replicas=purge and source, session=session)
            rucio_db.delete_dataset((CARRIER_SCOPE, name), InternalAccount(self.account), session)
        self.logger(logging.INFO, "orphan carrier %s removed from Rucio (purge %s)", name, purge)


def _state(state: FileState | None) -> str:
    return state.value if state else "not in the ledger"
