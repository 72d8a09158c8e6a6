"""Register: each checksummed file becomes a replica at the source RSE where it was written, with its
checksums and metadata, attached to its run dataset, night container and top container.

One Rucio transaction per batch. A file already registered at the same path counts as done (a crash
between Rucio and the ledger is repeated harmlessly); one registered at another path is an error: Rucio
would keep the old PFN without a word.
"""

from __future__ import annotations

import logging

from rucio_magic_ext import layout
from rucio_magic_ext.ledger import FileState
from rucio_magic_ext.ledger.models import LedgerFile
from rucio_magic_ext.metadata import file_metadata
from rucio_magic_ext.naming import parse
from rucio_magic_ext.scanner.catalogue import Registration
from rucio_magic_ext.scanner.context import Context

ACTOR = "scanner.register"


def registration(row: LedgerFile) -> Registration:
    """What Rucio is told about one file, from its ledger row (name, night, checksums)."""
    record = parse(str(row.name))
    placed = layout.placement(record, row.night)
    return Registration(
        scope=placed.scope,
        name=placed.name,
        path=row.path,
        size=row.size,
        adler32=str(row.adler32),
        md5=row.md5,
        metadata=file_metadata(record, row.night),
        dataset=placed.dataset,
        containers=placed.containers,
    )


def register(context: Context) -> int:
    """Move CHECKSUMMED files to REGISTERED; returns how many."""
    rows = context.due(FileState.CHECKSUMMED)
    if not rows:
        return 0
    try:
        conflicts = context.catalogue.register([registration(row) for row in rows])
    except Exception as error:  # the database or Rucio refused the batch: keep the files, try again later
        context.ledger.fail(rows, f"register: {error}", ACTOR, context.config.retry)
        context.logger(logging.ERROR, "registering %d file(s) failed, will retry: %s", len(rows), error)
        return 0
    failed = [row for row in rows if (row.scope, row.name) in conflicts]
    for row in failed:
        context.ledger.fail([row], conflicts[(row.scope, row.name)], ACTOR, context.config.retry)
        context.logger(logging.ERROR, "%s: %s", row.path, conflicts[(row.scope, row.name)])
    registered = [row for row in rows if (row.scope, row.name) not in conflicts]
    context.ledger.move(registered, FileState.REGISTERED, ACTOR)
    return len(registered)
