"""DID metadata from a MAGIC name, so data can be found by what it is (``list_dids`` filters): Rucio's own DID
columns take what they can hold (``run_number``, ``datatype``, ``project``), the JSON metadata plugin the rest."""

from __future__ import annotations

from datetime import date
from typing import Union

from rucio_magic_ext.naming import MagicName

Value = Union[str, int, float]
PROJECT = "MAGIC"


def file_metadata(record: MagicName, night: date | None = None) -> dict[str, Value]:
    """Metadata of one file; ``night`` from its folder when the name carries none."""
    night = record.night or night
    meta: dict[str, Value] = {
        "project": PROJECT,
        "datatype": record.level.value,
        "run_number": record.run,
        "telescope": record.telescope.value,
        "family": record.family.value,
    }
    optional: dict[str, Value | None] = {
        "night": night.isoformat() if night else None,
        "subrun": record.subrun,
        "run_type": record.run_type,
        "source": record.source,
        "wobble_offset": float(record.wobble_offset) if record.wobble_offset is not None else None,
        "wobble_angle": record.wobble_angle,
        "zenith_min": record.zenith_range[0] if record.zenith_range else None,
        "zenith_max": record.zenith_range[1] if record.zenith_range else None,
        "production": record.production,
    }
    meta.update({key: value for key, value in optional.items() if value is not None})
    return meta


def collection_metadata(record: MagicName, night: date | None = None) -> dict[str, Value]:
    """What a run dataset shares with all its files: the keys that do not vary inside a run."""
    shared = ("project", "datatype", "run_number", "telescope", "night", "source", "wobble_offset", "wobble_angle")
    meta = file_metadata(record, night)
    return {key: meta[key] for key in shared if key in meta}
