"""MAGIC permissions for a Rucio instance that several experiments share.

Roles, in the MAGIC scopes (``rucio_magic_ext.layout.SCOPES``, ``magic_carrier`` and ``[magic-policy] scopes``):

- root and accounts with the attribute ``admin`` (Rucio's own test of an admin) may do everything;
- ``magic=writer`` accounts add data and rules, and change or delete the rules they own, never another
  account's: a source copy at the observatory may be its only copy;
- the owner of ``magic_carrier`` (the flow's service account) is the only non-admin that touches carrier DIDs
  and their rules, whose deletion makes every source copy in the carrier OBSOLETE;
- ``magic=reader`` only gets signed URLs of embargoed data; every other account is refused.

The observatory, in every scope: an RSE with ``magic=true`` holds files that may have no other copy. Only admins
and the flow register, change, delete or declare replicas there, or put rules there: a replica of another DID
under a MAGIC file's path, or a rule with ``purge_replicas``, would let the reaper delete the MAGIC file.
Declarations that may concern MAGIC replicas elsewhere, and rule comments starting ``magic-policy:`` or
``magic-carrier:`` (the flow's), are theirs too.

A call that mixes MAGIC and foreign DIDs is refused to non-admins. Only admins set ``embargo_until`` and DID
lifetimes. A DID under embargo (its own, or one of a collection above or below it) gets rules only on RSEs of
``[magic-policy] embargo_rse_expression``.

Calls that touch neither a MAGIC scope nor the observatory, or whose arguments do not say enough, return None:
Rucio's generic policy decides. A check never raises. Where Rucio 41 passes a check less than its call carries,
the REST request's body says the rest (``_request_body``); where neither does (``add_bad_dids``), non-admins are
refused. ``NOT_CHECKED`` lists every other action of Rucio 41 and why it cannot put MAGIC bytes at risk.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, cast

from rucio.common.config import config_get
from rucio.common.exception import RucioException
from rucio.common.types import InternalAccount, InternalScope

from rucio_magic_ext.layout import SCOPES
from rucio_magic_ext.trust import normal_path

if TYPE_CHECKING:
    from rucio.core.permission import PermissionResult
    from sqlalchemy.orm import Session

LOGGER = logging.getLogger(__name__)

ROLE_ATTRIBUTE = "magic"
RSE_ATTRIBUTE = "magic"  # set on the observatory's RSEs: only the flow and admins register or put rules there
WRITER = "writer"
READER = "reader"
EMBARGO_KEY = "embargo_until"
CARRIER_SCOPE = "magic_carrier"  # rucio_magic_ext.carrier's scope, owned by the flow's service account
# DID metadata that only admins set: the embargo, and a lifetime (its expiry deletes the DID with its rules).
ADMIN_KEYS = frozenset({EMBARGO_KEY, "lifetime"})
# Rule options that change neither what a rule protects nor for how long: anyone with the MAGIC role may set them.
HARMLESS_RULE_OPTIONS = frozenset({"boost_rule", "priority"})
# Rule comments the flow reads (rucio_magic_ext.replication's policy rules, carrier.model.SOURCE_RULE_COMMENT).
RESERVED_COMMENT_PREFIXES = ("magic-policy:", "magic-carrier:")

def _result(allowed: bool, message: str = "") -> PermissionResult:
    # rucio.core.permission imports this module while it is itself being imported: import late.
    from rucio.core.permission import PermissionResult

    return PermissionResult(allowed, message)


def magic_scopes() -> frozenset[str]:
    """From rucio.cfg only: the schema reads them while Rucio's models, the config table's included, load."""
    extra = config_get("magic-policy", "scopes", raise_exception=False, default="", check_config_table=False)
    return frozenset(SCOPES) | {CARRIER_SCOPE} | {scope.strip() for scope in extra.split(",") if scope.strip()}


def embargo_rse_expression() -> str | None:
    return config_get("magic-policy", "embargo_rse_expression", raise_exception=False, default=None) or None


def _external(scope: Any) -> str:
    return scope.external if isinstance(scope, InternalScope) else str(scope)


def _account_name(account: Any) -> str | None:
    """An owner argument's name; None when none is named (Rucio's gateway wraps a missing one as well)."""
    name = account.external if isinstance(account, InternalAccount) else account
    return str(name) if name not in (None, "") else None


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The dict items of a list argument; anything else (None, a string, a number) gives none."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, (list, tuple)) else []


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class _Context:
    """What one permission check needs to know, each fact looked up at most once."""

    def __init__(self, issuer: InternalAccount, session: Session) -> None:
        self.issuer, self.session = issuer, session
        self._attributes: dict[str, str] | None = None
        self._owns_carrier: bool | None = None
        self._flow_account: str | None = None

    @property
    def attributes(self) -> dict[str, str]:
        if self._attributes is None:
            from rucio.core.account import list_account_attributes

            try:
                rows = list_account_attributes(self.issuer, session=self.session)
            except RucioException:
                rows = []  # an account that does not exist has no role
            self._attributes = {row["key"]: str(row["value"]) for row in rows}
        return self._attributes

    @property
    def is_admin(self) -> bool:
        """As Rucio's generic policy: root, or an account that has the attribute ``admin``."""
        return self.issuer.external == "root" or "admin" in self.attributes

    @property
    def role(self) -> str | None:
        return self.attributes.get(ROLE_ATTRIBUTE)

    @property
    def owns_carrier(self) -> bool:
        if self._owns_carrier is None:
            from rucio.core.scope import is_scope_owner

            scope = InternalScope(CARRIER_SCOPE, vo=self.issuer.vo)
            self._owns_carrier = bool(is_scope_owner(scope, self.issuer, session=self.session))
        return self._owns_carrier

    def scope(self, scope: Any) -> InternalScope:
        return scope if isinstance(scope, InternalScope) else InternalScope(str(scope), vo=self.issuer.vo)

    def judge(self, scopes: Iterable[Any], what: str) -> PermissionResult | None:
        """Who may act on DIDs of these scopes: None when none is MAGIC's (Rucio's generic policy decides)."""
        touched = {_external(scope) for scope in scopes}
        magic = touched & magic_scopes()
        if not magic:
            return None
        if self.is_admin:
            return _result(True)
        foreign = touched - magic
        if foreign:
            return _result(
                False,
                f"{what} mixes the MAGIC scope(s) {', '.join(sorted(magic))} with the scope(s) "
                f"{', '.join(sorted(foreign))}: a MAGIC role does not reach outside the MAGIC scopes, split the call",
            )
        if CARRIER_SCOPE in magic and not self.owns_carrier:
            return _result(
                False,
                f"{what} in {CARRIER_SCOPE}: only the account that owns it (the flow's service account) and admins "
                f"change carriers, whose rules keep the observatory's only copies",
            )
        if magic - {CARRIER_SCOPE} and self.role != WRITER:
            return _result(
                False,
                f"{what} in the MAGIC scope(s) {', '.join(sorted(magic))} needs the account attribute "
                f"{ROLE_ATTRIBUTE}={WRITER} (account {self.issuer.external} has "
                f"{ROLE_ATTRIBUTE}={self.role or 'nothing'})",
            )
        return _result(True)

    def refuse_keys(self, keys: Iterable[Any], where: str) -> PermissionResult | None:
        """Embargo and lifetime are admins' decisions: a writer could otherwise lift an embargo or expire data."""
        reserved = sorted(ADMIN_KEYS & {str(key) for key in keys})
        if not reserved or self.is_admin:
            return None
        return _result(False, f"setting {', '.join(reserved)} of {where} needs the account attribute admin")

    def replica_rse(self, rse_id: Any, what: str) -> PermissionResult | None:
        """Replicas made with DIDs or attachments in MAGIC scopes: only at the observatory, where the flow is let in."""
        if rse_id is None or self.is_admin or _rse_attribute(rse_id, self.session):
            return None
        return _result(
            False, f"{what} creates replicas, which MAGIC writers register only on RSEs with {RSE_ATTRIBUTE}=true"
        )

    @property
    def flow_account(self) -> str | None:
        """The owner of ``magic_carrier``: DIDs and rules it owns are the ones the flow trusts as its own."""
        if self._flow_account is None:
            from rucio.db.sqla.models import Scope
            from sqlalchemy import select

            query = select(Scope.account).where(Scope.scope == self.scope(CARRIER_SCOPE))
            owner = self.session.execute(query).scalar()
            self._flow_account = owner.external if owner is not None else ""
        return self._flow_account or None

    @property
    def is_flow(self) -> bool:
        return self.is_admin or self.owns_carrier

    def observatory(self, rse_ids: Iterable[Any], what: str) -> PermissionResult | None:
        """Refuses ``what`` at an RSE with ``magic=true`` to anyone but the flow and admins."""
        if not any(rse_id is not None for rse_id in rse_ids):
            return None
        names = _observatory_names(rse_ids, self.session)
        if not names or self.is_flow:
            return None
        return _result(
            False,
            f"{what} at {', '.join(sorted(names))}: an RSE with {RSE_ATTRIBUTE}=true is the observatory, where only "
            f"the flow's service account (the owner of {CARRIER_SCOPE}) and admins register or change replicas, "
            f"declare them or put rules, since a file there may have no other copy",
        )

    def observatory_expression(self, expression: Any, what: str) -> PermissionResult | None:
        """A rule whose RSE expression includes the observatory: the flow's and admins' only."""
        return self.observatory(_expression_rses(expression, self.session) or [], what)

    def reserved_comment(self, comment: Any, what: str) -> PermissionResult | None:
        """Only the flow writes the comments the flow reads."""
        if not isinstance(comment, str) or self.is_flow:
            return None
        if not comment.strip().lower().startswith(RESERVED_COMMENT_PREFIXES):
            return None
        return _result(
            False,
            f"{what} with the comment {comment!r}: comments starting with {' or '.join(RESERVED_COMMENT_PREFIXES)} "
            f"are the flow's, written only by its service account (the owner of {CARRIER_SCOPE}) and admins",
        )

    def refuse_lifetime(self, lifetime: Any, where: str) -> PermissionResult | None:
        """The ``lifetime`` argument of a new DID: its expiry deletes the DID with every rule on it."""
        if lifetime is None or self.is_admin:
            return None
        return _result(False, f"giving {where} a lifetime ({lifetime} s) needs the account attribute admin")

    def owner(self, account: Any, where: str) -> PermissionResult | None:
        """A new DID owned by another account: the flow trusts what its account owns, so only admins name one."""
        name = _account_name(account)
        if name is None or self.is_admin or name == self.issuer.external:
            return None
        return _result(
            False,
            f"making {where} owned by account {name} needs the account attribute admin: the flow "
            f"trusts only what its own account owns",
        )


def _is_uuid(value: Any) -> bool:
    """Rucio's ids are UUIDs: anything else would fail in the database, not just find nothing."""
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _rse_attribute(rse_id: Any, session: Session) -> bool:
    from rucio.core.rse import get_rse_attribute

    if not _is_uuid(rse_id):
        return False
    try:
        return bool(get_rse_attribute(rse_id, RSE_ATTRIBUTE, session=session))
    except RucioException:
        return False


def _observatory_names(rse_ids: Iterable[Any], session: Session) -> list[str]:
    from rucio.core.rse import get_rse_name

    names = set()
    for rse_id in {str(rse_id) for rse_id in rse_ids if rse_id is not None}:
        if _rse_attribute(rse_id, session):
            try:
                names.add(get_rse_name(rse_id, session=session))
            except RucioException:
                names.add(rse_id)
    return sorted(names)


def _expression_rses(expression: Any, session: Session, key: str = "id") -> list[str] | None:
    """The RSEs (``key``: ids or names) of an expression; None when it names none (the operation then fails on it)."""
    from rucio.core.rse_expression_parser import parse_expression

    if not isinstance(expression, str) or not expression:
        return None
    try:
        return [rse[key] for rse in parse_expression(expression, session=session)]
    except RucioException:
        return None


def _rse_id(context: _Context, rse: Any) -> str | None:
    from rucio.core.rse import get_rse_id

    if not isinstance(rse, str) or not rse:
        return None
    try:
        return cast(str, get_rse_id(rse=rse, vo=context.issuer.vo, session=context.session))
    except RucioException:
        return None  # an unknown RSE fails the operation itself


def _holds_magic(context: _Context, rse_id: str) -> bool:
    """The observatory, or an RSE where some replica of a MAGIC scope lies."""
    from rucio.db.sqla.models import RSEFileAssociation as Replica
    from sqlalchemy import select

    if _rse_attribute(rse_id, context.session):
        return True
    scopes = [context.scope(scope) for scope in magic_scopes()]
    query = select(Replica.scope).where(Replica.rse_id == rse_id, Replica.scope.in_(scopes)).limit(1)
    return context.session.execute(query).first() is not None


def _pfn_rse_ids(context: _Context, pfns: list[str]) -> list[str] | None:
    """The RSEs these PFNs lie at, as Rucio's declarations find them; None when Rucio cannot tell either."""
    from rucio.core.replica import get_pfn_to_rse

    try:
        _, by_rse, _ = get_pfn_to_rse(pfns, vo=context.issuer.vo, session=context.session)
    except (RucioException, ValueError, IndexError):
        return None
    return [str(rse_id) for rse_id in by_rse]


def _request_body() -> dict[str, Any]:
    """The JSON body of the REST request being checked ({} outside Rucio's REST server): Rucio 41 passes some
    arguments to no permission, but its REST server has read them from this body (Flask keeps it) before."""
    try:
        import flask
    except ImportError:
        return {}
    if not flask.has_request_context():
        return {}
    try:
        body = json.loads(flask.request.get_data(as_text=True) or "null")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _first(*results: PermissionResult | None) -> PermissionResult | None:
    """The first refusal, if any. (A refusal is falsy: ``refusal or verdict`` would drop it.)"""
    return next((result for result in results if result is not None and not result), None)


def _unless(refusal: PermissionResult | None, verdict: PermissionResult | None) -> PermissionResult | None:
    return verdict if refusal is None else refusal


# --- embargo -------------------------------------------------------------------------------------------


def _embargo_end(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        end = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return datetime.max.replace(tzinfo=timezone.utc)  # an unreadable embargo holds until an admin mends it
    return end if end.tzinfo else end.replace(tzinfo=timezone.utc)


def _related(dids: list[tuple[InternalScope, str]]) -> Any:
    """The DIDs themselves and every collection above and DID below them, as one recursive query."""
    from rucio.db.sqla.models import DataIdentifierAssociation as Contents
    from sqlalchemy import and_, literal, or_, select, union, union_all

    def matching(scope_column: Any, name_column: Any) -> Any:
        return or_(*(and_(scope_column == scope, name_column == name) for scope, name in dids))

    down = (
        select(Contents.child_scope.label("scope"), Contents.child_name.label("name"))
        .where(matching(Contents.scope, Contents.name))
        .cte("magic_embargo_down", recursive=True)
    )
    down = down.union(
        select(Contents.child_scope, Contents.child_name).join(
            down, and_(Contents.scope == down.c.scope, Contents.name == down.c.name)
        )
    )
    up = (
        select(Contents.scope.label("scope"), Contents.name.label("name"))
        .where(matching(Contents.child_scope, Contents.child_name))
        .cte("magic_embargo_up", recursive=True)
    )
    up = up.union(
        select(Contents.scope, Contents.name).join(
            up, and_(Contents.child_scope == up.c.scope, Contents.child_name == up.c.name)
        )
    )
    seeds = [select(literal(scope, Contents.scope.type), literal(name, Contents.name.type)) for scope, name in dids]
    given = union_all(*seeds).subquery().select()
    return union(select(down.c.scope, down.c.name), select(up.c.scope, up.c.name), given)


def embargoed(context: _Context, dids: Iterable[dict[str, Any]]) -> list[str]:
    """The MAGIC DIDs under embargo among these DIDs and the collections above and DIDs below them."""
    from rucio.db.sqla.models import DidMeta
    from sqlalchemy import and_, select

    seeds = [(context.scope(did.get("scope")), str(did.get("name"))) for did in dids if did.get("name")]
    if not seeds:
        return []
    related = _related(seeds).subquery()
    scopes = [context.scope(scope) for scope in magic_scopes()]
    query = (
        select(DidMeta.scope, DidMeta.name, DidMeta.meta[EMBARGO_KEY].as_string())
        .join(related, and_(DidMeta.scope == related.c.scope, DidMeta.name == related.c.name))
        .where(DidMeta.scope.in_(scopes), DidMeta.meta[EMBARGO_KEY].as_string().is_not(None))
    )
    now = datetime.now(timezone.utc)
    found = []
    for scope, name, value in context.session.execute(query):
        until = _embargo_end(value)
        if until is not None and until > now:
            found.append(f"{_external(scope)}:{name} (embargoed until {until:%Y-%m-%d})")
    return sorted(found)


def _outside_embargo(expression: Any, session: Session) -> list[str] | None:
    """RSEs of an expression outside ``embargo_rse_expression``; None when the expression names no RSE."""
    targets = _expression_rses(expression, session, "rse")
    if targets is None:
        return None
    return sorted(set(targets) - set(_expression_rses(embargo_rse_expression(), session, "rse") or []))


def _embargo_refusal(context: _Context, dids: list[dict[str, Any]], expression: Any) -> PermissionResult | None:
    if context.is_admin:
        return None
    outside = _outside_embargo(expression, context.session)
    if not outside:
        return None
    found = embargoed(context, dids)
    if not found:
        return None
    return _result(
        False,
        f"{', '.join(found)}: embargoed data may only be replicated within [magic-policy] "
        f"embargo_rse_expression={embargo_rse_expression() or '(none set)'}; {', '.join(outside)} lie(s) outside",
    )


def _inline_rules(context: _Context, rules: Any, where: str) -> PermissionResult | None:
    """Rules given with new DIDs. The check cannot see the content that comes with them (Rucio passes add_did's
    ``dids`` to no permission), so a non-admin's inline rule must stay where embargoed data may go anyway."""
    if context.is_admin:
        return None
    for rule in _dicts(rules):
        if rule.get("account") != context.issuer:
            return _result(False, f"a rule given with {where} must be the issuer's own")
        outside = _outside_embargo(rule.get("rse_expression"), context.session)
        if outside:
            return _result(
                False,
                f"a rule given with {where} may only name RSEs of [magic-policy] embargo_rse_expression "
                f"({', '.join(outside)} lie(s) outside); add it with add_rule once the DIDs exist",
            )
    return None


# --- one function per action: (context, kwargs) -> result, or None for Rucio's generic policy -------


def _guard_rules(context: _Context, rules: Any, where: str) -> PermissionResult | None:
    """Rules given with new DIDs, in every scope: none at the observatory, none with the flow's comments."""
    for rule in _dicts(rules):
        what = f"a rule given with {where}"
        refusal = _first(
            context.observatory_expression(rule.get("rse_expression"), what),
            context.reserved_comment(rule.get("comment"), what),
        )
        if refusal is not None:
            return refusal
    return None


def _guard_new_did(context: _Context, did: dict[str, Any], rse_id: Any, where: str) -> PermissionResult | None:
    """What the observatory guard asks of one new DID in any scope: its replicas, rules and owner."""
    return _first(
        context.observatory([rse_id], f"adding {where} with replicas"),
        _guard_rules(context, did.get("rules"), where),
        context.owner(did.get("account"), where) if _names_flow(context, did.get("account")) else None,
    )


def _names_flow(context: _Context, account: Any) -> bool:
    name = _account_name(account)
    return name is not None and not context.is_admin and name == context.flow_account


def _magic_did(context: _Context, did: dict[str, Any], where: str) -> PermissionResult | None:
    """What only admins set on a new DID of a MAGIC scope: embargo and lifetime (as metadata or argument), rules
    outside the embargo's RSEs, another owner."""
    return _first(
        context.refuse_keys(_mapping(did.get("meta")), where),
        context.refuse_lifetime(did.get("lifetime"), where),
        _inline_rules(context, did.get("rules"), where),
        context.owner(did.get("account"), where),
    )


def _add_did(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    """Rucio 41 passes ``add_did`` neither its content nor the RSE where that content's replicas go: the RSE is
    read from the REST request (``_request_body``)."""
    where = f"{_external(kwargs.get('scope'))}:{kwargs.get('name')}"
    rse_id = _rse_id(context, _request_body().get("rse")) if kwargs else None
    refusal = _guard_new_did(context, kwargs, rse_id, where)
    if refusal is not None:
        return refusal
    verdict = context.judge([kwargs.get("scope")], "adding DIDs")
    if not verdict or context.is_admin:
        return verdict
    return _unless(_magic_did(context, kwargs, where), verdict)


def _add_dids(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    """Each DID may name its RSE (``rse_id``); new files of ``add_replicas`` come with the call's ``rse_id``."""
    dids = _dicts(kwargs.get("dids"))
    for did in dids:
        where = f"{_external(did.get('scope'))}:{did.get('name')}"
        refusal = _guard_new_did(context, did, did.get("rse_id", kwargs.get("rse_id")), where)
        if refusal is not None:
            return refusal
    scopes = [did.get("scope") for did in dids]
    scopes += [child.get("scope") for did in dids for child in _dicts(did.get("dids"))]
    verdict = context.judge(scopes, "adding DIDs")
    if not verdict or context.is_admin:
        return verdict
    for did in dids:
        where = f"{_external(did.get('scope'))}:{did.get('name')}"
        refusal = _first(_magic_did(context, did, where), context.replica_rse(did.get("rse_id"), f"adding {where}"))
        if refusal is not None:
            return refusal
    return verdict


def _shared_paths(context: _Context, rse_id: Any, files: list[dict[str, Any]], what: str) -> PermissionResult | None:
    """At a non-deterministic RSE a replica's path is one file on disk: a new replica may not name a path that
    another DID's replica names (the reaper deleting one would delete both), nor may two new ones. Checked for
    every account, admins and the flow included, on the path as Rucio stores it (the PFN parsed by the RSE's
    protocol). A path spelt otherwise than its one spelling (``a//b``, ``a/./b``) is refused: so every stored path
    is spelt one way, and the flow's own look-ups by path (``rucio_db.replicas_on_paths``) see every replica."""
    named = [(file, str(file["pfn"])) for file in files if file.get("pfn")]
    if not named or not _is_uuid(rse_id):
        return None
    from rucio.core.rse import get_rse
    from rucio.rse import rsemanager

    from rucio_magic_ext import rucio_db

    if get_rse(rse_id, session=context.session)["deterministic"]:
        return None
    settings = rsemanager.get_rse_info(rse_id=rse_id, session=context.session)
    protocols: dict[str, Any] = {}
    paths: dict[str, tuple[str, str]] = {}
    for file, pfn in named:
        scheme = pfn.split(":")[0]
        protocol = protocols.setdefault(scheme, rsemanager.create_protocol(settings, "write", scheme=scheme))
        parsed = protocol.parse_pfns([pfn])[pfn]
        stored = f"{parsed['path']}{parsed['name']}".lstrip("/")
        if normal_path(stored) != stored:
            return _result(False, f"{what}: {pfn} spells its path otherwise than {normal_path(stored)}")
        did = (_external(file.get("scope")), str(file.get("name")))
        if paths.setdefault(stored, did) != did:
            return _result(False, f"{what}: {paths[stored][0]}:{paths[stored][1]} and {did[0]}:{did[1]} name one path")
    sharers = rucio_db.replicas_on_paths(settings["rse"], list(paths), context.session)
    for path, did in paths.items():
        others = sorted(sharers.get(path, set()) - {did})
        if others:
            return _result(
                False,
                f"{what}: path {path} at {settings['rse']} is already the replica of {others[0][0]}:{others[0][1]}; "
                f"a second DID there would let the reaper delete its bytes",
            )
    return None


def _add_replicas(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    """Rucio names the RSE here, not the files (new ones go to add_dids)."""
    rse_id = kwargs.get("rse_id")
    files = _dicts(kwargs.get("files")) or _dicts(_request_body().get("files"))
    refusal = _first(
        context.observatory([rse_id], "registering replicas"),
        _shared_paths(context, rse_id, files, "registering replicas"),
    )
    if refusal is not None:
        return refusal
    verdict = context.judge([did.get("scope") for did in _dicts(kwargs.get("dids"))], "adding replicas")
    if (verdict is not None and not verdict) or context.is_admin:
        return verdict
    if rse_id is not None and _rse_attribute(rse_id, context.session):
        return _result(True)  # the flow's service account (the guard let no one else through)
    return verdict


def _attachment_accounts(attachment: dict[str, Any]) -> list[Any]:
    """The owners an attachment names: of the attachment (its new files) and of each new file."""
    return [attachment.get("account"), *(did.get("account") for did in _dicts(attachment.get("dids")))]


def _guard_attachment(context: _Context, attachment: dict[str, Any], where: str) -> PermissionResult | None:
    owned = [account for account in _attachment_accounts(attachment) if _names_flow(context, account)]
    rse_id = attachment.get("rse_id")
    return _first(
        context.observatory([rse_id], f"attaching to {where} with replicas"),
        _shared_paths(context, rse_id, _dicts(attachment.get("dids")), f"attaching to {where} with replicas"),
        *(context.owner(account, f"files attached to {where}") for account in owned),
    )


def _magic_attachment(context: _Context, attachment: dict[str, Any], where: str) -> PermissionResult | None:
    return _first(
        context.replica_rse(attachment.get("rse_id"), "attaching with an RSE"),
        *(context.owner(account, f"files attached to {where}") for account in _attachment_accounts(attachment)),
    )


def _attach_dids(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    """One attachment, judged as each of ``attach_dids_to_dids``."""
    attachment = {**_mapping(kwargs.get("attachment")), "scope": kwargs.get("scope"), "name": kwargs.get("name")}
    return _attach_dids_to_dids(context, {"attachments": [attachment]})


def _attach_dids_to_dids(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    attachments = _dicts(kwargs.get("attachments"))
    places = [
        (attachment, f"{_external(attachment.get('scope'))}:{attachment.get('name')}")
        for attachment in attachments
    ]
    refusal = _first(*(_guard_attachment(context, attachment, where) for attachment, where in places))
    if refusal is not None:
        return refusal
    scopes = []
    for attachment in attachments:
        scopes += [attachment.get("scope"), *(did.get("scope") for did in _dicts(attachment.get("dids")))]
    verdict = context.judge(scopes, "attaching DIDs")
    if not verdict or context.is_admin:
        return verdict
    return _unless(_first(*(_magic_attachment(context, attachment, where) for attachment, where in places)), verdict)


def _detach_dids(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    """Detaching takes a file out of the rules of the collection and of every collection above it."""
    scope, name = kwargs.get("scope"), kwargs.get("name")
    children = [did.get("scope") for did in _dicts(kwargs.get("dids"))]
    verdict = context.judge([scope, *children], "detaching DIDs")
    if not verdict or context.is_admin or _external(scope) == CARRIER_SCOPE or not name:
        return verdict
    foreign = _foreign_rules(context, context.scope(scope), str(name))
    if foreign:
        return _result(
            False,
            f"detaching DIDs from {_external(scope)}:{name} would weaken rule(s) of other accounts "
            f"({', '.join(foreign)}) on it or on a collection above it",
        )
    return verdict


def _foreign_rules(context: _Context, scope: InternalScope, name: str) -> list[str]:
    from rucio.core.did import list_all_parent_dids
    from rucio.core.rule import list_rules

    parents = list_all_parent_dids(scope, name, session=context.session)
    collections = [(scope, name), *((parent["scope"], parent["name"]) for parent in parents)]
    return [
        f"{rule['id']} of {rule['account'].external}"
        for collection_scope, collection_name in collections
        for rule in list_rules({"scope": collection_scope, "name": collection_name}, session=context.session)
        if rule["account"] != context.issuer
    ]


def _set_metadata(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    verdict = context.judge([kwargs.get("scope")], "setting metadata")
    if not verdict:
        return verdict
    keys = [kwargs.get("key")] if "key" in kwargs else list(_mapping(kwargs.get("meta")))
    return _unless(context.refuse_keys(keys, f"{_external(kwargs.get('scope'))}:{kwargs.get('name')}"), verdict)


def _set_status(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    return context.judge([kwargs.get("scope")], "changing the status of DIDs")


def _add_rule(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    """A writer's own rules are then judged by Rucio's generic policy (the issuer's, not locked): None."""
    dids = _dicts(kwargs.get("dids"))
    verdict = context.judge([did.get("scope") for did in dids], "adding rules")
    if (verdict is not None and not verdict) or context.is_admin:
        return verdict
    # Foreign DIDs too: a foreign collection may hold embargoed MAGIC data (add_did's content is never checked).
    return _first(
        _embargo_refusal(context, dids, kwargs.get("rse_expression")),
        context.observatory_expression(kwargs.get("rse_expression"), "adding a rule"),
        context.reserved_comment(kwargs.get("comment"), "adding a rule"),
    )


def _rule_of(context: _Context, kwargs: dict[str, Any]) -> dict[str, Any] | None:
    from rucio.core.rule import get_rule

    rule_id = kwargs.get("rule_id")
    if not rule_id or not _is_uuid(rule_id):
        return None
    try:
        return cast(dict[str, Any], get_rule(str(rule_id), session=context.session))
    except RucioException:
        return None  # a missing rule is reported by the operation itself


def _on_rule(
    what: str,
    may_change: Callable[[_Context, dict[str, Any], dict[str, Any]], PermissionResult | None],
    everywhere: Callable[[_Context, dict[str, Any]], PermissionResult | None] = lambda context, kwargs: None,
) -> Callable[[_Context, dict[str, Any]], PermissionResult | None]:
    """Rule changes: admins, the carrier's owner in its scope, a writer on its own rules; ``may_change`` says what
    else holds for this action in MAGIC scopes (a harmless option on another's rule, the embargo of a moved rule),
    ``everywhere`` what holds in every scope (the observatory, the flow's comments)."""

    def check(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
        rule = _rule_of(context, kwargs)
        if rule is None:
            return None
        refusal = everywhere(context, kwargs)
        if refusal is not None:
            return refusal
        verdict = context.judge([rule["scope"]], what)
        if not verdict or context.is_admin:
            return verdict
        return _unless(may_change(context, kwargs, rule), verdict)

    return check


def _update_everywhere(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    return context.reserved_comment(_mapping(kwargs.get("options")).get("comment"), "updating a rule")


def _move_everywhere(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    return _first(
        context.observatory_expression(kwargs.get("rse_expression"), "moving a rule"),
        context.reserved_comment(_mapping(kwargs.get("override")).get("comment"), "moving a rule"),
    )


def _owned(context: _Context, rule: dict[str, Any], what: str) -> PermissionResult | None:
    if _external(rule["scope"]) == CARRIER_SCOPE or rule["account"] == context.issuer:
        return None
    return _result(
        False,
        f"{what} {rule['id']} of account {rule['account'].external}: MAGIC writers remove or change only their "
        f"own rules (admins decide on others')",
    )


def _keeps_ownership(options: dict[str, Any], what: str) -> PermissionResult | None:
    """Locked rules and rules handed to another account are admins' business, as in Rucio's add_rule."""
    if options.get("locked") is True or "account" in options:
        return _result(False, f"{what}: locking a rule or giving it to another account needs the attribute admin")
    return None


def _may_update(context: _Context, kwargs: dict[str, Any], rule: dict[str, Any]) -> PermissionResult | None:
    options = _mapping(kwargs.get("options"))
    if options and set(options) <= HARMLESS_RULE_OPTIONS:
        return None
    return _first(_owned(context, rule, "updating rule"), _keeps_ownership(options, "updating a rule"))


def _may_move(context: _Context, kwargs: dict[str, Any], rule: dict[str, Any]) -> PermissionResult | None:
    did = {"scope": rule["scope"], "name": rule["name"]}
    return _first(
        _owned(context, rule, "moving rule"),
        _keeps_ownership(_mapping(kwargs.get("override")), "moving a rule"),
        _embargo_refusal(context, [did], kwargs.get("rse_expression")),
    )


def _get_signed_url(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    # Rucio 41 passes no DID here; when a caller does (see tools/upstream), embargo applies.
    dids = _dicts(kwargs.get("dids")) or ([kwargs] if "scope" in kwargs and "name" in kwargs else [])
    if context.is_admin or context.role in (WRITER, READER):
        return None
    found = embargoed(context, dids)
    if found:
        return _result(
            False, f"{', '.join(found)}: signed URLs for embargoed data need the account attribute {ROLE_ATTRIBUTE}"
        )
    return None


# --- declarations Rucio's daemons act on, and replicas changed by name ---------------------------------


def _magic_rses(context: _Context, rse_ids: Iterable[Any]) -> list[str]:
    """Those RSEs that are the observatory or hold MAGIC replicas: a declaration there may concern MAGIC data."""
    return sorted({str(rse_id) for rse_id in rse_ids if rse_id is not None and _holds_magic(context, str(rse_id))})


def _refuse_declaration(context: _Context, what: str, why: str) -> PermissionResult | None:
    if context.is_flow:
        return None
    return _result(
        False,
        f"{what}: {why}; Rucio's daemons act on such declarations (the necromancer, the replica recoverer, the "
        f"reapers), so only the flow's service account (the owner of {CARRIER_SCOPE}) and admins make them",
    )


def _declare_bad(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    """Rucio asks once per RSE of the declaration (``rse_id``)."""
    rse_id = kwargs.get("rse_id")
    names = _observatory_names([rse_id], context.session)
    if names:
        return _refuse_declaration(context, f"declaring replicas at {', '.join(names)} bad", "it is the observatory")
    if rse_id is not None and _is_uuid(rse_id) and _magic_rses(context, [rse_id]):
        return _refuse_declaration(context, "declaring replicas bad there", "the RSE holds MAGIC replicas")
    return None


def _declare_pfns(context: _Context, pfns: Any, what: str) -> PermissionResult | None:
    """PFNs at the observatory, or at an RSE that holds MAGIC replicas: a PFN does not say whose file it is."""
    if not isinstance(pfns, list) or not pfns or context.is_flow:
        return None
    rse_ids = _pfn_rse_ids(context, [str(pfn) for pfn in pfns])
    if rse_ids is None:
        return None  # Rucio cannot place them either: the declaration fails or declares nothing
    if _magic_rses(context, rse_ids):
        return _refuse_declaration(context, what, "the PFNs lie at the observatory or where MAGIC replicas lie")
    return None


def _declare_suspicious(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    """Rucio 41 passes nothing here (``kwargs`` is empty); its REST request carries the PFNs."""
    pfns = kwargs.get("pfns", _request_body().get("pfns"))
    return _declare_pfns(context, pfns, "declaring replicas suspicious")


def _add_bad_pfns(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    """Rucio 41 passes only ``state`` (``add_bad_pfns``, and ``add_bad_dids`` with the same action): neither the
    PFNs nor the RSE. The PFNs of the REST request decide where there are some; a call without them (bad DIDs, by
    RSE name) may concern MAGIC replicas, so only the flow and admins make it."""
    if "state" not in kwargs and "pfns" not in kwargs:
        return None
    pfns = kwargs.get("pfns", _request_body().get("pfns"))
    if isinstance(pfns, list) and pfns:
        return _declare_pfns(context, pfns, f"declaring PFNs {kwargs.get('state', '')}".rstrip())
    return _refuse_declaration(context, "declaring bad DIDs", "Rucio does not say at which RSE")


def _body_replicas(context: _Context, kwargs: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """The RSE ids and scopes of the replicas a call names, from its arguments or its REST request."""
    body = _request_body()
    replicas = _dicts(kwargs.get("replicas", body.get("replicas")))
    rse_ids = [kwargs.get("rse_id"), body.get("rse_id"), _rse_id(context, body.get("rse"))]
    rse_ids += [replica.get("rse_id") or _rse_id(context, replica.get("rse")) for replica in replicas]
    return [rse_id for rse_id in rse_ids if rse_id], [replica.get("scope") for replica in replicas]


def _named_replicas(what: str) -> Callable[[_Context, dict[str, Any]], PermissionResult | None]:
    """``set_tombstone`` and ``quarantine_file_replicas``: Rucio 41 passes nothing, its REST request names the
    replicas. A tombstone or a quarantine at the observatory, or on MAGIC replicas, is the reaper's cue."""

    def check(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
        rse_ids, scopes = _body_replicas(context, kwargs)
        if not rse_ids and not scopes:
            return None
        refusal = context.observatory(rse_ids, what)
        if refusal is not None:
            return refusal
        magic = {_external(scope) for scope in scopes} & magic_scopes()
        if magic and not context.is_flow:
            return _refuse_declaration(context, what, f"the replicas are MAGIC data ({', '.join(sorted(magic))})")
        return None

    return check


def _changed_replicas(what: str) -> Callable[[_Context, dict[str, Any]], PermissionResult | None]:
    """``delete_replicas`` and ``update_replicas_states``: Rucio names the RSE."""
    return lambda context, kwargs: context.observatory([kwargs.get("rse_id")], what)


ACTIONS: dict[str, Callable[[_Context, dict[str, Any]], PermissionResult | None]] = {
    "add_did": _add_did,
    "add_dids": _add_dids,
    "add_replicas": _add_replicas,
    "attach_dids": _attach_dids,
    "attach_dids_to_dids": _attach_dids_to_dids,
    "detach_dids": _detach_dids,
    "set_metadata": _set_metadata,
    "set_metadata_bulk": _set_metadata,
    "set_status": _set_status,
    "add_rule": _add_rule,
    "del_rule": _on_rule("deleting rules", lambda context, kwargs, rule: _owned(context, rule, "deleting rule")),
    "update_rule": _on_rule("updating rules", _may_update, _update_everywhere),

    "reduce_rule": _on_rule("reducing rules", lambda context, kwargs, rule: _owned(context, rule, "reducing rule")),
    "move_rule": _on_rule("moving rules", _may_move, _move_everywhere),
    "get_signed_url": _get_signed_url,
    "delete_replicas": _changed_replicas("deleting replicas"),
    "update_replicas_states": _changed_replicas("changing the state of replicas"),
    "declare_bad_file_replicas": _declare_bad,
    "declare_suspicious_file_replicas": _declare_suspicious,
    "add_bad_pfns": _add_bad_pfns,
    "set_tombstone": _named_replicas("setting a tombstone"),
    "quarantine_file_replicas": _named_replicas("quarantining replicas"),
}

_ADMINS = "only admins in Rucio's generic policy"
# Every other action of Rucio 41, and why it cannot put MAGIC bytes at risk (tests/unit/test_permission_actions.py
# fails on an action that is in neither table). Those "only admins" are held to it against Rucio's generic policy.
NOT_CHECKED: dict[str, str] = {
    **dict.fromkeys(
        ("get_auth_token_user_pass", "get_auth_token_gss", "get_auth_token_x509", "get_auth_token_ssh"),
        "authentication: who an account is, not what it may do",
    ),
    **dict.fromkeys(("add_account", "del_account", "update_account"), f"accounts: {_ADMINS} (root for some)"),
    **dict.fromkeys(
        ("add_account_identity", "del_account_identity"), f"identities: {_ADMINS}; a login changes no data"
    ),
    "del_identity": "an account's own identities: a login changes no data",
    **dict.fromkeys(("add_attribute", "del_attribute"), f"account attributes (the MAGIC roles among them): {_ADMINS}"),
    **dict.fromkeys(("add_scope", "update_scope"), f"scopes and their owners: {_ADMINS} (and the owner)"),
    **dict.fromkeys(
        (
            "add_rse", "update_rse", "del_rse", "add_protocol", "del_protocol", "update_protocol",
            "add_rse_attribute", "del_rse_attribute", "add_qos_policy", "delete_qos_policy", "set_rse_usage",
            "set_rse_limits", "delete_rse_limits", "add_distance", "update_distance", "delete_distance", "import",
        ),
        f"RSE settings (the observatory's magic=true, greedyDeletion, protocols among them): {_ADMINS}",
    ),
    "export": "reads RSE settings and distances",
    **dict.fromkeys(
        ("config_sections", "config_add_section", "config_has_section", "config_options", "config_has_option",
         "config_get", "config_items", "config_set", "config_remove_section", "config_remove_option"),
        f"Rucio's configuration table (the daemons' settings): {_ADMINS}",
    ),
    **dict.fromkeys(
        ("set_local_account_limit", "set_global_account_limit", "delete_local_account_limit",
         "delete_global_account_limit"),
        "account quotas: they limit new rules, never remove one (admins, and country admins in Rucio's policy)",
    ),
    **dict.fromkeys(("get_local_account_usage", "get_global_account_usage"), "reads account usage"),
    **dict.fromkeys(
        ("list_requests", "list_requests_history", "get_request_by_did", "get_request_history_by_did",
         "get_request_metrics"),
        "reads transfer requests",
    ),
    **dict.fromkeys(("queue_requests", "cancel_request", "get_next"), f"transfer requests, made by rules: {_ADMINS}"),
    **dict.fromkeys(("list_transfer_limits", "set_transfer_limit", "delete_transfer_limit"),
                    f"transfer throttling: {_ADMINS}; it slows copies, deletes none"),
    **dict.fromkeys(("add_subscription", "update_subscription"),
                    f"subscriptions make rules in the transmogrifier without a permission check: {_ADMINS}"),
    "approve_rule": f"approving a rule that waits for approval (the rule itself passed add_rule): {_ADMINS}",
    "skip_availability_check": "lets an allowed add or delete ignore a blocked RSE; the add or delete is checked",
    "resurrect": f"brings back deleted DIDs, with no replica or rule: {_ADMINS}",
    "update_lifetime_exceptions": f"exceptions to the lifetime model: {_ADMINS}",
    "create_did_sample": "a new dataset of existing files in a scope the issuer owns: no replica, no rule, "
    "no lifetime (rules on it are checked by add_rule)",
    **dict.fromkeys(("list_heartbeats", "send_heartbeats"), "the daemons' liveness"),
    **dict.fromkeys(("remove_did_from_followed", "remove_dids_from_followed"), "notifications an account follows"),
    "access_rule_vo": "multi-VO only: reading a rule of another VO",
    **dict.fromkeys(("add_vo", "update_vo", "list_vos", "recover_vo_root_identity"), "multi-VO administration"),
    **dict.fromkeys(("add_key", "add_value"), f"metadata conventions: {_ADMINS}"),
    **dict.fromkeys(
        ("add_opendata_did", "update_opendata_did", "delete_opendata_did"),
        f"Rucio's open-data catalogue, which changes no replica or rule: {_ADMINS}",
    ),
}

def has_permission(
    issuer: InternalAccount, action: str, kwargs: dict[str, Any], session: Session | None = None
) -> PermissionResult | None:
    """Rucio's hook; None hands the decision to Rucio's generic policy. A check that fails on the database refuses
    (with the reason) rather than raise, or let the generic policy allow what the MAGIC checks did not judge."""
    check = ACTIONS.get(action)
    if check is None or session is None or not isinstance(issuer, InternalAccount):
        return None
    try:
        return check(_Context(issuer, session), kwargs if isinstance(kwargs, dict) else {})
    except Exception as error:  # a permission check must answer, never raise
        LOGGER.exception("MAGIC permission check %s for %s failed", action, issuer)
        return _result(False, f"the MAGIC policy could not check {action}: {error}")
