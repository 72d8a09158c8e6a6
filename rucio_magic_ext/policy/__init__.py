"""The MAGIC policy package for Rucio 41: ``[policy] package = rucio_magic_ext.policy`` in ``rucio.cfg`` (or
``RUCIO_POLICY_PACKAGE``). Rucio then loads ``schema`` and ``permission`` from here and registers the algorithms."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SUPPORTED_VERSION = ">=41.0,<42.0"

ALGORITHM_NAME = "magic"


def get_algorithms() -> dict[str, dict[str, Callable[..., Any]]]:
    """Rucio's registration hook: selected per RSE (``lfn2pfn_algorithm``, ``naming_convention``) or in
    ``[policy] extract_scope``."""
    from rucio_magic_ext.policy import algorithms

    return {
        "lfn2pfn": {ALGORITHM_NAME: algorithms.lfn2pfn},
        "non_deterministic_pfn": {ALGORITHM_NAME: algorithms.non_deterministic_pfn},
        "scope": {ALGORITHM_NAME: algorithms.extract_scope},
    }
