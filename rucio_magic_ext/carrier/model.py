"""What a carrier batch is, and how newly registered files are grouped into them. Pure: ``life`` acts.

A carrier is a temporary dataset in the scope ``magic_carrier`` whose source rule pins its files at the
observatory until their copies (the policy's permanent rules' work) are verified. Files share a carrier when they
need the same permanent rules, so that a batch is proven and released against one set of rules. A carrier takes
files until it reaches its file or byte limit, or its first file has waited long enough: then it closes.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

CARRIER_SCOPE = "magic_carrier"
CARRIER_ACTIVITY = "MAGIC Carrier"
SOURCE_RULE_COMMENT = "magic-carrier:source"

# Rucio rule states in which a copy is not coming by itself: an operator must look, and the source stays.
HOLDING_RULE_STATES = frozenset({"STUCK", "SUSPENDED"})


@dataclass(frozen=True)
class CarrierLimits:
    """When a carrier stops taking files: whichever limit comes first."""

    max_files: int = 1000
    max_bytes: int = 2 * 10**12
    max_age: timedelta = timedelta(hours=1)


def policy_key(rule_names: Iterable[str]) -> str:
    """The replication rules a file needs, as one string: files with equal keys can share a carrier."""
    return ",".join(sorted(rule_names))


def policy_names(key: str) -> tuple[str, ...]:
    return tuple(name for name in key.split(",") if name)


class Fill(Protocol):
    """How full a carrier is: an open carrier of a plan, or a carrier's ledger row."""

    files: int
    bytes: int
    opened_at: datetime


def carrier_name(rse: str, policy: str, opened_at: datetime, token: str) -> str:
    """Listable by an operator: source, opening time, policy, and a token for carriers opened in one second."""
    digest = hashlib.sha1(policy.encode()).hexdigest()[:6]
    return f"carrier_{rse}_{opened_at:%Y%m%dT%H%M%S}_{digest}_{token}"


@dataclass
class OpenCarrier:
    name: str
    policy: str
    files: int
    bytes: int
    opened_at: datetime


@dataclass(frozen=True)
class NewFile:
    id: int
    size: int
    policy: str


@dataclass
class Plan:
    opened: list[OpenCarrier] = field(default_factory=list)  # carriers to create
    assigned: dict[int, str] = field(default_factory=dict)  # file id -> carrier name
    full: dict[str, str] = field(default_factory=dict)  # carrier name -> why it closes


def closing_reason(carrier: Fill, limits: CarrierLimits, now: datetime, by_age: bool = True) -> str | None:
    if carrier.files >= limits.max_files:
        return f"{carrier.files} files (limit {limits.max_files})"
    if carrier.bytes >= limits.max_bytes:
        return f"{carrier.bytes} bytes (limit {limits.max_bytes})"
    if by_age and now - carrier.opened_at >= limits.max_age:
        return f"open since {carrier.opened_at:%Y-%m-%d %H:%M:%S} (limit {limits.max_age})"
    return None


def plan_batches(
    rse: str,
    open_carriers: Sequence[OpenCarrier],
    files: Sequence[NewFile],
    limits: CarrierLimits,
    now: datetime,
    token: Callable[[], str] = lambda: uuid.uuid4().hex[:8],
) -> Plan:
    """Assign ``files`` to open carriers of their policy, opening new ones as carriers fill up."""
    plan = Plan()
    current = {carrier.policy: carrier for carrier in open_carriers if closing_reason(carrier, limits, now) is None}
    for new in files:
        carrier = current.get(new.policy)
        if carrier is None:
            carrier = OpenCarrier(carrier_name(rse, new.policy, now, token()), new.policy, 0, 0, now)
            plan.opened.append(carrier)
            current[new.policy] = carrier
        carrier.files += 1
        carrier.bytes += new.size
        plan.assigned[new.id] = carrier.name
        if reason := closing_reason(carrier, limits, now, by_age=False):  # age closes carriers on a later cycle
            plan.full[carrier.name] = reason
            del current[new.policy]
    for carrier in open_carriers:
        if reason := closing_reason(carrier, limits, now):
            plan.full.setdefault(carrier.name, reason)
    return plan
