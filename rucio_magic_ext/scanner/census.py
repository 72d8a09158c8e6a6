"""The census stage: refresh the flow's gauges (files at risk, carriers, rules, replicas) now and then, and
count what is out of place at the source RSE.

Only worker 0 takes it, at most every ``census_seconds``: the figures are global, and one grouped query
per figure is cheap, but not free on a large catalogue.

The audit is the cheap one (``audit.classes.counts``): the RSE's storage listed, Rucio's replicas and the
ledger's rows compared by path, size and mtime; no file's data is read. It lists the whole RSE, so it keeps its
own schedule, ``audit_seconds``, looked at when the census is due and kept in the ledger with its counts: a
restarted scanner neither repeats it at once nor loses its figures. An audit that cannot be taken (a storage
that does not list) is logged and recorded as tried; the last counts stay, and the cycle goes on.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from rucio_magic_ext import census
from rucio_magic_ext.audit.classes import counts as count_each_class
from rucio_magic_ext.audit.views import read as read_views
from rucio_magic_ext.common import utcnow
from rucio_magic_ext.scanner.context import Context


def refresh_gauges(context: Context) -> int:
    """Returns 0: a census moves no file, so it never keeps the daemon from sleeping."""
    now = time.monotonic()
    due = context.census_taken is None or now - context.census_taken >= context.config.census.total_seconds()
    if context.worker == 0 and due:
        take_audit(context)
        census.publish(census.take(context.ledger, errors=False))
        context.census_taken = now
    return 0


def audit_due(context: Context, now: datetime) -> bool:
    """Whether the source RSE's audit is due: on, the storage answering, and its period passed since the last try."""
    every = context.config.audit
    if every <= timedelta(0) or "storage" in context.outages:
        return False
    tried = census.audit_tried(context.ledger, context.rse)
    return tried is None or now - tried >= every


def take_audit(context: Context, now: datetime | None = None) -> bool:
    """Count the source RSE's classes when due and record them; True when new counts were recorded. Never
    raises: an audit is a figure for people, the flow does not wait on it."""
    now = now or utcnow()
    try:
        if not audit_due(context, now):
            return False
    except Exception as error:
        context.logger(logging.WARNING, "audit of %s: cannot tell whether it is due: %s", context.rse, error)
        return False
    try:
        counts = count_classes(context, now)
    except Exception as error:
        why = f"{type(error).__name__}: {error}"
        context.logger(logging.WARNING, "audit of %s not taken, its last counts stay: %s", context.rse, why)
        _record(context, now, None, why)
        return False
    found = ", ".join(f"{kind} {n}" for kind, n in counts.items() if n) or "nothing out of place"
    context.logger(logging.INFO, "audit of %s: %s", context.rse, found)
    return _record(context, now, counts, None)


def count_classes(context: Context, now: datetime) -> dict[str, int]:
    """The cheap audit of the scanner's RSE, read as ``rucio-magic audit RSE`` reads it (all nights, the
    scanner's roots), counted without a checksum."""
    seen = read_views(
        context.rse,
        context.rse,
        context.ledger,
        context.policy.rules,
        roots=context.config.roots,
        account=context.config.account,
    )
    return count_each_class(seen, now)


def _record(context: Context, now: datetime, counts: dict[str, int] | None, error: str | None) -> bool:
    try:
        census.record_audit(context.ledger, context.rse, now, counts, error)
    except Exception as failure:
        context.logger(logging.WARNING, "audit of %s not recorded: %s", context.rse, failure)
        return False
    return counts is not None
