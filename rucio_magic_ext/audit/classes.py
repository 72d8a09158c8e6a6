"""How the three views of an RSE (its storage, Rucio's replicas, the ledger) differ, class by class. Pure.

Rucio's storage-consistency tools compare a storage dump with a catalogue dump; the ledger is a third view here,
so that a file nobody discovered (dark), a copy the storage lacks (lost) and a file only the ledger still believes
in (ledger-only) are told apart. Carriers, collections and rules are classified from Rucio's and the ledger's
records of them. The catalogue sides are indexed in memory by path; the storage listing is streamed past them
once. Checksums, which read data, come only through the ``checksum`` function a caller passes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import Enum
from typing import Protocol

from rucio_magic_ext.carrier.model import CARRIER_SCOPE
from rucio_magic_ext.ledger.states import FLOW, CarrierState, FileState
from rucio_magic_ext.naming import Level, MagicNameError, Telescope, parse
from rucio_magic_ext.trust import RuleFacts, Wanted, foreign_collection, foreign_rule, shared_path

DEFAULT_MIN_AGE = timedelta(days=1)

# Where the ledger places a file at the source (it is still there) and at a destination (its copy was proven).
AT_SOURCE = frozenset(FLOW[: FLOW.index(FileState.DELETED)])
AT_DESTINATION = frozenset({FileState.VERIFIED, FileState.RELEASED, FileState.DELETED})
# Where the policy's rules must stand at the source: made at registration, wanted until the source is let go.
RULED_AT_SOURCE = frozenset(FLOW[FLOW.index(FileState.REGISTERED) : FLOW.index(FileState.RELEASED)])


class Kind(str, Enum):
    """A class of difference; ``tag`` names its file as Rucio's storage-consistency tools (D, M) would."""

    DARK = "dark"  # on storage, in neither Rucio nor the ledger
    LOST = "lost"  # an available replica in Rucio, not on storage
    LEDGER_ONLY = "ledger-only"  # the ledger says it is here; neither storage nor Rucio has it
    SIZE = "size"  # on storage with another size than the registered one
    CHECKSUM = "checksum"  # on storage with another adler32 than the registered one
    ORPHAN_CARRIER = "orphan-carrier"  # a carrier in Rucio or in the ledger without its other half
    EMPTY_COLLECTION = "empty-collection"  # a run dataset or night container with no content
    UNEXPLAINED_RULE = "unexplained-rule"  # a rule on MAGIC data that no policy entry explains
    MISSING_RULE = "missing-rule"  # a run dataset whose files here lack a rule the policy asks for them
    FOREIGN_RULE = "foreign-rule"  # a rule with a policy entry's comment that the flow's account did not make
    FOREIGN_COLLECTION = "foreign-collection"  # a run dataset or container not the flow's, or set to expire
    SHARED_PATH = "shared-path"  # one path at a non-deterministic RSE named by replicas of two DIDs
    NEW = "new"  # dark but younger than the minimum age: the scanner's business, not out of place

    @property
    def tag(self) -> str:
        return {"dark": "D", "lost": "M"}.get(self.value) or "".join(word.title() for word in self.value.split("-"))

    @property
    def out_of_place(self) -> bool:
        return self is not Kind.NEW


class PolicyEntry(Wanted, Protocol):
    """What the audit reads of a replication-policy entry (``replication.RuleSpec``, frozen: read-only)."""

    @property
    def name(self) -> str: ...
    @property
    def lifetime(self) -> int | None: ...
    @property
    def rule_comment(self) -> str: ...

    def matches(self, level: Level, telescope: Telescope) -> bool: ...


# -- the views --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredFile:
    """A file as the storage lists it; paths here are relative to the RSE's prefix, as ledger text."""

    path: str
    size: int
    mtime: float


@dataclass(frozen=True)
class Replica:
    scope: str
    name: str
    path: str
    bytes: int | None
    adler32: str | None
    state: str  # Rucio's name


@dataclass(frozen=True)
class Booked:
    """A ledger row, with its path at the audited RSE (its own path at the source, its copy's at a destination)."""

    path: str
    scope: str | None
    name: str | None
    state: FileState
    size: int
    adler32: str | None
    carrier: str | None = None
    dataset: str | None = None  # its run dataset, read where its policy rules must stand (``needs_rules``)


@dataclass(frozen=True)
class CarrierSeen:
    """A carrier as both records have it: the ledger's state (None: not in the ledger) and what Rucio holds."""

    name: str
    ledger: CarrierState | None
    dataset: bool
    rules: tuple[str, ...] = ()


@dataclass(frozen=True)
class Collection:
    """A dataset or container in a MAGIC scope: one with no content, or (``account``) one made by an account
    other than the flow's or set to expire (``expired_at``)."""

    scope: str
    name: str
    did_type: str
    account: str | None = None
    expired_at: datetime | None = None


class RuleSeen(RuleFacts, Protocol):
    """What the audit reads of a rule on MAGIC data (``rucio_db.RuleRow``, a frozen dataclass: read-only)."""

    @property
    def rule_id(self) -> str: ...
    @property
    def scope(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def comment(self) -> str: ...
    @property
    def expires_at(self) -> datetime | None: ...


@dataclass
class Views:
    """Everything the audit compares for one RSE; ``source``: the RSE is the observatory's, where the ledger's
    rows live (else a destination, where the ledger's proven copies live)."""

    rse: str
    source: bool
    storage: Iterable[StoredFile]
    replicas: Iterable[Replica]
    ledger: Iterable[Booked]
    carriers: Iterable[CarrierSeen] = ()
    collections: Iterable[Collection] = ()
    rules: Iterable[RuleSeen] = ()
    policy: Sequence[PolicyEntry] | None = None  # the entries of the replication policy
    # The entries whose rules the ledger's files here need (every entry at the source, at a destination those
    # that need a copy there), and every rule on MAGIC data that carries one's comment; None: not checked.
    needed: Sequence[PolicyEntry] = ()
    policy_rules: Iterable[RuleSeen] | None = None
    account: str | None = None  # the flow's: only its rules count, only its collections are the flow's
    foreign_collections: Iterable[Collection] = ()


# -- the findings -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One difference: ``key`` is a path relative to the RSE's prefix or a ``scope:name``, as the tools write."""

    kind: Kind
    key: str
    bytes: int = 0
    detail: str = ""
    scope: str | None = None
    name: str | None = None
    state: str | None = None  # the ledger's state of a file or carrier; a rule's id, or a policy entry's name
    mtime: float | None = None


@dataclass
class Findings:
    rse: str
    source: bool
    found: dict[Kind, list[Finding]] = field(default_factory=lambda: {kind: [] for kind in Kind})
    listed: int = 0  # files on storage
    registered: int = 0  # replicas in Rucio
    booked: int = 0  # ledger rows the RSE is concerned with

    def add(self, finding: Finding) -> None:
        self.found[finding.kind].append(finding)

    def of(self, kind: Kind) -> list[Finding]:
        return self.found[kind]

    @property
    def clean(self) -> bool:
        return not any(findings for kind, findings in self.found.items() if kind.out_of_place)

    @property
    def files(self) -> int:
        """The largest of the RSE's three records: the base of the fraction."""
        return max(self.listed, self.registered, self.booked, 1)

    @property
    def fraction(self) -> float:
        """Files out of place (dark, lost, ledger-only) among the RSE's: a large one says that the listing or a
        dump is wrong, not the files, and nothing is acted on."""
        wrong = sum(len(self.found[kind]) for kind in (Kind.DARK, Kind.LOST, Kind.LEDGER_ONLY))
        return wrong / self.files

    def counts(self) -> dict[str, int]:
        return {kind.value: len(findings) for kind, findings in self.found.items()}

    def sizes(self) -> dict[str, int]:
        return {kind.value: sum(f.bytes for f in findings) for kind, findings in self.found.items()}


# -- classification ---------------------------------------------------------------------------------------


def classify(
    views: Views,
    now: datetime | None = None,
    min_age: timedelta = DEFAULT_MIN_AGE,
    checksum: Callable[[str], str | None] | None = None,
) -> Findings:
    """Every difference between the views. ``now`` (naive UTC) and ``min_age`` set apart dark files still
    being written or discovered; ``checksum(path)`` (the storage's adler32, or None when unreadable) is asked
    only for files whose size agrees with their replica's."""
    findings = Findings(views.rse, views.source)
    in_rucio = _files(views, findings, now, min_age, checksum)
    for carrier in views.carriers:
        if why := orphan(carrier):
            state = carrier.ledger.value if carrier.ledger else None
            key = f"{CARRIER_SCOPE}:{carrier.name}"
            findings.add(Finding(Kind.ORPHAN_CARRIER, key, 0, why, CARRIER_SCOPE, carrier.name, state))
    for collection in views.collections:
        if why := empty_collection(collection):
            key = f"{collection.scope}:{collection.name}"
            findings.add(Finding(Kind.EMPTY_COLLECTION, key, 0, why, collection.scope, collection.name))
    for collection in views.foreign_collections:
        if views.account and (why := foreign_collection(collection, views.account)):
            key = f"{collection.scope}:{collection.name}"
            detail = f"{why}: files of its run are held, never registered into it"
            findings.add(Finding(Kind.FOREIGN_COLLECTION, key, 0, detail, collection.scope, collection.name))
    for rule in views.rules:
        if views.policy is None:
            continue
        key = f"{rule.scope}:{rule.name}"
        if views.account and (why := impostor(rule, views.policy, views.account)):
            detail = f"rule {rule.rule_id}: {why}"
            findings.add(Finding(Kind.FOREIGN_RULE, key, 0, detail, rule.scope, rule.name, rule.rule_id))
        elif why := unexplained(rule, views.policy):
            detail = f"rule {rule.rule_id}: {why}"
            findings.add(Finding(Kind.UNEXPLAINED_RULE, key, 0, detail, rule.scope, rule.name, rule.rule_id))
    if views.policy_rules is not None:
        for finding in missing_rules(in_rucio, views.needed, views.policy_rules, views.source, views.account):
            findings.add(finding)
    return findings


def counts(views: Views, now: datetime | None = None, min_age: timedelta = DEFAULT_MIN_AGE) -> dict[str, int]:
    """How many of each class, without reading any file's data (no checksum): what a census can afford."""
    return classify(views, now, min_age).counts()


def _files(
    views: Views,
    findings: Findings,
    now: datetime | None,
    min_age: timedelta,
    checksum: Callable[[str], str | None] | None,
) -> list[Booked]:
    """The files' classes; returns the ledger's rows whose file Rucio has a replica of at the RSE."""
    replicas: dict[str, Replica] = {}
    by_did: dict[tuple[str, str], str] = {}
    replica: Replica | None  # the loops' and the lookups' below (None: no replica at that path)
    row: Booked | None
    for replica in views.replicas:
        other = replicas.get(replica.path)
        if other is not None and (other.scope, other.name) != (replica.scope, replica.name):
            why = shared_path(replica.path, (other.scope, other.name), {(replica.scope, replica.name)})
            detail = f"{why}: the reaper deleting either deletes both"
            size = replica.bytes or 0
            findings.add(Finding(Kind.SHARED_PATH, replica.path, size, detail, replica.scope, replica.name))
        replicas[replica.path] = replica
        by_did[(replica.scope, replica.name)] = replica.path
        findings.registered += 1
    booked: dict[str, Booked] = {}
    for row in views.ledger:
        booked[row.path] = row
        findings.booked += 1
    young_after = (now - min_age).timestamp() if now is not None else None
    listed: set[str] = set()
    for stored in views.storage:
        findings.listed += 1
        listed.add(stored.path)
        replica = replicas.get(stored.path)
        if replica is None:
            if stored.path not in booked:
                kind = Kind.NEW if young_after is not None and stored.mtime > young_after else Kind.DARK
                where = "never discovered" if views.source else "no replica in Rucio, no copy in the ledger"
                findings.add(Finding(kind, stored.path, stored.size, where, mtime=stored.mtime))
            continue
        _compare(stored, replica, findings, checksum)
    for replica in replicas.values():
        if replica.path not in listed and replica.state == "AVAILABLE":
            row = booked.get(replica.path)
            state = row.state.value if row else None
            why = "available in Rucio, not on storage"
            findings.add(Finding(Kind.LOST, replica.path, replica.bytes or 0, why, replica.scope, replica.name, state))
    here = AT_SOURCE if views.source else AT_DESTINATION
    for row in booked.values():
        if row.state not in here or row.path in listed or row.path in replicas:
            continue
        if row.scope and row.name and (row.scope, row.name) in by_did:
            continue  # Rucio has it at another path: a difference of paths, not of presence
        where = "still at the source" if views.source else "its copy verified here"
        why = f"the ledger says {row.state.value} ({where})"
        findings.add(Finding(Kind.LEDGER_ONLY, row.path, row.size, why, row.scope, row.name, row.state.value))
    return [row for row in booked.values() if row.path in replicas or (row.scope, row.name) in by_did]


def _compare(
    stored: StoredFile, replica: Replica, findings: Findings, checksum: Callable[[str], str | None] | None
) -> None:
    if replica.state != "AVAILABLE" or replica.bytes is None:
        return  # being written or deleted: its size is not settled
    if stored.size != replica.bytes:
        why = f"{stored.size} bytes, registered {replica.bytes}"
        findings.add(Finding(Kind.SIZE, stored.path, stored.size, why, replica.scope, replica.name))
        return
    if checksum is None or not replica.adler32:
        return
    found = checksum(stored.path)
    if found is not None and found.lower().zfill(8) != replica.adler32.lower().zfill(8):
        why = f"adler32 {found}, registered {replica.adler32}"
        findings.add(Finding(Kind.CHECKSUM, stored.path, stored.size, why, replica.scope, replica.name))


def orphan(carrier: CarrierSeen) -> str | None:
    """Why a carrier has lost its other half, or None."""
    in_rucio = carrier.dataset or bool(carrier.rules)
    if carrier.ledger is None and in_rucio:
        return f"in Rucio ({_rucio_side(carrier)}), not in the ledger"
    if carrier.ledger is CarrierState.GONE and in_rucio:
        return f"GONE in the ledger, still in Rucio ({_rucio_side(carrier)})"
    if carrier.ledger is not None and carrier.ledger is not CarrierState.GONE and not carrier.dataset:
        rules = f", {len(carrier.rules)} rule(s) left" if carrier.rules else ""
        return f"{carrier.ledger.value} in the ledger, its dataset gone{rules}"
    return None


def _rucio_side(carrier: CarrierSeen) -> str:
    parts = ["dataset"] if carrier.dataset else []
    if carrier.rules:
        parts.append(f"rules {', '.join(carrier.rules)}")
    return " and ".join(parts)


# -- MAGIC collections and rules --------------------------------------------------------------------------

_KIND = r"(?P<telescope>M1|M2|ST)_(?P<level>RAW|Calibrated|Star|SuperStar|Melibea|DL3)"
_RUN_DATASET = re.compile(_KIND + r"_(?P<night>\d{8})(?:_(?P<run>\d{8}))?", re.ASCII)
_SIMULATION = re.compile(r"MC_" + _KIND + r"_za\d\dto\d\d_\d+", re.ASCII)
_TOP_CONTAINER = re.compile(r"(?:MC_)?" + _KIND, re.ASCII)


def is_flow_collection(name: str) -> bool:
    """Whether the flow puts files into a collection of this name: a run dataset, a night or top container."""
    return any(pattern.fullmatch(name) for pattern in (_RUN_DATASET, _SIMULATION, _TOP_CONTAINER))


def empty_collection(collection: Collection) -> str | None:
    """Why an empty collection is out of place: a run dataset or night container should hold something."""
    found = _RUN_DATASET.fullmatch(collection.name)
    if found:
        return "run dataset with no file" if found["run"] else "night container with no run dataset"
    if _SIMULATION.fullmatch(collection.name):
        return "simulation dataset with no file"
    return None


def unexplained(rule: RuleSeen, policy: Sequence[PolicyEntry]) -> str | None:
    """Why no policy entry explains a rule on MAGIC data (its comment, run dataset, RSEs and copies), or None."""
    spec = next((spec for spec in policy if spec.rule_comment == rule.comment), None)
    if spec is None:
        return f"comment {rule.comment!r} names no policy entry" if rule.comment else "no comment names a policy entry"
    kind = _level_of(rule.name)
    if kind is None:
        return f"policy entry {spec.name!r}, but not on a run dataset"
    if not spec.matches(*kind):
        return f"policy entry {spec.name!r} does not cover {kind[1].value} {kind[0].value}"
    if rule.rse_expression != spec.rse_expression or rule.copies != spec.copies:
        return (
            f"policy entry {spec.name!r} asks {spec.copies} at {spec.rse_expression!r}, "
            f"the rule {rule.copies} at {rule.rse_expression!r}"
        )
    return None


def impostor(rule: RuleSeen, policy: Sequence[PolicyEntry], account: str) -> str | None:
    """Why a rule with a policy entry's comment is not the flow's, or None: it would stand in for the flow's rule."""
    spec = next((spec for spec in policy if spec.rule_comment == rule.comment), None)
    if spec is None:
        return None
    why = foreign_rule(rule, spec, account)
    return f"carries the comment of policy entry {spec.name!r} but is {why}: it stands in for nothing" if why else None


def needs_rules(state: FileState, source: bool) -> bool:
    """Whether the policy's rules on a file's run dataset must stand, by the file's state at the RSE audited."""
    return state in (RULED_AT_SOURCE if source else AT_DESTINATION)


def missing_rules(
    booked: Iterable[Booked],
    needed: Sequence[PolicyEntry],
    present: Iterable[RuleSeen],
    source: bool,
    account: str | None = None,
) -> list[Finding]:
    """Run datasets that lack a rule of a policy entry covering their files here. At the source, the files
    registered and not yet released (their rules were made at registration: one gone was removed since, and its
    files are held until it is made again); at a destination, the copies proven there. A rule that expires (Rucio's
    API removes a rule so) does not count, nor one the flow's ``account`` did not make as the entry asks, and
    entries whose rules expire are not required to stand."""
    lasting = [spec for spec in needed if spec.lifetime is None]
    by_comment = {spec.rule_comment: spec for spec in needed}
    have: set[tuple[str, str, str]] = set()
    expiring: dict[tuple[str, str, str], datetime] = {}  # removed through Rucio's API: gone within the hour
    for rule in present:
        spec = by_comment.get(rule.comment)
        if account and (spec is None or foreign_rule(rule, spec, account)):
            continue  # another account's, or asking otherwise: named as foreign-rule, counts for nothing
        if rule.expires_at is None:
            have.add((rule.scope, rule.name, rule.comment))
        else:
            expiring[(rule.scope, rule.name, rule.comment)] = rule.expires_at
    lacking: dict[tuple[str, str, str], list[Booked]] = {}
    specs = {spec.name: spec for spec in lasting}
    for row in booked:
        kind = _level_of(row.dataset) if row.scope and row.dataset and needs_rules(row.state, source) else None
        if kind is None:
            continue
        for spec in lasting:
            if spec.matches(*kind) and (row.scope, row.dataset, spec.rule_comment) not in have:
                lacking.setdefault((str(row.scope), str(row.dataset), spec.name), []).append(row)
    findings = []
    held = "held at the source until it is made again" if source else "proven here with nothing to keep them"
    for (scope, dataset, entry), rows in sorted(lacking.items()):
        spec = specs[entry]
        ends = expiring.get((scope, dataset, spec.rule_comment))
        which = f"only a rule set to expire at {ends:%Y-%m-%d %H:%M:%S} UTC (removed)" if ends else "no rule"
        detail = (
            f"policy entry {entry!r} ({spec.copies} at {spec.rse_expression!r}) has {which} on it: "
            f"{len(rows)} file(s) {held}"
        )
        key = f"{scope}:{dataset}"
        findings.append(Finding(Kind.MISSING_RULE, key, sum(r.size for r in rows), detail, scope, dataset, entry))
    return findings


def _level_of(name: str) -> tuple[Level, Telescope] | None:
    found = _RUN_DATASET.fullmatch(name) or _SIMULATION.fullmatch(name)
    if not found or ("run" in found.groupdict() and not found["run"]):
        return None
    return Level(found["level"]), Telescope(found["telescope"])


# -- one night --------------------------------------------------------------------------------------------

_PATH_NIGHT = re.compile(r"(?P<y>\d{4})[/_](?P<m>\d\d)[/_](?P<d>\d\d)/[^/]+\Z", re.ASCII)


def night_of_name(name: str) -> date | None:
    """The night a MAGIC file, run dataset or night container belongs to, from its name alone."""
    found = _RUN_DATASET.fullmatch(name)
    if found:
        return _date(found["night"][:4], found["night"][4:6], found["night"][6:])
    try:
        return parse(name).night
    except MagicNameError:
        return None


def night_of_path(path: str) -> date | None:
    """The night of a file from its name, or from its folder (``2020_01_03/`` at La Palma, ``2020/01/03/`` at PIC)."""
    night = night_of_name(path.rsplit("/", 1)[-1])
    if night is not None:
        return night
    found = _PATH_NIGHT.search(path)
    return _date(found["y"], found["m"], found["d"]) if found else None


def _date(year: str, month: str, day: str) -> date | None:
    try:
        return date(int(year), int(month), int(day))
    except ValueError:
        return None


def fixed_order(findings: Mapping[Kind, list[Finding]]) -> list[tuple[Kind, list[Finding]]]:
    """The classes in the order a person reads them: files first, then Rucio's collections and rules."""
    return [(kind, sorted(findings[kind], key=lambda f: f.key)) for kind in Kind]
