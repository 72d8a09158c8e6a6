"""What the daemons check before their first cycle: the settings the source's safety relies on.

The carrier's locked source rule holds every source replica from registration to release; that rests on
settings outside the code: the policy package (its permissions keep other writers off the carrier rules, its
lfn2pfn places the copies), the account owning the carrier scope, no tombstone given to new source replicas, and
no policy copy that the source itself could satisfy. A daemon refuses to start while one does not hold.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from rucio_magic_ext import rucio_db
from rucio_magic_ext.carrier.model import CARRIER_SCOPE
from rucio_magic_ext.common import RefusedToStart
from rucio_magic_ext.replication import PolicyError, ReplicationPolicy, load_policy
from rucio_magic_ext.settings import ConfigError, rucio_cfg, setting

POLICY_PACKAGE = "rucio_magic_ext.policy"


class UnsafeSetup(RefusedToStart):
    """A setting the source's safety relies on does not hold; the message names each one and why it matters."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("refusing to run: " + "; ".join(self.problems))


def problems(rse: str, account: str, policy: ReplicationPolicy) -> list[str]:
    """Each setting that would let a source copy go before its copies are proven, with what to change."""
    return [*_policy_package(), *_source_rse(rse), *_carrier_scope(account), *_policy_expressions(rse, policy)]


def check(rse: str, account: str, policy: ReplicationPolicy) -> None:
    found = problems(rse, account, policy)
    if found:
        raise UnsafeSetup(found)


def _policy_package() -> list[str]:
    from rucio.common.config import config_get

    package = os.getenv("RUCIO_POLICY_PACKAGE") or config_get("policy", "package", raise_exception=False, default="")
    if package != POLICY_PACKAGE:
        return [
            f"[policy] package is {package or 'not set'!r}, not {POLICY_PACKAGE!r}: without the MAGIC policy package "
            "copies are not placed on the MAGIC layout and MAGIC writers are not kept off the carrier rules"
        ]
    return []


def _source_rse(rse: str) -> list[str]:
    from rucio.common.exception import RSENotFound
    from rucio.core.rse import list_rse_attributes

    try:
        with rucio_db.reading() as session:
            attributes = list_rse_attributes(rucio_db.rse_id(rse), session=session)
    except RSENotFound:
        return [f"the source RSE {rse} does not exist in Rucio"]
    if attributes.get("tombstone_delay") not in (None, "", "None"):
        return [
            f"RSE {rse} has tombstone_delay={attributes['tombstone_delay']}: new source replicas would carry a "
            "tombstone and be reaped whenever they are unlocked; remove the attribute"
        ]
    return []


def _carrier_scope(account: str) -> list[str]:
    from rucio.common.types import InternalScope
    from rucio.core.scope import list_scopes_with_account

    with rucio_db.reading() as session:
        owners = {
            row["scope"].external: row["account"].external
            for row in list_scopes_with_account({"scope": InternalScope(CARRIER_SCOPE)}, session=session)
        }
    owner = owners.get(CARRIER_SCOPE)
    if owner is None:
        return [f"the scope {CARRIER_SCOPE} does not exist: create it, owned by {account}"]
    if owner != account:
        return [
            f"the scope {CARRIER_SCOPE} is owned by {owner}, not by the flow's account {account}: only the owner's "
            "carrier rules are kept from other MAGIC writers"
        ]
    return []


def _policy_expressions(rse: str, policy: ReplicationPolicy) -> list[str]:
    from rucio.common.exception import InvalidRSEExpression
    from rucio.core.rse_expression_parser import parse_expression

    found = []
    with rucio_db.reading() as session:
        for spec in policy.rules:
            try:
                rses = {entry["rse"] for entry in parse_expression(spec.rse_expression, session=session)}
            except InvalidRSEExpression as error:
                found.append(f"policy rule {spec.name!r}: RSE expression {spec.rse_expression!r}: {error}")
                continue
            if rse in rses:
                found.append(
                    f"policy rule {spec.name!r}: RSE expression {spec.rse_expression!r} matches the source {rse}: "
                    "the source copy would satisfy it, and no copy would leave; exclude it (e.g. "
                    f"'{spec.rse_expression}\\{rse}')"
                )
    return found


def policy_file(section: str, fallback: str = "") -> Path:
    """The replication policy's file, read once here so that a missing or wrong one stops the daemon in one
    line naming the section it was read from (``[magic-scanner]`` unless ``[section]`` sets its own)."""
    from rucio.common.config import config_get

    own = setting(config_get, section, "replication_policy", "")
    where = section if own or not fallback else fallback
    path = Path(own or setting(config_get, fallback or section, "replication_policy"))
    if not path.is_file():
        raise ConfigError(f"{rucio_cfg()}: [{where}] replication_policy: {path} is not a file")
    try:
        load_policy(path)
    except (OSError, PolicyError) as error:
        raise ConfigError(f"{rucio_cfg()}: [{where}] replication_policy: {error}") from None
    return path
