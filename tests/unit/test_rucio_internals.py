"""What the project relies on past Rucio's core API (``rucio_internals``) is still there in the installed Rucio:
each test names the table, column or attribute a Rucio release would have changed. No database is needed: the
tables are read from Rucio's models, as Rucio's own migrations would create them."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest
from dogpile.cache.region import CacheRegion

from rucio_magic_ext import rucio_internals
from rucio_magic_ext.scanner.did_metadata import DID_COLUMN_KEYS, DIRECT_PLUGINS

PACKAGE = Path(rucio_internals.__file__).parent

#: Where Rucio's internals may be named: the one module for them, and the policy package, whose permission hook
#: and metadata plugin run inside Rucio with Rucio's session (``.REGION``: a core module's cache region).
ALLOWED = {"rucio_internals.py", "policy/permission.py", "policy/json_meta.py"}
INTERNAL_NAMES = re.compile(r"\bUpdatedDID\b|\bDidMeta\b|\bMETADATA_PLUGIN_MODULES\b|\.REGION\b")


def _table(model_name: str) -> tuple[str, set[str]]:
    from rucio.db.sqla import models

    model = getattr(models, model_name, None)
    assert model is not None, f"rucio.db.sqla.models.{model_name} is gone"
    return model.__tablename__, {column.name for column in model.__table__.columns}


def _has(model_name: str, table: str, columns: set[str]) -> None:
    found_table, found = _table(model_name)
    assert found_table == table, f"models.{model_name} now maps table {found_table!r}, not {table!r}"
    missing = columns - found
    assert not missing, f"Rucio's table {table} lost the columns {sorted(missing)}"


def test_updated_dids_rows_are_dropped_by_did_and_action() -> None:
    """``drop_re_evaluations``: the rows ``re_evaluate_did`` leaves for the judge-evaluator, by DID and action."""
    from rucio.core.rule import re_evaluate_did
    from rucio.db.sqla.constants import DIDReEvaluation

    _has("UpdatedDID", "updated_dids", {"scope", "name", "rule_evaluation_action"})
    for action in ("ATTACH", "DETACH"):
        assert action in DIDReEvaluation.__members__, f"DIDReEvaluation.{action} is gone"
    parameters = inspect.signature(re_evaluate_did).parameters
    assert {"scope", "name", "rule_evaluation_action", "session"} <= set(parameters), (
        f"rucio.core.rule.re_evaluate_did now takes {list(parameters)}"
    )


def test_did_metadata_goes_to_the_did_columns_and_the_did_meta_rows() -> None:
    """``write_new_did_metadata``: the DID-column plugin's columns on ``dids``, the JSON plugin's ``did_meta`` rows."""
    _has("DataIdentifier", "dids", {"scope", "name", *DID_COLUMN_KEYS})
    _has("DidMeta", "did_meta", {"scope", "name", "meta"})


def test_the_metadata_plugins_written_directly_are_still_rucios() -> None:
    """``metadata_plugins``: Rucio's configured plugins, and the classes whose rows the scanner writes itself."""
    import rucio.core.did_meta_plugins as plugins

    assert isinstance(getattr(plugins, "METADATA_PLUGIN_MODULES", None), list), (
        "rucio.core.did_meta_plugins.METADATA_PLUGIN_MODULES is gone or no longer a list"
    )
    assert rucio_internals.metadata_plugins()  # Rucio always loads its DID-column plugin
    for dotted in {name for pair in DIRECT_PLUGINS for name in pair if name.startswith("rucio.")}:
        module, _, name = dotted.rpartition(".")
        assert hasattr(importlib.import_module(module), name), f"Rucio's metadata plugin {dotted} is gone"


@pytest.mark.parametrize("module", rucio_internals.SITE_REGIONS)
def test_each_site_settings_module_has_its_cache_region(module: str) -> None:
    """``site_settings_kept``: a proxy put in front of each module's ``REGION`` backend."""
    region = getattr(importlib.import_module(module), "REGION", None)
    assert isinstance(region, CacheRegion), f"{module}.REGION is no longer a dogpile cache region"
    assert callable(getattr(region, "wrap", None)), f"{module}.REGION can no longer be wrapped"


def test_rucios_internals_are_named_in_one_module() -> None:
    """A new reach past Rucio's core API goes into ``rucio_internals``, where a test above holds it."""
    elsewhere = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).as_posix() not in ALLOWED
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if INTERNAL_NAMES.search(line)
    ]
    assert not elsewhere, f"Rucio's internals named outside rucio_internals: {elsewhere}"
