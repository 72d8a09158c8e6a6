"""The source-deletion hook: release a carrier only once every file in it has verified copies.

Each cycle, every file of a carrier is assessed from Rucio's database (``verify.py``): its policy rules in
place with their locks OK and replicas AVAILABLE. A rule STUCK or SUSPENDED holds the carrier and says so;
copies under way leave it waiting. Once every file is ready, each copy is read back at its storage and
compared with the size and adler32 registered from the source; a ``.gz`` or DL3 copy is also read whole, once,
at one destination, its gzip stream proven to end and its checksum cards to hold (its source, checksummed by its
server, was not read across the link). Only when all its files pass, and the
copies have dwelt long enough, does the carrier go (``carrier/life.py``): its source rule is removed (the
source copies become OBSOLETE and the reaper deletes them), then its dataset. A copy that fails is declared
bad, so Rucio transfers it again, and its file waits, its source copy kept. Every decision is written to the
ledger with its reason.

Just before the source rule goes, each source file is read again at the observatory (``source.py``) and its
bytes compared with the registered ones (``verify.source_verdict``): the reaper deletes whatever is at the
path, and only the registered bytes were proven at the destination. A file touched (its mtime moved, its
bytes the same) goes. One rewritten with other bytes, or whose path is found empty, is held for a person:
named in its history and in ``rucio-magic status``, counted (``magic_carrier_source_changed_total``), and
moved at once into a carrier of its own, so that the others of its batch leave. The flow never deletes it. A
person decides, then puts it back with ``rucio-magic retry PATH --why ...``, which has it read again at the
next pass; it goes only if its path then holds the registered bytes (put back, e.g. from the copy at the
destination) or nothing (the new bytes given a name of their own, which the scanner registers as a new file,
or removed by the person): a retry never lets the flow delete bytes other than the registered ones.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rucio_magic_ext import monitoring, rucio_db
from rucio_magic_ext.carrier.life import IN_FLIGHT, Carriers
from rucio_magic_ext.checksum import ADLER32, Corrupt, Unfinished, digest_stream
from rucio_magic_ext.common import DID, LoggerFunction, utcnow
from rucio_magic_ext.dl3.headers import Dl3Refused, describe
from rucio_magic_ext.ledger import FileState, Ledger
from rucio_magic_ext.ledger.models import LedgerCarrier, LedgerFile
from rucio_magic_ext.ledger.states import CarrierState
from rucio_magic_ext.naming import Level
from rucio_magic_ext.release.catalogue import ReleaseCatalogue
from rucio_magic_ext.release.config import CarrierConfig
from rucio_magic_ext.release.source import adler32_of, read_sources
from rucio_magic_ext.release.verify import (
    Assessment,
    Readiness,
    Reading,
    Registered,
    SourceReading,
    SourceState,
    SourceVerdict,
    absence_accepted,
    assess,
    held_for_a_person,
    may_release,
    mismatches,
    source_verdict,
    unreadable,
    unsound,
)
from rucio_magic_ext.replication import ReplicationPolicy
from rucio_magic_ext.storage import Storage, credentials, storage_for_pfn

ACTOR = "carrier"
SPLIT_AFTER_FAILURES = 3  # verifications failed (wrong or unreadable copies) before a file leaves its batch
HELD_AT_MOST = timedelta(days=1)  # a source held for a person is read again at least this often
NEVER = datetime.min


@dataclass(frozen=True)
class Proof:
    """Whether every file of a carrier may leave now, and the summary (what was proven, or what waits)."""

    proven: bool
    summary: str
    read_every_copy: bool = False  # every counted copy was read back in the pass that proved it


@dataclass(frozen=True)
class ProvenReading(Reading):
    """A copy read at its storage, and how its adler32 was obtained (the storage's server, or read here)."""

    how: str = ""


def _how(reading: Reading) -> str:
    return f" ({reading.how})" if isinstance(reading, ProvenReading) and reading.how else ""


@dataclass
class Hook:
    config: CarrierConfig
    ledger: Ledger
    catalogue: ReleaseCatalogue
    policy: ReplicationPolicy
    logger: LoggerFunction = logging.log
    worker: int = 0
    workers: int = 1
    carriers: Carriers = field(init=False)
    retry: timedelta = timedelta(minutes=1)  # how soon a file that failed is looked at again, doubling

    def __post_init__(self) -> None:
        # The logger changes with each cycle's heartbeat: the carriers log through whichever is current.
        self.carriers = Carriers(
            self.ledger, self.config.rse, self.config.account, self.policy, lambda *args, **kw: self.logger(*args, **kw)
        )

    @classmethod
    def from_config(cls, logger: Any = logging.log, dry_run: bool = False) -> Hook:
        """The hook of this deployment, from rucio.cfg; the ledger is migrated to the current schema."""
        import dataclasses

        from rucio_magic_ext.carrier import preflight
        from rucio_magic_ext.release.config import load_config
        from rucio_magic_ext.replication import load_policy

        config = load_config()
        if dry_run:
            config = dataclasses.replace(config, dry_run=True)
        ledger = Ledger.from_config()
        ledger.upgrade()
        policy = load_policy(config.replication_policy)
        preflight.check(config.rse, config.account, policy)
        return cls(config, ledger, ReleaseCatalogue(config.account, logger), policy, logger)

    # -- one cycle -------------------------------------------------------------------------------------------

    def run_cycle(self) -> dict[str, int]:
        done = {"released": 0, "deleted": 0}
        for state, step in ((CarrierState.RELEASING, self._release), (CarrierState.PROTECTING, self._consider)):
            for carrier in self.carriers.in_states([state], self.worker, self.workers):
                try:
                    done["released"] += step(carrier)
                except Exception as error:
                    monitoring.carrier_error()
                    self.logger(logging.ERROR, "carrier %s: %s", carrier.name, error, exc_info=True)
        done["deleted"] = self._notice_deletions()
        return done

    def _consider(self, carrier: LedgerCarrier) -> int:
        if not self.carriers.policy_of(carrier):
            self.carriers.hold(carrier, "no replication rule covers its files: kept at the source", ACTOR)
            return 0
        files = self.carriers.files(carrier)
        problem = self._integrity(carrier, files)
        if problem:
            self.carriers.hold(carrier, f"{problem}: source copies kept", ACTOR)
            return 0
        assessments = self._assess(carrier, files, pfns=False)
        held = [row for row in files if assessments[row.did].readiness is Readiness.HOLD]
        if held:  # what holds them concerns them alone: the others leave without them
            reason = assessments[held[0].did].reason
            if self._split_held(carrier, files, held, f"held: {reason}"):
                return 0
            self.carriers.hold(carrier, f"{held[0].name}: {reason}: source copies kept", ACTOR)
            return 0
        if any(assessment.readiness is Readiness.WAIT for assessment in assessments.values()):
            return 0  # copies under way
        proof = self._prove(carrier, files)  # the facts gathered again, with the PFNs of the copies to read
        if not proof.proven:
            files = self.carriers.files(carrier)
            if not self._split_held(carrier, files, self._held(files), "held for a person"):
                self._split_failing(carrier, files)
            return 0
        held = self._held(files)
        if held:  # until a person's retry, or its next look: not read again each pass
            self._split_held(carrier, files, held, "held for a person")
            self.carriers.hold(carrier, f"{held[0].name}: {held[0].last_error}", ACTOR)
            return 0
        if self.config.dry_run:
            self.ledger.note(files, ACTOR, f"dry run: would release carrier {carrier.name} ({proof.summary})")
            self.logger(logging.INFO, "dry run: would release carrier %s: %s", carrier.name, proof.summary)
            return 0
        self.carriers.start_release(carrier, proof.summary)
        return self._release(carrier, proven_now=proof.read_every_copy)

    def _release(self, carrier: LedgerCarrier, proven_now: bool = False) -> int:
        """Prove every copy once more just before the source rule goes, unless every copy was read in this very
        pass, and then every source, last. A release whose source rule is already gone was cut short after
        removing it: it is finished."""
        if proven_now or self.carriers.source_rule_present(carrier):
            files = self.carriers.files(carrier)
            reason = None if proven_now else self._integrity(carrier, files)
            if reason is None and not proven_now:
                proof = self._prove(carrier, files, again=True)
                reason = None if proof.proven else proof.summary
            if reason is None:
                reason = self._sources_changed(carrier, files)
            if reason:
                self.carriers.abandon_release(carrier, reason, ACTOR)
                return 0
        return self.carriers.release(carrier, ACTOR)

    def _sources_changed(self, carrier: LedgerCarrier, files: list[LedgerFile]) -> str | None:
        """Why the carrier's source rule may not go because of its sources, or None: each is read again at the
        observatory, and any that does not hold the registered bytes is held (split off at once when changed
        or gone, so the others may leave)."""
        readings = read_sources(self.config.rse, files)
        verdicts = {row.did: self._source_verdict(row, readings[row.did]) for row in files}
        held = [row for row in files if not verdicts[row.did]]
        if not held:
            for row in files:
                if verdicts[row.did].state is not SourceState.UNCHANGED:  # touched, or gone as a person knows
                    self.ledger.note([row], ACTOR, verdicts[row.did].reason)
            return None
        for row in held:
            self._hold_source(row, verdicts[row.did])
        self._split_held(
            carrier, files, [row for row in held if held_for_a_person(row.last_error)], "its source changed"
        )
        if any(verdicts[row.did].state is SourceState.UNREADABLE for row in held):
            self._split_failing(carrier, self.carriers.files(carrier))
        more = f" and {len(held) - 1} more" if len(held) > 1 else ""
        return f"{held[0].name}: {verdicts[held[0].did].reason}{more}"

    def _source_verdict(self, row: LedgerFile, reading: SourceReading) -> SourceVerdict:
        accepted = reading.missing and self._answered(row)
        return source_verdict(Registered(row.size, row.mtime, str(row.adler32)), reading, accepted)

    def _answered(self, row: LedgerFile) -> bool:
        """Whether a person put the file back into the flow since it was held for them."""
        if not held_for_a_person(row.last_error):
            return False
        stories = [events for found, events in self.ledger.history(row.rse, row.path) if found.id == row.id]
        return absence_accepted([(event.actor, event.detail) for event in stories[0]] if stories else [])

    @staticmethod
    def _held(files: list[LedgerFile]) -> list[LedgerFile]:
        """Files held for a person until their retry, or their next look."""
        return [row for row in files if held_for_a_person(row.last_error) and (row.retry_after or NEVER) > utcnow()]

    def _hold_source(self, row: LedgerFile, verdict: SourceVerdict) -> None:
        """Keep a source whose bytes are not proven the registered ones; an alarm, counted, when newly found."""
        if verdict.state is SourceState.UNREADABLE:
            self.ledger.fail([row], verdict.reason, ACTOR, self.retry)
            self.logger(logging.WARNING, "%s:%s: %s", row.scope, row.name, verdict.reason)
            return
        if row.last_error != verdict.reason:
            monitoring.carrier_source_changed(verdict.state.value)
            self.logger(logging.ERROR, "ALARM %s:%s %s", row.scope, row.name, verdict.reason)
        self.ledger.fail([row], verdict.reason, ACTOR, self.retry, at_most=HELD_AT_MOST)

    def _integrity(self, carrier: LedgerCarrier, files: list[LedgerFile]) -> str | None:
        unexpected = [row for row in files if row.state not in IN_FLIGHT]
        if unexpected:
            row = unexpected[0]
            return f"{len(unexpected)} file(s) not on their way to release, e.g. {row.path} {row.state.value}"
        return self.carriers.integrity(carrier, files)

    def _assess(self, carrier: LedgerCarrier, files: list[LedgerFile], pfns: bool = True) -> dict[DID, Assessment]:
        """Each file's copies as Rucio's database has them (no byte read): ready, under way, or held. The PFNs of
        the copies are made only when asked (``pfns``): they are needed to read them, not to wait for them."""
        facts = self.catalogue.requirements(
            [(row.did, (row.placement.scope, row.placement.dataset)) for row in files],
            self.carriers.policy_of(carrier),
            pfns,
            source_rse=self.config.rse,
        )
        return {row.did: assess(facts[row.did], self.config.rse) for row in files}

    def _prove(self, carrier: LedgerCarrier, files: list[LedgerFile], again: bool = False) -> Proof:
        """Move files on as far as the facts allow. ``again``: read every counted copy anew, verified or not."""
        assessments = self._assess(carrier, files)
        waiting: list[str] = []
        at: set[str] = set()
        read = 0
        for row in files:
            assessment = assessments[row.did]
            if assessment.readiness is not Readiness.READY:
                waiting.append(f"{row.name}: {assessment.reason}")
                if assessment.readiness is Readiness.HOLD:
                    self.logger(logging.WARNING, "%s:%s held: %s", row.scope, row.name, assessment.reason)
                continue
            if row.state is FileState.PROTECTED:
                self.ledger.move([row], FileState.REPLICATED, ACTOR, assessment.reason)
            if row.state is FileState.REPLICATED and self._held([row]):
                waiting.append(f"{row.name}: {row.last_error}")  # not read whole again until a person's retry
                continue
            if row.state is FileState.REPLICATED or again:
                read += 1
                whole = row.state is FileState.REPLICATED and not self._answered(row)
                readings = [self._read(c.rse, c.pfn, row if whole and i == 0 else None)
                            for i, c in enumerate(assessment.copies)]
                wrong, cannot = mismatches(row.size, str(row.adler32), readings), unreadable(readings)
                if wrong:
                    waiting.append(f"{row.name}: {self._refuse(row, wrong)}")
                    continue
                if cannot:
                    waiting.append(f"{row.name}: {self._cannot_read(row, cannot)}")
                    continue
                broken = next((r for r in readings if r.unsound), None)
                if broken is not None:
                    hold = unsound(f"{broken.rse} {broken.pfn}", str(broken.unsound))
                    self._hold_source(row, hold)
                    waiting.append(f"{row.name}: {hold.reason}")
                    continue
                if row.state is FileState.REPLICATED:
                    copies = "; ".join(f"{r.rse} {r.pfn} size {r.size} adler32 {r.adler32}{_how(r)}" for r in readings)
                    self.ledger.move([row], FileState.VERIFIED, ACTOR, f"verified at the destination: {copies}")
            at.update(copy.rse for copy in assessment.copies)
            verdict = may_release(
                len(assessment.copies), self.config.min_copies, row.replicated_at, utcnow(), self.config.dwell
            )
            if not verdict:
                waiting.append(f"{row.name}: {verdict.reason}")
        if waiting:
            more = f" and {len(waiting) - 1} more" if len(waiting) > 1 else ""
            return Proof(False, f"{waiting[0]}{more}")
        how = "read again" if again else "verified"
        return Proof(True, f"{len(files)} file(s) {how} at {', '.join(sorted(at))}", read == len(files))

    def _read(self, rse: str, pfn: str | None, whole: LedgerFile | None = None) -> Reading:
        """A copy as its storage holds it, read only through the RSE's own protocols in Rucio: the storage is
        confined to the prefix of the protocol that holds the PFN, so a PFN leading elsewhere is read nowhere
        (unreadable: the file is held, nothing is declared bad). ``whole``: the file whose own checks it must pass."""
        if pfn is None:
            return Reading(rse, "(no PFN)", None, None, "no protocol to read the copy with")
        try:
            storage = storage_for_pfn(pfn, rucio_db.rse_settings(rse)["protocols"], credentials.for_rse(rse))
            entry = storage.stat(pfn)
            adler32, how = adler32_of(storage, pfn)
            unsound = _self_check(storage, pfn, entry.size, whole) if whole is not None else None
            return ProvenReading(rse, pfn, entry.size, adler32, unsound=unsound, how=how)
        except FileNotFoundError:
            return Reading(rse, pfn, None, None, "missing at the storage", missing=True)
        except Exception as error:
            return Reading(rse, pfn, None, None, f"unreadable: {error}")

    def _refuse(self, row: LedgerFile, wrong: dict[str, str]) -> str:
        """A copy proven wrong (other bytes, or gone): declared bad so Rucio sends it again; the source stays."""
        reason = "; ".join(f"{rse}: {what}" for rse, what in wrong.items())
        self.catalogue.declare_bad([(row.did, rse) for rse in wrong], f"magic carrier: {reason}")
        detail = f"verification failed, source kept, declared bad: {reason}"
        failed = {row.id: {"last_error": reason, "attempts": row.attempts + 1}}
        self.ledger.move([row], FileState.PROTECTED, ACTOR, detail, failed)
        monitoring.verification_failure()
        self.logger(logging.ERROR, "ALARM %s:%s failed verification, source kept: %s", row.scope, row.name, reason)
        return detail

    def _cannot_read(self, row: LedgerFile, cannot: dict[str, str]) -> str:
        """A copy that could not be read proves nothing: the file waits, and nothing is declared bad."""
        reason = "; ".join(f"{rse}: {what}" for rse, what in cannot.items())
        self.ledger.fail([row], f"copy unreadable, source kept: {reason}", ACTOR, self.retry)
        monitoring.copy_unreadable()
        self.logger(logging.WARNING, "%s:%s: copy unreadable, source kept: %s", row.scope, row.name, reason)
        return f"copy unreadable, source kept: {reason}"

    def _split_held(
        self, carrier: LedgerCarrier, files: list[LedgerFile], held: list[LedgerFile], why: str
    ) -> bool:
        """Held files go together into a carrier of their own at once, so that the others of its batch may leave;
        when every file is held, none is freed by moving them. True when they were moved."""
        if not held or len(held) == len(files):
            return False
        self.carriers.split(carrier, held, ACTOR, why)
        return True

    def _split_failing(self, carrier: LedgerCarrier, files: list[LedgerFile]) -> None:
        """A file that keeps failing goes into a carrier of its own, so the others of its batch can leave."""
        if len(files) < 2:
            return
        for row in files:
            if row.attempts >= SPLIT_AFTER_FAILURES:
                self.carriers.split(carrier, [row], ACTOR, f"failed {row.attempts} time(s)")

    def _notice_deletions(self) -> int:
        """RELEASED files whose source replica the reaper has deleted become DELETED."""
        released = self.ledger.due(self.config.rse, [FileState.RELEASED], 5000, self.worker, self.workers)
        if not released:
            return 0
        present = rucio_db.replicas_at(self.config.rse, [row.did for row in released])
        gone = [row for row in released if row.did not in present]
        self.ledger.move(gone, FileState.DELETED, ACTOR, f"source replica deleted from {self.config.rse}")
        return len(gone)


def _self_check(storage: Storage, pfn: str, size: int, row: LedgerFile) -> str | None:
    """Why a copy's bytes fail their own check (a gzip stream's end, a DL3 file's checksum cards), read here;
    None when they pass."""
    try:
        if row.path.endswith(".gz"):
            with storage.open_read(pfn) as stream:
                digest_stream(stream, (ADLER32,), gzip=True, size=size)
        if row.record.level is Level.DL3:
            with storage.open_read(pfn) as stream:
                describe(io.BufferedReader(stream, 1 << 20), size, row.record, row.night)
    except (Unfinished, Corrupt) as error:
        return str(error)
    except Dl3Refused as error:
        return f"DL3 refused ({error.kind}): {error}"
    return None
