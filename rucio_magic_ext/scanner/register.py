"""Register: each checksummed file becomes a replica at the source RSE where it was written, with its
checksums and metadata, attached to its run dataset, night container and top container, and to a carrier
whose locked source rule holds it from that moment until its copies are verified.

The carrier is chosen in the ledger first and made in Rucio (dataset and source rule) before the file is
registered; the replica, its attachments and its lock are one Rucio transaction per batch. A file already
registered at the same path counts as done (a crash between Rucio and the ledger is repeated harmlessly);
one registered at another path is an error: Rucio would keep the old PFN without a word. A file whose path,
file DID, run dataset or containers are found already taken by another account (or set to expire) is held
with the reason, never registered into them. The policy's permanent rules are then put on the run datasets.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from rucio_magic_ext import monitoring, rucio_db
from rucio_magic_ext.ledger import FileState, LostRace
from rucio_magic_ext.ledger.models import LedgerFile
from rucio_magic_ext.metadata import file_metadata
from rucio_magic_ext.permanent_rules import permanent_rule
from rucio_magic_ext.rucio_db import RuleRequest
from rucio_magic_ext.scanner.catalogue import Registration
from rucio_magic_ext.scanner.context import Context

ACTOR = "scanner.register"


def registration(row: LedgerFile) -> Registration:
    """What Rucio is told about one file, from its ledger row (name, night, checksums, carrier)."""
    placed = row.placement
    return Registration(
        scope=placed.scope,
        name=placed.name,
        path=row.path,
        size=row.size,
        adler32=str(row.adler32),
        md5=row.md5,
        metadata={**file_metadata(row.record, row.night), **(row.header_metadata or {})},
        dataset=placed.dataset,
        containers=placed.containers,
        carrier=row.carrier,
    )


def permanent_rules(context: Context, rows: Sequence[LedgerFile]) -> list[RuleRequest]:
    """One rule per policy entry on each run dataset of ``rows``."""
    wanted = {}
    for row in rows:
        placed = row.placement
        for spec in context.carriers.specs(row):
            wanted[(placed.scope, placed.dataset, spec.name)] = permanent_rule(spec, placed.scope, placed.dataset)
    return list(wanted.values())


def register(context: Context) -> int:
    """Move CHECKSUMMED files to REGISTERED; returns how many."""
    rows = context.due(FileState.CHECKSUMMED)
    if not rows:
        return 0
    try:
        context.carriers.assign(rows, context.config.carrier)
        context.carriers.hold_at_source({str(row.carrier) for row in rows})
    except LostRace as race:  # another worker closed a carrier first: these files join a new one next cycle
        context.logger(logging.INFO, "register: %s", race)
        return 0
    except Exception as error:
        return _failed(context, rows, f"register: carriers: {error}", unassign=False)
    try:
        conflicts = context.catalogue.register([registration(row) for row in rows])
    except Exception as error:  # the transaction rolled back: nothing is attached, the files may change carrier
        return _failed(context, rows, f"register: {error}", unassign=True)
    for row in rows:
        if row.did in conflicts:  # held on its own, with the reason: the rest of the batch goes on
            monitoring.odd_entry("untrusted")
            _failed(context, [row], conflicts[row.did], unassign=True)
    registered = [row for row in rows if row.did not in conflicts]
    try:
        rucio_db.ensure_rules(permanent_rules(context, registered), context.carriers.account)
    except Exception as error:  # registered and held: the rules are made when the batch is tried again
        return _failed(context, registered, f"register: permanent rules: {error}", unassign=False)
    uncovered = [row for row in registered if not context.carriers.specs(row)]
    context.ledger.move(registered, FileState.REGISTERED, ACTOR)
    if uncovered:
        reason = "no replication rule in the policy covers this level: kept at the source"
        context.ledger.note(uncovered, ACTOR, reason)
    return len(registered)


def _failed(context: Context, rows: Sequence[LedgerFile], error: str, unassign: bool) -> int:
    context.ledger.fail(rows, error, ACTOR, context.config.retry)
    if unassign:
        context.carriers.unassign(rows)
    context.logger(logging.ERROR, "registering %d file(s) failed, will retry: %s", len(rows), error)
    return 0
