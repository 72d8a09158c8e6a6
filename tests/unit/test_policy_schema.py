"""The policy package's schema: '+' in MAGIC scopes only, and a SCHEMAS table consistent with its constants."""

from __future__ import annotations

import pytest
from rucio.common.schema import generic

from rucio_magic_ext.policy import schema

PLUS = "20200103_05088072_S_1ES1959+650-W0.40+090.root"


def _valid(name: str, obj: object) -> bool:
    from rucio.common.exception import InvalidObject
    from rucio.common.schema import validate_schema

    try:
        validate_schema(name, obj)
    except InvalidObject:
        return False
    return True


def test_schemas_has_every_generic_entry_and_this_module_s_constants() -> None:
    assert set(schema.SCHEMAS) == set(generic.SCHEMAS)
    assert schema.SCHEMAS["name"] is schema.NAME and schema.SCHEMAS["activity"] is schema.ACTIVITY
    assert schema.SCHEMAS["did"] is schema.DID and schema.SCHEMAS["attachment"] is schema.ATTACHMENT
    assert schema.SCHEMAS["collection"] is schema.COLLECTION
    assert schema.SCHEMAS["rule"] is generic.RULE  # not redefined: its references resolve to this module


def test_rucio_uses_this_table() -> None:
    from rucio.common import schema as rucio_schema

    assert rucio_schema.schema_modules["def"] is schema


@pytest.mark.parametrize("scope", ["magic_raw", "magic_cal", "magic_st", "magic_dl3", "magic_mc", "magic_carrier"])
def test_plus_is_a_magic_name(scope: str) -> None:
    assert _valid("did", {"scope": scope, "name": PLUS, "type": "FILE"})
    assert _valid("dids", [{"scope": scope, "name": PLUS}])
    assert _valid("attachment", {"scope": scope, "name": "d+s", "dids": [{"scope": scope, "name": PLUS}]})
    assert _valid("collection", {"scope": scope, "name": "d+s", "type": "DATASET"})


@pytest.mark.parametrize("scope", ["user.jdoe", "mock", "cta_user_scope", "magic"])
def test_other_scopes_keep_the_generic_name(scope: str) -> None:
    assert not _valid("did", {"scope": scope, "name": PLUS, "type": "FILE"})
    assert not _valid("dids", [{"scope": "magic_st", "name": PLUS}, {"scope": scope, "name": PLUS}])
    assert not _valid("attachment", {"scope": scope, "name": "d+s", "dids": [{"scope": scope, "name": "f"}]})
    assert not _valid("attachment", {"scope": "magic_st", "name": "ds", "dids": [{"scope": scope, "name": PLUS}]})
    assert _valid("did", {"scope": scope, "name": "plain.root", "type": "FILE"})


def test_the_rest_of_the_generic_rules_hold() -> None:
    for bad in ("+lead", "has space", "x" * 251):
        assert not _valid("did", {"scope": "magic_st", "name": bad, "type": "FILE"})
    assert not _valid("name", "+lead")
    assert _valid("name", "CrabNebula-W0.40+035")
    assert _valid("activity", "MAGIC Carrier") and not _valid("activity", "Anything")
    assert _valid("activity", "T0 Export")
