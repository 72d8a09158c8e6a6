"""MAGIC permissions for a Rucio instance that several experiments share.

Roles, in the MAGIC scopes (``rucio_magic_ext.layout.SCOPES``, the carrier scope ``magic_carrier`` and
``[magic-policy] scopes``):

- root and accounts with the attribute ``admin`` (Rucio's own test of an admin) may do everything;
- ``magic=writer`` accounts add data (DIDs, replicas on RSEs with the attribute ``magic``, attachments,
  metadata) and rules, and change or delete the rules they own. They never remove or weaken a rule of another
  account: a source copy at the observatory may be its only copy;
- the account that owns ``magic_carrier`` (the flow's service account) is the only non-admin that touches
  carrier DIDs and their rules, whose deletion makes every source copy in the carrier OBSOLETE;
- ``magic=reader`` only gets signed URLs of embargoed data; every other account is refused.

A call that mixes MAGIC and foreign DIDs is refused to non-admins, so a MAGIC role never reaches into
another experiment's scope. Only admins set or change ``embargo_until`` (also on new DIDs) and DID lifetimes.
A DID under embargo (its own ``embargo_until`` in the future, or one of a collection above or below it) gets
rules, moved rules included, only on RSEs of ``[magic-policy] embargo_rse_expression``.

Calls that touch no MAGIC scope return None: Rucio's generic policy decides, as without this package. A check
never raises: when the arguments do not say enough to decide, it returns None too.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from rucio.common.config import config_get
from rucio.common.exception import RucioException
from rucio.common.types import InternalAccount, InternalScope

from rucio_magic_ext.layout import SCOPES

if TYPE_CHECKING:
    from rucio.core.permission import PermissionResult
    from sqlalchemy.orm import Session

LOGGER = logging.getLogger(__name__)

ROLE_ATTRIBUTE = "magic"
RSE_ATTRIBUTE = "magic"  # set on the RSEs where MAGIC writers may register replicas
WRITER = "writer"
READER = "reader"
EMBARGO_KEY = "embargo_until"
CARRIER_SCOPE = "magic_carrier"  # rucio_magic_ext.carrier's scope, owned by the flow's service account
# DID metadata that only admins set: the embargo, and a lifetime (its expiry deletes the DID with its rules).
ADMIN_KEYS = frozenset({EMBARGO_KEY, "lifetime"})
# Rule options that change neither what a rule protects nor for how long: anyone with the MAGIC role may set them.
HARMLESS_RULE_OPTIONS = frozenset({"boost_rule", "priority"})

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


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The dict items of a list argument; anything else (None, a string, a number) gives none."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, (list, tuple)) else []


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class _Context:
    """What one permission check needs to know, each fact looked up at most once."""

    def __init__(self, issuer: InternalAccount, session: Session) -> None:
        self.issuer = issuer
        self.session = session
        self._attributes: dict[str, str] | None = None
        self._owns_carrier: bool | None = None

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
            return self.refuse_carrier(what)
        if magic - {CARRIER_SCOPE} and self.role != WRITER:
            return self.refuse(f"{what} in the MAGIC scope(s) {', '.join(sorted(magic))}")
        return _result(True)

    def refuse(self, what: str) -> PermissionResult:
        """A refusal that says which role is missing, and what the account has instead."""
        return _result(
            False,
            f"{what} needs the account attribute {ROLE_ATTRIBUTE}={WRITER} "
            f"(account {self.issuer.external} has {ROLE_ATTRIBUTE}={self.role or 'nothing'})",
        )

    def refuse_carrier(self, what: str) -> PermissionResult:
        return _result(
            False,
            f"{what} in {CARRIER_SCOPE}: only the account that owns it (the flow's service account) and admins "
            f"change carriers, whose rules keep the observatory's only copies",
        )

    def refuse_keys(self, keys: Iterable[Any], where: str) -> PermissionResult | None:
        """Embargo and lifetime are admins' decisions: a writer could otherwise lift an embargo or expire data."""
        reserved = sorted(ADMIN_KEYS & {str(key) for key in keys})
        if not reserved or self.is_admin:
            return None
        return _result(False, f"setting {', '.join(reserved)} of {where} needs the account attribute admin")

    def replica_rse(self, rse_id: Any, what: str) -> PermissionResult | None:
        """Replicas created along with DIDs or attachments: only on RSEs where MAGIC writers register them."""
        if rse_id is None or self.is_admin:
            return None
        if self.role == WRITER and _rse_attribute(rse_id, self.session):
            return None
        return _result(
            False, f"{what} creates replicas, which MAGIC writers register only on RSEs with {RSE_ATTRIBUTE}=true"
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


def _first(*results: PermissionResult | None) -> PermissionResult | None:
    """The first refusal, if any. (A refusal is falsy: ``refusal or verdict`` would drop it.)"""
    return next((result for result in results if result is not None and not result), None)


def _unless(refusal: PermissionResult | None, verdict: PermissionResult | None) -> PermissionResult | None:
    """The refusal if there is one, else the verdict."""
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

    down = select(Contents.child_scope.label("scope"), Contents.child_name.label("name")).where(
        matching(Contents.scope, Contents.name)
    )
    down = down.cte("magic_embargo_down", recursive=True)
    down = down.union(
        select(Contents.child_scope, Contents.child_name).join(
            down, and_(Contents.scope == down.c.scope, Contents.name == down.c.name)
        )
    )
    up = select(Contents.scope.label("scope"), Contents.name.label("name")).where(
        matching(Contents.child_scope, Contents.child_name)
    )
    up = up.cte("magic_embargo_up", recursive=True)
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


def _rse_names(expression: str, session: Session) -> set[str]:
    from rucio.core.rse_expression_parser import parse_expression

    return {rse["rse"] for rse in parse_expression(expression, session=session)}


def _outside_embargo(expression: Any, session: Session) -> list[str] | None:
    """RSEs of an expression outside ``embargo_rse_expression``; None when the expression names no RSE
    (the operation itself then fails on it)."""
    if not isinstance(expression, str) or not expression:
        return None
    try:
        targets = _rse_names(expression, session)
    except RucioException:
        return None
    allowed = embargo_rse_expression()
    try:
        inside = _rse_names(allowed, session) if allowed else set()
    except RucioException:
        inside = set()
    return sorted(targets - inside)


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


def _add_did(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    verdict = context.judge([kwargs.get("scope")], "adding DIDs")
    if not verdict or context.is_admin:
        return verdict
    where = f"{_external(kwargs.get('scope'))}:{kwargs.get('name')}"
    refusal = _first(
        context.refuse_keys(_mapping(kwargs.get("meta")), where), _inline_rules(context, kwargs.get("rules"), where)
    )
    return _unless(refusal, verdict)


def _add_dids(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    dids = _dicts(kwargs.get("dids"))
    scopes = [did.get("scope") for did in dids]
    scopes += [child.get("scope") for did in dids for child in _dicts(did.get("dids"))]
    verdict = context.judge(scopes, "adding DIDs")
    if not verdict or context.is_admin:
        return verdict
    for did in dids:
        where = f"{_external(did.get('scope'))}:{did.get('name')}"
        refusal = _first(
            context.refuse_keys(_mapping(did.get("meta")), where),
            _inline_rules(context, did.get("rules"), where),
            context.replica_rse(did.get("rse_id"), f"adding {where}"),
        )
        if refusal is not None:
            return refusal
    return verdict


def _add_replicas(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    """Rucio names the RSE here, not the files (new ones go to add_dids): on RSEs with the attribute ``magic``,
    only MAGIC writers register."""
    verdict = context.judge([did.get("scope") for did in _dicts(kwargs.get("dids"))], "adding replicas")
    if (verdict is not None and not verdict) or context.is_admin:
        return verdict
    rse_id = kwargs.get("rse_id")
    if rse_id is None or not _rse_attribute(rse_id, context.session):
        return verdict
    if context.role == WRITER:
        return _result(True)
    return context.refuse(f"{kwargs.get('rse')} holds MAGIC data: registering replicas there")


def _attach_dids(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    attachment = _mapping(kwargs.get("attachment"))
    children = [did.get("scope") for did in _dicts(attachment.get("dids"))]
    verdict = context.judge([kwargs.get("scope"), *children], "attaching DIDs")
    if not verdict or context.is_admin:
        return verdict
    return _unless(context.replica_rse(attachment.get("rse_id"), "attaching with an RSE"), verdict)


def _attach_dids_to_dids(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    attachments = _dicts(kwargs.get("attachments"))
    scopes = []
    for attachment in attachments:
        scopes += [attachment.get("scope"), *(did.get("scope") for did in _dicts(attachment.get("dids")))]
    verdict = context.judge(scopes, "attaching DIDs")
    if not verdict or context.is_admin:
        return verdict
    refusals = (context.replica_rse(attachment.get("rse_id"), "attaching with an RSE") for attachment in attachments)
    return _unless(_first(*refusals), verdict)


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
    found = []
    for collection_scope, collection_name in collections:
        for rule in list_rules({"scope": collection_scope, "name": collection_name}, session=context.session):
            if rule["account"] != context.issuer:
                found.append(f"{rule['id']} of {rule['account'].external}")
    return found


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
    return _embargo_refusal(context, dids, kwargs.get("rse_expression"))


def _rule_of(context: _Context, kwargs: dict[str, Any]) -> dict[str, Any] | None:
    from rucio.core.rule import get_rule

    rule_id = kwargs.get("rule_id")
    if not rule_id or not _is_uuid(rule_id):
        return None
    try:
        return get_rule(str(rule_id), session=context.session)
    except RucioException:
        return None  # a missing rule is reported by the operation itself


def _on_rule(
    what: str, may_change: Callable[[_Context, dict[str, Any], dict[str, Any]], PermissionResult | None]
) -> Callable[[_Context, dict[str, Any]], PermissionResult | None]:
    """Rule changes: admins, the carrier's owner in its scope, a writer on its own rules; ``may_change`` says what
    else holds for this action (a harmless option on another's rule, the embargo of a moved rule)."""

    def check(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
        rule = _rule_of(context, kwargs)
        if rule is None:
            return None
        verdict = context.judge([rule["scope"]], what)
        if not verdict or context.is_admin:
            return verdict
        return _unless(may_change(context, kwargs, rule), verdict)

    return check


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
    "update_rule": _on_rule("updating rules", _may_update),
    "reduce_rule": _on_rule("reducing rules", lambda context, kwargs, rule: _owned(context, rule, "reducing rule")),
    "move_rule": _on_rule("moving rules", _may_move),
    "get_signed_url": _get_signed_url,
}


def has_permission(
    issuer: InternalAccount, action: str, kwargs: dict[str, Any], session: Session | None = None
) -> PermissionResult | None:
    """Rucio's hook. None hands the decision to Rucio's generic policy.

    A check that fails on the database refuses (with the reason) rather than raise, or let the generic policy
    allow what the MAGIC checks did not get to judge.
    """
    check = ACTIONS.get(action)
    if check is None or session is None or not isinstance(issuer, InternalAccount):
        return None
    try:
        return check(_Context(issuer, session), kwargs if isinstance(kwargs, dict) else {})
    except Exception as error:  # a permission check must answer, never raise
        LOGGER.exception("MAGIC permission check %s for %s failed", action, issuer)
        return _result(False, f"the MAGIC policy could not check {action}: {error}")
