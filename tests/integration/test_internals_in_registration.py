"""What ``rucio_internals`` writes past Rucio's core API is what Rucio itself reads back: a registered file is held
by its carrier's rule at the source from the registration's commit, with no re-evaluation left for the
judge-evaluator, and its metadata lies where Rucio's DID-column and JSON plugins look for it."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from scenery import ORM, assert_bytes_kept, placement, rows_of, write_observed_night

from rucio_magic_ext import rucio_db
from rucio_magic_ext.carrier.model import CARRIER_SCOPE

pytestmark = pytest.mark.integration


def test_a_registered_file_is_held_at_the_source_and_described_without_the_judge(
    rucio_stack: Any, run_daemon_once: Any
) -> None:
    from rucio.common.types import InternalScope
    from rucio.core.did import get_metadata
    from rucio.core.lock import get_replica_locks
    from rucio.db.sqla import models
    from rucio.db.sqla.constants import DIDReEvaluation
    from sqlalchemy import func, select

    plan = write_observed_night(rucio_stack, date(2023, 7, 11))
    run_daemon_once("magic-scanner")  # and no judge-evaluator after it

    rows = rows_of(plan)
    carriers = sorted({row.carrier for row in rows.values() if row.carrier})
    assert carriers, "the scanner gave the night no carrier"
    with rucio_db.reading() as session:
        source_rules = set(rucio_db.rules_on([(CARRIER_SCOPE, name) for name in carriers], session))
        for planned in plan:
            scope = placement(planned).scope
            locks = get_replica_locks(InternalScope(scope), planned.name, session=session)
            held = [lock for lock in locks if lock.rule_id in source_rules and lock.rse_id == rucio_db.rse_id(ORM)]
            assert held, f"{planned.name} is not locked by its carrier's rule at {ORM}: updated_dids left to the judge"
            columns = get_metadata(InternalScope(scope), planned.name, plugin="DID_COLUMN", session=session)
            assert (columns["run_number"], columns["datatype"]) == (planned.record.run, planned.record.level.value)
            json = get_metadata(InternalScope(scope), planned.name, plugin="JSON", session=session)
            assert json["night"] == "2023-07-11", f"the did_meta row of {planned.name} is not where Rucio reads it"
        table = models.UpdatedDID
        left = session.scalar(
            select(func.count()).where(
                table.scope == InternalScope(CARRIER_SCOPE),
                table.name.in_(carriers),
                table.rule_evaluation_action == DIDReEvaluation.ATTACH,
            )
        )
        assert left == 0, f"{left} updated_dids rows left for the carriers after their in-transaction re-evaluation"
    assert_bytes_kept(rucio_stack, plan)
