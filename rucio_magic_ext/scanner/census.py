"""The census stage: refresh the flow's gauges (files at risk, carriers, rules, replicas) now and then.

Only worker 0 takes it, at most every ``census_seconds``: the figures are global, and one grouped query
per figure is cheap, but not free on a large catalogue.
"""

from __future__ import annotations

import time

from rucio_magic_ext import census
from rucio_magic_ext.scanner.context import Context


def refresh_gauges(context: Context) -> int:
    """Returns 0: a census moves no file, so it never keeps the daemon from sleeping."""
    now = time.monotonic()
    due = context.census_taken is None or now - context.census_taken >= context.config.census.total_seconds()
    if context.worker == 0 and due:
        census.publish(census.take(context.ledger, errors=False))
        context.census_taken = now
    return 0
