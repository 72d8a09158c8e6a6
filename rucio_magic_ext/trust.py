"""What the flow counts as its own. Pure: the callers read Rucio, this decides.

A name or a comment can be written by anyone who may write in a MAGIC scope; ownership cannot. So a rule counts
for the flow only when the flow's account made it, it has no expiry, and it asks what its policy entry asks (RSE
expression and copies); a collection the flow puts files into only when the flow's account made it and it has
no DID lifetime (Rucio's undertaker deletes an expired collection with every rule on it). Anything else found in
their place is named, holds its own files, and never stands in for the flow's own.
"""

from __future__ import annotations

import posixpath
from datetime import datetime
from typing import Protocol


class Wanted(Protocol):
    """What the flow asks of a rule (``rucio_db.RuleRequest``, ``replication.RuleSpec``)."""

    @property
    def rse_expression(self) -> str: ...
    @property
    def copies(self) -> int: ...


class RuleFacts(Wanted, Protocol):
    """A rule as Rucio holds it (``rucio_db.RuleRow`` and ``rucio_db.Rule`` both fit): what it asks, and who made it."""

    @property
    def account(self) -> str: ...


class MakerFacts(Protocol):
    """Who made a DID (``rucio_db.Maker``, or the audit's ``Collection``, whose maker may be unknown)."""

    @property
    def account(self) -> str | None: ...
    @property
    def expired_at(self) -> datetime | None: ...


def foreign_rule(rule: RuleFacts, wanted: Wanted, account: str) -> str | None:
    """Why a rule found where the flow wants one is not the flow's, or None when it is. Its expiry is the
    caller's to judge: the flow's own rule removed through Rucio's API only expires, and the audit makes it
    stand again."""
    if rule.account != account:
        return f"made by account {rule.account}, not by the flow's {account}"
    if rule.rse_expression != wanted.rse_expression:
        return f"asks {rule.rse_expression!r}, the policy {wanted.rse_expression!r}"
    if rule.copies != wanted.copies:
        return f"asks {rule.copies} copies, the policy {wanted.copies}"
    return None


def foreign_collection(maker: MakerFacts, account: str) -> str | None:
    """Why a collection is not one the flow may put files into, or None when it may."""
    if maker.account != account:
        return f"made by account {maker.account}, not by the flow's {account}"
    if maker.expired_at is not None:
        when = f"{maker.expired_at:%Y-%m-%d %H:%M:%S}"
        return f"set to expire at {when} (Rucio's undertaker would delete it with every rule on it)"
    return None


def normal_path(path: str) -> str:
    """The one spelling of a path under an RSE's prefix: ``a//b``, ``a/./b`` and ``/a/b`` are the file ``a/b``."""
    return posixpath.normpath("/" + path).lstrip("/")


def shared_path(path: str, owner: tuple[str, str], sharers: set[tuple[str, str]]) -> str | None:
    """Why a path at a non-deterministic RSE is not ``owner``'s alone, or None: the reaper deleting another
    DID's replica there deletes these bytes too."""
    others = sorted(sharers - {owner})
    if not others:
        return None
    names = ", ".join(f"{scope}:{name}" for scope, name in others[:3])
    more = f" and {len(others) - 3} more" if len(others) > 3 else ""
    return f"path {path} is also the replica of {names}{more}: one file on storage, two DIDs"
