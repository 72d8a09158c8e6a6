"""Rucio's generic schema, with '+' in DID names of the MAGIC scopes only, and MAGIC's activities.

MAGIC source names carry '+' (``CrabNebula-W0.40+035``, ``1ES1959+650``), which Rucio's generic ``NAME`` refuses.
``NAME`` admits it; every schema that carries a scope with the name holds a name outside the MAGIC scopes to the
generic pattern. ``validate_schema(name, ...)`` looks ``name`` up in ``SCHEMAS``, falling back to the generic
module's table of the generic constants: so ``SCHEMAS`` is that table with this module's constants in place.
"""

from __future__ import annotations

from typing import Any

from rucio.common.schema import generic

from rucio_magic_ext.policy.permission import magic_scopes

GENERIC_NAME_PATTERN = generic.NAME["pattern"]
NAME_PATTERN = r"^[/A-Za-z0-9][/A-Za-z0-9\.\-_+]*$"

NAME = {**generic.NAME, "pattern": NAME_PATTERN}


def _generic_names_outside_magic(schema: dict[str, Any], scope: str = "scope", name: str = "name") -> dict[str, Any]:
    """``schema``, whose ``name`` must match Rucio's generic pattern unless ``scope`` is a MAGIC scope."""
    return {
        **schema,
        "if": {"properties": {scope: {"enum": sorted(magic_scopes())}}, "required": [scope]},
        "else": {"properties": {name: {"pattern": GENERIC_NAME_PATTERN}}},
    }


DID = _generic_names_outside_magic(generic.DID)
COLLECTION = _generic_names_outside_magic(generic.COLLECTION)
ATTACHMENT = _generic_names_outside_magic(generic.ATTACHMENT)
ADD_REPLICA_FILE = _generic_names_outside_magic(generic.ADD_REPLICA_FILE)
DELETE_REPLICA_FILE = _generic_names_outside_magic(generic.DELETE_REPLICA_FILE)

# MAGIC's own activities, so that its transfers have their own shares and metrics in the conveyor.
MAGIC_ACTIVITIES = ["MAGIC Export", "MAGIC Tape", "MAGIC Carrier"]
ACTIVITY = {**generic.ACTIVITY, "enum": [*generic.ACTIVITY["enum"], *MAGIC_ACTIVITIES]}


def _schemas() -> dict[str, Any]:
    """Rucio's generic table, each entry replaced by this module's constant of the same name where there is one."""
    constants = {id(value): key for key, value in vars(generic).items() if key.isupper()}
    here = globals()
    return {name: here.get(constants.get(id(schema), ""), schema) for name, schema in generic.SCHEMAS.items()}


SCHEMAS = _schemas()
