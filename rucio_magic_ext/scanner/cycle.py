"""One scanner cycle: every stage once, in the order a file travels; a failing stage never stops the others.

An outage is not a failure of the files: when the storage's root is not there (unmounted, renamed away) the
stages that read it are skipped, and when the database does not answer the cycle stops. Either is said once
when it starts and once when it ends, counted (``magic_scanner_outages_total``), and marks no file; the next
cycle resumes where the flow stood. An outage of the storage (or of the credentials it is presented) is kept in
the ledger while it lasts, for ``status`` and the gauge ``magic_source_outage_seconds``. A stop request (SIGTERM)
ends the cycle after the current stage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from rucio_magic_ext import census, daemons, monitoring
from rucio_magic_ext.common import utcnow
from rucio_magic_ext.scanner.census import refresh_gauges
from rucio_magic_ext.scanner.checksum import checksum
from rucio_magic_ext.scanner.context import Context
from rucio_magic_ext.scanner.discover import discover
from rucio_magic_ext.scanner.nights import close_nights
from rucio_magic_ext.scanner.protect import protect
from rucio_magic_ext.scanner.register import register
from rucio_magic_ext.scanner.settle import settle
from rucio_magic_ext.storage import AccessRefused

STAGES: tuple[tuple[str, Callable[[Context], int]], ...] = (
    ("discover", discover),
    ("settle", settle),
    ("checksum", checksum),
    ("register", register),
    ("protect", protect),
    ("nights", close_nights),
    ("census", refresh_gauges),
)
READS_STORAGE = frozenset({"discover", "settle", "checksum"})


def run_cycle(context: Context, stages: tuple[tuple[str, Callable[[Context], int]], ...] = STAGES) -> dict[str, int]:
    """Run the stages; returns how many files (nights, for the last) each one moved on."""
    moved: dict[str, int] = {}
    storage = _storage_up(context, stages)
    for name, stage in stages:
        moved[name] = 0
        if daemons.GRACEFUL_STOP.is_set():
            context.logger(logging.INFO, "stop requested: the cycle ends before %s", name)
            break
        if name in READS_STORAGE and not storage:
            continue
        try:
            with monitoring.stage_timer(name):
                moved[name] = stage(context)
            monitoring.stage_files(name, moved[name])
            _recovered(context, "database")  # said by the first stage done, not at the end a stop may cut short
        except Exception as error:
            outage = daemons.outage_of(error)
            service = outage.service if outage else None
            if service == "database" and _database_answers(context) is not False:
                service = None  # the ledger answers: this stage's own failure, not an outage
            if service is None:
                monitoring.stage_error(name)
                context.logger(logging.ERROR, "stage %s failed: %s", name, error, exc_info=True)
                continue
            _outage(context, service, f"{name}: {error}")
            if service == "storage":
                storage = False
                continue
            break  # the database: nothing more can be done or recorded this cycle
    if storage:
        _recovered(context, "storage")
    return moved


def _database_answers(context: Context) -> bool | None:
    """Whether the ledger's database answers a ``SELECT 1`` now; None when there is no ledger to ask."""
    from sqlalchemy import text

    engine = getattr(getattr(context, "ledger", None), "engine", None)
    if engine is None:
        return None
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


def _storage_up(context: Context, stages: tuple[tuple[str, Callable[[Context], int]], ...]) -> bool:
    present = getattr(context, "storage_present", None)  # a context without storage has none to check
    if present is None or not any(name in READS_STORAGE for name, _ in stages):
        return True
    try:
        if present():
            return True
    except AccessRefused as refused:
        _outage(context, refused.service, str(refused))
        return False
    _outage(context, "storage", f"the storage root {context.root} is not there or cannot be read")
    return False


def _outage(context: Context, service: str, why: str) -> None:
    """Said once when it starts, and kept in the ledger for ``status`` while it lasts; the cycles after it stay quiet
    until the service is back."""
    monitoring.outage(service)
    _record(context, service, why)
    if service not in context.outages:
        context.outages[service] = why
        context.logger(logging.ERROR, "the %s does not answer (%s): its stages wait; no file is marked", service, why)
    else:
        context.logger(logging.DEBUG, "the %s still does not answer: %s", service, why)


def _recovered(context: Context, service: str) -> None:
    if service in getattr(context, "outages", {}):
        context.logger(logging.WARNING, "the %s answers again (it failed: %s)", service, context.outages.pop(service))
    if service == "storage":  # and so do the credentials it was presented; also an outage an earlier run left
        _record(context, "storage", None)
        _record(context, "credentials", None)


def _record(context: Context, service: str, why: str | None) -> None:
    """The ledger keeps an outage of the storage or credentials while it lasts; the database's cannot be kept."""
    if service == "database" or getattr(context, "ledger", None) is None:
        return
    try:
        census.record_outage(context.ledger, context.rse, service, why, utcnow())
    except Exception as error:  # the ledger may be down too: the log says it, and the next cycle tries again
        context.logger(logging.WARNING, "the %s outage could not be recorded: %s", service, error)
