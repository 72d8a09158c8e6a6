"""What the scanner asks of Rucio beyond ``rucio_db``: the source RSE's PFNs, and registering a batch.

Registration can be repeated after a crash with the same outcome: replicas already registered at the same
path are left alone, attachments ignore duplicates, collections are created only when missing.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rucio.common.types import InternalAccount, InternalScope
from rucio.db.sqla.constants import DIDType

from rucio_magic_ext import rucio_db, rucio_internals
from rucio_magic_ext.carrier.model import CARRIER_SCOPE
from rucio_magic_ext.common import DID, LoggerFunction, chunks
from rucio_magic_ext.scanner import did_metadata
from rucio_magic_ext.scanner.did_metadata import DID_COLUMN_KEYS
from rucio_magic_ext.trust import foreign_collection, shared_path


@dataclass(frozen=True)
class Registration:
    """A file to register at the source RSE, where it was written."""

    scope: str
    name: str
    path: str  # relative to the RSE's prefix
    size: int
    adler32: str
    md5: str | None
    metadata: Mapping[str, Any]
    dataset: str
    containers: tuple[str, ...]  # innermost first
    carrier: str | None = None  # the carrier dataset that holds it at the source


class Catalogue:
    def __init__(self, rse: str, account: str, logger: LoggerFunction = logging.log) -> None:
        self.rse = rse
        self.account = InternalAccount(account)
        self.logger = logger

    # -- the source RSE ------------------------------------------------------------------------------------

    @property
    def rse_id(self) -> str:
        return rucio_db.rse_id(self.rse)

    @functools.cached_property
    def _protocol(self) -> Any:
        """The source RSE's protocol, made once: every registered file needs its PFN."""
        from rucio.rse import rsemanager

        return rsemanager.create_protocol(rucio_db.rse_settings(self.rse), "read", domain="wan")

    def storage_root(self) -> str:
        """The URL of the RSE's prefix, where the storage listing starts."""
        return self.pfn("_")[:-1]  # Rucio's protocols take an empty path for "no path given"

    def pfn(self, path: str) -> str:
        """The PFN of a path relative to the RSE's prefix, as Rucio writes it."""
        pfn: str  # Rucio's protocols are untyped
        (pfn,) = self._protocol.lfns2pfns({"scope": "-", "name": path.rsplit("/", 1)[-1], "path": path}).values()
        return pfn

    # -- register --------------------------------------------------------------------------------------------

    @rucio_db.retried_when_locked
    def register(self, files: Sequence[Registration]) -> dict[DID, str]:
        """Register, describe and organise ``files`` in one transaction.

        Returns the files that could not be registered as they are, with the reason; the others go on. The flow
        registers a file only where everything it builds on is its own (``refusals``).
        """
        from rucio.core.did import attach_dids_to_dids, set_dids_metadata_bulk
        from rucio.core.replica import add_replicas

        with rucio_internals.site_settings_kept(), rucio_db.writing() as session:
            existing = rucio_db.replica_paths(self.rse, [(f.scope, f.name) for f in files], session)
            conflicts = self.refusals(files, existing, session)
            new = [f for f in files if (f.scope, f.name) not in existing and (f.scope, f.name) not in conflicts]
            dids = [(f.scope, f.name) for f in new]
            created = set(dids) - rucio_db.existing_dids(dids, session)
            for chunk in chunks(new):
                add_replicas(
                    rse_id=self.rse_id,
                    files=[self._replica(file) for file in chunk],
                    account=self.account,
                    ignore_availability=True,
                    session=session,
                )
            described = [f for f in files if (f.scope, f.name) not in conflicts]
            if did_metadata.can_write_directly(session):
                fresh = [f for f in described if (f.scope, f.name) in created]
                did_metadata.describe_created([(f.scope, f.name, f.metadata) for f in fresh], session)
                described_by_rucio = [f for f in described if (f.scope, f.name) not in created]
            else:
                described_by_rucio = described
            keep = None if rucio_db.json_metadata_kept(session) else DID_COLUMN_KEYS
            set_dids_metadata_bulk(
                dids=[
                    {"scope": InternalScope(f.scope), "name": f.name, "meta": _only(f.metadata, keep)}
                    for f in described_by_rucio
                ],
                session=session,
            )
            # A file already registered at this path was organised in that same transaction: attaching it again
            # would only give Rucio's judge-evaluator work. Its carrier is checked all the same: it must be held.
            rucio_db.ensure_collections(_collections_of(new), self.account, session)
            reopened = rucio_db.reopen_closed(sorted(_collections_of(new)), session)  # the flow's own: checked above
            if reopened:
                self.logger(logging.INFO, "reopened %d closed collection(s) for late files", len(reopened))
            attach_dids_to_dids(
                attachments=_attachments(described, organise=new), account=self.account, ignore_duplicate=True,
                session=session,
            )
            rucio_db.evaluate_attachments(sorted({_carrier_of(f) for f in described if f.carrier}), session)
        return conflicts

    def refusals(
        self, files: Sequence[Registration], existing: Mapping[DID, str], session: Any
    ) -> dict[DID, str]:
        """Why each file that may not be registered as it is, may not. A replica of it already at another path
        (Rucio would keep the old one without a word); its path at the observatory already another DID's replica
        (the reaper deleting either deletes both); its file DID, run dataset or containers made by another
        account or set to expire (they would stand in for the flow's own)."""
        sharers = rucio_db.replicas_on_paths(self.rse, [f.path for f in files], session)
        wanted = {(f.scope, f.name) for f in files} | set(_collections_of(files))
        made = rucio_db.makers(sorted(wanted), session)
        refused: dict[DID, str] = {}
        for file in files:
            did = (file.scope, file.name)
            stored = existing.get(did)
            if stored is not None and stored.lstrip("/") != file.path:
                refused[did] = (
                    f"already registered at {self.rse} with path {stored}, not {file.path}: "
                    "Rucio would keep the old one"
                )
                continue
            shared = shared_path(file.path, did, sharers.get(file.path.lstrip("/"), set()))
            if shared:
                refused[did] = f"{shared}: held until a person decides which DID the bytes are (rucio-magic audit)"
                continue
            for collection in (did, *_collections_of([file])):
                maker = made.get(collection)
                why = foreign_collection(maker, self.account.external) if maker else None
                if why:
                    what = "its file DID" if collection == did else f"{collection[0]}:{collection[1]}"
                    refused[did] = f"{what} is not the flow's: {why}; it stands in for nothing"
                    break
        return refused

    def _replica(self, file: Registration) -> dict[str, Any]:
        replica = {
            "scope": InternalScope(file.scope),
            "name": file.name,
            "bytes": file.size,
            "adler32": file.adler32,
            "pfn": self.pfn(file.path),
        }
        if file.md5:
            replica["md5"] = file.md5
        return replica


def _only(metadata: Mapping[str, Any], keys: frozenset[str] | None) -> dict[str, Any]:
    return dict(metadata) if keys is None else {key: value for key, value in metadata.items() if key in keys}


def _collections_of(files: Iterable[Registration]) -> dict[DID, DIDType]:
    wanted: dict[DID, DIDType] = {}
    for file in files:
        wanted[(file.scope, file.dataset)] = DIDType.DATASET
        for container in file.containers:
            wanted[(file.scope, container)] = DIDType.CONTAINER
    return wanted


def _carrier_of(file: Registration) -> DID:
    return (CARRIER_SCOPE, str(file.carrier))


def _attachments(files: Iterable[Registration], organise: Iterable[Registration]) -> list[dict[str, Any]]:
    """File -> carrier for ``files``, and file -> run dataset -> night container -> top container for those to
    ``organise``, each parent once with all its children."""
    children: dict[DID, dict[DID, None]] = {}
    for file in organise:
        chain = [file.name, file.dataset, *file.containers]
        for child, parent in zip(chain, chain[1:]):
            children.setdefault((file.scope, parent), {})[(file.scope, child)] = None
    for file in files:
        if file.carrier:
            children.setdefault(_carrier_of(file), {})[(file.scope, file.name)] = None
    return [
        {"scope": InternalScope(scope), "name": name, "dids": [{"scope": InternalScope(s), "name": n} for s, n in kids]}
        for (scope, name), kids in children.items()
    ]

