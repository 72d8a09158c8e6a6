"""What must be true before a file's source copy may go. Pure: the hook gathers the facts, this decides.

A file is ready when every rule the replication policy requires for it is in place, none is STUCK or
SUSPENDED (an unlocked source could otherwise be reaped while a copy is missing, rucio#6513), each has
its locks OK on as many RSEs as it asks copies, and every such replica is AVAILABLE. Only copies that
stay count: a copy at the source RSE itself, or under a rule that expires, is not one. It is verified
when each counted copy, read at its storage, has the size and adler32 registered from the source, and
at least ``min_copies`` distinct RSEs hold one. It may go once the copies have been in place for the
dwell time. A copy that cannot be read proves nothing either way: it holds the file, and is not declared bad.
A ``.gz`` or DL3 file's copy is read whole once, at one destination, when first verified: its gzip stream must
end and its checksum cards hold (``unsound``), which where its source's server gave the checksum nothing read
before, so that no byte of it crosses the link twice.
Just before its source rule goes, each source file is read again at the observatory (``source_verdict``):
only the registered bytes, which the copies were proven to hold, may be deleted there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum

from rucio_magic_ext.carrier.model import HOLDING_RULE_STATES

# Rucio's API removes a rule by setting it to expire; the audit names a policy rule removed or gone, and its fix
# makes it stand again.
REMOVED = "`rucio-magic audit RSE --fix` makes a removed policy rule stand again"


@dataclass(frozen=True)
class Copy:
    rse: str
    lock_state: str  # Rucio's lock state: OK, REPLICATING, STUCK
    replica_state: str | None  # AVAILABLE, COPYING, BAD, ... or None when no replica row
    pfn: str | None


@dataclass(frozen=True)
class Requirement:
    """One policy rule a file needs, as found in Rucio (``rule_id`` None when it does not exist yet)."""

    policy_rule: str
    rule_id: str | None
    rule_state: str | None
    copies: int
    found: tuple[Copy, ...]
    expires_at: datetime | None = None  # the rule's expiry: its copies do not stay, so they do not count
    # Why what the file's release rests on is not the flow's (its run dataset another account's or set to expire,
    # its path at the source another DID's too), and the rules that carry the entry's comment without being the
    # flow's: named when they hold the file, never counted.
    untrusted: str | None = None
    impostors: tuple[str, ...] = ()


class Readiness(Enum):
    READY = "ready"
    WAIT = "wait"  # copies under way
    HOLD = "hold"  # something is wrong with a rule: an operator should look


@dataclass(frozen=True)
class Assessment:
    """Whether a file's copies are all in place, why not, and which copies to read back."""

    readiness: Readiness
    reason: str
    copies: tuple[Copy, ...] = ()


def assess(requirements: Sequence[Requirement], source_rse: str | None = None) -> Assessment:
    """Whether the copies are in place; ``copies`` are the ones that count, to be read back."""
    if not requirements:
        return Assessment(Readiness.HOLD, "no replication rule covers this file: its source copy stays")
    copies: list[Copy] = []
    for need in requirements:
        if need.untrusted:
            return Assessment(Readiness.HOLD, need.untrusted)
        if need.rule_id is None:  # made at registration, before any carrier is considered: removed since
            why = f"removed since registration, or new in the policy: {REMOVED}"
            if need.impostors:
                why = f"{'; '.join(need.impostors)} carries its comment and stands in for nothing; {why}"
            where = "on its run dataset from the flow's account"
            return Assessment(Readiness.HOLD, f"no rule {need.policy_rule} {where} ({why})")
        if need.rule_state in HOLDING_RULE_STATES:
            return Assessment(Readiness.HOLD, f"rule {need.rule_id} ({need.policy_rule}) is {need.rule_state}")
        ok = [copy for copy in need.found if copy.lock_state == "OK"]
        if len(ok) < need.copies:
            return Assessment(Readiness.WAIT, f"rule {need.policy_rule}: {len(ok)} of {need.copies} copies in place")
        unavailable = [copy.rse for copy in ok if copy.replica_state != "AVAILABLE"]
        if unavailable:
            return Assessment(Readiness.WAIT, f"replica not AVAILABLE at {', '.join(unavailable)}")
        if need.expires_at is None:
            copies += [copy for copy in ok if copy.rse != source_rse]
    unique = {copy.rse: copy for copy in copies}
    if not unique:
        stays = any(need.expires_at is None for need in requirements)
        why = "at the source itself" if stays else f"under rules that expire ({REMOVED})"
        return Assessment(Readiness.HOLD, f"no copy that stays away from the source: its copies are {why}")
    return Assessment(Readiness.READY, "every required copy in place", tuple(unique.values()))


@dataclass(frozen=True)
class Reading:
    """A destination copy as read at its storage (None fields when it could not be read)."""

    rse: str
    pfn: str
    size: int | None
    adler32: str | None
    error: str | None = None
    missing: bool = False  # the storage says the file is not there: a proven loss, unlike an error
    unsound: str | None = None  # read whole, its bytes as registered, but failing their own check: why


def mismatches(expected_size: int, expected_adler32: str, readings: Sequence[Reading]) -> dict[str, str]:
    """RSE -> what is wrong with its copy, for the copies proven not to hold the source's bytes."""
    wrong = {}
    for reading in readings:
        if reading.missing:
            wrong[reading.rse] = f"{reading.pfn}: {reading.error or 'missing at the storage'}"
        elif reading.error:
            continue  # unreadable: proves nothing
        elif reading.size != expected_size:
            wrong[reading.rse] = f"{reading.pfn}: size {reading.size}, registered {expected_size}"
        elif reading.adler32 != expected_adler32:
            wrong[reading.rse] = f"{reading.pfn}: adler32 {reading.adler32}, registered {expected_adler32}"
    return wrong


def unreadable(readings: Sequence[Reading]) -> dict[str, str]:
    """RSE -> why its copy could not be read (permission, I/O, no protocol): it holds, it is not wrong."""
    return {r.rse: f"{r.pfn}: {r.error}" for r in readings if r.error and not r.missing}


@dataclass(frozen=True)
class ReleaseVerdict:
    """Whether a file's source copy may go now; true only when it may."""

    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def may_release(
    verified_rses: int, min_copies: int, in_place_since: datetime | None, now: datetime, dwell: timedelta
) -> ReleaseVerdict:
    if verified_rses < min_copies:
        return ReleaseVerdict(False, f"{verified_rses} verified copies, {min_copies} required")
    if in_place_since is None or now - in_place_since < dwell:
        return ReleaseVerdict(False, f"copies in place since {in_place_since}, dwell time {dwell}")
    return ReleaseVerdict(True, f"{verified_rses} verified copies, in place since {in_place_since}")


# -- the source, read again just before its carrier's source rule goes ----------------------------------------

# The reasons that hold a file for a person: its source holds bytes other than the registered ones, or none, or the
# registered bytes fail their own check (a gzip stream's end, a DL3 file's checksum cards), read on the copy.
SOURCE_CHANGED = "source changed since registration"
SOURCE_GONE = "source gone since registration"
UNSOUND = "registered bytes fail their own check"
FOR_A_PERSON = "held for a person, never deleted by the flow"
RETRY = "`rucio-magic retry PATH --why ...`"
WAY_OUT = (
    "its registered bytes are verified at the destination, these exist only here: give them a name of their own "
    f"(the scanner registers them as a new file) or put the registered bytes back, then {RETRY}"
)


class SourceState(Enum):
    UNCHANGED = "unchanged"  # the registered bytes, size and mtime as registered
    TOUCHED = "touched"  # the registered bytes under another mtime: may go
    CHANGED = "changed"  # other bytes: they exist only here, held for a person
    GONE = "gone"  # nothing at its path: held until a person says its absence is known
    UNSOUND = "unsound"  # registered truncated or broken: held until a person says they are final
    UNREADABLE = "unreadable"  # proves nothing either way: held, tried again


@dataclass(frozen=True)
class SourceReading:
    """A source file as read at the observatory's storage (None fields when it could not be read)."""

    pfn: str
    size: int | None
    mtime: float | None
    adler32: str | None
    error: str | None = None
    missing: bool = False  # the storage says nothing is at its path: unlike an error, a fact


@dataclass(frozen=True)
class Registered:
    """A source file as the flow registered it: what the ledger keeps of the bytes it read."""

    size: int
    mtime: float
    adler32: str


@dataclass(frozen=True)
class SourceVerdict:
    """Whether a source file may be deleted now; true only when it may."""

    state: SourceState
    reason: str
    may_go: bool

    def __bool__(self) -> bool:
        return self.may_go


def source_verdict(registered: Registered, reading: SourceReading, absence_accepted: bool = False) -> SourceVerdict:
    """Whether the bytes at a source's path are the registered ones, which its copies were proven to hold.

    The adler32 decides, not the size and mtime: whoever writes a file can set its mtime back (``touch -d``,
    ``cp -p``, ``rsync -t``), so only the bytes prove that deleting the path deletes nothing unique. A file
    whose mtime moved over the registered bytes was touched: it may go. A path found empty may have been
    emptied to be written again (delete, then write), and the reaper deletes whatever is there when it
    comes: it goes only once a person, who put it back into the flow (``absence_accepted``), knows why."""
    was = f"size {registered.size}, mtime {_when(registered.mtime)}, adler32 {registered.adler32}"
    if reading.missing:
        if absence_accepted:
            reason = f"{SOURCE_GONE}, its absence accepted by a person: nothing at {reading.pfn} to delete"
            return SourceVerdict(SourceState.GONE, f"{reason} (registered {was})", True)
        reason = f"{SOURCE_GONE}, {FOR_A_PERSON}: nothing at {reading.pfn} (registered {was})"
        return SourceVerdict(SourceState.GONE, f"{reason}; {RETRY} once its absence is known", False)
    other_size = reading.size is not None and reading.size != registered.size  # other bytes, read or not
    if not other_size and (reading.error or reading.size is None or reading.mtime is None or not reading.adler32):
        return SourceVerdict(SourceState.UNREADABLE, f"source unreadable, kept: {reading.pfn}: {reading.error}", False)
    mtime = _when(reading.mtime) if reading.mtime is not None else "unknown"
    now = f"size {reading.size}, mtime {mtime}, adler32 {reading.adler32 or f'unread ({reading.error})'}"
    if other_size or reading.adler32 != registered.adler32:
        reason = f"{SOURCE_CHANGED}, {FOR_A_PERSON}: {reading.pfn} was {was}, is {now}"
        return SourceVerdict(SourceState.CHANGED, f"{reason}; {WAY_OUT}", False)
    if reading.mtime != registered.mtime:
        moved = f"mtime {_when(registered.mtime)} -> {mtime}"
        return SourceVerdict(SourceState.TOUCHED, f"source touched: {reading.pfn} {moved}, bytes as registered", True)
    return SourceVerdict(SourceState.UNCHANGED, f"source unchanged: {now}", True)


def unsound(pfn: str, why: str) -> SourceVerdict:
    """A copy holding the registered bytes, which fail their own check: registered before its writer finished, or
    truncated or broken at the source. Neither copy nor source is the file it should be, and the scanner did not
    read the source whole to see it (its server gave the checksum), so a person decides."""
    reason = f"{UNSOUND}, {FOR_A_PERSON}: its copy {pfn}, which holds the registered bytes: {why}"
    return SourceVerdict(SourceState.UNSOUND, f"{reason}; {RETRY} once they are known to be final", False)


def held_for_a_person(last_error: str | None) -> bool:
    """Whether a file's last error is a source found changed or gone, or registered unsound: only a person's
    retry reads it again early."""
    return bool(last_error) and str(last_error).startswith((SOURCE_CHANGED, SOURCE_GONE, UNSOUND))


def _when(mtime: float) -> str:
    return datetime.fromtimestamp(mtime, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def absence_accepted(events: Sequence[tuple[str, str | None]]) -> bool:
    """Whether a person put a file back into the flow (``rucio-magic retry``, actor ``operator:...``) after it was
    last held for its source (its absence, or its unsound bytes, known): ``events`` are its history's (actor,
    detail), oldest first."""
    held = [index for index, (_, detail) in enumerate(events) if held_for_a_person(_error(detail))]
    return bool(held) and any(actor.startswith("operator:") for actor, _ in events[held[-1] + 1 :])


def _error(detail: str | None) -> str:
    """The error an event of ``Ledger.fail`` recorded (its detail is ``error: <error>``)."""
    text = detail or ""
    return text[len("error: ") :] if text.startswith("error: ") else ""
