"""The MAGIC policy package loaded into a real Rucio 41: paths, names with '+', roles, embargo, versions."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

CALIBRATED = "20210314_M1_05095172.001_Y_CrabNebula-W0.40+035.root"


def _client_for(rucio_client: Any, account: str, attributes: dict[str, str] | None = None) -> Any:
    """A REST client logged in as a new account (userpass), with the given account attributes."""
    from rucio.client import Client

    password = uuid.uuid4().hex
    rucio_client.add_account(account, "USER", f"{account}@example.org")
    rucio_client.add_identity(
        account, identity=account, authtype="USERPASS", email=f"{account}@example.org", password=password
    )
    for key, value in (attributes or {}).items():
        rucio_client.add_account_attribute(account, key, value)
    return Client(account=account, auth_type="userpass", creds={"username": account, "password": password})


@pytest.fixture(scope="module")
def outsider(rucio_stack: Any, rucio_client: Any) -> Any:
    """An account of another experiment sharing the instance (CTA at PIC), with a scope of its own."""
    client = _client_for(rucio_client, "cta_user")
    rucio_client.add_scope("cta_user", "cta_user_scope")
    return client


@pytest.fixture(scope="module")
def writer(rucio_stack: Any, rucio_client: Any) -> Any:
    client = _client_for(rucio_client, "magic_operator", {"magic": "writer"})
    for rse in ("ORM-ONSITE", "PIC-DISK"):
        rucio_client.set_local_account_limit("magic_operator", rse, -1)
    return client


def test_the_stack_runs_with_the_policy_package(rucio_stack: Any) -> None:
    assert "package = rucio_magic_ext.policy" in rucio_stack.settings.rucio_cfg.read_text()


def test_a_replica_on_a_magic_deterministic_rse_gets_the_magic_path(rucio_client: Any) -> None:
    rucio_client.add_replicas(
        "PIC-DISK", [{"scope": "magic_cal", "name": CALIBRATED, "bytes": 10, "adler32": "0a0b0c0d"}]
    )
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


def test_an_account_without_a_magic_role_is_refused_in_magic_scopes_with_the_reason(outsider: Any) -> None:
    from rucio.common.exception import AccessDenied

    with pytest.raises(AccessDenied) as refused:
        outsider.add_dataset("magic_cal", "M1_Calibrated_20210314_05095172")
    assert "MAGIC scope(s) magic_cal" in str(refused.value) and "magic=writer" in str(refused.value)
    with pytest.raises(AccessDenied, match="magic=writer"):
        outsider.add_replication_rule([{"scope": "magic_cal", "name": CALIBRATED}], 1, "PIC-DISK")
    with pytest.raises(AccessDenied, match="magic=writer"):
        outsider.set_metadata("magic_cal", CALIBRATED, "source", "Crab")
    outsider.add_dataset("cta_user_scope", "cta_dataset")  # its own scope: Rucio's generic policy decides


def test_a_magic_writer_organises_magic_data_and_deletes_its_rules(writer: Any, rucio_client: Any) -> None:
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
    writer.add_replication_rule([{"scope": "magic_cal", "name": lifted}], 1, "ORM-ONSITE")


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


def test_magic_writers_register_replicas_on_magic_rses_only(writer: Any, outsider: Any, rucio_stack: Any) -> None:
    from rucio.common.exception import AccessDenied

    existing = {"scope": "magic_cal", "name": CALIBRATED, "bytes": 10, "adler32": "0a0b0c0d"}
    prefix = rucio_stack.settings.storage_dir / "orm-onsite"
    pfn = f"file://localhost:0{prefix}/M1/OSA/Calibrated/2021/03/14/{CALIBRATED}"
    writer.add_replicas("ORM-ONSITE", [{**existing, "pfn": pfn}])  # an RSE with the attribute magic=true
    with pytest.raises(AccessDenied, match="ORM-ONSITE holds MAGIC data"):
        outsider.add_replicas("ORM-ONSITE", [{**existing, "pfn": pfn}])
    new = "20210314_M1_05095172.002_Y_CrabNebula-W0.40+035.root"
    with pytest.raises(AccessDenied, match="magic=writer"):
        outsider.add_replicas("ORM-ONSITE", [{**existing, "name": new, "pfn": pfn.replace(CALIBRATED, new)}])
