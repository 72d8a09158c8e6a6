"""``rucio-magic audit --fix`` frees no source that the carrier would not: an orphan carrier whose files the ledger
calls RELEASED keeps its source rule while Rucio does not prove their copies as the carrier proves them (the flow's
own policy rules, locks OK, replicas AVAILABLE away from the source), or while another DID's replica names a file's
path at the observatory. Each ends with the bytes at ORM-ONSITE read on disk."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from scenery import ORM, PIC, adler32_of, ledger, orm_root, placement, register_beside_the_api, rows_of
from sqlalchemy import update

from rucio_magic_ext import cli, layout
from rucio_magic_ext.carrier.model import CARRIER_SCOPE
from rucio_magic_ext.ledger import FileState
from rucio_magic_ext.ledger.models import LedgerCarrier, LedgerFile
from rucio_magic_ext.ledger.states import CarrierState
from rucio_magic_ext.naming import Level
from tools.make_night import PlannedFile, plan_night, write_night

pytestmark = pytest.mark.integration

NIGHT = date(2021, 6, 7)
ANALYSIS = "PIC-ANALYSIS"
COMMISSIONING = "orm_fix_commissioning"


def audit(capsys: Any, *options: str) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(["audit", ORM, "--night", NIGHT.isoformat(), *options])
    said = capsys.readouterr()
    return code, said.out + said.err


def did(planned: PlannedFile) -> tuple[str, str]:
    return layout.scope(planned.record), planned.name


def copied(rucio_client: Any, plan: list[PlannedFile]) -> bool:
    """Every file registered, held by its carrier and copied where the policy asks; none verified yet."""
    rows = rows_of(plan)
    if len(rows) < len(plan) or any(row.state is not FileState.PROTECTED for row in rows.values()):
        return False
    for planned in plan:
        wanted = {PIC, ANALYSIS} if planned.record.level is Level.DL3 else {PIC}
        scope, name = did(planned)
        (replica,) = rucio_client.list_replicas([{"scope": scope, "name": name}], all_states=True)
        if any(replica["states"].get(rse) != "AVAILABLE" for rse in wanted):
            return False
    return True


def test_the_orphan_carrier_fix_frees_only_sources_whose_copies_rucio_proves(
    rucio_stack: Any, rucio_client: Any, flow: Any, capsys: Any
) -> None:
    night = plan_night(NIGHT, runs=3, seed=2106, scale=1e-5)
    levels = (Level.RAW, Level.CALIBRATED, Level.DL3)
    raw, cal, dl3 = (next(p for p in night if p.record.level is level) for level in levels)
    plan = [raw, cal, dl3]
    write_night(plan, orm_root(rucio_stack), stamp_times=True)
    flow(lambda: copied(rucio_client, plan), without=("magic-carrier",))
    rows = rows_of(plan)
    carriers = {planned.path: str(rows[planned.path].carrier) for planned in plan}
    assert len(set(carriers.values())) == 3, carriers
    registered = {planned.path: str(rows[planned.path].adler32) for planned in plan}

    # The ledger says the carriers released their files (a release cut short, a hand on the ledger) while Rucio
    # still holds every carrier's dataset and source rule: three orphan carriers.
    with ledger().session() as session:
        session.execute(
            update(LedgerCarrier).where(LedgerCarrier.name.in_(carriers.values())).values(state=CarrierState.GONE)
        )
        session.execute(
            update(LedgerFile).where(LedgerFile.carrier.in_(carriers.values())).values(state=FileState.RELEASED)
        )
    # RAW: an admin removed the flow's policy rule through Rucio's API; the copy at PIC stays only while it expires.
    raw_dataset = placement(raw)
    (policy_rule,) = [
        rule
        for rule in rucio_client.list_did_rules(raw_dataset.scope, raw_dataset.dataset)
        if rule["comments"] == "magic-policy:raw-to-pic"
    ]
    rucio_client.delete_replication_rule(policy_rule["id"], purge_replicas=False)
    # Calibrated: its copies are the flow's and proven, but a commissioning scope registered the same file on
    # storage under a name of its own.
    cal_scope, cal_name = did(cal)
    (cal_replica,) = rucio_client.list_replicas([{"scope": cal_scope, "name": cal_name}], rse_expression=ORM)
    (cal_pfn,) = cal_replica["pfns"]
    rucio_client.add_scope("root", COMMISSIONING)
    register_beside_the_api(ORM, COMMISSIONING, "orm-fix-1.root", rows[cal.path].size, registered[cal.path], cal_pfn)

    code, out = audit(capsys, "--fix", "--max-fraction", "1")
    assert code == 1, out
    kept = "kept, 1 file(s) whose source copy Rucio does not prove may go:"
    raw_scope, raw_name = did(raw)
    assert (
        f"orphan-carrier {CARRIER_SCOPE}:{carriers[raw.path]}: {kept} {raw_scope}:{raw_name} (RELEASED): its copies "
        "are not proven in Rucio: no copy that stays away from the source: its copies are under rules that expire"
    ) in out, out
    assert (
        f"orphan-carrier {CARRIER_SCOPE}:{carriers[cal.path]}: {kept} {cal_scope}:{cal_name} (RELEASED): path "
        f"{cal.path} is also the replica of {COMMISSIONING}:orm-fix-1.root"
    ) in out, out
    assert f"orphan-carrier {CARRIER_SCOPE}:{carriers[dl3.path]}: removed from Rucio, every file proven" in out, out
    for name in (carriers[raw.path], carriers[cal.path]):
        assert list(rucio_client.list_dids(CARRIER_SCOPE, {"name": name})) == [name]
    assert not list(rucio_client.list_dids(CARRIER_SCOPE, {"name": carriers[dl3.path]}))

    rucio_stack.run_once("reaper", "--rses", ORM)
    for planned in (raw, cal):
        source = orm_root(rucio_stack) / planned.path
        assert source.is_file() and adler32_of(source) == registered[planned.path], planned.path
    assert not (orm_root(rucio_stack) / dl3.path).exists()  # proven in the ledger and in Rucio: freed
    for rse_root in ("pic-disk", "pic-analysis"):
        copy = rucio_stack.settings.storage_dir / rse_root / placement(dl3).path
        assert adler32_of(copy) == registered[dl3.path]
