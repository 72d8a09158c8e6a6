"""Rucio's JSON DID metadata on SQLite too, so that one ``[metadata] plugins`` setting serves every database.

Rucio's ``JSONDidMeta`` refuses SQLite, so ``list_dids`` could not filter on ``source`` or a DL3 header there.
On SQLite ``did_meta.meta`` is text holding ``json.dumps`` of the dict; this plugin reads and writes it as such
and filters with Rucio's own ``FilterEngine`` (its JSON comparisons compile to ``JSON_EXTRACT``). On PostgreSQL,
MySQL and Oracle every call goes to Rucio's plugin unchanged. Enable it in ``rucio.cfg`` of the server and of
every daemon: ``[metadata] plugins = rucio_magic_ext.policy.json_meta.PortableJSONDidMeta``.

How a filter value is compared (the same on SQLite and PostgreSQL):

* numbers (``zen_pnt.lte: 40.0``, also ``"40"`` as the CLI sends it) compare as numbers, ``true``/``false``
  as booleans, other strings as text (``*`` is a wildcard with ``=``/``ne``);
* a string that parses with one of Rucio's ``VALID_DATE_FORMATS`` (``2013-10-05T00:00:00.000000Z``,
  ``2013-10-05T00:00:00``, ``2013-10-05 00:00:00``) is compared as an instant: PostgreSQL casts the stored
  string to a timestamp; on SQLite, where Rucio's expression means nothing, both sides go through
  ``julianday()``. Stored values must then be ISO times in UTC (else PostgreSQL fails, SQLite leaves the DID out);
* any other form (``2013-10-05T00:00:00Z``, ``2013-10-05``, ``...+00:00``) is compared as text, which orders as
  time only within one format: against stored ``...00.435217Z`` the bound ``...00Z`` sorts after (``.`` before
  ``Z``), so such a bound errs by less than a second. ``tstart``/``tstop`` are stored as
  ``YYYY-MM-DDTHH:MM:SS.ffffffZ``: a bound in that format selects them exactly.

As Rucio's plugin, ``list_dids`` here ignores ``did_type``, ``ignore_case`` and ``offset``; ``recursive`` is
refused on SQLite.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, cast

from rucio.common import exception
from rucio.core.did_meta_plugins.filter_engine import FilterEngine
from rucio.core.did_meta_plugins.json_meta import JSONDidMeta
from rucio.db.sqla import models
from rucio.db.sqla.session import read_session, stream_session, transactional_session
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

Filters = list[dict[str, Any]]


def _on_sqlite(session: Session) -> bool:
    return session.bind is not None and session.bind.dialect.name == "sqlite"


class PortableJSONDidMeta(JSONDidMeta):
    """Rucio's JSON metadata plugin (named ``JSON`` too), which on SQLite keeps the JSON text itself."""

    @read_session
    def get_metadata(self, scope: Any, name: str, *, session: Session) -> dict[str, Any]:
        if not _on_sqlite(session):
            return cast(dict[str, Any], super().get_metadata(scope, name, session=session))
        row = _row(scope, name, session)
        return _loads(row.meta) if row else {}

    @transactional_session
    def set_metadata_bulk(
        self, scope: Any, name: str, metadata: Mapping[str, Any], recursive: bool = False, *, session: Session
    ) -> None:
        """Merge ``metadata`` into the DID's JSON (``recursive`` is ignored, as by Rucio's plugin)."""
        if not _on_sqlite(session):
            super().set_metadata_bulk(scope, name, metadata, recursive, session=session)
            return
        exists = select(models.DataIdentifier.name).where(
            models.DataIdentifier.scope == scope, models.DataIdentifier.name == name
        )
        if session.execute(exists).first() is None:
            raise exception.DataIdentifierNotFound(f"Data identifier '{scope}:{name}' not found")
        row = _row(scope, name, session)
        if row is None:
            session.add(models.DidMeta(scope=scope, name=name, meta=json.dumps(dict(metadata))))
        else:
            row.meta = json.dumps({**_loads(row.meta), **metadata})
        session.flush()

    @transactional_session
    def delete_metadata(self, scope: Any, name: str, key: str, *, session: Session) -> None:
        if not _on_sqlite(session):
            super().delete_metadata(scope, name, key, session=session)
            return
        row = _row(scope, name, session)
        if row is None:
            raise exception.DataIdentifierNotFound(f"Key not found for data identifier '{scope}:{name}'")
        meta = _loads(row.meta)
        if key not in meta:
            raise exception.KeyNotFound(key)
        del meta[key]
        row.meta = json.dumps(meta)
        session.flush()

    @stream_session
    def list_dids(
        self,
        scope: Any,
        filters: Filters | dict[str, Any],
        did_type: str = "collection",
        ignore_case: bool = False,
        limit: int | None = None,
        offset: int | None = None,
        long: bool = False,
        recursive: bool = False,
        ignore_dids: set[str] | None = None,
        *,
        session: Session,
    ) -> Iterator[Any]:
        if not _on_sqlite(session):
            yield from super().list_dids(
                scope, filters, did_type, ignore_case, limit, offset, long, recursive, ignore_dids, session=session
            )
            return
        if recursive:
            raise exception.UnsupportedOperation("recursive listing by JSON metadata is not supported on SQLite")
        seen = ignore_dids if ignore_dids is not None else set()
        groups = [filters] if isinstance(filters, dict) else filters
        stmt = select(models.DidMeta.scope, models.DidMeta.name).where(
            or_(*(_group_clause(scope, group, session) for group in groups))
        )
        if limit:
            stmt = stmt.limit(limit)
        for did in session.execute(stmt).yield_per(100):
            full = f"{did.scope}:{did.name}"
            if full in seen:  # OR groups may match one DID twice
                continue
            seen.add(full)
            if long:
                yield {"scope": did.scope, "name": did.name, "did_type": None, "bytes": None, "length": None}
            else:
                yield did.name

    @read_session
    def manages_key(self, key: str, *, session: Session) -> bool:
        return _on_sqlite(session) or super().manages_key(key, session=session)


def _row(scope: Any, name: str, session: Session) -> models.DidMeta | None:
    stmt = select(models.DidMeta).where(models.DidMeta.scope == scope, models.DidMeta.name == name)
    return session.execute(stmt).scalar_one_or_none()


def _loads(text: Any) -> dict[str, Any]:
    return json.loads(text) if text else {}


def _group_clause(scope: Any, group: dict[str, Any], session: Session) -> ColumnElement[bool]:
    """One AND group of a filter: Rucio's FilterEngine builds it, but for the values it turned into datetimes,
    which SQLite compares as instants (``julianday``) instead of through Rucio's cast."""
    group = dict(group)  # the engine rewrites old keys (created_after) of what it is given in place
    translated = FilterEngine([group], model_class=models.DidMeta, strict_coerce=False).filters[0]
    times = {
        written: (key, oper, value)  # the engine keeps the group's order
        for written, (key, oper, value) in zip(group, translated)
        if isinstance(key, str) and isinstance(value, datetime)
    }
    rest = {written: value for written, value in group.items() if written not in times}
    where = (
        FilterEngine([rest], model_class=models.DidMeta, strict_coerce=False)
        .create_sqla_query(
            additional_model_attributes=[models.DidMeta.scope, models.DidMeta.name],
            additional_filters=[(models.DidMeta.scope, operator.eq, scope)],
            json_column=models.DidMeta.meta,
            session=session,
        )
        .whereclause
    )
    instants = [
        oper(func.julianday(models.DidMeta.meta[key].as_string()), func.julianday(value.isoformat(sep=" ")))
        for key, oper, value in times.values()
    ]
    return and_(where, *instants)
