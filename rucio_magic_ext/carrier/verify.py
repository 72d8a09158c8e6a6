"""What must be true before a file's source copy may go. Pure: the hook gathers the facts, this decides.

A file is ready when every rule the replication policy requires for it is in place, none is STUCK or
SUSPENDED (an unlocked source could otherwise be reaped while a copy is missing, rucio#6513), each has
its locks OK on as many RSEs as it asks copies, and every such replica is AVAILABLE. It is verified
when each of those copies, read at its storage, has the size and adler32 registered from the source,
and at least ``min_copies`` distinct RSEs hold one. It may go once the copies have been in place for
the dwell time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

HOLDING_RULE_STATES = frozenset({"STUCK", "SUSPENDED"})


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


class Readiness(Enum):
    READY = "ready"
    WAIT = "wait"  # copies under way
    HOLD = "hold"  # something is wrong with a rule: an operator should look


@dataclass(frozen=True)
class Verdict:
    readiness: Readiness
    reason: str
    copies: tuple[Copy, ...] = ()


def readiness(requirements: Sequence[Requirement]) -> Verdict:
    if not requirements:
        return Verdict(Readiness.HOLD, "no replication rule covers this file: its source copy stays")
    copies: list[Copy] = []
    for need in requirements:
        if need.rule_id is None:
            return Verdict(Readiness.WAIT, f"rule {need.policy_rule} not created yet")
        if need.rule_state in HOLDING_RULE_STATES:
            return Verdict(Readiness.HOLD, f"rule {need.rule_id} ({need.policy_rule}) is {need.rule_state}")
        ok = [copy for copy in need.found if copy.lock_state == "OK"]
        if len(ok) < need.copies:
            return Verdict(Readiness.WAIT, f"rule {need.policy_rule}: {len(ok)} of {need.copies} copies in place")
        unavailable = [copy.rse for copy in ok if copy.replica_state != "AVAILABLE"]
        if unavailable:
            return Verdict(Readiness.WAIT, f"replica not AVAILABLE at {', '.join(unavailable)}")
        copies += ok
    unique = {copy.rse: copy for copy in copies}
    return Verdict(Readiness.READY, "every required copy in place", tuple(unique.values()))


@dataclass(frozen=True)
class Reading:
    """A destination copy as read at its storage (None fields when it could not be read)."""

    rse: str
    pfn: str
    size: int | None
    adler32: str | None
    error: str | None = None


def mismatches(expected_size: int, expected_adler32: str, readings: Sequence[Reading]) -> dict[str, str]:
    """RSE -> what is wrong with its copy, for the copies that do not match the source's bytes."""
    wrong = {}
    for reading in readings:
        if reading.error:
            wrong[reading.rse] = f"{reading.pfn}: {reading.error}"
        elif reading.size != expected_size:
            wrong[reading.rse] = f"{reading.pfn}: size {reading.size}, registered {expected_size}"
        elif reading.adler32 != expected_adler32:
            wrong[reading.rse] = f"{reading.pfn}: adler32 {reading.adler32}, registered {expected_adler32}"
    return wrong


def may_release(
    verified_rses: int, min_copies: int, in_place_since: datetime | None, now: datetime, dwell: timedelta
) -> str | None:
    """None when the source copy may go, else why not yet."""
    if verified_rses < min_copies:
        return f"{verified_rses} verified copies, {min_copies} required"
    if in_place_since is None or now - in_place_since < dwell:
        return f"copies in place since {in_place_since}, dwell time {dwell}"
    return None
