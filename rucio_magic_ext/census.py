"""Where the MAGIC flow stands now: counts from the ledger and from Rucio, for the gauges and ``status``.

Every figure is one grouped query (ledger files per night and state, carriers per state, Rucio rules per
DID type and state, available replicas per RSE), so a census costs the same whether a night or a year of
data is in flight. The gauges and ``rucio-magic status`` read the same census, so they cannot disagree.

The last cheap audit of each source RSE (counts per class of difference, taken by the scanner's census on its
own schedule) is kept in the ledger and read with the rest, so it reaches the gauges and ``status`` alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import ColumnElement, case, func, or_, select
from sqlalchemy.orm import Session

from rucio_magic_ext import layout, monitoring
from rucio_magic_ext.audit.classes import Kind
from rucio_magic_ext.carrier.model import CARRIER_SCOPE
from rucio_magic_ext.common import utcnow
from rucio_magic_ext.ledger.models import (
    LedgerAuditCounts,
    LedgerCarrier,
    LedgerEvent,
    LedgerFile,
    LedgerFolder,
    LedgerOutage,
)
from rucio_magic_ext.ledger.states import DEAD_ENDS, UNSAFE, CarrierState, FileState
from rucio_magic_ext.ledger.store import Ledger
from rucio_magic_ext.release.verify import SOURCE_CHANGED, SOURCE_GONE
from rucio_magic_ext.storage import credentials
from rucio_magic_ext.storage.credentials import Outlook

MAGIC_SCOPES = (*layout.SCOPES, CARRIER_SCOPE)
CARRIER_KIND = "CARRIER"  # rules on carrier batches, apart from the policy's rules on MAGIC data
ERROR_WINDOW = timedelta(hours=24)
_LIVE = tuple(state for state in CarrierState if state is not CarrierState.GONE)


@dataclass(frozen=True)
class Count:
    files: int = 0
    bytes: int = 0

    def __add__(self, other: Count) -> Count:
        return Count(self.files + other.files, self.bytes + other.bytes)


@dataclass(frozen=True)
class StuckRule:
    rule_id: str
    did: str
    rse_expression: str
    error: str | None
    since: datetime


@dataclass(frozen=True)
class RecentError:
    at: datetime
    rse: str
    path: str
    state: str
    actor: str
    detail: str


@dataclass(frozen=True)
class Trouble:
    """A file held on a retry, or set aside, with its reason: each odd entry of the storage shows here."""

    rse: str
    path: str
    state: str
    attempts: int
    error: str
    since: datetime
    retry_after: datetime | None


@dataclass(frozen=True)
class FolderTrouble:
    """A folder whose last listing failed: its files are unknown until it lists again."""

    rse: str
    path: str
    attempts: int
    error: str
    since: datetime
    retry_after: datetime | None


@dataclass(frozen=True)
class Outage:
    """A service the scanner found not answering for a source RSE, since when, and the last cycle that found so."""

    rse: str
    service: str
    since: datetime
    seen_at: datetime
    why: str | None


@dataclass(frozen=True)
class Audit:
    """The last cheap audit of a source RSE: ``counts`` per class (``audit.classes.Kind`` values) as taken at
    ``taken_at`` (None: never yet); ``error`` says why the last try, at ``tried_at``, gave no new counts."""

    rse: str
    counts: dict[str, int]
    taken_at: datetime | None
    tried_at: datetime
    error: str | None = None

    @property
    def out_of_place(self) -> dict[str, int]:
        """The classes with something out of place (``new`` files are the scanner's business, not out of place)."""
        return {kind.value: n for kind in Kind if kind.out_of_place and (n := self.counts.get(kind.value, 0))}


@dataclass(frozen=True)
class Waiting:
    """Files of a source RSE that wait on one thing: ``kind`` names it (settling, scanner, carrier, copies, dwell,
    reaper), ``since`` is the moment its wait is counted from (the newest mtime of settling files, a carrier's
    opening, the newest copy in place), ``carrier`` and ``detail`` the carrier and its last note, if any."""

    rse: str
    kind: str
    files: int
    since: datetime | None = None
    carrier: str = ""
    detail: str = ""


TROUBLE_LIMIT = 50
WAITING_CARRIERS = 20


@dataclass
class Census:
    taken_at: datetime
    files: dict[tuple[str, date | None, FileState], Count] = field(default_factory=dict)
    oldest_unsafe: dict[tuple[str, date | None], datetime] = field(default_factory=dict)  # earliest seen_at
    carriers: dict[tuple[str, CarrierState], int] = field(default_factory=dict)
    errors: list[RecentError] = field(default_factory=list)
    rules: dict[tuple[str, str], int] = field(default_factory=dict)  # (DID type or CARRIER, rule state)
    locks: dict[str, int] = field(default_factory=dict)  # lock state -> files, policy rules only
    replicas: dict[str, Count] = field(default_factory=dict)  # available MAGIC replicas per RSE
    stuck: list[StuckRule] = field(default_factory=list)
    held: dict[str, int] = field(default_factory=dict)  # files waiting on a retry after an error, per RSE
    troubles: list[Trouble] = field(default_factory=list)  # held for a person, then newest; at most TROUBLE_LIMIT
    folders: list[FolderTrouble] = field(default_factory=list)
    audits: dict[str, Audit] = field(default_factory=dict)  # the last audit of each source RSE
    waiting: list[Waiting] = field(default_factory=list)  # what the files not yet deleted wait on
    credentials: list[Outlook] = field(default_factory=list)  # of each guarded RSE's storage, as found now
    outages: list[Outage] = field(default_factory=list)  # services not answering, as the scanner last found them

    @property
    def rses(self) -> list[str]:
        return sorted(
            {rse for rse, _, _ in self.files}
            | {rse for rse, _ in self.carriers}
            | {f.rse for f in self.folders}
            | set(self.audits)
            | {o.rse for o in self.outages}
        )

    def nights(self, rse: str) -> list[date | None]:
        return sorted({night for r, night, _ in self.files if r == rse}, key=lambda night: night or date.min)

    def count(self, rse: str, night: date | None = None, states: Iterable[FileState] | None = None) -> Count:
        """Files and bytes of ``rse`` (one night, or all) in ``states`` (or any)."""
        wanted = set(states) if states is not None else None
        total = Count()
        for (r, n, state), count in self.files.items():
            if r == rse and (night is None or n == night) and (wanted is None or state in wanted):
                total += count
        return total

    def at_risk(self, rse: str, night: date | None = None) -> Count:
        """What exists only at the source: lost with the observatory disk."""
        return self.count(rse, night, UNSAFE)

    def oldest(self, rse: str, night: date | None = None) -> datetime | None:
        """When the oldest file not yet safe off-site appeared."""
        found = [seen for (r, n), seen in self.oldest_unsafe.items() if r == rse and (night is None or n == night)]
        return min(found) if found else None

    def oldest_age(self, rse: str, night: date | None = None) -> timedelta | None:
        oldest = self.oldest(rse, night)
        return self.taken_at - oldest if oldest else None


def take(
    ledger: Ledger,
    rse: str | None = None,
    rucio: bool = True,
    scopes: Sequence[str] = MAGIC_SCOPES,
    errors: bool = True,
) -> Census:
    """A census of the ledger (of one source RSE, or all) and, with ``rucio``, of Rucio's MAGIC scopes;
    ``errors`` adds the latest errors, which a screen shows and the gauges do not need."""
    census = Census(taken_at=utcnow())
    _ledger_counts(census, ledger, rse, errors)
    if rucio:
        _rucio_counts(census, scopes)
        census.credentials = outlooks(sorted(set(census.rses) | set(census.replicas)))
    return census


def outlooks(rses: Iterable[str]) -> list[Outlook]:
    """The credential each guarded RSE's storage is presented, as found now (open storages say nothing)."""
    found = [credentials.for_rse(rse).outlook() for rse in rses]
    return [outlook for outlook in found if outlook.mechanism != "none"]


def publish(census: Census) -> None:
    """The census as gauges: a state or RSE that emptied out drops to 0."""
    files: dict[tuple[str, ...], float] = {}
    sizes: dict[tuple[str, ...], float] = {}
    for rse in census.rses:
        for state in FileState:
            count = census.count(rse, states=[state])
            files[(rse, state.value)], sizes[(rse, state.value)] = count.files, count.bytes
    monitoring.gauges(monitoring.SOURCE_FILES, files)
    monitoring.gauges(monitoring.SOURCE_BYTES, sizes)
    risk = {rse: census.at_risk(rse) for rse in census.rses}
    monitoring.gauges(monitoring.HELD_FILES, {(rse,): census.held.get(rse, 0) for rse in census.rses})
    failing = {(rse,): sum(1 for f in census.folders if f.rse == rse) for rse in census.rses}
    monitoring.gauges(monitoring.FOLDERS_FAILING, failing)
    monitoring.gauges(monitoring.RISK_FILES, {(rse,): count.files for rse, count in risk.items()})
    monitoring.gauges(monitoring.RISK_BYTES, {(rse,): count.bytes for rse, count in risk.items()})
    ages = {rse: census.oldest_age(rse) for rse in census.rses}
    monitoring.gauges(monitoring.RISK_OLDEST, {(rse,): age.total_seconds() if age else 0 for rse, age in ages.items()})
    carriers = {(rse, state.value): 0 for rse in census.rses for state in _LIVE}
    carriers.update({(rse, state.value): n for (rse, state), n in census.carriers.items()})
    monitoring.gauges(monitoring.CARRIERS, carriers)
    monitoring.gauges(monitoring.RULES, dict(census.rules.items()))
    monitoring.gauges(monitoring.LOCKS, {(state,): n for state, n in census.locks.items()})
    monitoring.gauges(monitoring.REPLICAS_FILES, {(rse,): count.files for rse, count in census.replicas.items()})
    monitoring.gauges(monitoring.REPLICAS_BYTES, {(rse,): count.bytes for rse, count in census.replicas.items()})
    left = {(o.rse, o.mechanism): max(o.left.total_seconds(), 0.0) if o.left is not None else 0.0
            for o in census.credentials if o.left is not None or o.warning}
    monitoring.gauges(monitoring.CREDENTIAL_LEFT, left)
    lasting = {(o.rse, o.service): (census.taken_at - o.since).total_seconds() for o in census.outages}
    monitoring.gauges(monitoring.OUTAGE_SECONDS, lasting)
    _publish_audits(census)


def _publish_audits(census: Census) -> None:
    """Every class of each audit taken (0 where nothing was found), and the audit's age: a panel that shows
    zero shows an audit that found nothing, not one that never ran."""
    taken = {rse: audit for rse, audit in census.audits.items() if audit.taken_at is not None}
    files = {(rse, kind.value): audit.counts.get(kind.value, 0) for rse, audit in taken.items() for kind in Kind}
    monitoring.gauges(monitoring.AUDIT_FILES, files)
    ages = {
        (rse,): max((census.taken_at - audit.taken_at).total_seconds(), 0.0)
        for rse, audit in taken.items()
        if audit.taken_at is not None  # true of every audit in `taken`; said again for the type checker
    }
    monitoring.gauges(monitoring.AUDIT_TAKEN, ages)


def _ledger_counts(census: Census, ledger: Ledger, rse: str | None, errors: bool) -> None:
    files = LedgerFile
    mine = [files.rse == rse] if rse else []
    with ledger.session() as session:
        grouped = select(
            files.rse, files.night, files.state, func.count(), func.coalesce(func.sum(files.size), 0)
        ).group_by(files.rse, files.night, files.state)
        for r, night, state, count, size in session.execute(grouped.where(*mine)):
            census.files[(r, night, state)] = Count(count, int(size))
        oldest = (
            select(files.rse, files.night, func.min(files.seen_at))
            .where(files.state.in_(list(UNSAFE)), *mine)
            .group_by(files.rse, files.night)
        )
        census.oldest_unsafe = {(r, night): seen for r, night, seen in session.execute(oldest) if seen}
        carriers = select(LedgerCarrier.rse, LedgerCarrier.state, func.count()).where(
            LedgerCarrier.state != CarrierState.GONE, *([LedgerCarrier.rse == rse] if rse else [])
        )
        for r, state, count in session.execute(carriers.group_by(LedgerCarrier.rse, LedgerCarrier.state)):
            census.carriers[(r, state)] = count
        held = select(files.rse, func.count()).where(
            files.last_error.is_not(None), files.retry_after.is_not(None), files.state.not_in(list(DEAD_ENDS)), *mine
        )
        census.held = {r: count for r, count in session.execute(held.group_by(files.rse))}
        failing = select(LedgerFolder).where(
            LedgerFolder.last_error.is_not(None), *([LedgerFolder.rse == rse] if rse else [])
        )
        census.folders = [
            FolderTrouble(f.rse, f.path, f.attempts, f.last_error or "", f.failed_at or f.listed_at, f.retry_after)
            for f in session.scalars(failing.order_by(LedgerFolder.failed_at))
        ]
        census.audits = audits(session, rse)
        census.waiting = waiting(session, rse)
        found = select(LedgerOutage).where(*([LedgerOutage.rse == rse] if rse else []))
        rows = session.scalars(found.order_by(LedgerOutage.since))
        census.outages = [Outage(o.rse, o.service, o.since, o.seen_at, o.why) for o in rows]
        if errors:
            census.errors = recent_errors(session, rse, census.taken_at - ERROR_WINDOW)
            census.troubles = troubles(session, rse)


def waiting(session: Session, rse: str | None) -> list[Waiting]:
    """What the files on their way wait on: the settle time, the scanner's next cycle, their carrier's closing,
    their copies, the dwell time, the reaper; one row per kind, and per carrier in flight."""
    files, carriers = LedgerFile, LedgerCarrier
    mine = [files.rse == rse] if rse else []
    found: list[Waiting] = []
    alone: dict[str, tuple[FileState, ColumnElement[Any]]] = {
        "settling": (FileState.SEEN, func.max(files.mtime)),
        "scanner": (FileState.STABLE, func.max(files.stable_at)),
        "checksummed": (FileState.CHECKSUMMED, func.max(files.checksummed_at)),
        "reaper": (FileState.RELEASED, func.max(files.released_at)),
    }
    for kind, (state, newest) in alone.items():
        query = select(files.rse, func.count(), newest).where(files.state == state, *mine).group_by(files.rse)
        for r, count, moment in session.execute(query):
            since = _from_mtime(moment) if kind == "settling" else moment
            found.append(Waiting(r, "scanner" if kind == "checksummed" else kind, count, since))
    live = (
        select(carriers)
        .where(carriers.state != CarrierState.GONE, *([carriers.rse == rse] if rse else []))
        .order_by(carriers.opened_at)
        .limit(WAITING_CARRIERS)
    )
    for carrier in session.scalars(live):
        found += _carrier_waits(session, carrier)
    return found


def _from_mtime(mtime: float | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(mtime, timezone.utc).replace(tzinfo=None) if mtime is not None else None
    except (OverflowError, OSError, ValueError):  # an mtime past year 9999
        return None


def _carrier_waits(session: Session, carrier: LedgerCarrier) -> list[Waiting]:
    files = LedgerFile
    if carrier.state is CarrierState.OPEN:
        return [Waiting(carrier.rse, "carrier", carrier.files, carrier.opened_at, carrier.name, carrier.detail or "")]
    query = (
        select(files.state, func.count(), func.max(files.replicated_at))
        .where(files.carrier == carrier.name, files.state.in_([FileState.PROTECTED, FileState.REPLICATED,
                                                               FileState.VERIFIED, FileState.REGISTERED]))
        .group_by(files.state)
    )  # fmt: skip
    found = []
    for state, count, newest in session.execute(query):
        kind = "dwell" if state is FileState.VERIFIED else "copies"
        found.append(Waiting(carrier.rse, kind, count, newest, carrier.name, carrier.detail or ""))
    return found


def audits(session: Session, rse: str | None = None) -> dict[str, Audit]:
    """The last audit of each source RSE (or of one) that the scanner's census recorded."""
    query = select(LedgerAuditCounts).where(*([LedgerAuditCounts.rse == rse] if rse else []))
    return {
        row.rse: Audit(row.rse, dict(row.counts or {}), row.taken_at, row.tried_at, row.error)
        for row in session.scalars(query)
    }


def audit_tried(ledger: Ledger, rse: str) -> datetime | None:
    """When an audit of ``rse`` was last tried: the next is due a period after it, whichever process asks."""
    with ledger.session() as session:
        return session.scalar(select(LedgerAuditCounts.tried_at).where(LedgerAuditCounts.rse == rse))


def record_outage(ledger: Ledger, rse: str, service: str, why: str | None, at: datetime) -> None:
    """Keep that ``service`` does not answer for ``rse``: from when it first did not, and the last time found so;
    ``why`` None: it answers again, and the outage is over."""
    with ledger.session() as session:
        row = session.scalar(select(LedgerOutage).where(LedgerOutage.rse == rse, LedgerOutage.service == service))
        if why is None:
            if row is not None:
                session.delete(row)
            return
        if row is None:
            row = LedgerOutage(rse=rse, service=service, since=at)
            session.add(row)
        row.seen_at, row.why = at, why


def record_audit(
    ledger: Ledger, rse: str, at: datetime, counts: dict[str, int] | None, error: str | None = None
) -> None:
    """Keep an audit's counts; a failed try (``counts`` None) keeps the last counts and says why."""
    with ledger.session() as session:
        row = session.scalar(select(LedgerAuditCounts).where(LedgerAuditCounts.rse == rse))
        if row is None:
            row = LedgerAuditCounts(rse=rse)
            session.add(row)
        row.tried_at, row.error = at, error
        if counts is not None:
            row.counts, row.taken_at = dict(counts), at


def recent_errors(session: Session, rse: str | None, since: datetime, limit: int = 10) -> list[RecentError]:
    """The latest failures and set-asides: what an operator looks at first."""
    events, files = LedgerEvent, LedgerFile
    query = (
        select(events.at, files.rse, files.path, events.state, events.actor, events.detail)
        .join(files, files.id == events.file_id)
        .where(
            events.at >= since,
            or_(
                events.detail.like("error:%"),
                events.state.in_([FileState.REJECTED, FileState.QUARANTINED]),
            ),
            *([files.rse == rse] if rse else []),
        )
        .order_by(events.at.desc(), events.id.desc())
        .limit(limit)
    )
    return [
        RecentError(at, r, path, state.value, actor, detail or "")
        for at, r, path, state, actor, detail in session.execute(query)
    ]


def troubles(session: Session, rse: str | None, limit: int = TROUBLE_LIMIT) -> list[Trouble]:
    """Files that carry an error now: held on a retry, or set aside (REJECTED, QUARANTINED). Registered files whose
    source holds other bytes, or none, come first (the flow never lets them go by itself), then the newest."""
    files = LedgerFile
    for_a_person = or_(*(files.last_error.startswith(reason) for reason in (SOURCE_CHANGED, SOURCE_GONE)))
    query = (
        select(files)
        .where(files.last_error.is_not(None), files.state != FileState.DELETED, *([files.rse == rse] if rse else []))
        .order_by(case((for_a_person, 0), else_=1), files.updated_at.desc(), files.id.desc())
        .limit(limit)
    )
    return [
        Trouble(row.rse, row.path, row.state.value, row.attempts, row.last_error or "", row.updated_at, row.retry_after)
        for row in session.scalars(query)
    ]


def _rucio_counts(census: Census, scopes: Sequence[str]) -> None:
    from rucio.common.types import InternalScope
    from rucio.db.sqla import models
    from rucio.db.sqla.constants import ReplicaState, RuleState

    from rucio_magic_ext import rucio_db

    rules, replicas = models.ReplicationRule, models.RSEFileAssociation
    internal = [InternalScope(scope) for scope in scopes]
    with rucio_db.reading() as session:
        grouped = (
            select(
                rules.scope,
                rules.did_type,
                rules.state,
                func.count(),
                func.sum(rules.locks_ok_cnt),
                func.sum(rules.locks_replicating_cnt),
                func.sum(rules.locks_stuck_cnt),
            )
            .where(rules.scope.in_(internal))
            .group_by(rules.scope, rules.did_type, rules.state)
        )
        locks = {"OK": 0, "REPLICATING": 0, "STUCK": 0}
        for scope, did_type, state, count, ok, replicating, stuck in session.execute(grouped):
            is_carrier = scope.external == CARRIER_SCOPE
            kind = CARRIER_KIND if is_carrier else did_type.name
            census.rules[(kind, state.name)] = census.rules.get((kind, state.name), 0) + count
            if not is_carrier:
                for name, value in (("OK", ok), ("REPLICATING", replicating), ("STUCK", stuck)):
                    locks[name] += int(value or 0)
        census.locks = locks
        available = (
            select(replicas.rse_id, func.count(), func.coalesce(func.sum(replicas.bytes), 0))
            .where(replicas.scope.in_(internal), replicas.state == ReplicaState.AVAILABLE)
            .group_by(replicas.rse_id)
        )
        for rse_id, count, size in session.execute(available):
            census.replicas[rucio_db.rse_name(rse_id, session)] = Count(count, int(size))
        stuck = (
            select(rules.id, rules.scope, rules.name, rules.rse_expression, rules.error, rules.updated_at)
            .where(rules.scope.in_(internal), rules.state == RuleState.STUCK)
            .order_by(rules.updated_at)
            .limit(20)
        )
        census.stuck = [
            StuckRule(str(rule_id), f"{scope.external}:{name}", expression, error, updated)
            for rule_id, scope, name, expression, error, updated in session.execute(stuck)
        ]
