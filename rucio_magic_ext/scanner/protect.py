"""Protect: carriers that are full or old close (``carrier/life.py``). Their dataset is closed and their files
are then PROTECTED: the policy's rules on the run datasets make the copies, and the source copies stay held
by the carrier's source rule until the copies are verified.

Files registered before carriers were made at registration (an older ledger) are given one here.
"""

from __future__ import annotations

import logging

from rucio_magic_ext.ledger import FileState, LostRace
from rucio_magic_ext.scanner.context import Context

ACTOR = "scanner.protect"


def protect(context: Context) -> int:
    """Returns how many files became PROTECTED."""
    unheld = context.due(FileState.REGISTERED, without_carrier=True)
    if unheld:
        try:
            context.carriers.assign(unheld, context.config.carrier)
            context.carriers.hold_at_source({str(row.carrier) for row in unheld})
            context.carriers.attach(unheld)
        except LostRace as race:
            context.logger(logging.INFO, "protect: %s", race)
        except Exception as error:
            context.ledger.fail(unheld, f"protect: {error}", ACTOR, context.config.retry)
            context.logger(logging.ERROR, "holding %d file(s) failed, will retry: %s", len(unheld), error)
    return context.carriers.close_due(context.config.carrier, ACTOR, context.worker, context.workers)
