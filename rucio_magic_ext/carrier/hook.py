"""The source-deletion hook: release a carrier only once every file in it has verified copies.

For each carrier whose destination rules are OK, every file is checked (``verify.py``): its policy rules
in place with their locks OK and replicas AVAILABLE, then each copy read back at its storage and
compared with the size and adler32 registered from the source. Only when all its files pass, and the
copies have dwelt long enough, does the carrier go: its source rule is removed (the source copies become
OBSOLETE and the reaper deletes them), then its destination rules and its dataset. A copy that fails is
declared bad, so Rucio transfers it again, and its file waits, its source copy kept. Every decision is
written to the ledger with its reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from rucio_magic_ext import layout, monitoring
from rucio_magic_ext.carrier.catalogue import CarrierCatalogue
from rucio_magic_ext.carrier.config import CarrierConfig
from rucio_magic_ext.carrier.verify import Readiness, Reading, may_release, mismatches, readiness
from rucio_magic_ext.ledger import FileState, Ledger
from rucio_magic_ext.ledger.carriers import CarrierBook
from rucio_magic_ext.ledger.models import LedgerCarrier, LedgerFile
from rucio_magic_ext.ledger.states import CarrierState
from rucio_magic_ext.ledger.store import utcnow
from rucio_magic_ext.naming import parse
from rucio_magic_ext.replication import ReplicationPolicy
from rucio_magic_ext.storage import get_storage
from rucio_magic_ext.storage.base import LoggerFunction

ACTOR = "carrier"
IN_FLIGHT = (FileState.PROTECTED, FileState.REPLICATED, FileState.VERIFIED)


@dataclass
class Hook:
    config: CarrierConfig
    ledger: Ledger
    catalogue: CarrierCatalogue
    policy: ReplicationPolicy
    logger: LoggerFunction = logging.log
    worker: int = 0
    workers: int = 1
    book: CarrierBook = field(init=False)

    def __post_init__(self) -> None:
        from rucio_magic_ext.carrier.batches import CARRIER_SCOPE

        self.book = CarrierBook(self.ledger, self.config.rse, CARRIER_SCOPE)

    # -- one cycle -------------------------------------------------------------------------------------------

    def run_cycle(self) -> dict[str, int]:
        done = {"released": 0, "deleted": 0}
        for carrier in self.book.in_states([CarrierState.RELEASING], self.worker, self.workers):
            done["released"] += self._release(carrier)  # a release cut short: finish it
        for carrier in self.book.in_states([CarrierState.PROTECTING], self.worker, self.workers):
            try:
                done["released"] += self._consider(carrier)
            except Exception as error:
                monitoring.carrier_error()
                self.logger(logging.ERROR, "carrier %s: %s", carrier.name, error, exc_info=True)
        done["deleted"] = self._notice_deletions()
        return done

    def _consider(self, carrier: LedgerCarrier) -> int:
        destination = [rule for rule in (carrier.destination_rules or "").split(",") if rule]
        states = self.catalogue.rule_states(destination)
        holding = {rule: state for rule, state in states.items() if state in ("STUCK", "SUSPENDED", "GONE")}
        if holding:
            reason = ", ".join(f"rule {rule} {state}" for rule, state in holding.items())
            self._hold(carrier, f"destination {reason}: source copies kept")
            return 0
        if any(state != "OK" for state in states.values()):
            return 0  # copies under way
        files = self.book.files(carrier.name, IN_FLIGHT)
        verified = self._verify(carrier, files)
        if verified is None:
            return 0
        if self.config.dry_run:
            self.ledger.note(files, ACTOR, f"dry run: would release carrier {carrier.name} ({verified})")
            self.logger(logging.INFO, "dry run: would release carrier %s: %s", carrier.name, verified)
            return 0
        self.book.move(carrier, CarrierState.RELEASING, detail=verified)
        return self._release(carrier)

    def _verify(self, carrier: LedgerCarrier, files: list[LedgerFile]) -> str | None:
        """Move files on as far as the facts allow; a summary when all may be released, else None."""
        policy = {
            spec.rule_comment: spec.copies for spec in self.policy.rules if spec.name in carrier.policy.split(",")
        }
        placements = {row.id: layout.placement(parse(str(row.name)), row.night) for row in files}
        facts = self.catalogue.requirements(
            [
                ((str(row.scope), str(row.name)), (placements[row.id].scope, placements[row.id].dataset))
                for row in files
            ],
            policy,
        )
        blocked = 0
        at: set[str] = set()
        for row in files:
            verdict = readiness(facts[(str(row.scope), str(row.name))])
            if verdict.readiness is not Readiness.READY:
                blocked += 1
                if verdict.readiness is Readiness.HOLD:
                    self.logger(logging.WARNING, "%s:%s held: %s", row.scope, row.name, verdict.reason)
                continue
            if row.state is FileState.PROTECTED:
                self.ledger.move([row], FileState.REPLICATED, ACTOR, verdict.reason)
            if row.state is FileState.REPLICATED:  # read each copy back once; a verified file is not re-read
                readings = [self._read(copy.rse, copy.pfn) for copy in verdict.copies]
                wrong = mismatches(row.size, str(row.adler32), readings)
                if wrong:
                    blocked += 1
                    self._refuse(row, wrong)
                    continue
                copies = "; ".join(f"{r.rse} {r.pfn} size {r.size} adler32 {r.adler32}" for r in readings)
                self.ledger.move([row], FileState.VERIFIED, ACTOR, f"verified at the destination: {copies}")
            at.update(copy.rse for copy in verdict.copies)
            if may_release(len(verdict.copies), self.config.min_copies, row.replicated_at, utcnow(), self.config.dwell):
                blocked += 1
        if blocked:
            return None
        return f"{len(files)} file(s) verified at {', '.join(sorted(at))}"

    def _read(self, rse: str, pfn: str | None) -> Reading:
        if pfn is None:
            return Reading(rse, "(no PFN)", None, None, "no protocol to read the copy with")
        try:
            storage = get_storage(pfn)
            entry = storage.stat(pfn)
            return Reading(rse, pfn, entry.size, storage.checksum(pfn, ("adler32",))["adler32"])
        except FileNotFoundError:
            return Reading(rse, pfn, None, None, "missing at the storage")
        except Exception as error:
            return Reading(rse, pfn, None, None, f"unreadable: {error}")

    def _refuse(self, row: LedgerFile, wrong: dict[str, str]) -> None:
        reason = "; ".join(f"{rse}: {what}" for rse, what in wrong.items())
        self.catalogue.declare_bad(
            [((str(row.scope), str(row.name)), rse) for rse in wrong], f"magic carrier: {reason}"
        )
        self.ledger.move(
            [row],
            FileState.PROTECTED,
            ACTOR,
            f"verification failed, source kept, declared bad: {reason}",
            {row.id: {"last_error": reason}},
        )
        monitoring.verification_failure()
        self.logger(logging.ERROR, "ALARM %s:%s failed verification, source kept: %s", row.scope, row.name, reason)

    def _hold(self, carrier: LedgerCarrier, reason: str) -> None:
        if carrier.detail != reason:
            self.book.update(carrier, detail=reason)
            self.ledger.note(self.book.files(carrier.name, IN_FLIGHT), ACTOR, reason)
            monitoring.carrier_held()
            self.logger(logging.WARNING, "carrier %s held: %s", carrier.name, reason)

    def _release(self, carrier: LedgerCarrier) -> int:
        destination = [rule for rule in (carrier.destination_rules or "").split(",") if rule]
        self.catalogue.release((carrier.scope, carrier.name), carrier.source_rule, destination)
        files = self.book.files(carrier.name, [FileState.VERIFIED])
        self.ledger.move(
            files, FileState.RELEASED, ACTOR, f"source copy released with carrier {carrier.name}: {carrier.detail}"
        )
        self.book.move(carrier, CarrierState.GONE)
        monitoring.carrier_released(len(files))
        self.logger(
            logging.INFO,
            "carrier %s released: %d file(s) may now be deleted at %s",
            carrier.name,
            len(files),
            self.config.rse,
        )
        return len(files)

    def _notice_deletions(self) -> int:
        """RELEASED files whose source replica the reaper has deleted become DELETED."""
        released = self.ledger.due(self.config.rse, [FileState.RELEASED], 5000, self.worker, self.workers)
        if not released:
            return 0
        present = self.catalogue.still_at(self.config.rse, [(str(r.scope), str(r.name)) for r in released])
        gone = [row for row in released if (str(row.scope), str(row.name)) not in present]
        self.ledger.move(gone, FileState.DELETED, ACTOR, f"source replica deleted from {self.config.rse}")
        return len(gone)


def build_hook(logger: Any = logging.log) -> Hook:
    from rucio_magic_ext.carrier.config import load_config
    from rucio_magic_ext.replication import load_policy
    from rucio_magic_ext.scanner.config import load_config as load_scanner_config

    config = load_config()
    ledger = Ledger.from_config()
    ledger.upgrade()
    policy = load_policy(load_scanner_config().replication_policy)
    return Hook(config, ledger, CarrierCatalogue(config.account, logger), policy, logger)
