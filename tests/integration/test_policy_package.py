"""The MAGIC policy package loaded into a real Rucio 41: paths, names with '+', roles, embargo, versions."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from scenery import client_for

pytestmark = pytest.mark.integration

CALIBRATED = "20210314_M1_05095172.001_Y_CrabNebula-W0.40+035.root"


@pytest.fixture(scope="module")
def outsider(rucio_stack: Any, rucio_client: Any) -> Any:
    """An account of another experiment sharing the instance (CTA at PIC), with a scope of its own."""
    client = client_for(rucio_client, "cta_user")
    rucio_client.add_scope("cta_user", "cta_user_scope")
    return client


@pytest.fixture(scope="module")
def writer(rucio_stack: Any, rucio_client: Any) -> Any:
    client = client_for(rucio_client, "magic_operator", {"magic": "writer"})
    for rse in ("ORM-ONSITE", "PIC-DISK", "PIC-ANALYSIS"):
        rucio_client.set_local_account_limit("magic_operator", rse, -1)
    return client


def test_the_stack_runs_with_the_policy_package(rucio_stack: Any) -> None:
    assert "package = rucio_magic_ext.policy" in rucio_stack.settings.rucio_cfg.read_text()


@pytest.fixture(scope="module")
def calibrated(rucio_stack: Any, rucio_client: Any) -> str:
    """A file at PIC-DISK held by a rule of root's: no reaper pass of another module (its unlocked replica
    would go, and with its last replica the file DID) takes it from this module's tests."""
    rucio_client.add_replicas(
        "PIC-DISK", [{"scope": "magic_cal", "name": CALIBRATED, "bytes": 10, "adler32": "0a0b0c0d"}]
    )
    rucio_client.add_replication_rule([{"scope": "magic_cal", "name": CALIBRATED}], 1, "PIC-DISK")
    return CALIBRATED


def test_a_replica_on_a_magic_deterministic_rse_gets_the_magic_path(rucio_client: Any, calibrated: str) -> None:
    (replica,) = rucio_client.list_replicas([{"scope": "magic_cal", "name": CALIBRATED}], rse_expression="PIC-DISK")
    (pfn,) = replica["pfns"]
    prefix = rucio_client.get_protocols("PIC-DISK")[0]["prefix"]
    assert pfn == f"file://localhost{prefix}M1/Calibrated/2021/03/14/{CALIBRATED}"


def test_names_with_plus_pass_the_package_schema_and_not_rucio_generic_one(rucio_client: Any) -> None:
    import jsonschema
    from rucio.common.schema import generic, validate_schema
    from rucio.common.schema.schema_ref import SchemaRef

    name = "20200103_05088072_S_1ES1959+650-W0.40+090.root"
    validate_schema("did", {"scope": "magic_st", "name": name, "type": "FILE"})  # what the server checks
    generic_name = {**generic.NAME, "maxLength": generic.NAME_LENGTH}
    assert isinstance(generic.NAME["maxLength"], SchemaRef)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(name, generic_name)
    rucio_client.add_dataset("magic_st", "ST_SuperStar_20200103_05088072")
    rucio_client.add_files_to_dataset(
        "magic_st",
        "ST_SuperStar_20200103_05088072",
        [{"scope": "magic_st", "name": name, "bytes": 1, "adler32": "00000001"}],
        rse="PIC-DISK",
    )
    assert [did["name"] for did in rucio_client.list_content("magic_st", "ST_SuperStar_20200103_05088072")] == [name]


def test_rucio_generic_rules_still_apply(rucio_client: Any) -> None:
    from rucio.common.exception import InvalidObject
    from rucio.common.schema import validate_schema

    for bad in ("+lead", "has space", "x" * 251):
        with pytest.raises(InvalidObject):
            validate_schema("did", {"scope": "magic_st", "name": bad, "type": "FILE"})
    with pytest.raises(InvalidObject):
        validate_schema("rule", {"dids": [], "copies": 1, "rse_expression": "PIC-DISK", "activity": "Anything"})
    validate_schema("rule", {"dids": [], "copies": 1, "rse_expression": "PIC-DISK", "activity": "MAGIC Export"})


def test_an_account_without_a_magic_role_is_refused_in_magic_scopes_with_the_reason(
    outsider: Any, calibrated: str
) -> None:
    from rucio.common.exception import AccessDenied

    with pytest.raises(AccessDenied) as refused:
        outsider.add_dataset("magic_cal", "M1_Calibrated_20210314_05095172")
    assert "MAGIC scope(s) magic_cal" in str(refused.value) and "magic=writer" in str(refused.value)
    with pytest.raises(AccessDenied, match="magic=writer"):
        outsider.add_replication_rule([{"scope": "magic_cal", "name": CALIBRATED}], 1, "PIC-DISK")
    with pytest.raises(AccessDenied, match="magic=writer"):
        outsider.set_metadata("magic_cal", CALIBRATED, "source", "Crab")
    outsider.add_dataset("cta_user_scope", "cta_dataset")  # its own scope: Rucio's generic policy decides


def test_a_magic_writer_organises_magic_data_and_deletes_its_rules(
    writer: Any, rucio_client: Any, calibrated: str
) -> None:
    dataset = "M1_Calibrated_20210314_05095172"
    writer.add_dataset("magic_cal", dataset)
    writer.attach_dids("magic_cal", dataset, [{"scope": "magic_cal", "name": CALIBRATED}])
    writer.set_metadata("magic_cal", dataset, "run_number", 5095172)
    rule = writer.add_replication_rule([{"scope": "magic_cal", "name": dataset}], 1, "PIC-DISK")[0]
    writer.delete_replication_rule(rule)
    assert rucio_client.get_replication_rule(rule)["expires_at"] is not None


def test_embargoed_data_stays_within_the_configured_rses(writer: Any, rucio_client: Any) -> None:
    from rucio.common.exception import AccessDenied

    dataset = "M2_Calibrated_20210314_05095173"
    rucio_client.add_dataset("magic_cal", dataset)
    rucio_client.set_metadata("magic_cal", dataset, "embargo_until", (date.today() + timedelta(days=30)).isoformat())
    with pytest.raises(AccessDenied) as refused:
        writer.add_replication_rule([{"scope": "magic_cal", "name": dataset}], 1, "ORM-ONSITE|PIC-DISK")
    assert "embargoed until" in str(refused.value) and "ORM-ONSITE lie(s) outside" in str(refused.value)
    writer.add_replication_rule([{"scope": "magic_cal", "name": dataset}], 1, "PIC-DISK")

    lifted = "M2_Calibrated_20210314_05095174"
    rucio_client.add_dataset("magic_cal", lifted)
    rucio_client.set_metadata("magic_cal", lifted, "embargo_until", (date.today() - timedelta(days=1)).isoformat())
    writer.add_replication_rule([{"scope": "magic_cal", "name": lifted}], 1, "PIC-ANALYSIS")


def test_signed_urls_of_embargoed_data_need_a_magic_role(writer: Any, outsider: Any, rucio_client: Any) -> None:
    from rucio.common.types import InternalAccount
    from rucio.core.permission import has_permission
    from rucio.db.sqla.constants import DatabaseOperationType
    from rucio.db.sqla.session import db_session

    dataset = "M2_Calibrated_20210315_05095180"
    rucio_client.add_dataset("magic_cal", dataset)
    rucio_client.set_metadata("magic_cal", dataset, "embargo_until", (date.today() + timedelta(days=30)).isoformat())
    rucio_client.add_account_attribute("cta_user", "sign-url", "true")
    asked = {"dids": [{"scope": "magic_cal", "name": dataset}]}
    with db_session(DatabaseOperationType.READ) as session:
        refused = has_permission(InternalAccount("cta_user"), "get_signed_url", asked, session=session)
        assert not refused and "embargoed" in refused.message
        assert has_permission(InternalAccount("cta_user"), "get_signed_url", {}, session=session)
        assert has_permission(InternalAccount("root"), "get_signed_url", asked, session=session)


def test_scope_extraction_by_name(rucio_stack: Any) -> None:
    from rucio.common.utils import extract_scope

    assert extract_scope(CALIBRATED, default_extract="magic") == ("magic_cal", CALIBRATED)
    assert extract_scope("ST_Melibea_20200103", default_extract="magic") == ("magic_st", "ST_Melibea_20200103")


def test_rucio_refuses_a_package_that_does_not_support_it(tmp_path: Path, rucio_stack: Any) -> None:
    package = tmp_path / "outdated_policy"
    package.mkdir()
    (package / "__init__.py").write_text('SUPPORTED_VERSION = "<41"\n')
    probe = textwrap.dedent(
        """
        from rucio.common.exception import PolicyPackageVersionError
        try:
            import rucio.core.permission
        except PolicyPackageVersionError as error:
            print("refused:", error)
        """
    )
    env = {**rucio_stack.env, "RUCIO_POLICY_PACKAGE": "outdated_policy", "PYTHONPATH": str(tmp_path)}
    refused = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert "refused:" in refused.stdout, refused.stderr
    env["RUCIO_POLICY_PACKAGE"] = "rucio_magic_ext.policy"
    env.pop("PYTHONPATH")
    accepted = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert accepted.returncode == 0 and "refused" not in accepted.stdout, accepted.stderr


def test_only_the_flow_and_admins_register_replicas_at_the_observatory(world: World) -> None:
    """ORM-ONSITE has magic=true: the service account registers there, a MAGIC writer no longer does (a replica
    under a MAGIC file's path is that file for the reaper), nor any other account."""
    from rucio.common.exception import AccessDenied

    def replica() -> dict[str, Any]:
        name = world.unique("file") + ".root"
        path = world.storage / "orm-onsite" / "policy-tests" / name
        return {"scope": "magic_cal", "name": name, "bytes": 4, "adler32": "0bfc01a6", "pfn": f"file://localhost:0{path}"}

    world.clients["service"].add_replicas("ORM-ONSITE", [replica()])
    for role in ("writer", "reader", "other"):
        with pytest.raises(AccessDenied, match="ORM-ONSITE: an RSE with magic=true is the observatory"):
            world.clients[role].add_replicas("ORM-ONSITE", [replica()])


# --- the permission table of README.md ("Permissions"), row by row, through the REST API ---------------

ROLES = ("admin", "writer", "service", "reader", "other")
ACCOUNTS = {
    "admin": "magic_admin",
    "writer": "magic_operator",
    "service": "magic_scanner",
    "reader": "magic_reader",
    "other": "cta_user",
}
FOREIGN_SCOPE = "cta_user_scope"
RSES = ("ORM-ONSITE", "PIC-DISK", "PIC-ANALYSIS")


def _login(rucio_client: Any, account: str) -> Any:
    """A REST client for an existing account, given a userpass identity first."""
    from rucio.client import Client

    password = uuid.uuid4().hex
    rucio_client.add_identity(
        account, identity=account, authtype="USERPASS", email=f"{account}@example.org", password=password
    )
    return Client(account=account, auth_type="userpass", creds={"username": account, "password": password})


class World:
    """Fresh DIDs and rules for one row, made as root; the row's attempts then run as the role's account."""

    def __init__(self, root: Any, clients: dict[str, Any], storage: Path) -> None:
        self.root = root
        self.clients = clients
        self.storage = storage

    @staticmethod
    def unique(prefix: str) -> str:
        return f"{prefix}_{uuid.uuid4().hex[:12]}"

    def file(self, scope: str = "magic_cal", rses: tuple[str, ...] = ("PIC-DISK",)) -> dict[str, str]:
        """A new file with replicas on ``rses``; on ORM-ONSITE its bytes really lie on the storage."""
        did = {"scope": scope, "name": self.unique("file") + ".root"}
        for rse in rses:
            replica = {**did, "bytes": 4, "adler32": "0bfc01a6"}
            if rse == "ORM-ONSITE":
                path = self.orm_path(did)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"MAGI")
                replica["pfn"] = f"file://localhost:0{path}"
            self.root.add_replicas(rse, [replica])
        return did

    def orm_path(self, did: dict[str, str]) -> Path:
        return self.storage / "orm-onsite" / "policy-tests" / did["name"]

    def dataset(self, scope: str = "magic_cal", files: tuple[dict[str, str], ...] = ()) -> dict[str, str]:
        did = {"scope": scope, "name": self.unique("dataset")}
        self.root.add_dataset(scope, did["name"])
        if files:
            self.root.attach_dids(scope, did["name"], list(files))
        return did

    def rule(
        self, did: dict[str, str], account: str = "root", rse: str = "PIC-DISK", copies: int = 1, **kw: Any
    ) -> str:
        return self.root.add_replication_rule([did], copies, rse, account=account, **kw)[0]

    def two_copies(self, account: str = "root", scope: str = "magic_cal") -> tuple[dict[str, str], str]:
        """A file on PIC-DISK and ORM-ONSITE under one OK rule of two copies: reducible, and movable to
        PIC-ANALYSIS."""
        did = self.file(scope, ("PIC-DISK", "ORM-ONSITE"))
        return did, self.rule(did, account, "PIC-DISK|ORM-ONSITE", 2)

    def embargo(self, did: dict[str, str], days: int = 30) -> None:
        until = (date.today() + timedelta(days=days)).isoformat()
        self.root.set_metadata(did["scope"], did["name"], "embargo_until", until)

    def carrier(self, copies: int = 1) -> tuple[dict[str, str], dict[str, str], str]:
        """A carrier as the flow makes it: a file at the observatory (bytes on the storage), the carrier dataset
        in magic_carrier, and the service account's source rule there with purge_replicas."""
        rses = ("ORM-ONSITE", "PIC-DISK") if copies == 2 else ("ORM-ONSITE",)
        did = self.file("magic_raw", rses)
        carrier = self.dataset("magic_carrier", (did,))
        rule = self.rule(
            carrier, "magic_scanner", "|".join(rses), copies, purge_replicas=True, comment="magic-carrier:source"
        )
        return did, carrier, rule

    def untouched(self, rule_id: str) -> None:
        rule = self.root.get_replication_rule(rule_id)
        assert rule["expires_at"] is None and rule["child_rule_id"] is None, rule


Attempts = list[Callable[[], Any]]


def _reduce(client: Any, rule_id: str, copies: int) -> None:
    """``reduce_replication_rule``: Rucio 41's server answers 201, which its client reports as an unknown error."""
    from rucio.common.exception import AccessDenied, RucioException

    try:
        client.reduce_replication_rule(rule_id, copies)
    except AccessDenied:
        raise
    except RucioException as error:
        if "http status code: 201" not in str(error):
            raise


def row_magic_data(world: World, client: Any, account: str) -> Attempts:
    dataset = world.unique("M1_Calibrated")
    return [
        lambda: client.add_dataset("magic_cal", dataset),
        lambda: client.attach_dids("magic_cal", dataset, [world.file()]),
        lambda: client.set_metadata("magic_cal", dataset, "run_number", 5095172),
        lambda: client.set_dids_metadata_bulk([{"scope": "magic_cal", "name": dataset, "meta": {"source": "Crab"}}]),
        lambda: client.close("magic_cal", dataset),
    ]


def row_replicas_on_magic_rse(world: World, client: Any, account: str) -> Attempts:
    name = world.unique("file") + ".root"
    path = world.storage / "orm-onsite" / "policy-tests" / name
    replica = {"scope": "magic_cal", "name": name, "bytes": 4, "adler32": "0bfc01a6", "pfn": f"file://localhost:0{path}"}
    return [lambda: client.add_replicas("ORM-ONSITE", [replica])]


def row_second_did_on_a_path(world: World, client: Any, account: str) -> Attempts:
    """A path at the observatory that a MAGIC file's replica names, given to another DID: refused to everyone."""
    taken = world.file(rses=("ORM-ONSITE",))
    pfn = f"file://localhost:0{world.orm_path(taken)}"
    name = world.unique("file") + ".root"
    other = {"scope": "magic_cal", "name": name, "bytes": 4, "adler32": "0bfc01a6", "pfn": pfn}
    return [lambda: client.add_replicas("ORM-ONSITE", [other])]


def row_attach_at_observatory(world: World, client: Any, account: str) -> Attempts:
    dataset = world.dataset()
    name = world.unique("file") + ".root"
    path = world.storage / "orm-onsite" / "policy-tests" / name
    new = {"scope": "magic_cal", "name": name, "bytes": 4, "adler32": "0bfc01a6", "pfn": f"file://localhost:0{path}"}
    return [lambda: client.attach_dids(dataset["scope"], dataset["name"], [new], rse="ORM-ONSITE")]


def row_rules_at_observatory(world: World, client: Any, account: str) -> Attempts:
    magic, foreign = world.file(), world.file(FOREIGN_SCOPE)
    own = world.rule(world.file(), account)
    return [
        lambda: client.add_replication_rule([magic], 1, "ORM-ONSITE"),
        lambda: client.add_replication_rule([foreign], 1, "PIC-DISK|ORM-ONSITE", purge_replicas=True),
        lambda: client.move_replication_rule(own, "ORM-ONSITE", {}),
    ]


def row_flow_comments(world: World, client: Any, account: str) -> Attempts:
    own = [world.rule(world.file(), account) for _ in range(2)]
    return [
        lambda: client.add_replication_rule([world.file()], 1, "PIC-DISK", comment="magic-policy:raw"),
        lambda: client.update_replication_rule(own[0], {"comment": "magic-carrier:source"}),
        lambda: client.move_replication_rule(own[1], "PIC-ANALYSIS", {"comment": "magic-policy:raw"}),
    ]


def row_suspicious_at_observatory(world: World, client: Any, account: str) -> Attempts:
    did = world.file("magic_raw", ("ORM-ONSITE",))
    pfn = f"file://localhost:0{world.orm_path(did)}"
    return [lambda: _declared(client.declare_suspicious_file_replicas([pfn], "policy test"))]


def _declared(undeclared: Any) -> None:
    """Rucio answers a declaration with what it could not declare: an accepted one must declare everything."""
    assert not undeclared, undeclared


def row_own_rule(world: World, client: Any, account: str) -> Attempts:
    did = world.file()
    return [lambda: client.add_replication_rule([did], 1, "PIC-DISK")]


def row_change_own_rule(world: World, client: Any, account: str) -> Attempts:
    rules = [world.two_copies(account)[1] for _ in range(4)]
    return [
        lambda: client.update_replication_rule(rules[0], {"lifetime": 3600}),
        lambda: _reduce(client, rules[1], 1),
        lambda: client.move_replication_rule(rules[2], "PIC-DISK|PIC-ANALYSIS", {}),
        lambda: client.delete_replication_rule(rules[3]),
    ]


def row_change_others_rule(world: World, client: Any, account: str) -> Attempts:
    rules = [world.two_copies("root")[1] for _ in range(5)]
    return [
        lambda: client.delete_replication_rule(rules[0]),
        lambda: client.update_replication_rule(rules[1], {"lifetime": 0}),
        lambda: client.update_replication_rule(rules[2], {"comment": "mine now"}),
        lambda: _reduce(client, rules[3], 1),
        lambda: client.move_replication_rule(rules[4], "PIC-DISK|PIC-ANALYSIS", {}),
    ]


def row_boost_others_rule(world: World, client: Any, account: str) -> Attempts:
    rule = world.rule(world.file(), "root")
    return [
        lambda: client.update_replication_rule(rule, {"priority": 4}),
        lambda: client.update_replication_rule(rule, {"boost_rule": True}),
    ]


def row_detach_own_rules(world: World, client: Any, account: str) -> Attempts:
    file = world.file()
    dataset = world.dataset(files=(file,))
    world.rule(dataset, account)
    return [lambda: client.detach_dids(dataset["scope"], dataset["name"], [file])]


def row_detach_others_rules(world: World, client: Any, account: str) -> Attempts:
    file = world.file()
    dataset = world.dataset(files=(file,))
    container = {"scope": "magic_cal", "name": world.unique("container")}
    world.root.add_container(container["scope"], container["name"])
    world.root.attach_dids(container["scope"], container["name"], [dataset])
    world.rule(container, "root")  # a rule on the collection above still locks the file
    return [lambda: client.detach_dids(dataset["scope"], dataset["name"], [file])]


def row_carrier_dids(world: World, client: Any, account: str) -> Attempts:
    did, carrier, _ = world.carrier()
    scope, name = carrier["scope"], carrier["name"]
    return [
        lambda: client.add_dataset("magic_carrier", world.unique("carrier")),
        lambda: client.attach_dids(scope, name, [world.file("magic_raw")]),
        lambda: client.set_metadata(scope, name, "policy", "none"),
        lambda: client.detach_dids(scope, name, [did]),
        lambda: client.close(scope, name),
    ]


def row_carrier_rules(world: World, client: Any, account: str) -> Attempts:
    carriers = [world.carrier() for _ in range(4)]
    reducible = world.carrier(copies=2)
    return [
        lambda: client.add_replication_rule([carriers[0][1]], 1, "PIC-DISK"),
        lambda: client.delete_replication_rule(carriers[1][2]),
        lambda: client.update_replication_rule(carriers[2][2], {"lifetime": 0}),
        lambda: _reduce(client, reducible[2], 1),
        lambda: client.move_replication_rule(carriers[3][2], "PIC-DISK", {}),
    ]


def row_mixed_calls(world: World, client: Any, account: str) -> Attempts:
    magic_file, foreign_file = world.file(), world.file(FOREIGN_SCOPE)
    magic_dataset, foreign_dataset = world.dataset(), world.dataset(FOREIGN_SCOPE)
    both = [
        {"scope": "magic_cal", "name": world.unique("dataset"), "type": "DATASET"},
        {"scope": FOREIGN_SCOPE, "name": world.unique("dataset"), "type": "DATASET"},
    ]
    return [
        lambda: client.add_dids(both),
        lambda: client.attach_dids(foreign_dataset["scope"], foreign_dataset["name"], [magic_file]),
        lambda: client.attach_dids(magic_dataset["scope"], magic_dataset["name"], [foreign_file]),
    ]


def row_attach_creating_replicas(world: World, client: Any, account: str) -> Attempts:
    dataset = world.dataset()
    new = {"scope": "magic_cal", "name": world.unique("file") + ".root", "bytes": 4, "adler32": "0bfc01a6"}
    return [lambda: client.attach_dids(dataset["scope"], dataset["name"], [new], rse="PIC-DISK")]


def row_embargo_and_lifetime(world: World, client: Any, account: str) -> Attempts:
    datasets = [world.dataset() for _ in range(4)]
    until = (date.today() + timedelta(days=30)).isoformat()
    return [
        lambda: client.add_dataset("magic_cal", world.unique("dataset"), meta={"embargo_until": until}),
        lambda: client.set_metadata("magic_cal", datasets[0]["name"], "embargo_until", until),
        lambda: client.set_metadata_bulk("magic_cal", datasets[1]["name"], {"embargo_until": until}),
        lambda: client.set_dids_metadata_bulk([{**datasets[2], "meta": {"embargo_until": until}}]),
        lambda: client.set_metadata("magic_cal", datasets[3]["name"], "lifetime", 3600),
        lambda: client.add_dataset("magic_cal", world.unique("dataset"), lifetime=3600),
        lambda: client.add_dids([{"scope": "magic_cal", "name": world.unique("dataset"), "type": "DATASET",
                                   "lifetime": 3600}]),
    ]


def row_lift_embargo(world: World, client: Any, account: str) -> Attempts:
    dataset = world.dataset()
    world.embargo(dataset)
    return [
        lambda: client.set_metadata("magic_cal", dataset["name"], "embargo_until", date.today().isoformat()),
        lambda: client.set_metadata_bulk("magic_cal", dataset["name"], {"embargo_until": None}),
    ]


def row_embargo_outside(world: World, client: Any, account: str) -> Attempts:
    embargoed = world.file()
    world.embargo(embargoed)
    holder = world.dataset(files=(embargoed,))  # holds embargoed data, carries no embargo itself
    member = world.file()
    world.embargo(world.dataset(files=(member,)))  # no embargo of its own, but its dataset has one
    own = world.rule(embargoed, account)
    return [
        lambda: client.add_replication_rule([embargoed], 1, "ORM-ONSITE"),
        lambda: client.add_replication_rule([holder], 1, "PIC-ANALYSIS"),
        lambda: client.add_replication_rule([member], 1, "PIC-ANALYSIS"),
        lambda: client.move_replication_rule(own, "PIC-ANALYSIS", {}),
    ]


def row_embargo_inside(world: World, client: Any, account: str) -> Attempts:
    dataset = world.dataset(files=(world.file(rses=("PIC-ANALYSIS",)),))
    world.embargo(dataset)
    return [lambda: client.add_replication_rule([dataset], 1, "PIC-DISK")]


def row_inline_rules(world: World, client: Any, account: str) -> Attempts:
    rules = [{"account": account, "copies": 1, "rse_expression": "PIC-ANALYSIS"}]
    return [lambda: client.add_dataset("magic_cal", world.unique("dataset"), rules=rules)]


def row_foreign_scope(world: World, client: Any, account: str) -> Attempts:
    dataset = world.dataset(FOREIGN_SCOPE)
    return [
        lambda: client.add_dataset(FOREIGN_SCOPE, world.unique("dataset")),
        lambda: client.attach_dids(FOREIGN_SCOPE, dataset["name"], [world.file(FOREIGN_SCOPE)]),
        lambda: client.set_metadata(FOREIGN_SCOPE, dataset["name"], "campaign", "x"),
    ]


# Row of README.md's table -> (attempts, allowed roles). Each attempt runs on its own; all are allowed or all refused.
TABLE: dict[str, tuple[Callable[[World, Any, str], Attempts], frozenset[str]]] = {
    "Add DIDs, attach files, set metadata, close, in MAGIC scopes": (row_magic_data, frozenset(ROLES[:3])),
    "Register a replica at a path of a non-deterministic RSE that another DID's replica names": (
        row_second_did_on_a_path,
        frozenset(),
    ),
    "Register replicas on an RSE with `magic=true` (ORM-ONSITE)": (
        row_replicas_on_magic_rse,
        frozenset({"admin", "service"}),
    ),
    "Attach new files with an `rse` of `magic=true` (creates replicas there)": (
        row_attach_at_observatory,
        frozenset({"admin", "service"}),
    ),
    "Add or move a rule whose RSE expression includes an RSE with `magic=true` (any scope)": (
        row_rules_at_observatory,
        frozenset({"admin", "service"}),
    ),
    "Add, update or move a rule with a comment starting `magic-policy:` or `magic-carrier:`": (
        row_flow_comments,
        frozenset({"admin", "service"}),
    ),
    "Declare replicas at an RSE with `magic=true` suspicious": (
        row_suspicious_at_observatory,
        frozenset({"admin", "service"}),
    ),
    "Add a rule of its own on MAGIC data": (row_own_rule, frozenset(ROLES[:3])),
    "Update, reduce, move or delete a rule of its own (MAGIC scopes)": (row_change_own_rule, frozenset(ROLES[:3])),
    "Delete, update (lifetime, comment, ...), reduce or move another account's rule (MAGIC scopes)": (
        row_change_others_rule,
        frozenset({"admin"}),
    ),
    "Raise the priority of, or boost, another account's rule (MAGIC scopes)": (
        row_boost_others_rule,
        frozenset(ROLES[:3]),
    ),
    "Detach from a collection that only its own rules cover": (row_detach_own_rules, frozenset(ROLES[:3])),
    "Detach from a collection that another account's rule covers (on it or above it)": (
        row_detach_others_rules,
        frozenset({"admin"}),
    ),
    "`magic_carrier`: add DIDs, attach, set metadata, detach, close": (
        row_carrier_dids,
        frozenset({"admin", "service"}),
    ),
    "`magic_carrier`: add, delete, update (lifetime 0), reduce or move rules": (
        row_carrier_rules,
        frozenset({"admin", "service"}),
    ),
    "One call with MAGIC and foreign DIDs (add_dids; attach to a foreign parent or of foreign children)": (
        row_mixed_calls,
        frozenset({"admin"}),
    ),
    "Attach with an `rse` that lacks `magic=true` (creates replicas there)": (
        row_attach_creating_replicas,
        frozenset({"admin"}),
    ),
    "Set `embargo_until` (also on a new DID) or a lifetime (metadata, or the `lifetime` of a new DID)": (
        row_embargo_and_lifetime,
        frozenset({"admin"}),
    ),
    "Shorten or remove an embargo": (row_lift_embargo, frozenset({"admin"})),
    "Rule or moved rule on embargoed data, or on a collection above or below it, outside `embargo_rse_expression`": (
        row_embargo_outside,
        frozenset({"admin"}),
    ),
    "Rule on embargoed data inside `embargo_rse_expression`": (row_embargo_inside, frozenset(ROLES[:3])),
    "Rules given inline with a new DID outside `embargo_rse_expression`": (
        row_inline_rules,
        frozenset({"admin"}),
    ),
    "Foreign scope (owned by the other account): add DIDs, attach, set metadata": (
        row_foreign_scope,
        frozenset({"admin", "other"}),
    ),
}


@pytest.fixture(scope="module")
def world(rucio_stack: Any, rucio_client: Any, writer: Any, outsider: Any) -> World:
    clients = {
        "admin": client_for(rucio_client, ACCOUNTS["admin"], {"admin": "true"}),
        "writer": writer,
        "service": _login(rucio_client, ACCOUNTS["service"]),
        "reader": client_for(rucio_client, ACCOUNTS["reader"], {"magic": "reader"}),
        "other": outsider,
    }
    for account in ACCOUNTS.values():
        for rse in RSES:
            rucio_client.set_local_account_limit(account, rse, -1)
    return World(rucio_client, clients, rucio_stack.settings.storage_dir)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("row", list(TABLE))
def test_the_permission_table(row: str, role: str, world: World) -> None:
    from rucio.common.exception import AccessDenied

    make, allowed = TABLE[row]
    attempts = make(world, world.clients[role], ACCOUNTS[role])
    for number, attempt in enumerate(attempts):
        if role in allowed:
            attempt()
        else:
            with pytest.raises(AccessDenied):
                attempt()
                pytest.fail(f"attempt {number} of {row!r} was allowed to {role}")


def test_the_readme_table_is_the_tested_one() -> None:
    """Every row of README.md's permission table is a row above, with the same verdicts."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### Permissions", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| action")]
    documented = {}
    for line in rows:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        documented[cells[0]] = frozenset(role for role, cell in zip(ROLES, cells[1:]) if cell == "allowed")
    assert documented == {row: allowed for row, (_, allowed) in TABLE.items()}


def test_a_writer_cannot_release_a_carrier_and_the_source_bytes_stay(
    writer: Any, world: World, run_daemon_once: Callable[..., None]
) -> None:
    """The review's case: deleting the carrier's source rule (or lifetime 0) would make the observatory copy
    OBSOLETE and the reaper delete it. Every way is refused, and after a reaper pass the bytes are still there."""
    from rucio.common.exception import AccessDenied

    did, carrier, rule = world.carrier()
    for attempt in (
        lambda: writer.delete_replication_rule(rule),
        lambda: writer.delete_replication_rule(rule, purge_replicas=True),
        lambda: writer.update_replication_rule(rule, {"lifetime": 0}),
        lambda: writer.update_replication_rule(rule, {"child_rule_id": rule}),
        lambda: _reduce(writer, rule, 0),
        lambda: writer.move_replication_rule(rule, "PIC-DISK", {}),
        lambda: writer.detach_dids(carrier["scope"], carrier["name"], [did]),
        lambda: writer.set_metadata(carrier["scope"], carrier["name"], "lifetime", 1),
    ):
        with pytest.raises(AccessDenied):
            attempt()
    run_daemon_once("reaper", "--rses", "ORM-ONSITE")
    world.untouched(rule)
    (replica,) = world.root.list_replicas([did], rse_expression="ORM-ONSITE")
    assert replica["states"] == {"ORM-ONSITE": "AVAILABLE"}
    assert world.orm_path(did).read_bytes() == b"MAGI"


def test_refused_attempts_leave_the_rules_as_they_were(world: World) -> None:
    """A refusal is a whole refusal: the carrier rules and the other account's rules are untouched."""
    from rucio.common.exception import AccessDenied

    _, _, carrier_rule = world.carrier()
    _, others_rule = world.two_copies("root")
    for role in ("writer", "reader", "other"):
        client = world.clients[role]
        for rule in (carrier_rule, others_rule):
            with pytest.raises(AccessDenied):
                client.update_replication_rule(rule, {"lifetime": 0})
            with pytest.raises(AccessDenied):
                client.delete_replication_rule(rule)
    world.untouched(carrier_rule)
    world.untouched(others_rule)


# --- attacks that reached the observatory's bytes through the REST API, each as its attacker ---------------


def _victim(world: World) -> tuple[dict[str, str], str]:
    """A MAGIC file registered at ORM-ONSITE by root, its bytes on ORM's storage, copied nowhere yet; its PFN."""
    did = world.file("magic_raw", ("ORM-ONSITE",))
    return did, f"file://localhost:0{world.orm_path(did)}"


def _bytes_stand(world: World, did: dict[str, str], run_daemon_once: Callable[..., None]) -> None:
    """After the daemons that would have acted (judge-cleaner, undertaker, reaper at the observatory), the file's
    bytes are still at ORM, whole, and still the replica Rucio knows."""
    import zlib

    for daemon, *args in (("judge-cleaner",), ("undertaker",), ("reaper", "--rses", "ORM-ONSITE")):
        run_daemon_once(daemon, *args)
    assert f"{zlib.adler32(world.orm_path(did).read_bytes()):08x}" == f"{zlib.adler32(b'MAGI'):08x}"
    (replica,) = world.root.list_replicas([did], rse_expression="ORM-ONSITE")
    assert replica["states"] == {"ORM-ONSITE": "AVAILABLE"}


def test_a_writer_cannot_free_a_magic_file_through_a_replica_of_its_own_at_its_path(
    world: World, run_daemon_once: Callable[..., None]
) -> None:
    """Attack (3): a writer registered a new file at ORM-ONSITE under a MAGIC file's path and put its own rule there
    with purge_replicas and lifetime 0; the judge-cleaner and the greedy reaper deleted the only copy."""
    from rucio.common.exception import AccessDenied

    victim, pfn = _victim(world)
    writer = world.clients["writer"]
    decoy = {"scope": "magic_cal", "name": world.unique("decoy") + ".root", "bytes": 4, "adler32": "0bfc01a6"}
    with pytest.raises(AccessDenied, match="registering replicas at ORM-ONSITE: an RSE with magic=true is the obs"):
        writer.add_replicas("ORM-ONSITE", [{**decoy, "pfn": pfn}])
    own = world.file()  # a file of the writer's own making, at PIC-DISK
    for expression in ("ORM-ONSITE", "PIC-DISK|ORM-ONSITE"):
        with pytest.raises(AccessDenied, match="adding a rule at ORM-ONSITE: an RSE with magic=true is the obs"):
            writer.add_replication_rule([own], 1, expression, purge_replicas=True, lifetime=0)
    assert not list(world.root.list_replicas([{"scope": "magic_cal", "name": decoy["name"]}]))
    _bytes_stand(world, victim, run_daemon_once)


def test_a_writer_cannot_give_a_new_dataset_a_lifetime(world: World, run_daemon_once: Callable[..., None]) -> None:
    """Attack (4): ``add_dataset(..., lifetime=60)`` was accepted (only the ``lifetime`` metadata key was checked):
    a writer made the run dataset before the flow did, and the undertaker deleted it with the flow's rules."""
    from rucio.common.exception import AccessDenied

    victim, _ = _victim(world)
    writer, name = world.clients["writer"], world.unique("M1_RAW_20200103")
    with pytest.raises(AccessDenied, match=f"giving magic_raw:{name} a lifetime .60 s. needs the account attribute"):
        writer.add_dataset("magic_raw", name, lifetime=60)
    with pytest.raises(AccessDenied, match="lifetime"):
        writer.add_dids([{"scope": "magic_raw", "name": name, "type": "DATASET", "lifetime": 60}])
    with pytest.raises(AccessDenied, match="lifetime"):
        writer.add_did("magic_raw", name, "DATASET", meta={"lifetime": 60})
    world.root.add_dataset("magic_raw", name)  # the name is still the flow's to take
    world.root.attach_dids("magic_raw", name, [victim])
    rule = world.rule({"scope": "magic_raw", "name": name}, "magic_scanner", "ORM-ONSITE")
    assert world.root.get_did("magic_raw", name)["expired_at"] is None
    _bytes_stand(world, victim, run_daemon_once)
    world.untouched(rule)


def test_another_experiment_cannot_reach_the_observatory_from_its_own_scope(
    world: World, run_daemon_once: Callable[..., None]
) -> None:
    """Attack (5): another experiment's account, in its own scope (no MAGIC scope named), attached a file with a
    MAGIC file's PFN at ORM-ONSITE; the check returned before looking at the RSE."""
    from rucio.common.exception import AccessDenied

    victim, pfn = _victim(world)
    other = world.clients["other"]
    dataset = world.dataset(FOREIGN_SCOPE)
    stolen = {"scope": FOREIGN_SCOPE, "name": world.unique("stolen"), "bytes": 4, "adler32": "0bfc01a6", "pfn": pfn}
    observatory = "ORM-ONSITE: an RSE with magic=true is the observatory"
    attempts = [
        lambda: other.attach_dids(FOREIGN_SCOPE, dataset["name"], [stolen], rse="ORM-ONSITE"),
        lambda: other.attach_dids_to_dids(
            [{"scope": FOREIGN_SCOPE, "name": dataset["name"], "rse": "ORM-ONSITE", "dids": [stolen]}]
        ),
        lambda: other.add_did(FOREIGN_SCOPE, world.unique("dataset"), "DATASET", dids=[stolen], rse="ORM-ONSITE"),
        lambda: other.add_dids(
            [{"scope": FOREIGN_SCOPE, "name": world.unique("dataset"), "type": "DATASET", "rse": "ORM-ONSITE"}]
        ),
        lambda: other.add_replicas("ORM-ONSITE", [stolen]),
        lambda: other.add_replication_rule([world.file(FOREIGN_SCOPE)], 1, "ORM-ONSITE", purge_replicas=True),
    ]
    for attempt in attempts:
        with pytest.raises(AccessDenied, match=observatory):
            attempt()
    with pytest.raises(AccessDenied, match="declaring replicas suspicious: the PFNs lie at the observatory"):
        other.declare_suspicious_file_replicas([pfn], "said to be damaged")
    assert not list(world.root.list_replicas([{"scope": FOREIGN_SCOPE, "name": stolen["name"]}]))
    _bytes_stand(world, victim, run_daemon_once)


def test_rules_inline_with_bulk_dids_are_checked_as_with_one_did(world: World) -> None:
    """add_dids takes inline rules as add_did does; Rucio 41's server then fails on them (HTTP 500) even for
    root, so only the refusal, which comes first, is tested here."""
    from rucio.common.exception import AccessDenied

    for role in ("writer", "service"):
        rules = [{"account": ACCOUNTS[role], "copies": 1, "rse_expression": "PIC-ANALYSIS"}]
        new = {"scope": "magic_cal", "name": world.unique("dataset"), "type": "DATASET", "rules": rules}
        with pytest.raises(AccessDenied, match="embargo_rse_expression"):
            world.clients[role].add_dids([new])


ODD_KWARGS: list[dict[str, Any]] = [
    {"rule_id": None},
    {"rule_id": "not-a-rule-id"},
    {"rule_id": uuid.uuid4().hex, "options": None},
    {"scope": None, "name": None},
    {"scope": 5, "name": 7, "key": None, "meta": "not a dict"},
    {"scope": "magic_cal", "name": "x", "meta": {"embargo_until": "not a date"}, "rules": [{}, None, "x"]},
    {"scope": "magic_carrier", "name": "x", "dids": "not a list", "attachment": None},
    {"dids": None},
    {"dids": "magic_cal"},
    {"dids": [None, 1, {"scope": "magic_cal"}, {"name": "x"}], "rse_expression": "((("},
    {"dids": [{"scope": "magic_cal", "name": "x", "rse_id": "not-an-rse-id", "dids": [None]}]},
    {"attachment": {"dids": "x", "rse_id": "nope"}, "scope": "magic_cal", "name": "x"},
    {"attachments": [None, {"scope": "magic_cal"}, {"scope": "magic_cal", "dids": [{"scope": 1}]}]},
    {"rse": "NO-SUCH-RSE", "rse_id": "nope"},
    {"options": {"lifetime": 0}, "override": "x", "rse_expression": None},
]


@pytest.mark.parametrize("issuer", ["root", "magic_operator", "cta_user", "magic_scanner", "nobody_at_all"])
def test_a_check_never_raises(issuer: str, world: World, caplog: pytest.LogCaptureFixture) -> None:
    """Every action the module handles, with no arguments and with odd ones, as Rucio's own tests call them
    (``update_rule`` without ``rule_id``): an answer every time, from the checks themselves, not from the guard
    that turns an exception into a refusal."""
    from rucio.common.types import InternalAccount
    from rucio.core.permission import has_permission
    from rucio.db.sqla.constants import DatabaseOperationType
    from rucio.db.sqla.session import db_session

    from rucio_magic_ext.policy import permission

    rule = world.rule(world.file(), "root")
    account = InternalAccount(issuer)
    with caplog.at_level("ERROR", logger=permission.LOGGER.name), db_session(DatabaseOperationType.READ) as session:
        for action in permission.ACTIONS:
            assert permission.has_permission(account, action, {}, session) is None, action
            for kwargs in [*ODD_KWARGS, {"rule_id": rule, "options": "x", "override": None}]:
                verdict = permission.has_permission(account, action, kwargs, session)
                assert verdict is None or isinstance(verdict.allowed, bool)
        has_permission(account, "update_rule", {"options": {"boost_rule": True}}, session=session)  # Rucio's test
    assert not [record for record in caplog.records if record.name == permission.LOGGER.name]


def test_rucio_upstream_boost_check_still_holds(rucio_stack: Any, outsider: Any) -> None:
    """Rucio's test_permission.py::test_permission_update_rule_boost, on this policy package."""
    from rucio.common.types import InternalAccount
    from rucio.core.permission import has_permission

    kwargs = {"options": {"boost_rule": True}}
    assert has_permission(InternalAccount("root"), "update_rule", kwargs)
    assert not has_permission(InternalAccount("cta_user"), "update_rule", kwargs)


def test_plus_in_names_through_rest_only_in_magic_scopes(world: World) -> None:
    """add_did, add_replicas and attach validate ``did``, ``dids`` and ``attachment``: '+' passes in MAGIC scopes
    and is refused by the schema elsewhere, for every account, root included."""
    from rucio.common.exception import InvalidObject

    root, plus = world.root, world.unique("1ES1959+650")
    root.add_dataset("magic_st", plus)
    root.add_replicas("PIC-DISK", [{"scope": "magic_st", "name": plus + ".root", "bytes": 1, "adler32": "00000001"}])
    root.attach_dids("magic_st", plus, [{"scope": "magic_st", "name": plus + ".root"}])
    world.clients["writer"].add_dataset("magic_cal", plus)
    assert [did["name"] for did in root.list_content("magic_st", plus)] == [plus + ".root"]

    foreign = world.dataset(FOREIGN_SCOPE)
    for client in (root, world.clients["other"]):
        with pytest.raises(InvalidObject):
            client.add_dataset(FOREIGN_SCOPE, plus)
        with pytest.raises(InvalidObject):
            client.add_replicas(
                "PIC-DISK", [{"scope": FOREIGN_SCOPE, "name": plus, "bytes": 1, "adler32": "00000001"}]
            )
        with pytest.raises(InvalidObject):
            client.attach_dids(FOREIGN_SCOPE, foreign["name"], [{"scope": FOREIGN_SCOPE, "name": plus}])
    with pytest.raises(InvalidObject):  # a MAGIC parent does not let a foreign child through
        root.attach_dids("magic_st", plus, [{"scope": FOREIGN_SCOPE, "name": plus}])


def test_magic_activities_pass_where_rucio_validates_an_activity_alone(world: World) -> None:
    """Subscriptions and update_rule validate ``activity`` by itself, through the SCHEMAS table."""
    from rucio.common.schema import validate_schema

    validate_schema("activity", "MAGIC Export")
    validate_schema("name", "CrabNebula-W0.40+035")
    rule = world.rule(world.file(), "root")
    world.root.update_replication_rule(rule, {"activity": "MAGIC Tape"})
    assert world.root.get_replication_rule(rule)["activity"] == "MAGIC Tape"
