"""Metadata of newly registered files, in two statements for a whole batch.

Rucio's ``set_dids_metadata_bulk`` goes DID by DID and plugin by plugin (a lookup, a read of the JSON row,
a flush, for each file), about 8 ms per file. For files whose DIDs the same transaction has just created
nothing is there to merge with, so with Rucio's default plugins (DID columns, then JSON on PostgreSQL) the
scanner writes the same rows Rucio would: one UPDATE of the DID columns and one INSERT of the JSON rows.
Any other set-up goes through Rucio's own path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from rucio_magic_ext import rucio_internals

# Keys Rucio keeps in DID columns (its DID-column plugin manages them), and our values' types for them.
DID_COLUMN_KEYS = frozenset({"project", "datatype", "run_number"})

Described = tuple[str, str, Mapping[str, Any]]  # scope, name, metadata


# The metadata plugins (DID columns, then JSON) whose rows this module writes itself on PostgreSQL: Rucio's
# defaults, or with the project's JSON plugin, which stores the very same rows there. Named, not imported: the
# policy package is a room beside the scanner's.
_COLUMNS = "rucio.core.did_meta_plugins.did_column_meta.DidColumnMeta"
DIRECT_PLUGINS = frozenset({
    (_COLUMNS, "rucio.core.did_meta_plugins.json_meta.JSONDidMeta"),
    (_COLUMNS, "rucio_magic_ext.policy.json_meta.PortableJSONDidMeta"),
})


def can_write_directly(session: Session) -> bool:
    """One of ``DIRECT_PLUGINS`` on PostgreSQL: the only set-ups whose rows this module writes."""
    plugins = rucio_internals.metadata_plugins()
    return session.bind is not None and session.bind.dialect.name == "postgresql" and plugins in DIRECT_PLUGINS


def describe_created(files: Sequence[Described], session: Session) -> None:
    """Set the metadata of files whose DIDs were created in this transaction (no metadata row exists yet)."""
    rucio_internals.write_new_did_metadata(files, DID_COLUMN_KEYS, session)
