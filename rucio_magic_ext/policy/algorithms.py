"""Adapters from Rucio's algorithm signatures to :mod:`rucio_magic_ext.layout`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rucio.common.exception import RucioException

from rucio_magic_ext import layout
from rucio_magic_ext.naming import MagicNameError


def lfn2pfn(scope: str, name: str, rse: str, rse_attrs: dict[str, Any], protocol_attrs: dict[str, Any]) -> str:
    """Deterministic RSEs with ``lfn2pfn_algorithm=magic``: the MAGIC layout, hashed for foreign names."""
    del rse, rse_attrs, protocol_attrs
    return layout.path_of_did(scope, name)


def non_deterministic_pfn(dsn: str, scope: str | None, filename: str) -> str:
    """Non-deterministic destinations with ``naming_convention=magic``: the same layout as deterministic ones,
    with a leading '/' as Rucio's own conventions return it."""
    del dsn
    return "/" + layout.path_of_did(scope or "", filename)


def extract_scope(did: str, scopes: Sequence[str] | None) -> tuple[str, str]:
    """``scope:name`` as usual; a bare MAGIC name (file, run dataset, container) gets its level's scope."""
    if ":" in did:
        scope, name = did.split(":", 1)
        if not scope or not name or ":" in name:
            raise RucioException(f"cannot extract scope and name from {did!r}: expected one 'scope:name'")
        return scope, name
    name = did.rstrip("/")
    try:
        return layout.scope_of_name(name), name
    except MagicNameError as error:
        raise RucioException(f"cannot extract a scope from {did!r}: give scope:name ({error})") from None
