"""Every permission action of Rucio 41 is either checked by the MAGIC policy or explained, and each checked action
decides a call that would reach the observatory or MAGIC data as the table below says, for every role.

The enumeration reads Rucio's own source (the ``perm`` table of ``rucio.core.permission.generic`` and every
``has_permission`` call of Rucio's code), so an action added to Rucio, or one forgotten here, fails it. The
decisions need a database (account attributes, scope owners, RSE attributes, rules): they run on the test stack,
through ``rucio.core.permission.has_permission``, the policy package first and Rucio's generic policy after it.
"""

from __future__ import annotations

import ast
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROLES = ("admin", "service", "writer", "reader", "other")
ACCOUNTS = {
    "admin": "perm_admin",
    "service": "magic_scanner",
    "writer": "perm_writer",
    "reader": "perm_reader",
    "other": "perm_other",
}
OTHER_SCOPE = "perm_other_scope"
FLOW = frozenset({"admin", "service"})


def _rucio_source() -> Path:
    import rucio

    return Path(rucio.__file__).parent


def rucio_actions() -> dict[str, set[str]]:
    """Every action Rucio 41 asks a permission for, with where it is named: the generic policy's table and every
    literal action of a ``has_permission`` call in Rucio's code."""
    root = _rucio_source()
    found: dict[str, set[str]] = {}
    generic = ast.parse((root / "core/permission/generic.py").read_text())
    for node in ast.walk(generic):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "perm":
            assert isinstance(node.value, ast.Dict)
            for key in node.value.keys:
                assert isinstance(key, ast.Constant)
                found.setdefault(str(key.value), set()).add("core/permission/generic.py")
    for path in root.rglob("*.py"):
        if path.parent.name == "permission" and path.parent.parent.name == "core":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if name != "has_permission":
                continue
            action = next((kw.value for kw in node.keywords if kw.arg == "action"), None)
            if action is None and len(node.args) >= 2:
                action = node.args[1]
            if isinstance(action, ast.Constant):
                found.setdefault(str(action.value), set()).add(str(path.relative_to(root)))
    return found


def test_rucio_actions_are_read_from_its_source() -> None:
    actions = rucio_actions()
    assert {"add_rule", "add_replicas", "declare_suspicious_file_replicas", "quarantine_file_replicas"} <= set(actions)
    assert len(actions) > 90


def test_every_rucio_action_is_checked_or_explained() -> None:
    from rucio_magic_ext.policy.permission import ACTIONS, NOT_CHECKED

    actions = rucio_actions()
    forgotten = {action: sorted(where) for action, where in actions.items() if action not in ACTIONS}
    forgotten = {action: where for action, where in forgotten.items() if action not in NOT_CHECKED}
    assert not forgotten, f"actions neither checked (ACTIONS) nor explained (NOT_CHECKED): {forgotten}"
    assert not set(ACTIONS) & set(NOT_CHECKED)
    assert not set(NOT_CHECKED) - set(actions), "NOT_CHECKED names actions Rucio 41 does not have"
    assert all(reason.strip() for reason in NOT_CHECKED.values())


# --- decisions on the test stack ------------------------------------------------------------------------


@dataclass
class World:
    """Accounts of every role and MAGIC and foreign data, made as root through the REST API."""

    root: Any
    storage: Path
    rse_ids: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def unique(prefix: str) -> str:
        return f"{prefix}_{uuid.uuid4().hex[:12]}"

    def file(self, scope: str = "magic_cal", rse: str = "PIC-DISK") -> dict[str, str]:
        did = {"scope": scope, "name": self.unique("file")}
        replica = {**did, "bytes": 4, "adler32": "02d2011f"}
        if rse == "ORM-ONSITE":
            path = self.storage / "orm-onsite" / "permission-actions" / did["name"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"MAGI")
            replica["pfn"] = f"file://localhost:0{path}"
        self.root.add_replicas(rse, [replica])
        return did

    def pfn(self, did: dict[str, str]) -> str:
        return f"file://localhost:0{self.storage}/orm-onsite/permission-actions/{did['name']}"

    def dataset(self, scope: str = "magic_cal", files: tuple[dict[str, str], ...] = ()) -> dict[str, str]:
        did = {"scope": scope, "name": self.unique("dataset")}
        self.root.add_dataset(scope, did["name"])
        if files:
            self.root.attach_dids(scope, did["name"], list(files))
        return did

    def rule(self, did: dict[str, str], account: str, rse: str = "PIC-DISK", **kw: Any) -> str:
        return self.root.add_replication_rule([did], 1, rse, account=account, **kw)[0]

    def carrier_rule(self) -> str:
        carrier = self.dataset("magic_carrier", (self.file("magic_raw", "ORM-ONSITE"),))
        return self.rule(carrier, "magic_scanner", "ORM-ONSITE", purge_replicas=True, comment="magic-carrier:source")


def _account(root: Any, role: str, attributes: dict[str, str]) -> bool:
    """Made once per test run (the stack is the session's); True when made now."""
    from rucio.common.exception import Duplicate

    account = ACCOUNTS[role]
    try:
        root.add_account(account, "USER", f"{account}@example.org")
    except Duplicate:
        return False
    for key, value in attributes.items():
        root.add_account_attribute(account, key, value)
    for rse in ("ORM-ONSITE", "PIC-DISK", "PIC-ANALYSIS"):
        root.set_local_account_limit(account, rse, -1)
    return True


@pytest.fixture(scope="module")
def world(rucio_stack: Any) -> World:
    from rucio.client import Client

    root = Client()
    _account(root, "admin", {"admin": "true"})
    _account(root, "writer", {"magic": "writer"})
    _account(root, "reader", {"magic": "reader"})
    if _account(root, "other", {}):
        root.add_scope(ACCOUNTS["other"], OTHER_SCOPE)
    world = World(root, rucio_stack.settings.storage_dir)
    world.rse_ids = {rse["rse"]: rse["id"] for rse in root.list_rses()}
    return world


@dataclass(frozen=True)
class Case:
    """One call as Rucio's gateway makes it (``kwargs``; ``body``, the REST request's, where Rucio passes less),
    the roles it is allowed to, and what the attacker's refusal must name."""

    action: str
    make: Callable[[World, str], dict[str, Any]]
    allowed: frozenset[str]
    attacker: str
    why: str
    body: Callable[[World, str], dict[str, Any]] | None = None


def _internal(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Scopes and accounts as Rucio's gateway hands them to the permission (rucio.gateway.permission)."""
    from rucio.common.types import InternalAccount, InternalScope

    out = dict(kwargs)
    if "scope" in out:
        out["scope"] = InternalScope(out["scope"])
    if "account" in out:
        out["account"] = InternalAccount(out["account"])
    for did in out.get("dids", []) if isinstance(out.get("dids"), list) else []:
        if isinstance(did, dict):
            did["scope"] = InternalScope(did["scope"])
            for rule in did.get("rules", []):
                rule["account"] = InternalAccount(rule["account"])
    for attachment in out.get("attachments", []):
        attachment["scope"] = InternalScope(attachment["scope"])
    for rule in out.get("rules", []):
        rule["account"] = InternalAccount(rule["account"])
    return out


def _new_file(world: World, scope: str = "magic_cal") -> dict[str, Any]:
    return {"scope": scope, "name": world.unique("new"), "bytes": 4, "adler32": "02d2011f", "type": "FILE"}


def _rule_kwargs(did: dict[str, str], account: str, expression: str, **options: Any) -> dict[str, Any]:
    """add_rule's kwargs as rucio.gateway.rule.add_replication_rule builds them."""
    return {
        "dids": [did], "copies": 1, "rse_expression": expression, "weight": None, "lifetime": options.get("lifetime"),
        "grouping": "DATASET", "account": account, "locked": False, "subscription_id": None,
        "source_replica_expression": None, "notify": "N", "activity": "User Subscriptions",
        "purge_replicas": options.get("purge_replicas", False), "ignore_availability": False,
        "comment": options.get("comment"), "ask_approval": False, "asynchronous": False, "delay_injection": None,
        "priority": 3, "split_container": False, "meta": None,
    }


def _add_did(scope: str, name: str, issuer: str, **kw: Any) -> dict[str, Any]:
    """add_did's kwargs as rucio.gateway.did.add_did builds them."""
    return {
        "scope": scope, "name": name, "type": "DATASET", "issuer": issuer, "account": None, "statuses": {},
        "meta": {}, "rules": [], "lifetime": None, **kw,
    }


OBSERVATORY = "ORM-ONSITE: an RSE with magic=true is the observatory"
CASES: dict[str, Case] = {
    "add_replicas at the observatory": Case(
        "add_replicas", lambda w, a: {"rse": "ORM-ONSITE", "rse_id": w.rse_ids["ORM-ONSITE"]}, FLOW, "writer",
        OBSERVATORY,
    ),
    "add_dids: new files of add_replicas at the observatory": Case(
        "add_dids",
        lambda w, a: {"rse": "ORM-ONSITE", "rse_id": w.rse_ids["ORM-ONSITE"], "dids": [_new_file(w)]},
        FLOW, "writer", OBSERVATORY,
    ),
    "add_dids in a foreign scope with an rse at the observatory": Case(
        "add_dids",
        lambda w, a: {"issuer": a, "dids": [{"scope": OTHER_SCOPE, "name": w.unique("d"), "type": "DATASET",
                                             "rse_id": w.rse_ids["ORM-ONSITE"]}]},
        frozenset({"admin"}), "other", OBSERVATORY,
    ),
    "add_dids with a lifetime in a MAGIC scope": Case(
        "add_dids",
        lambda w, a: {"issuer": a, "dids": [{"scope": "magic_raw", "name": w.unique("d"), "type": "DATASET",
                                             "lifetime": 60}]},
        frozenset({"admin"}), "writer", "lifetime (60 s) needs the account attribute admin",
    ),
    "add_did with a lifetime in a MAGIC scope": Case(
        "add_did", lambda w, a: _add_did("magic_raw", w.unique("d"), a, lifetime=60), frozenset({"admin"}), "writer",
        "lifetime (60 s) needs the account attribute admin",
    ),
    "add_did in a foreign scope with an inline rule at the observatory": Case(
        "add_did",
        lambda w, a: _add_did(OTHER_SCOPE, w.unique("d"), a,
                              rules=[{"account": a, "copies": 1, "rse_expression": "ORM-ONSITE"}]),
        frozenset({"admin"}), "other", OBSERVATORY,
    ),
    "add_did in a foreign scope with content at the observatory (rse in the REST request)": Case(
        "add_did", lambda w, a: _add_did(OTHER_SCOPE, w.unique("d"), a), frozenset({"admin"}), "other", OBSERVATORY,
        body=lambda w, a: {"type": "DATASET", "rse": "ORM-ONSITE", "dids": [_new_file(w, OTHER_SCOPE)]},
    ),
    "add_did owned by the flow's account": Case(
        "add_did", lambda w, a: _add_did(OTHER_SCOPE, w.unique("d"), a, account="magic_scanner"),
        frozenset({"admin"}), "other", "the flow trusts only what its own account owns",
    ),
    "attach_dids in a foreign scope with an rse at the observatory": Case(
        "attach_dids",
        lambda w, a: {"scope": OTHER_SCOPE, "name": w.dataset(OTHER_SCOPE)["name"],
                      "attachment": {"dids": [_new_file(w, OTHER_SCOPE)], "rse_id": w.rse_ids["ORM-ONSITE"]}},
        frozenset({"admin"}), "other", OBSERVATORY,
    ),
    "attach_dids in a MAGIC scope with an rse at the observatory": Case(
        "attach_dids",
        lambda w, a: {"scope": "magic_cal", "name": w.dataset()["name"],
                      "attachment": {"dids": [_new_file(w)], "rse_id": w.rse_ids["ORM-ONSITE"]}},
        FLOW, "writer", OBSERVATORY,
    ),
    "attach_dids_to_dids in a foreign scope with an rse at the observatory": Case(
        "attach_dids_to_dids",
        lambda w, a: {"attachments": [{"scope": OTHER_SCOPE, "name": w.dataset(OTHER_SCOPE)["name"],
                                       "dids": [_new_file(w, OTHER_SCOPE)], "rse_id": w.rse_ids["ORM-ONSITE"]}]},
        frozenset({"admin"}), "other", OBSERVATORY,
    ),
    "detach_dids from a carrier": Case(
        "detach_dids",
        lambda w, a: {"scope": "magic_carrier", "name": w.dataset("magic_carrier")["name"], "dids": [], "issuer": a},
        FLOW, "writer", "in magic_carrier: only the account that owns it",
    ),
    "set_metadata lifetime": Case(
        "set_metadata", lambda w, a: {"scope": "magic_cal", "name": w.dataset()["name"], "key": "lifetime",
                                      "value": 1},
        frozenset({"admin"}), "writer", "setting lifetime",
    ),
    "set_metadata_bulk lifetime": Case(
        "set_metadata_bulk", lambda w, a: {"scope": "magic_cal", "name": w.dataset()["name"], "meta": {"lifetime": 1}},
        frozenset({"admin"}), "writer", "setting lifetime",
    ),
    "set_status of a carrier": Case(
        "set_status", lambda w, a: {"scope": "magic_carrier", "name": w.dataset("magic_carrier")["name"],
                                    "issuer": a},
        FLOW, "writer", "in magic_carrier",
    ),
    "add_rule on MAGIC data at the observatory": Case(
        "add_rule", lambda w, a: _rule_kwargs(w.file(), a, "ORM-ONSITE", purge_replicas=True, lifetime=0), FLOW,
        "writer", f"adding a rule at {OBSERVATORY}",
    ),
    "add_rule on foreign data at an expression that includes the observatory": Case(
        "add_rule", lambda w, a: _rule_kwargs(w.file(OTHER_SCOPE), a, "PIC-DISK|ORM-ONSITE"), FLOW, "other",
        f"adding a rule at {OBSERVATORY}",
    ),
    "add_rule with the flow's comment": Case(
        "add_rule", lambda w, a: _rule_kwargs(w.file(), a, "PIC-DISK", comment="magic-policy:raw"), FLOW, "writer",
        "comments starting with magic-policy: or magic-carrier: are the flow's",
    ),
    "del_rule of a carrier": Case(
        "del_rule", lambda w, a: {"rule_id": w.carrier_rule(), "purge_replicas": True}, FLOW, "writer",
        "in magic_carrier",
    ),
    "update_rule: the flow's comment on a rule of one's own": Case(
        "update_rule",
        lambda w, a: {"rule_id": w.rule(w.file(), a), "options": {"comment": " Magic-Carrier:source"}}, FLOW,
        "writer", "are the flow's",
    ),
    "reduce_rule of a carrier": Case(
        "reduce_rule", lambda w, a: {"rule_id": w.carrier_rule(), "copies": 0}, FLOW, "writer", "in magic_carrier",
    ),
    "move_rule of one's own to the observatory": Case(
        "move_rule", lambda w, a: {"rule_id": w.rule(w.file(), a), "rse_expression": "ORM-ONSITE", "override": {}},
        FLOW, "writer", f"moving a rule at {OBSERVATORY}",
    ),
    "get_signed_url of embargoed data": Case(
        "get_signed_url", lambda w, a: {"dids": [_embargoed(w)]}, frozenset(), "other", "embargoed until",
    ),
    "delete_replicas at the observatory": Case(
        "delete_replicas", lambda w, a: {"rse": "ORM-ONSITE", "rse_id": w.rse_ids["ORM-ONSITE"]}, frozenset(),
        "writer", f"deleting replicas at {OBSERVATORY}",
    ),
    "update_replicas_states at the observatory": Case(
        "update_replicas_states", lambda w, a: {"rse": "ORM-ONSITE", "rse_id": w.rse_ids["ORM-ONSITE"]},
        frozenset({"admin"}), "writer", f"changing the state of replicas at {OBSERVATORY}",
    ),
    "declare_bad_file_replicas at the observatory": Case(
        "declare_bad_file_replicas", lambda w, a: {"rse_id": w.rse_ids["ORM-ONSITE"]}, frozenset(), "writer",
        "declaring replicas at ORM-ONSITE bad",
    ),
    "declare_bad_file_replicas where MAGIC copies lie": Case(
        "declare_bad_file_replicas", lambda w, a: {"rse_id": w.rse_ids["PIC-DISK"]}, frozenset(), "other",
        "the RSE holds MAGIC replicas",
    ),
    "declare_suspicious_file_replicas of a PFN at the observatory": Case(
        "declare_suspicious_file_replicas", lambda w, a: {}, FLOW, "other",
        "the PFNs lie at the observatory or where MAGIC replicas lie",
        body=lambda w, a: {"pfns": [w.pfn(w.file("magic_raw", "ORM-ONSITE"))], "reason": "damaged"},
    ),
    "add_bad_pfns of a PFN at the observatory": Case(
        "add_bad_pfns", lambda w, a: {"state": "BAD"}, frozenset(), "writer", "the PFNs lie at the observatory",
        body=lambda w, a: {"pfns": [w.pfn(w.file("magic_raw", "ORM-ONSITE"))], "state": "BAD", "reason": "x"},
    ),
    "add_bad_dids (no PFN, no RSE passed)": Case(
        "add_bad_pfns", lambda w, a: {"state": "BAD"}, frozenset(), "other", "Rucio does not say at which RSE",
    ),
    "set_tombstone at the observatory": Case(
        "set_tombstone", lambda w, a: {}, frozenset({"admin"}), "writer", f"setting a tombstone at {OBSERVATORY}",
        body=lambda w, a: {"replicas": [{"rse": "ORM-ONSITE", **w.file("magic_raw", "ORM-ONSITE")}]},
    ),
    "quarantine_file_replicas at the observatory": Case(
        "quarantine_file_replicas", lambda w, a: {}, frozenset({"admin"}), "other",
        f"quarantining replicas at {OBSERVATORY}",
        body=lambda w, a: {"rse": "ORM-ONSITE", "replicas": [{"path": "/M1/anything.root"}]},
    ),
}


def _embargoed(world: World) -> dict[str, str]:
    from datetime import date, timedelta

    did = world.dataset()
    world.root.set_metadata(did["scope"], did["name"], "embargo_until", (date.today() + timedelta(days=9)).isoformat())
    return did


@contextmanager
def _request(body: dict[str, Any] | None) -> Iterator[None]:
    """The REST request Rucio's server is answering, for the checks that read what Rucio does not pass them."""
    if body is None:
        yield
        return
    import flask

    with flask.Flask(__name__).test_request_context(method="POST", json=body):
        yield


def test_every_checked_action_has_a_case() -> None:
    from rucio_magic_ext.policy.permission import ACTIONS

    assert set(ACTIONS) <= {case.action for case in CASES.values()}


@pytest.mark.integration
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", list(CASES))
def test_a_call_at_the_observatory_or_on_magic_data_is_decided_as_the_table_says(
    name: str, role: str, world: World
) -> None:
    from rucio.common.types import InternalAccount
    from rucio.core.permission import has_permission
    from rucio.db.sqla.constants import DatabaseOperationType
    from rucio.db.sqla.session import db_session

    case, account = CASES[name], ACCOUNTS[role]
    kwargs = _internal(case.make(world, account))
    body = case.body(world, account) if case.body else None
    with _request(body), db_session(DatabaseOperationType.READ) as session:
        verdict = has_permission(InternalAccount(account), case.action, kwargs, session=session)
    if role in case.allowed:
        assert verdict.allowed, f"{name} refused to {role}: {verdict.message}"
        return
    assert not verdict.allowed, f"{name} allowed to {role}"
    if role == case.attacker:
        assert case.why in verdict.message, verdict.message


@pytest.mark.integration
def test_actions_said_to_be_for_admins_only_are_so_in_rucio(world: World) -> None:
    """NOT_CHECKED says of some actions that Rucio's generic policy allows them to admins only: it does."""
    from rucio.common.types import InternalAccount, InternalScope
    from rucio.core.permission import generic
    from rucio.db.sqla.constants import DatabaseOperationType
    from rucio.db.sqla.session import db_session

    from rucio_magic_ext.policy.permission import NOT_CHECKED

    admins_only = [action for action, reason in NOT_CHECKED.items() if "only admins in Rucio's generic" in reason]
    assert len(admins_only) > 30
    kwargs = {"vo": None, "scope": InternalScope("magic_raw"), "account": InternalAccount("root")}
    with db_session(DatabaseOperationType.READ) as session:
        for role in ("writer", "other"):
            issuer = InternalAccount(ACCOUNTS[role])
            allowed = [action for action in admins_only if generic.has_permission(issuer, action, kwargs, session)]
            assert not allowed, f"Rucio's generic policy allows {allowed} to {role}"
