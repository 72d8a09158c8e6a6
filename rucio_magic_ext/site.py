"""Bootstrap of a MAGIC site in Rucio: RSEs, protocols, attributes, distances, accounts, limits, scopes.

The site is described in an INI file (``etc/site.cfg`` is the development one). ``bootstrap()`` runs server-side
through Rucio's core API in one transaction and only creates or corrects what differs from the description.
"""

from __future__ import annotations

import configparser
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

PROTOCOL_KEYS = ("scheme", "hostname", "port", "prefix", "impl")
DOMAINS = ("lan", "wan")
OPERATIONS = ("read", "write", "delete", "third_party_copy_read", "third_party_copy_write")


class SiteError(ValueError):
    """The site description says something Rucio cannot be told; the message names the section."""


@dataclasses.dataclass(frozen=True)
class RSESpec:
    name: str
    deterministic: bool
    rse_type: str
    protocols: list[dict[str, Any]]  # Rucio's protocol definitions, domains included
    attributes: dict[str, str | bool]


@dataclasses.dataclass(frozen=True)
class AccountSpec:
    name: str
    type: str = "SERVICE"
    email: str | None = None
    attributes: dict[str, str] = dataclasses.field(default_factory=dict)
    limits: dict[str, int] = dataclasses.field(default_factory=dict)
    create: bool = True  # False: must exist already (root), only its attributes and limits are set


@dataclasses.dataclass(frozen=True)
class Site:
    rses: list[RSESpec]
    distances: list[tuple[str, str, int]]
    accounts: list[AccountSpec]
    scopes: dict[str, str]  # scope -> owning account


def _value(text: str) -> str | bool:
    """RSE attribute values: true/false become booleans (as Rucio's clients send them), the rest stays text."""
    lowered = text.strip().lower()
    return lowered == "true" if lowered in ("true", "false") else text.strip()


def load_site(path: Path | str | Sequence[Path | str], defines: Mapping[str, str] | None = None) -> Site:
    """A site description from one file or several (later ones win); ``defines`` override entries of ``[vars]``."""
    parser = configparser.ConfigParser(interpolation=configparser.ExtendedInterpolation())
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # RSE and attribute names keep their case
    for one in [path] if isinstance(path, (str, Path)) else path:
        try:
            with open(one) as handle:
                parser.read_file(handle)
        except FileNotFoundError:
            raise SiteError(f"{one}: no such site description (rucio-magic examples DIR writes one to edit)") from None
        except (OSError, configparser.Error) as error:
            raise SiteError(f"{one}: {' '.join(str(error).split())}") from None
    if defines and not parser.has_section("vars"):
        parser.add_section("vars")
    for key, value in (defines or {}).items():
        parser.set("vars", key, value)

    def section(name: str) -> dict[str, str]:
        return dict(parser.items(name)) if parser.has_section(name) else {}

    rses = []
    for name in parser.sections():
        kind, _, rse = name.partition(" ")
        if kind == "rse" and " " not in rse:
            fields = section(name)
            described = [fields] if "scheme" in fields else []  # one protocol may sit in the RSE's own section
            described += [section(other) for other in parser.sections() if other.startswith(f"{name} protocol ")]
            rses.append(
                RSESpec(
                    name=rse,
                    deterministic=_value(fields.get("deterministic", "true")) is True,
                    rse_type=fields.get("rse_type", "DISK"),
                    protocols=[_protocol(name, one) for one in described],
                    attributes={k: _value(v) for k, v in section(f"{name} attributes").items()},
                )
            )
    accounts = []
    names = dict.fromkeys(name.split()[1] for name in parser.sections() if name.startswith("account "))
    for account in names:
        fields = section(f"account {account}")
        accounts.append(
            AccountSpec(
                name=account,
                type=fields.get("type", "SERVICE"),
                email=fields.get("email"),
                attributes=section(f"account {account} attributes"),
                limits={k: int(v) for k, v in section(f"account {account} limits").items()},
                create=parser.has_section(f"account {account}"),
            )
        )
    distances = []
    for pair, distance in section("distances").items():
        source, _, destination = (part.strip() for part in pair.partition("->"))
        distances.append((source, destination, int(distance)))
    return Site(rses=rses, distances=distances, accounts=accounts, scopes=section("scopes"))


def _protocol(where: str, fields: Mapping[str, str]) -> dict[str, Any]:
    """A protocol as Rucio's ``add_protocol`` takes it. Its domains say which operations it serves, with
    which priority (``lan = read=1, write=1, delete=1``): nothing is assumed, since which door of a storage
    serves what differs from site to site."""
    protocol: dict[str, Any] = {key: fields[key] for key in PROTOCOL_KEYS if key in fields}
    protocol["port"] = int(protocol.get("port", 0))
    domains: dict[str, dict[str, int]] = {}
    for domain in DOMAINS:
        for item in filter(None, (part.strip() for part in fields.get(domain, "").split(","))):
            operation, _, priority = (piece.strip() for piece in item.partition("="))
            if operation not in OPERATIONS or not priority.isdigit():
                raise SiteError(f"[{where}] {domain}: {item!r} is not <operation>=<priority> of {OPERATIONS}")
            domains.setdefault(domain, {})[operation] = int(priority)
    if not domains:
        raise SiteError(f"[{where}] protocol {protocol.get('scheme')}: no lan or wan operations given")
    protocol["domains"] = domains
    return protocol


def _column(domain: str, operation: str) -> str:
    """Rucio's column for an operation: third-party copy has one for both domains."""
    return operation if operation.startswith("third_party_copy") else f"{operation}_{domain}"


def _columns(domains: Mapping[str, Mapping[str, int | None]]) -> dict[str, int]:
    """A protocol's priorities as Rucio stores them (0: not served)."""
    columns = {_column(domain, operation): 0 for domain in DOMAINS for operation in OPERATIONS}
    for domain, operations in domains.items():
        for operation, priority in operations.items():
            columns[_column(domain, operation)] = priority or 0
    return columns


def bootstrap(site: Site) -> list[str]:
    """Make Rucio's catalogue match ``site``; return one line per change. Needs a server-side Rucio config
    (``[database]``); runs in one write transaction, so a failure leaves the catalogue as it was."""
    from rucio_magic_ext import rucio_db

    changes: list[str] = []
    with rucio_db.writing() as session:
        rse_ids = {spec.name: _ensure_rse(spec, changes, session) for spec in site.rses}
        for source, destination, distance in site.distances:
            _ensure_distance(rse_ids, source, destination, distance, changes, session)
        for account in site.accounts:
            _ensure_account(account, rse_ids, changes, session)
        for scope, owner in site.scopes.items():
            _ensure_scope(scope, owner, changes, session)
    return changes


def _ensure_rse(spec: RSESpec, changes: list[str], session: Session) -> str:
    from rucio.core import rse as rse_core
    from rucio.db.sqla.constants import RSEType

    rse_id: str  # Rucio's core is untyped
    if rse_core.rse_exists(spec.name, session=session):
        rse_id = rse_core.get_rse_id(spec.name, session=session)
        current = rse_core.get_rse(rse_id, session=session)
        if current["deterministic"] != spec.deterministic:
            rse_core.update_rse(rse_id, {"deterministic": spec.deterministic}, session=session)
            changes.append(f"RSE {spec.name}: deterministic={spec.deterministic}")
    else:
        rse_id = rse_core.add_rse(
            spec.name, deterministic=spec.deterministic, rse_type=RSEType[spec.rse_type], session=session
        )
        changes.append(f"RSE {spec.name}: created")

    existing = rse_core.list_rse_attributes(rse_id, session=session)
    for key, value in spec.attributes.items():
        if existing.get(key) != value:
            rse_core.add_rse_attribute(rse_id, key, value, session=session)
            changes.append(f"RSE {spec.name}: attribute {key}={value}")

    for protocol in spec.protocols:
        _ensure_protocol(spec.name, rse_id, protocol, changes, session)
    return rse_id


def _ensure_protocol(rse: str, rse_id: str, protocol: dict[str, Any], changes: list[str], session: Session) -> None:
    from rucio.core import rse as rse_core

    known = rse_core.get_rse_protocols(rse_id, session=session)["protocols"]
    key = (protocol["scheme"], protocol.get("hostname", "localhost"), protocol["port"])
    same = [p for p in known if (p["scheme"], p["hostname"], p["port"]) == key]
    if not same:
        rse_core.add_protocol(rse_id, dict(protocol), session=session)
        changes.append(f"RSE {rse}: protocol {protocol['scheme']} at {protocol.get('prefix')}")
        return
    current = same[0]
    data: dict[str, Any] = {
        key: protocol[key] for key in ("prefix", "impl") if key in protocol and current.get(key) != protocol[key]
    }
    if _columns(protocol["domains"]) != _columns(current["domains"]):
        data["domains"] = {
            domain: {operation: _columns(protocol["domains"])[_column(domain, operation)] for operation in operations}
            for domain, operations in (("lan", OPERATIONS[:3]), ("wan", OPERATIONS))
        }
    if data:
        scheme, hostname, port = protocol["scheme"], current["hostname"], current["port"]
        rse_core.update_protocols(rse_id, scheme, data, hostname, port, session=session)
        changes.append(f"RSE {rse}: protocol {protocol['scheme']} updated {sorted(data)}")


def _ensure_distance(
    rse_ids: Mapping[str, str], source: str, destination: str, distance: int, changes: list[str], session: Session
) -> None:
    from rucio.core import distance as distance_core
    from rucio.core.rse import get_rse_id

    src_id = rse_ids.get(source) or get_rse_id(source, session=session)
    dst_id = rse_ids.get(destination) or get_rse_id(destination, session=session)
    current = distance_core.get_distances(src_id, dst_id, session=session)
    if not current:
        distance_core.add_distance(src_id, dst_id, distance, session=session)
    elif current[0]["distance"] != distance:
        distance_core.update_distances(src_id, dst_id, distance, session=session)
    else:
        return
    changes.append(f"distance {source} -> {destination} = {distance}")


def _ensure_account(spec: AccountSpec, rse_ids: Mapping[str, str], changes: list[str], session: Session) -> None:
    from rucio.common.types import InternalAccount
    from rucio.core import account as account_core
    from rucio.core import account_limit
    from rucio.core.rse import get_rse_id
    from rucio.db.sqla.constants import AccountType

    account = InternalAccount(spec.name)
    if spec.create and not account_core.account_exists(account, session=session):
        account_core.add_account(account, AccountType[spec.type], spec.email, session=session)
        changes.append(f"account {spec.name}: created ({spec.type})")

    attributes = {a["key"]: a["value"] for a in account_core.list_account_attributes(account, session=session)}
    for key, value in spec.attributes.items():
        if key in attributes and str(attributes[key]) == value:
            continue
        if key in attributes:
            account_core.del_account_attribute(account, key, session=session)
        account_core.add_account_attribute(account, key, value, session=session)
        changes.append(f"account {spec.name}: attribute {key}={value}")

    for rse, limit in spec.limits.items():
        rse_id = rse_ids.get(rse) or get_rse_id(rse, session=session)
        current = account_limit.get_local_account_limit(account, rse_ids=rse_id, session=session)
        wanted = float("inf") if limit == -1 else limit
        if current != wanted:
            account_limit.set_local_account_limit(account, rse_id, limit, session=session)
            changes.append(f"account {spec.name}: limit on {rse} = {'unlimited' if limit == -1 else limit}")


def _ensure_scope(scope: str, owner: str, changes: list[str], session: Session) -> None:
    from rucio.common.types import InternalAccount, InternalScope
    from rucio.core import scope as scope_core

    if not scope_core.check_scope(InternalScope(scope), session=session):
        scope_core.add_scope(InternalScope(scope), InternalAccount(owner), session=session)
        changes.append(f"scope {scope}: created, owned by {owner}")


EXAMPLES = ("site.cfg", "replication-policy.toml", "grafana/magic-flow.json", "rucio.cfg", "alembic.ini")
#: The timing of a trial night (minutes from the first file to its deletion at the source, not hours).
TRIAL = {"settle_seconds": "5", "carrier_max_age_seconds": "30", "dwell_seconds": "0"}


def write_examples(directory: Path, values: Mapping[str, str], trial: bool = False) -> list[Path]:
    """The example files shipped in the package, written into ``directory`` for editing: rucio.cfg and
    alembic.ini filled from ``values`` (database, host, port, root's identity); an existing file is kept."""
    import importlib.resources
    import importlib.util
    import string

    rucio = importlib.util.find_spec("rucio")
    filled = {
        "directory": str(directory.resolve()),
        "migrate_repo": str(Path(next(iter(rucio.submodule_search_locations or []))) / "db" / "sqla" / "migrate_repo")
        if rucio
        else "",
        "scanner_timing": _timing(("settle_seconds", "carrier_max_age_seconds"), trial),
        "carrier_timing": _timing(("dwell_seconds",), trial),
        **values,
    }
    source = importlib.resources.files("rucio_magic_ext") / "examples"
    for folder in ("log", "transfers"):  # rucio.cfg's [common] logdir and [conveyor] magic_transfer_dir
        (directory / folder).mkdir(parents=True, exist_ok=True)
    written = []
    for name in EXAMPLES:
        target = directory / name
        if target.exists():
            continue
        text = (source / name).read_text()
        if name in ("rucio.cfg", "alembic.ini"):
            text = string.Template(text).substitute(filled)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        written.append(target)
    return written


def _timing(keys: Sequence[str], trial: bool) -> str:
    """The timing keys of a trial, or the production defaults left to the code (named, commented out)."""
    if trial:
        return "# a trial night's timing: leave these out in production\n" + "".join(
            f"{key} = {TRIAL[key]}\n" for key in keys
        )
    return "".join(f"# {key}: see the README's daemon table\n" for key in keys)
