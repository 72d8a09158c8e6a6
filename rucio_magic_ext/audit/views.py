"""The three views of an RSE that the audit compares and the census counts, each read as a stream: its storage
listing (through the RSE's read protocol), Rucio's replicas (from its database, or from a replica dump), and the
ledger's rows; and the carriers, the empty collections and the rules of the MAGIC scopes.

Every path is relative to the RSE's prefix, as ledger text, so the three views meet on it: the stored path of
a replica where Rucio keeps one (the observatory's), else the path the RSE's lfn2pfn gives (the data centre's).
"""

from __future__ import annotations

import bz2
import gzip
import posixpath
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TextIO

from rucio.db.sqla.constants import ReplicaState
from sqlalchemy import select

from rucio_magic_ext import layout, rucio_db
from rucio_magic_ext.audit.classes import (
    Booked,
    CarrierSeen,
    Collection,
    PolicyEntry,
    Replica,
    RuleSeen,
    StoredFile,
    Views,
    is_flow_collection,
    needs_rules,
    night_of_name,
    night_of_path,
)
from rucio_magic_ext.carrier.model import CARRIER_SCOPE
from rucio_magic_ext.common import DID
from rucio_magic_ext.ledger import Ledger
from rucio_magic_ext.ledger.models import LedgerCarrier, LedgerFile
from rucio_magic_ext.ledger.paths import from_text, to_text
from rucio_magic_ext.naming import MagicName, MagicNameError, parse
from rucio_magic_ext.storage import Storage, credentials, get_storage
from rucio_magic_ext.trust import normal_path

BATCH = 5000
# Rucio's replica dumps write a replica's state as its one-letter value.
DUMP_STATES = {state.value: state.name for state in ReplicaState}


@dataclass
class Place:
    """Where an RSE's files are: its storage confined to its read protocol's prefix, and how replica paths are made."""

    rse: str
    storage: Storage
    root: str  # native path of the prefix
    root_url: str  # the prefix as a URL, as the protocol writes PFNs
    protocol: Any

    def native(self, path: str) -> str:
        """Native path of a path relative to the prefix (ledger text)."""
        return posixpath.join(self.root, from_text(path)) if path else self.root

    def relative(self, native: str) -> str:
        return to_text(posixpath.relpath(native, self.root)) if native != self.root else ""

    def path_of(self, scope: str, name: str, stored: str | None = None) -> str:
        """The path of a DID's replica relative to the prefix: the stored one (normalised: ``a//b`` and ``a/./b``
        are one file on storage), or the protocol's (lfn2pfn)."""
        if stored:
            return normal_path(stored)
        from rucio.common.exception import RucioException

        pfn: str  # Rucio's protocols are untyped
        try:
            (pfn,) = self.protocol.lfns2pfns({"scope": scope, "name": name}).values()
        except RucioException:  # a replica with no stored path at a non-deterministic RSE names no file
            return f"(no path) {scope}:{name}"
        return pfn[len(self.root_url) :] if pfn.startswith(self.root_url) else pfn


def place(rse: str) -> Place:
    """The RSE as its read protocol in Rucio describes it (scheme, host, port, prefix)."""
    protocol = rucio_db.rse_protocol(rse)
    (marker,) = protocol.lfns2pfns({"scope": "-", "name": "_", "path": "_"}).values()
    root_url = marker[:-1]  # Rucio's protocols take an empty path for "no path given"
    storage = get_storage(root_url, root=root_url, credentials=credentials.for_rse(rse))
    return Place(rse, storage, storage.path_of(root_url).rstrip("/") or "/", root_url, protocol)


def _in_night(path: str, night: date | None) -> bool:
    """Whether a path belongs to the night audited: by its name, else by its folder; a path that says no night
    (a data centre's ``runs/`` folder) is audited only when no night is asked."""
    return night is None or night_of_path(path) == night


# -- storage ----------------------------------------------------------------------------------------------


def storage_files(where: Place, roots: Sequence[str] = ("",), night: date | None = None) -> Iterator[StoredFile]:
    """Every file under the roots, as the storage lists it; a root that is not there fails the whole listing
    (an unmounted disk is not a disk whose files are all lost)."""
    for root in roots:
        for entry in where.storage.list(where.native(root.strip("/"))):
            path = where.relative(entry.path)
            if _in_night(path, night):
                yield StoredFile(path, entry.size, entry.mtime)


def checksum_reader(where: Place) -> Any:
    """``adler32(path)``: the storage's (its server's, or read here) adler32 of a file; None when unreadable."""

    def adler32(path: str) -> str | None:
        try:
            return where.storage.checksum(where.native(path), ("adler32",))["adler32"]
        except OSError:
            return None

    return adler32


# -- Rucio ------------------------------------------------------------------------------------------------


def replicas(where: Place, night: date | None = None) -> Iterator[Replica]:
    for row in rucio_db.replicas_of_rse(where.rse, BATCH):
        path = where.path_of(row.scope, row.name, row.path)
        if _in_night(path, night):
            yield Replica(row.scope, row.name, path, row.bytes, row.adler32, row.state)


def dumped_replicas(where: Place, dump: TextIO, night: date | None = None) -> Iterator[Replica]:
    """Rucio's replicas of the RSE from a replica dump (``rucio.common.dumper.data_models.Replica``: rse, scope,
    name, adler32, size, created, path, updated, state; tab-separated), as the auditor reads it."""
    for line in dump:
        fields = [field.strip() for field in line.rstrip("\n").split("\t")]
        if len(fields) < 8 or fields[0] != where.rse:
            continue
        _, scope, name, adler32, size, _, stored = fields[:7]
        state = DUMP_STATES.get(fields[8], fields[8]) if len(fields) > 8 else "AVAILABLE"
        path = where.path_of(scope, name, stored or None)
        if _in_night(path, night):
            yield Replica(scope, name, path, int(size) if size else None, adler32 or None, state)


def empty_collections(night: date | None = None) -> Iterator[Collection]:
    for scope, name, did_type in rucio_db.empty_collections(layout.SCOPES, BATCH):
        if night is None or night_of_name(name) == night:
            yield Collection(scope, name, did_type)


def foreign_collections(account: str, night: date | None = None) -> Iterator[Collection]:
    """The run datasets and night and top containers of the MAGIC scopes another account made, or set to expire."""
    for scope, name, did_type, maker, expired_at in rucio_db.collections_not_made_by(layout.SCOPES, account, BATCH):
        if is_flow_collection(name) and (night is None or night_of_name(name) in (night, None)):
            yield Collection(scope, name, did_type, maker, expired_at)


def policy_rules(policy: Iterable[PolicyEntry], night: date | None = None) -> Iterator[RuleSeen]:
    """The rules on MAGIC data that carry a policy entry's comment, wherever they ask copies."""
    comments = {spec.rule_comment for spec in policy}
    for rule in rucio_db.rules_in_scopes(layout.SCOPES, BATCH):
        if rule.comment in comments and (night is None or night_of_name(rule.name) == night):
            yield rule


def rules_at(rse: str, night: date | None = None) -> Iterator[RuleSeen]:
    """The rules on MAGIC data whose RSE expression names this RSE."""
    expressions: dict[str, bool] = {}
    for rule in rucio_db.rules_in_scopes(layout.SCOPES, BATCH):
        if night is not None and night_of_name(rule.name) != night:
            continue
        if rule.rse_expression not in expressions:
            expressions[rule.rse_expression] = rse in rucio_db.rses_of_expression(rule.rse_expression)
        if expressions[rule.rse_expression]:
            yield rule


# -- the ledger -------------------------------------------------------------------------------------------


def booked_at_source(ledger: Ledger, rse: str, night: date | None = None) -> Iterator[Booked]:
    """Every ledger row of the source RSE, at its own path."""
    files = LedgerFile
    query = select(
        files.path, files.scope, files.name, files.state, files.size, files.adler32, files.carrier, files.night
    )
    query = query.where(files.rse == rse, *([files.night == night] if night else []))
    with ledger.session() as session:
        for path, scope, name, state, size, adler32, carrier, folder_night in session.execute(
            query.execution_options(yield_per=BATCH)
        ):
            dataset = _run_dataset(name, folder_night) if name and needs_rules(state, source=True) else None
            yield Booked(path, scope, name, state, size, adler32, carrier, dataset)


def _run_dataset(name: str | MagicName, night: date | None) -> str | None:
    """The run dataset a file is attached to; None for an odd entry (the scanner's business)."""
    try:
        return layout.placement(parse(name) if isinstance(name, str) else name, night).dataset
    except MagicNameError:
        return None


def required_at(rse: str, policy: Iterable[PolicyEntry]) -> list[PolicyEntry]:
    """The policy entries that need a copy at this very RSE: those whose expression names no more RSEs than
    the copies it asks (an expression with a choice of RSEs needs none of them in particular)."""
    needed = []
    for spec in policy:
        rses = rucio_db.rses_of_expression(spec.rse_expression)
        if rse in rses and len(rses) <= spec.copies:
            needed.append(spec)
    return needed


def booked_at_destination(
    ledger: Ledger, where: Place, policy: Sequence[PolicyEntry], night: date | None = None
) -> Iterator[Booked]:
    """The ledger's files whose policy needs a copy at this RSE, at the path of that copy."""
    needed = required_at(where.rse, policy)
    if not needed:
        return
    files = LedgerFile
    query = select(
        files.path, files.scope, files.name, files.state, files.size, files.adler32, files.carrier, files.night
    )
    query = query.where(files.scope.is_not(None), *([files.night == night] if night else []))
    with ledger.session() as session:
        rows = session.execute(query.execution_options(yield_per=BATCH))
        for _, scope, name, state, size, adler32, carrier, folder_night in rows:
            try:
                record = parse(name)
            except MagicNameError:
                continue
            if not any(spec.matches(record.level, record.telescope) for spec in needed):
                continue
            path = where.path_of(scope, name)
            if _in_night(path, night):  # judged by its path here, as the storage's and Rucio's views are
                dataset = _run_dataset(record, folder_night) if needs_rules(state, source=False) else None
                yield Booked(path, scope, name, state, size, adler32, carrier, dataset)


# -- carriers ---------------------------------------------------------------------------------------------


def carriers(ledger: Ledger, rse: str, night: date | None = None) -> list[CarrierSeen]:
    """The carriers of a source RSE as the ledger and Rucio have them. With a night: those carrying a file of
    it, and those carrying none at all (nothing ties them to another night)."""
    with ledger.session() as session:
        query = select(LedgerCarrier.name, LedgerCarrier.state).where(LedgerCarrier.rse == rse)
        states = {name: state for name, state in session.execute(query)}
        carrying = select(LedgerFile.carrier).where(LedgerFile.rse == rse, LedgerFile.carrier.is_not(None))
        loaded = set(session.scalars(carrying.distinct()))
        of_night = set(session.scalars(carrying.where(LedgerFile.night == night).distinct())) if night else set()
    mine = f"carrier_{rse}_"
    datasets = {
        name for name in rucio_db.collections_of_scope(CARRIER_SCOPE) if name in states or name.startswith(mine)
    }
    rules: dict[str, list[str]] = {}
    for rule in rucio_db.rules_in_scopes([CARRIER_SCOPE], BATCH):
        if rule.name in states or rule.name.startswith(mine) or rule.rse_expression == rse:
            rules.setdefault(rule.name, []).append(rule.rule_id)

    def wanted(name: str) -> bool:
        if night is None or name in of_night:
            return True
        return name not in loaded and _empty_or_of_night(name, night, name in datasets)

    return [
        CarrierSeen(name, states.get(name), name in datasets, tuple(sorted(rules.get(name, ()))))
        for name in sorted(set(states) | datasets | set(rules))
        if wanted(name)
    ]


def _empty_or_of_night(name: str, night: date, in_rucio: bool) -> bool:
    content: set[DID] = rucio_db.content(CARRIER_SCOPE, name) if in_rucio else set()
    return not content or any(night_of_name(file) == night for _, file in content)


# -- all of it --------------------------------------------------------------------------------------------


def read(
    rse: str,
    source_rse: str,
    ledger: Ledger,
    policy: Sequence[PolicyEntry],
    night: date | None = None,
    roots: Sequence[str] = ("",),
    dump: TextIO | None = None,
    where: Place | None = None,
    account: str | None = None,
) -> Views:
    """The views of ``rse``, each a stream read when the classification comes to it. ``source_rse``: the
    observatory's RSE, whose files the ledger keeps row by row and whose carriers it records. ``account``: the
    flow's, whose rules and collections alone count as the flow's."""
    where = where or place(rse)
    source = rse == source_rse
    needed = list(policy) if source else required_at(rse, policy)
    return Views(
        rse=rse,
        source=source,
        storage=storage_files(where, roots if source else ("",), night),
        replicas=dumped_replicas(where, dump, night) if dump is not None else replicas(where, night),
        ledger=booked_at_source(ledger, rse, night) if source else booked_at_destination(ledger, where, policy, night),
        carriers=carriers(ledger, rse, night) if source else (),
        collections=empty_collections(night),
        rules=rules_at(rse, night),
        policy=policy,
        needed=needed,
        policy_rules=policy_rules(needed, night),
        account=account,
        foreign_collections=foreign_collections(account, night) if account else (),
    )


def open_dump(path: Path) -> TextIO:
    """A replica dump, plain or compressed as Rucio's dumps come (bz2, gz)."""
    if path.suffix == ".bz2":
        return bz2.open(path, "rt")
    if path.suffix == ".gz":
        return gzip.open(path, "rt")
    return path.open()
