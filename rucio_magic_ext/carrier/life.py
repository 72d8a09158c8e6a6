"""A carrier's whole life, in the ledger and in Rucio: OPEN -> CLOSING -> PROTECTING -> RELEASING -> GONE.

A carrier is created with its locked source rule before any file joins it, and a file is attached to it in the
transaction that registers the file: from registration to release, every source replica is held by a rule that
only the flow's account (or an admin) can remove. The scanner assigns files and closes carriers; the release
daemon checks, holds or releases them. Rucio's side of each step can be repeated after a crash with the same
outcome.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence

from rucio.common.types import InternalAccount

from rucio_magic_ext import monitoring, rucio_db
from rucio_magic_ext.carrier.book import CarrierBook
from rucio_magic_ext.carrier.model import (
    CARRIER_ACTIVITY,
    CARRIER_SCOPE,
    SOURCE_RULE_COMMENT,
    CarrierLimits,
    NewFile,
    carrier_name,
    closing_reason,
    plan_batches,
    policy_key,
    policy_names,
)
from rucio_magic_ext.common import DID, LoggerFunction, utcnow
from rucio_magic_ext.ledger import FileState, Ledger
from rucio_magic_ext.ledger.models import LedgerCarrier, LedgerFile
from rucio_magic_ext.ledger.states import CarrierState
from rucio_magic_ext.replication import ReplicationPolicy, RuleSpec
from rucio_magic_ext.rucio_db import RuleRequest

# Files of a carrier on their way from protection to release.
IN_FLIGHT = (FileState.PROTECTED, FileState.REPLICATED, FileState.VERIFIED)


class Carriers:
    """The carriers of one source RSE."""

    def __init__(
        self,
        ledger: Ledger,
        rse: str,
        account: str,
        policy: ReplicationPolicy,
        logger: LoggerFunction = logging.log,
    ) -> None:
        self.ledger, self.rse, self.policy, self.logger = ledger, rse, policy, logger
        self.account = InternalAccount(account)
        self.book = CarrierBook(ledger, rse, CARRIER_SCOPE)

    def in_states(self, states: Iterable[CarrierState], worker: int = 0, workers: int = 1) -> list[LedgerCarrier]:
        return self.book.in_states(states, worker, workers)

    def files(self, carrier: LedgerCarrier, states: Iterable[FileState] | None = None) -> list[LedgerFile]:
        return self.book.files(carrier.name, states)

    def specs(self, row: LedgerFile) -> list[RuleSpec]:
        return self.policy.rules_for(row.record.level, row.record.telescope)

    def policy_of(self, carrier: LedgerCarrier) -> list[RuleSpec]:
        names = policy_names(carrier.policy)
        return [spec for spec in self.policy.rules if spec.name in names]

    # -- OPEN: taking files, held from their registration on (the scanner) ----------------------------------

    def assign(self, rows: Sequence[LedgerFile], limits: CarrierLimits) -> None:
        """Give each file without a carrier an open carrier of its policy, in the ledger first: a registration cut
        short is repeated into the same carrier. Files no policy entry covers share carriers too (of the
        empty policy): they are held at the source like any other, and never released."""
        new = [row for row in rows if row.carrier is None]
        if not new:
            return
        files = [NewFile(row.id, row.size, policy_key(spec.name for spec in self.specs(row))) for row in new]
        plan = plan_batches(self.rse, self.book.open_carriers(), files, limits, utcnow())
        self.book.record(plan.opened, plan.assigned, {row.id: row.size for row in new})
        for row in new:
            row.carrier = plan.assigned[row.id]

    def unassign(self, rows: Sequence[LedgerFile]) -> None:
        """Files whose registration failed leave their carrier (Rucio never attached them)."""
        self.book.unassign(rows)

    def hold_at_source(self, names: Iterable[str]) -> None:
        """Each carrier's dataset and its locked source rule, in Rucio, before any file is attached to it."""
        names = sorted(set(names))
        if not names:
            return
        rucio_db.ensure_datasets([(CARRIER_SCOPE, name) for name in names], self.account)
        requests = {name: self.source_rule(name) for name in names}
        made = rucio_db.ensure_rules(list(requests.values()), self.account)
        for carrier in self.book.named(names):
            if carrier.source_rule != made[requests[carrier.name]]:
                self.book.update(carrier, source_rule=made[requests[carrier.name]])

    def attach(self, rows: Sequence[LedgerFile]) -> None:
        """Attach registered files to their carriers, locks made (repairs, files registered before carriers)."""
        members: dict[DID, list[DID]] = {}
        for row in rows:
            if row.carrier:
                members.setdefault((CARRIER_SCOPE, row.carrier), []).append(row.did)
        rucio_db.attach_missing(members, self.account)

    def source_rule(self, name: str) -> RuleRequest:
        """Pins the carrier's files at the source: locked, so that only its owner or an admin may touch it, and
        with ``purge_replicas``, so that its removal at release frees the source copies at once."""
        return RuleRequest(
            CARRIER_SCOPE,
            name,
            self.rse,
            1,
            SOURCE_RULE_COMMENT,
            CARRIER_ACTIVITY,
            grouping="NONE",
            purge_replicas=True,
            locked=True,
        )

    # -- CLOSING -> PROTECTING: closed, its files held (the scanner) -----------------------------------------

    def close_due(self, limits: CarrierLimits, actor: str, worker: int = 0, workers: int = 1) -> int:
        """Close the carriers that are full or old, and finish closings cut short; returns files PROTECTED."""
        protected = 0
        for carrier in self.in_states([CarrierState.OPEN, CarrierState.CLOSING], worker, workers):
            try:
                protected += self._close_if_due(carrier, limits, actor)
            except Exception as error:
                self.logger(logging.ERROR, "closing carrier %s failed, will retry: %s", carrier.name, error)
        return protected

    def _close_if_due(self, carrier: LedgerCarrier, limits: CarrierLimits, actor: str) -> int:
        if carrier.state is CarrierState.OPEN:
            reason = closing_reason(carrier, limits, utcnow())
            if reason is None:
                return 0
            self.book.move(carrier, CarrierState.CLOSING, detail=f"closed: {reason}")  # takes no file from now on
        files = self.files(carrier)
        if any(row.state is FileState.CHECKSUMMED for row in files):
            return 0  # being registered into it: closed once they are in
        if not files:
            self._discard(carrier, actor)
            return 0
        self.attach(files)
        rucio_db.close([carrier.did])
        request = self.source_rule(carrier.name)
        rules = rucio_db.ensure_rules([request], self.account)
        # Files first, carrier last: a crash in between leaves the carrier CLOSING, and closing it again is harmless.
        waiting = [row for row in files if row.state is FileState.REGISTERED]
        self.ledger.move(waiting, FileState.PROTECTED, actor, f"in carrier {carrier.name}, rules in place")
        self.book.move(carrier, CarrierState.PROTECTING, source_rule=rules[request])
        self.logger(logging.INFO, "carrier %s closed: %d file(s), %d byte(s)", carrier.name, len(files), carrier.bytes)
        return len(waiting)

    def _discard(self, carrier: LedgerCarrier, actor: str) -> None:
        """A carrier whose every file left it (failed registrations): nothing to hold, nothing to release."""
        if rucio_db.content(*carrier.did):
            return  # Rucio holds files the ledger does not: the release daemon holds it and says so
        self.remove_from_rucio(carrier)
        self.book.move(carrier, CarrierState.GONE, detail="closed empty: no file joined it")

    # -- PROTECTING: checked, held or released (the release daemon) ------------------------------------------

    def integrity(self, carrier: LedgerCarrier, files: Sequence[LedgerFile]) -> str | None:
        """Why the carrier is not what the flow made, or None: its files in Rucio are the ledger's, and its
        source rule is there, locked, ours, with no expiry. Checked again just before every release."""
        if not files:
            return "no file of the ledger in it: nothing to release"
        ledger = {row.did for row in files}
        rucio = rucio_db.content(*carrier.did)
        if rucio - ledger and self._let_go(carrier, rucio - ledger):
            rucio = rucio_db.content(*carrier.did)
        if rucio != ledger:
            extra, missing = sorted(rucio - ledger), sorted(ledger - rucio)
            return (
                f"its dataset in Rucio differs from the ledger: {len(extra)} file(s) not in the ledger "
                f"{_few(extra)}, {len(missing)} file(s) of the ledger missing {_few(missing)}"
            )
        rule = rucio_db.rules([carrier.source_rule or ""]).get(carrier.source_rule or "")
        if rule is None:
            monitoring.carrier_source_rule_lost()
            return f"ALARM its source rule {carrier.source_rule} is gone: the source copies may be unprotected"
        if not rule.locked or rule.expires_at is not None or rule.account != self.account.external:
            return (
                f"its source rule {rule.rule_id} was changed (locked {rule.locked}, expires {rule.expires_at}, "
                f"account {rule.account})"
            )
        return None

    def source_rule_present(self, carrier: LedgerCarrier) -> bool:
        rule_id = str(carrier.source_rule or "")
        return bool(rule_id) and rucio_db.rules([rule_id])[rule_id] is not None

    def split(self, carrier: LedgerCarrier, rows: Sequence[LedgerFile], actor: str, why: str) -> None:
        """Move files into a carrier of their own, so that the others may leave. The new carrier is CLOSING: the
        scanner attaches the files and gives it its source rule (the files are held by both carriers for a
        while); the old carrier lets them go only then (``integrity``), so no file is ever unheld."""
        name = carrier_name(self.rse, carrier.policy, utcnow(), uuid.uuid4().hex[:8])
        reason = f"{why}: moved from carrier {carrier.name} to {name}, so the others may leave"
        self.book.split(carrier, rows, name)
        self.ledger.note(rows, actor, reason)
        for row in rows:
            self.logger(logging.WARNING, "%s:%s %s", row.scope, row.name, reason)

    def _let_go(self, carrier: LedgerCarrier, moved: set[DID]) -> bool:
        """Detach, from this carrier in Rucio, the files it split off into carriers of their own once those hold
        them (PROTECTING, their source rule in place). Any other difference stays, and holds the carrier.
        True when any was let go."""
        elsewhere = self.book.carriers_of(moved)
        held = {
            did
            for did, other in elsewhere.items()
            if other.split_from == carrier.name
            and other.state is CarrierState.PROTECTING
            and self.source_rule_present(other)
        }
        if held:
            rucio_db.detach(carrier.did, sorted(held), self.account)
            self.logger(logging.INFO, "carrier %s let go %d file(s) held by others now", carrier.name, len(held))
        return bool(held)

    def hold(self, carrier: LedgerCarrier, reason: str, actor: str) -> None:
        """Keep the carrier's source copies, and say why once (not every cycle)."""
        if carrier.detail == reason:
            return
        self.book.update(carrier, detail=reason)
        self.ledger.note(self.files(carrier, IN_FLIGHT), actor, reason)
        monitoring.carrier_held()
        self.logger(logging.WARNING, "carrier %s held: %s", carrier.name, reason)

    def start_release(self, carrier: LedgerCarrier, verified: str) -> None:
        """Every copy is proven: the carrier is released once they are proven again, even after a crash."""
        self.book.move(carrier, CarrierState.RELEASING, detail=verified)

    def abandon_release(self, carrier: LedgerCarrier, reason: str, actor: str) -> None:
        """The last proof before release failed: back to waiting, its source rule untouched."""
        self.book.move(carrier, CarrierState.PROTECTING)
        self.hold(carrier, f"release stopped: {reason}", actor)

    def remove_from_rucio(self, carrier: LedgerCarrier) -> None:
        """The source rule first, with ``purge_replicas``, then any other rule the ledger knows on the carrier
        (destination rules of carriers made by earlier versions) and the dataset, in one transaction; what is
        already gone is skipped."""
        with rucio_db.writing() as session:
            if carrier.source_rule:
                rucio_db.delete_rule(carrier.source_rule, purge_replicas=True, session=session)
            for rule_id in carrier.destination_rule_ids:
                rucio_db.delete_rule(rule_id, purge_replicas=False, session=session)
            rucio_db.delete_dataset(carrier.did, self.account, session)

    def release(self, carrier: LedgerCarrier, actor: str) -> int:
        """Remove the carrier from Rucio (its files' source copies become OBSOLETE and the reaper deletes them);
        a release cut short is finished by repeating it. Returns how many files were released."""
        self.remove_from_rucio(carrier)
        files = self.files(carrier, [FileState.VERIFIED])
        self.ledger.move(
            files, FileState.RELEASED, actor, f"source copy released with carrier {carrier.name}: {carrier.detail}"
        )
        self.book.move(carrier, CarrierState.GONE)
        monitoring.carrier_released(len(files))
        self.logger(
            logging.INFO, "carrier %s released: %d file(s) may now be deleted at %s", carrier.name, len(files), self.rse
        )
        return len(files)


def _few(dids: Sequence[DID], shown: int = 3) -> str:
    names = ", ".join(f"{scope}:{name}" for scope, name in dids[:shown])
    return f"({names}{', ...' if len(dids) > shown else ''})" if dids else ""
