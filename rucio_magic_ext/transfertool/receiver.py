"""Tell Rucio at once that a copy finished, as FTS's messages and ``rucio-conveyor-receiver`` do.

A looping poller sets aside for ten minutes every request it has seen unfinished (Rucio counts on the receiver
for prompt news), so the copier reports each finished file itself, through the receiver's core call; the poller
stays the fallback for copies whose report did not arrive.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from rucio_magic_ext.common import LoggerFunction
from rucio_magic_ext.transfertool.jobs import DONE, FAILED


def report_finished(job_id: str, files: Mapping[str, Mapping[str, Any]], logger: LoggerFunction = logging.log) -> int:
    """Update the requests of finished files in Rucio's database; returns how many changed."""
    from rucio.core import request as request_core
    from rucio.core import transfer as transfer_core
    from rucio.db.sqla.constants import DatabaseOperationType
    from rucio.db.sqla.session import db_session

    from rucio_magic_ext.transfertool.tool import MagicTransferStatusReport

    updated = 0
    with request_core.TransferStatsManager() as stats:
        for request_id, file_status in files.items():
            if file_status.get("state") not in (DONE, FAILED):
                continue
            report = MagicTransferStatusReport(request_id, job_id, file_status)
            with db_session(DatabaseOperationType.WRITE) as session:
                if report.get_db_fields_to_update(session=session, logger=logger):
                    changed = transfer_core.update_transfer_state(
                        tt_status_report=report, stats_manager=stats, session=session, logger=logger
                    )
                    updated += changed or 0
    return updated


def report_if_configured(job_id: str, files: Mapping[str, Mapping[str, Any]], logger: LoggerFunction) -> None:
    """Report when this process can reach Rucio's database; otherwise leave it to the poller."""
    try:
        from rucio.common.config import config_get

        config_get("database", "default", check_config_table=False)
    except Exception:
        logger(logging.INFO, "Job %s: no Rucio database configured, the poller will report", job_id)
        return
    try:
        reported = report_finished(job_id, files, logger)
        logger(logging.INFO, "Job %s: reported %d finished request(s) to Rucio", job_id, reported)
    except Exception:
        logger(logging.WARNING, "Job %s: could not report to Rucio; the poller will", job_id, exc_info=True)
