"""What the project reaches past Rucio's core API for: Rucio's tables and cache regions, each named here once.

Rucio 41 offers no call for these, so each is written against what Rucio's own code does, and
``tests/unit/test_rucio_internals.py`` fails, naming the table or attribute, when a Rucio release changes it:

- ``updated_dids`` rows, deleted after re-evaluating a collection in the same transaction: a file's lock on its
  carrier exists from the commit of its attachment (``tools/upstream/in-transaction-re-evaluation.md``);
- ``dids`` columns and ``did_meta`` rows, written in two statements for a batch of DIDs just created, and the
  configured metadata plugins: Rucio's ``set_dids_metadata_bulk`` goes DID by DID
  (``tools/upstream/bulk-did-metadata.md``);
- the cache regions of four core modules, kept for one transaction (``site_settings_kept``);
- ``did_clause``: a ``(scope, name) IN`` clause on any Rucio table with those columns.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from dogpile.cache.api import NO_VALUE
from dogpile.cache.proxy import ProxyBackend
from rucio.common.types import InternalScope
from sqlalchemy import and_, bindparam, delete, insert, or_, update
from sqlalchemy.orm import Session

from rucio_magic_ext.common import DID, chunks

# -- Rucio's tables -----------------------------------------------------------------------------------------


def did_clause(table: Any, dids: Iterable[DID]) -> Any:
    """``(scope, name) IN dids`` for any Rucio table with scope and name columns."""
    return or_(*(and_(table.scope == InternalScope(scope), table.name == name) for scope, name in dids))


def drop_re_evaluations(collections: Iterable[DID], action: str, session: Session) -> None:
    """Delete the ``updated_dids`` rows of ``collections`` for ``action`` (a ``DIDReEvaluation`` name), once
    the caller has re-evaluated them in this transaction: the judge-evaluator need not do it again (and contend
    with the next batch for the rules)."""
    from rucio.db.sqla import models
    from rucio.db.sqla.constants import DIDReEvaluation

    table = models.UpdatedDID
    for chunk in chunks(list(collections)):
        session.execute(
            delete(table).where(did_clause(table, chunk), table.rule_evaluation_action == DIDReEvaluation[action])
        )


def metadata_plugins() -> tuple[str, ...]:
    """The dotted class names of Rucio's configured DID metadata plugins, in the order Rucio asks them."""
    from rucio.core.did_meta_plugins import METADATA_PLUGIN_MODULES

    return tuple(f"{type(plugin).__module__}.{type(plugin).__qualname__}" for plugin in METADATA_PLUGIN_MODULES)


def metadata_plugin_takes(key: str, session: Session) -> bool:
    """Whether one of Rucio's configured metadata plugins manages ``key`` on this database."""
    from rucio.core.did_meta_plugins import METADATA_PLUGIN_MODULES

    return any(plugin.manages_key(key, session=session) for plugin in METADATA_PLUGIN_MODULES)


def write_new_did_metadata(
    files: Sequence[tuple[str, str, Mapping[str, Any]]], column_keys: Iterable[str], session: Session
) -> None:
    """The rows Rucio's DID-column and JSON plugins would write for DIDs created in this transaction: one UPDATE
    of the ``dids`` columns ``column_keys``, one INSERT of the ``did_meta`` rows holding the other keys."""
    from rucio.db.sqla import models

    if not files:
        return
    dids = models.DataIdentifier.__table__
    columns = sorted(column_keys)
    session.execute(
        update(dids)
        .where(dids.c.scope == bindparam("did_scope"), dids.c.name == bindparam("did_name"))
        .values({column: bindparam(f"new_{column}") for column in columns}),
        [
            {
                "did_scope": InternalScope(scope),
                "did_name": name,
                **{f"new_{column}": meta.get(column) for column in columns},
            }
            for scope, name, meta in files
        ],
    )
    rows = [
        {"scope": InternalScope(scope), "name": name, "meta": extra}
        for scope, name, meta in files
        if (extra := {key: value for key, value in meta.items() if key not in columns})
    ]
    if rows:
        session.execute(insert(models.DidMeta.__table__), rows)


# -- Rucio's cache of site settings, kept for one transaction ------------------------------------------------

#: Rucio's caches of what a site sets up and seldom changes: RSE attributes and names, the config table, naming
#: conventions, RSE expressions. Each new lock asks for two RSE attributes, each message for a config value.
SITE_REGIONS = (
    "rucio.core.rse", "rucio.core.config", "rucio.core.naming_convention", "rucio.core.rse_expression_parser"
)


class _Kept(ProxyBackend):
    """A Rucio cache region's backend, read through; in a thread inside ``site_settings_kept`` it also keeps values."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # dogpile's ProxyBackend.__init__ is unannotated
        self.local = threading.local()

    def _kept(self) -> dict[Any, Any] | None:
        return getattr(self.local, "kept", None)

    def _read(self, key: Any, read: Any) -> Any:
        kept = self._kept()
        if kept is None:
            return read(key)
        if key in kept:
            return kept[key]
        value = read(key)
        if value is not NO_VALUE:
            kept[key] = value
        return value

    def _write(self, key: Any, value: Any, write: Any) -> None:
        write(key, value)
        kept = self._kept()
        if kept is not None:
            kept[key] = value

    def _forget(self, key: Any) -> None:
        kept = self._kept()
        if kept is not None:
            kept.pop(key, None)
            kept.pop(("serialized", key), None)

    def get(self, key: Any) -> Any:
        return self._read(key, self.proxied.get)

    def get_serialized(self, key: Any) -> Any:
        return self._read(("serialized", key), lambda _: self.proxied.get_serialized(key))

    def get_multi(self, keys: Sequence[Any]) -> Any:
        return [self.get(key) for key in keys]

    def get_serialized_multi(self, keys: Sequence[Any]) -> Any:
        return [self.get_serialized(key) for key in keys]

    def set(self, key: Any, value: Any) -> None:
        self._write(key, value, self.proxied.set)

    def set_serialized(self, key: Any, value: Any) -> None:
        self._forget(key)
        self._write(("serialized", key), value, lambda _, v: self.proxied.set_serialized(key, v))

    def set_multi(self, mapping: Mapping[Any, Any]) -> None:
        for key, value in mapping.items():
            self.set(key, value)

    def set_serialized_multi(self, mapping: Mapping[Any, Any]) -> None:
        for key, value in mapping.items():
            self.set_serialized(key, value)

    def delete(self, key: Any) -> None:
        self._forget(key)
        self.proxied.delete(key)

    def delete_multi(self, keys: Sequence[Any]) -> None:
        for key in keys:
            self.delete(key)


_INSTALL = threading.Lock()


def _kept_backends() -> list[_Kept]:
    """The proxies in front of ``SITE_REGIONS``, put there once per process."""
    with _INSTALL:
        proxies = []
        for module in SITE_REGIONS:
            region = importlib.import_module(module).REGION
            if not isinstance(region.backend, _Kept):
                region.wrap(_Kept())
            proxies.append(region.backend)
        return proxies


@contextlib.contextmanager
def site_settings_kept() -> Iterator[None]:
    """Within the block, in this thread, Rucio asks its database (or memcached) for a site setting once.

    Rucio looks up two RSE attributes for each lock it makes and a config value for each message: without
    memcached each is a query that first flushes the session, so a batch's locks are written one statement at a
    time. Rucio keeps these settings in memcached for 15 minutes; keeping them for one transaction is less.
    """
    proxies = _kept_backends()
    outer = [proxy._kept() for proxy in proxies]
    for proxy, kept in zip(proxies, outer):
        proxy.local.kept = {} if kept is None else kept
    try:
        yield
    finally:
        for proxy, kept in zip(proxies, outer):
            proxy.local.kept = kept
