"""Rucio's generic schema, with DID names that admit real MAGIC names.

MAGIC source names carry '+' (``CrabNebula-W0.40+035``, ``1ES1959+650``); Rucio's generic ``NAME``
pattern refuses it. ``NAME`` and ``ACTIVITY`` change; every other constant falls back to Rucio's generic schema.
"""

from rucio.common.schema import generic
from rucio.common.schema.schema_ref import SchemaRef

NAME = {
    "description": "Data Identifier name",
    "type": "string",
    "maxLength": SchemaRef("NAME_LENGTH"),
    "pattern": r"^[/A-Za-z0-9][/A-Za-z0-9\.\-_+]*$",
}

# MAGIC's own activities, so that its transfers have their own shares and metrics in the conveyor.
MAGIC_ACTIVITIES = ["MAGIC Export", "MAGIC Tape", "MAGIC Carrier"]
ACTIVITY = {**generic.ACTIVITY, "enum": [*generic.ACTIVITY["enum"], *MAGIC_ACTIVITIES]}
