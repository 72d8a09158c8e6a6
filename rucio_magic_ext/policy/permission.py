"""MAGIC permissions for a Rucio instance that several experiments share.

- Experiment isolation: in the MAGIC scopes, only admins and accounts with a MAGIC role (the account
  attribute ``magic``, value ``writer``) may add DIDs, replicas, attachments, metadata and rules, and
  change or delete rules. ``magic=reader`` grants reading embargoed data only.
- Embargo: a DID whose metadata ``embargo_until`` lies in the future may only get rules whose RSEs all
  lie inside ``[magic-policy] embargo_rse_expression``, and signed URLs for it are refused to accounts
  without a MAGIC role.

Everything else returns None, so Rucio applies its generic policy (which also decides for MAGIC
writers whatever isolation does not cover, e.g. scope ownership outside MAGIC).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from rucio.common.config import config_get
from rucio.common.exception import RucioException
from rucio.common.types import InternalScope
from rucio.core.account import list_account_attributes
from rucio.core.did import get_metadata
from rucio.core.rse import get_rse_attribute
from rucio.core.rse_expression_parser import parse_expression

from rucio_magic_ext.layout import SCOPES

if TYPE_CHECKING:
    from rucio.common.types import InternalAccount
    from rucio.core.permission import PermissionResult
    from sqlalchemy.orm import Session

ROLE_ATTRIBUTE = "magic"
RSE_ATTRIBUTE = "magic"  # set on the RSEs where MAGIC writers may register replicas
WRITER = "writer"
READER = "reader"
EMBARGO_KEY = "embargo_until"


def _result(allowed: bool, message: str = "") -> PermissionResult:
    # rucio.core.permission imports this module while it is itself being imported: import late.
    from rucio.core.permission import PermissionResult

    return PermissionResult(allowed, message)


def magic_scopes() -> frozenset[str]:
    extra = config_get("magic-policy", "scopes", raise_exception=False, default="")
    return frozenset(SCOPES) | {scope.strip() for scope in extra.split(",") if scope.strip()}


def embargo_rse_expression() -> str | None:
    return config_get("magic-policy", "embargo_rse_expression", raise_exception=False, default=None) or None


def _external(scope: Any) -> str:
    return scope.external if isinstance(scope, InternalScope) else str(scope)


def _vo_scope(scope: Any, issuer: InternalAccount) -> InternalScope:
    return scope if isinstance(scope, InternalScope) else InternalScope(str(scope), vo=issuer.vo)


class _Context:
    """What one permission check needs to know, each fact looked up at most once."""

    def __init__(self, issuer: InternalAccount, session: Session) -> None:
        self.issuer = issuer
        self.session = session
        self._attributes: dict[str, str] | None = None

    @property
    def attributes(self) -> dict[str, str]:
        if self._attributes is None:
            rows = list_account_attributes(self.issuer, session=self.session)
            self._attributes = {row["key"]: str(row["value"]) for row in rows}
        return self._attributes

    @property
    def is_admin(self) -> bool:
        return self.issuer.external == "root" or self.attributes.get("admin", "").lower() in ("true", "1")

    @property
    def role(self) -> str | None:
        return self.attributes.get(ROLE_ATTRIBUTE)

    def require_writer(self, scopes: Iterable[Any], what: str) -> PermissionResult | None:
        """Decide for MAGIC scopes; None lets Rucio's generic policy decide for the others."""
        touched = sorted({_external(scope) for scope in scopes} & magic_scopes())
        if not touched:
            return None
        if self.is_admin or self.role == WRITER:
            return _result(True)
        return self.refuse(f"{what} in the MAGIC scope(s) {', '.join(touched)}")

    def refuse(self, what: str) -> PermissionResult:
        """A refusal that says which role is missing, and what the account has instead."""
        return _result(
            False,
            f"{what} needs the account attribute {ROLE_ATTRIBUTE}={WRITER} "
            f"(account {self.issuer.external} has {ROLE_ATTRIBUTE}={self.role or 'nothing'})",
        )

    def embargoed(self, dids: Iterable[dict[str, Any]]) -> list[str]:
        """The DIDs, among those in MAGIC scopes, whose embargo has not ended."""
        now = datetime.now(timezone.utc)
        found = []
        for did in dids:
            if _external(did["scope"]) not in magic_scopes():
                continue
            try:
                scope = _vo_scope(did["scope"], self.issuer)
                meta = get_metadata(scope, did["name"], plugin="JSON", session=self.session)
            except RucioException:
                continue  # a missing DID is reported by the operation itself
            except NotImplementedError:
                return []  # a database without JSON metadata (SQLite) cannot hold an embargo
            until = _embargo_end(meta.get(EMBARGO_KEY))
            if until is not None and until > now:
                found.append(f"{_external(did['scope'])}:{did['name']} (embargoed until {until:%Y-%m-%d})")
        return found


def _embargo_end(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    end = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return end if end.tzinfo else end.replace(tzinfo=timezone.utc)


# --- one function per action: (context, kwargs) -> result, or None for Rucio's generic policy -------


def _add_did(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    return context.require_writer([kwargs["scope"]], "adding DIDs")


def _add_dids(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    return context.require_writer([did["scope"] for did in kwargs["dids"]], "adding DIDs")


def _add_replicas(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    """Rucio names the RSE here, and the new files only: MAGIC writers may register on MAGIC RSEs."""
    result = context.require_writer([did["scope"] for did in kwargs.get("dids", [])], "adding replicas")
    if result is not None and not result:
        return result
    if context.is_admin or not get_rse_attribute(kwargs["rse_id"], RSE_ATTRIBUTE, session=context.session):
        return result
    if context.role == WRITER:
        return _result(True)
    return context.refuse(f"{kwargs['rse']} holds MAGIC data: registering replicas there")


def _attach_dids(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    children = [did["scope"] for did in kwargs.get("attachment", {}).get("dids", [])]
    return context.require_writer([kwargs["scope"], *children], "attaching DIDs")


def _attach_dids_to_dids(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    scopes = []
    for attachment in kwargs["attachments"]:
        scopes += [attachment["scope"], *(did["scope"] for did in attachment.get("dids", []))]
    return context.require_writer(scopes, "attaching DIDs")


def _on_scope(what: str) -> Callable[[_Context, dict[str, Any]], PermissionResult | None]:
    def check(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
        return context.require_writer([kwargs["scope"]], what)

    return check


def _add_rule(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    result = context.require_writer([did["scope"] for did in kwargs["dids"]], "adding rules")
    if result is not None and not result:
        return result
    # A writer's own rules are judged by Rucio's generic policy (account, locking), not granted here.
    result = None if result is not None and not context.is_admin else result
    embargoed = context.embargoed(kwargs["dids"])
    if embargoed:
        allowed = embargo_rse_expression()
        targets = _rse_names(kwargs["rse_expression"], context.session)
        outside = sorted(targets - (_rse_names(allowed, context.session) if allowed else set()))
        if outside:
            return _result(
                False,
                f"{', '.join(embargoed)}: embargoed data may only be replicated within "
                f"[magic-policy] embargo_rse_expression={allowed or '(none set)'}; "
                f"{', '.join(outside)} lie(s) outside",
            )
    return result


def _rse_names(expression: str, session: Session) -> set[str]:
    return {rse["rse"] for rse in parse_expression(expression, session=session)}


def _on_rule(what: str) -> Callable[[_Context, dict[str, Any]], PermissionResult | None]:
    def check(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
        from rucio.core.rule import get_rule

        try:
            rule = get_rule(kwargs["rule_id"], session=context.session)
        except RucioException:
            return None
        return context.require_writer([rule["scope"]], what)

    return check


def _get_signed_url(context: _Context, kwargs: dict[str, Any]) -> PermissionResult | None:
    # Rucio 41 passes no DID here; when a caller does (see tools/upstream), embargo applies.
    dids = kwargs.get("dids") or ([kwargs] if "scope" in kwargs and "name" in kwargs else [])
    if context.is_admin or context.role in (WRITER, READER):
        return None
    embargoed = context.embargoed(dids)
    if embargoed:
        return _result(
            False, f"{', '.join(embargoed)}: signed URLs for embargoed data need the account attribute {ROLE_ATTRIBUTE}"
        )
    return None


ACTIONS: dict[str, Callable[[_Context, dict[str, Any]], PermissionResult | None]] = {
    "add_did": _add_did,
    "add_dids": _add_dids,
    "add_replicas": _add_replicas,
    "attach_dids": _attach_dids,
    "attach_dids_to_dids": _attach_dids_to_dids,
    "detach_dids": _on_scope("detaching DIDs"),
    "set_metadata": _on_scope("setting metadata"),
    "set_metadata_bulk": _on_scope("setting metadata"),
    "set_status": _on_scope("changing the status of DIDs"),
    "add_rule": _add_rule,
    "del_rule": _on_rule("deleting rules"),
    "update_rule": _on_rule("updating rules"),
    "reduce_rule": _on_rule("reducing rules"),
    "move_rule": _on_rule("moving rules"),
    "get_signed_url": _get_signed_url,
}


def has_permission(
    issuer: InternalAccount, action: str, kwargs: dict[str, Any], session: Session | None = None
) -> PermissionResult | None:
    """Rucio's hook. None hands the decision to Rucio's generic policy."""
    check = ACTIONS.get(action)
    if check is None or session is None:
        return None
    return check(_Context(issuer, session), kwargs)
