"""The scanner's census audits ORM-ONSITE on the real stack: a file written behind the scanner's back (old, its
folder's mtime put back, so discovery never lists it) is counted dark in the ledger's audit counts, in the gauge
and on ``rucio-magic status``, without the scanner ever taking it into the flow."""

from __future__ import annotations

import gzip
import os
import time
from datetime import date, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from scenery import ORM, ledger, orm_root, write_file
from sqlalchemy import update

from rucio_magic_ext import census, cli
from rucio_magic_ext.ledger.models import LedgerAuditCounts

pytestmark = pytest.mark.integration

NIGHT = date(2025, 6, 11)
FOLDER = "M1/DAQ/RAW/2025_06_11"
SEEN = f"{FOLDER}/20250611_M1_05142683.001_P_GalacticCent-W0.50+113.raw.gz"
DARK = f"{FOLDER}/20250611_M1_05142684.001_C_GalacticCent-W0.50+113.raw.gz"


def an_hour_passes() -> None:
    """The last audit's try moved back past ``audit_seconds`` (an hour by default): the next census audits."""
    book = ledger()
    book.upgrade()  # the first test of a run may come before any daemon has brought the ledger's tables
    with book.session() as session:
        session.execute(
            update(LedgerAuditCounts)
            .where(LedgerAuditCounts.rse == ORM)
            .values(tried_at=LedgerAuditCounts.tried_at - timedelta(hours=2))
        )


def audit_of_orm() -> census.Audit:
    with ledger().session() as session:
        return census.audits(session, ORM)[ORM]


def test_a_file_the_scanner_never_saw_is_counted_dark_by_the_census(rucio_stack: Any, capsys: Any) -> None:
    two_days_ago = time.time() - 2 * 86400
    write_file(rucio_stack, SEEN, gzip.compress(os.urandom(3000)), two_days_ago)
    an_hour_passes()
    rucio_stack.run_once("magic-scanner")  # discovers the folder; its census audits
    before = audit_of_orm()
    assert before.taken_at is not None and not before.error, before
    assert ledger().known(ORM, [SEEN])

    dark = orm_root(rucio_stack) / DARK
    folder = os.stat(dark.parent)
    try:
        write_file(rucio_stack, DARK, gzip.compress(os.urandom(3000)), two_days_ago)
        os.utime(dark.parent, ns=(folder.st_atime_ns, folder.st_mtime_ns))
        an_hour_passes()
        rucio_stack.run_once("magic-scanner")
        after = audit_of_orm()
        assert after.taken_at is not None and after.taken_at > before.taken_at and not after.error, after
        dark_files = before.counts.get("dark", 0) + 1
        assert after.counts.get("dark") == dark_files, (before, after)
        assert not ledger().known(ORM, [DARK])  # counted, not taken into the flow: that is audit --fix's business

        census.publish(census.take(ledger(), errors=False))
        assert REGISTRY.get_sample_value("magic_audit_files", {"rse": ORM, "class": "dark"}) == dark_files
        capsys.readouterr()
        assert cli.main(["status", "--rse", ORM]) == 0
        (line,) = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("audit ")]
        assert f"dark {dark_files}" in line and f"rucio-magic audit {ORM}" in line, line
    finally:
        dark.unlink(missing_ok=True)
        os.utime(dark.parent, ns=(folder.st_atime_ns, folder.st_mtime_ns))
