"""Each byte crosses the observatory link once: three destinations, one transfer from La Palma per file.

The policy (replication-policy-export-once.toml) puts RAW data at PIC-DISK, PIC-ANALYSIS and DC2-DISK; the
last two take their copies from PIC-DISK (``source``, Rucio's ``source_replica_expression``). The observatory
is an RSE of this module's own, ORM-EXPORT (site-export-once.cfg), with links to every destination nearer
than PIC-DISK's, so only the rules' source expression keeps the conveyor from pulling all three copies from it.
The scanner and the carrier run with a rucio.cfg of their own (same database and REST server) that points them
at ORM-EXPORT with that policy; Rucio's daemons are the stack's. Which RSE each copy was read from is taken
from Rucio's requests history, and from the transfer tool's own log of what it read.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from rucio_magic_ext.common import utcnow
from rucio_magic_ext.ledger import FileState
from tests.integration import scenery
from tests.integration.scenery import adler32_of, dids_of, flow_steps, placement, unavailable
from tools.devstack.config import write_configs
from tools.devstack.stack import SITE_CFG, Stack
from tools.devstack.waiting import in_rounds
from tools.make_night import PlannedFile, plan_night, write_night

pytestmark = pytest.mark.integration

ORM, FIRST, CHAINED = "ORM-EXPORT", "PIC-DISK", ("PIC-ANALYSIS", "DC2-DISK")
DESTINATIONS = (FIRST, *CHAINED)
FOLDERS = {"PIC-DISK": "pic-disk", "PIC-ANALYSIS": "pic-analysis", "DC2-DISK": "dc2-disk"}
HERE = Path(__file__).parent
FLOW = flow_steps(ORM)


@dataclasses.dataclass
class Export:
    """The stack, and daemons of the flow that watch ORM-EXPORT with the three-destination policy."""

    stack: Stack
    daemons: Stack
    plan: list[PlannedFile]
    source_adler32: dict[str, str]  # path -> adler32 of the bytes written at the observatory

    @property
    def orm_folder(self) -> Path:
        return self.stack.settings.storage_dir / "orm-export"

    def copy_at(self, rse: str, planned: PlannedFile) -> Path:
        return self.stack.settings.storage_dir / FOLDERS[rse] / placement(planned).path

    def flow(self, done: Callable[[], bool], rounds: int = 12) -> None:
        if in_rounds(lambda: self.daemons.run_round(*FLOW), done, rounds) is None:
            where = scenery.states_of(self.plan, ORM)
            pytest.fail(f"the flow did not get there in {rounds} rounds: {where}", pytrace=False)


@pytest.fixture(scope="module")
def export(rucio_stack: Stack) -> Iterator[Export]:
    rucio_stack.bootstrap_site([SITE_CFG, HERE / "site-extra.cfg", HERE / "site-export-once.cfg"])
    state = Path(tempfile.mkdtemp(prefix="rucio-magic-export-once-"))
    try:
        extra = copy.deepcopy(rucio_stack.settings.extra)
        extra["magic-scanner"].update(rse=ORM, replication_policy=str(HERE / "replication-policy-export-once.toml"))
        daemons = Stack(state / "daemons")
        daemons.settings = dataclasses.replace(rucio_stack.settings, state=state / "daemons", extra=extra)
        write_configs(daemons.settings)
        raw = [p for p in plan_night(date(2025, 3, 14), runs=3, seed=314, scale=1e-5) if p.path.count("/RAW/")]
        plan = raw[:8]
        export = Export(rucio_stack, daemons, plan, {})
        write_night(plan, export.orm_folder, stamp_times=True)
        export.source_adler32.update({p.path: adler32_of(export.orm_folder / p.path) for p in plan})
        yield export
    finally:
        shutil.rmtree(state, ignore_errors=True)


# -- looks into the ledger, Rucio and the disks -------------------------------------------------------------------


def at_rse(rucio_client: Any, plan: list[PlannedFile], rse: str) -> dict[str, str]:
    """name -> replica state at ``rse``."""
    found = rucio_client.list_replicas(dids_of(plan), rse_expression=rse, all_states=True)
    return {replica["name"]: replica["states"].get(rse) for replica in found if rse in replica["states"]}


def available_at(rucio_client: Any, plan: list[PlannedFile], *rses: str) -> bool:
    return all(at_rse(rucio_client, plan, rse) == {p.name: "AVAILABLE" for p in plan} for rse in rses)


@dataclasses.dataclass(frozen=True)
class Transfer:
    name: str
    source: str | None
    destination: str
    state: str
    transferred_at: datetime | None


def transfers(plan: list[PlannedFile]) -> list[Transfer]:
    """Every transfer request of the plan's files that Rucio finished or still holds, with the RSE it was read
    from (``source_rse_id``, set when the conveyor chose the source)."""
    from rucio.core.rse import get_rse_name
    from rucio.db.sqla import models
    from sqlalchemy import select

    from rucio_magic_ext import rucio_db

    names = [planned.name for planned in plan]
    found = []
    with rucio_db.reading() as session:
        for table in (models.RequestHistory, models.Request):
            columns = (table.name, table.source_rse_id, table.dest_rse_id, table.state, table.transferred_at)
            query = select(*columns).where(table.name.in_(names))
            for name, source, destination, state, transferred_at in session.execute(query):
                found.append(Transfer(
                    name,
                    get_rse_name(str(source), session=session) if source else None,
                    get_rse_name(str(destination), session=session),
                    state.name,
                    transferred_at,
                ))  # fmt: skip
    return found


def copies_read(export: Export) -> dict[str, list[str]]:
    """name -> the URLs the transfer tool read each of its copies from (its copiers' 'Copying' lines)."""
    read: dict[str, list[str]] = {}
    for log in (export.daemons.settings.state / "transfers" / "jobs").glob("*/copier.log"):
        for line in log.read_text().splitlines():
            if "\tCopying " in line:
                source = line.split("\tCopying ", 1)[1].split(" to ", 1)[0]
                read.setdefault(source.rsplit("/", 1)[-1], []).append(source)
    return read


# -- the flow -----------------------------------------------------------------------------------------------------


def test_each_file_leaves_la_palma_once_and_only_when_all_three_copies_are_verified(
    export: Export, rucio_client: Any
) -> None:
    chained_rules_wait_for_the_first_copy(export, rucio_client)
    writable_again = the_source_stays_while_a_chained_copy_is_missing(export, rucio_client)
    export.flow(lambda: scenery.all_in(export.plan, FileState.DELETED, ORM))
    one_copy_left_la_palma_and_every_copy_was_verified_before_release(export, rucio_client, writable_again)


def chained_rules_wait_for_the_first_copy(export: Export, rucio_client: Any) -> None:
    """Right after registration only PIC-DISK's copies are asked of La Palma; the rules of the other two
    destinations wait (STUCK, MissingSourceReplica) with no transfer, the observatory copies held."""
    export.daemons.run_once("magic-scanner")
    assert scenery.all_in(export.plan, FileState.PROTECTED, ORM), scenery.states_of(export.plan, ORM)
    for scope, dataset in {(placement(p).scope, placement(p).dataset) for p in export.plan}:
        rules = {rule["rse_expression"]: rule for rule in rucio_client.list_did_rules(scope, dataset)}
        assert rules[FIRST]["source_replica_expression"] is None
        assert rules[FIRST]["state"] == "REPLICATING"
        for rse in CHAINED:
            assert rules[rse]["source_replica_expression"] == FIRST
            assert (rules[rse]["state"], rules[rse]["error"]) == ("STUCK", "MissingSourceReplica")
    carriers = {row.carrier for row in scenery.rows_of(export.plan, ORM).values()}
    for carrier in carriers:
        rules = list(rucio_client.list_replication_rules({"scope": "magic_carrier", "name": carrier}))
        assert [rule["rse_expression"] for rule in rules] == [ORM]  # it holds the source and asks for no copy
    assert {(t.destination, t.state) for t in transfers(export.plan)} <= {(FIRST, "PREPARING"), (FIRST, "QUEUED")}
    assert at_rse(rucio_client, export.plan, ORM) == {p.name: "AVAILABLE" for p in export.plan}


def the_source_stays_while_a_chained_copy_is_missing(export: Export, rucio_client: Any) -> datetime:
    """PIC-DISK and PIC-ANALYSIS get their copies, DC2-DISK takes no writes: nothing leaves La Palma. Returns
    when DC2-DISK took writes again."""
    plan = export.plan
    with unavailable(rucio_client, "DC2-DISK", "write"):
        export.flow(lambda: available_at(rucio_client, plan, FIRST, "PIC-ANALYSIS"))
        export.daemons.run_round(*FLOW)  # and once more: the carrier and the reaper had their chance
        assert at_rse(rucio_client, plan, "DC2-DISK") in ({}, {p.name: "UNAVAILABLE" for p in plan})
        assert all((export.orm_folder / p.path).read_bytes() for p in plan)  # the bytes still on ORM's disk
        assert at_rse(rucio_client, plan, ORM) == {p.name: "AVAILABLE" for p in plan}
        assert set(scenery.states_of(plan, ORM)) <= {FileState.PROTECTED, FileState.REPLICATED}
        assert not any(t.destination == "DC2-DISK" for t in transfers(plan))
    return utcnow()


def one_copy_left_la_palma_and_every_copy_was_verified_before_release(
    export: Export, rucio_client: Any, writable_again: datetime
) -> None:
    """Per file: one transfer read at the observatory, two at PIC-DISK; every copy holds the observatory's
    bytes; the last copy was made before the file was verified, and it was released only after that."""
    plan = export.plan
    done = [t for t in transfers(plan) if t.state == "DONE"]
    from_la_palma = Counter(t.name for t in transfers(plan) if t.source == ORM)
    assert from_la_palma == Counter({p.name: 1 for p in plan})  # one transfer per file read at the observatory
    read_from = copies_read(export)
    for planned in plan:
        mine = {(t.source, t.destination) for t in done if t.name == planned.name}
        assert mine == {(ORM, FIRST), (FIRST, "PIC-ANALYSIS"), (FIRST, "DC2-DISK")}, planned.name
        read = read_from[planned.name]  # the transfer tool's own account of where it read the bytes
        assert len(read) == 3 and sum(f"/{FOLDERS[FIRST]}/" in url for url in read) == 2, read
        assert sum("/orm-export/" in url for url in read) == 1, read

    rows = scenery.rows_of(plan, ORM)
    for planned in plan:
        row = rows[planned.path]
        assert row.adler32 == export.source_adler32[planned.path]
        for rse in DESTINATIONS:  # every copy holds the observatory's bytes
            assert adler32_of(export.copy_at(rse, planned)) == export.source_adler32[planned.path], (rse, planned)
        assert not (export.orm_folder / planned.path).exists()
        story = {event.state: event for event in scenery.events_of(planned.path, ORM)}
        verified, released = story[FileState.VERIFIED], story[FileState.RELEASED]
        assert all(rse in verified.detail for rse in DESTINATIONS), verified.detail
        (dc2,) = [t for t in done if t.name == planned.name and t.destination == "DC2-DISK"]
        assert dc2.transferred_at is not None
        assert writable_again <= dc2.transferred_at <= verified.at <= released.at <= story[FileState.DELETED].at
    assert at_rse(rucio_client, plan, ORM) == {}
    for rse in DESTINATIONS:
        assert available_at(rucio_client, plan, rse)
