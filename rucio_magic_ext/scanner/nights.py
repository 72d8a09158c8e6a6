"""Close the run datasets of a finished night: one where no file has appeared for a configured time.

A closed dataset tells Rucio (and anyone listing it) that the run is complete. Files still on their
way through the stages of a closed night keep going; the night is closed once all of them registered.
"""

from __future__ import annotations

import logging

from rucio_magic_ext import rucio_db
from rucio_magic_ext.common import utcnow
from rucio_magic_ext.ledger import FileState
from rucio_magic_ext.ledger.store import finished_nights, record_closed_night, registered_of_night
from rucio_magic_ext.scanner.context import Context

ACTOR = "scanner.nights"
PENDING = (FileState.SEEN, FileState.STABLE, FileState.CHECKSUMMED)


def close_nights(context: Context) -> int:
    """Returns how many nights were closed."""
    if context.worker != 0:
        return 0  # one worker is enough: a few nights a day
    closed = 0
    nights = finished_nights(context.ledger, context.rse, utcnow() - context.config.night_closed_after)
    counts = context.ledger.counts(context.rse) if nights else {}
    for night in nights:
        if any(counts.get((night, state), (0, 0))[0] for state in PENDING):
            continue  # some of its files are not registered yet
        datasets = {
            (row.placement.scope, row.placement.dataset)
            for row in registered_of_night(context.ledger, context.rse, night)
        }
        rucio_db.close(sorted(datasets))
        record_closed_night(context.ledger, context.rse, night, len(datasets))
        context.logger(logging.INFO, "night %s finished: %d run dataset(s) closed", night, len(datasets))
        closed += 1
    return closed
