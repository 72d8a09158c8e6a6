"""``rucio-magic audit`` on the real stack: a night through the flow, then what goes astray behind its back (a file
the scanner never saw, a copy lost at PIC, a ledger row with nothing behind it, carriers with half of themselves
gone) found each in its class, repaired by ``--fix`` through the flow's own daemons, and a clean audit after."""

from __future__ import annotations

import gzip
import os
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from scenery import ORM, PIC, adler32_of, ledger, orm_root, placement, rows_of, write_observed_night
from sqlalchemy import select, update

from rucio_magic_ext import cli
from rucio_magic_ext.carrier.model import CARRIER_SCOPE
from rucio_magic_ext.ledger import FileState, Seen
from rucio_magic_ext.ledger.models import LedgerCarrier, LedgerFile
from rucio_magic_ext.ledger.states import CarrierState
from rucio_magic_ext.naming import Level

pytestmark = pytest.mark.integration

NIGHT = date(2022, 3, 1)
DARK = "M1/DAQ/RAW/2022_03_01/20220301_M1_05109799.001_D_1ES1218+304-W0.40+270.raw.gz"
GHOST = "M1/DAQ/RAW/2022_03_01/20220301_M1_05109798.001_D_1ES1218+304-W0.40+270.raw.gz"


def audit(capsys: Any, rse: str, *options: str) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(["audit", rse, "--night", NIGHT.isoformat(), *options])
    said = capsys.readouterr()
    return code, said.out + said.err


def listed(directory: Path, rse: str, tag: str) -> list[str]:
    (found,) = directory.glob(f"{rse}_*_{tag}.list")
    return found.read_text().splitlines()


def replica_state(rucio_client: Any, scope: str, name: str, rse: str) -> str | None:
    (replica,) = rucio_client.list_replicas([{"scope": scope, "name": name}], all_states=True)
    return replica["states"].get(rse)


def test_audit_finds_what_went_astray_and_fix_hands_each_to_its_repair(
    rucio_stack: Any, rucio_client: Any, flow: Any, capsys: Any, tmp_path: Path
) -> None:
    plan = write_observed_night(rucio_stack, NIGHT, seed=2203)
    flow(lambda: len(rows_of(plan)) == len(plan) and all(r.state is FileState.DELETED for r in rows_of(plan).values()))
    for rse in (ORM, PIC):
        code, out = audit(capsys, rse)
        assert code == 0, out

    # A file written behind the scanner's back: its folder's mtime put back, so discovery never lists it.
    dark = orm_root(rucio_stack) / DARK
    folder = os.stat(dark.parent)
    dark.write_bytes(gzip.compress(os.urandom(4000)))
    two_days_ago = time.time() - 2 * 86400
    os.utime(dark, (two_days_ago, two_days_ago))
    os.utime(dark.parent, ns=(folder.st_atime_ns, folder.st_mtime_ns))
    # A copy lost at PIC: a DL3 file, whose second copy at PIC-ANALYSIS can bring it back.
    lost = next(p for p in plan if p.record.level is Level.DL3)
    lost_copy = rucio_stack.settings.storage_dir / "pic-disk" / placement(lost).path
    lost_copy.unlink()
    # A ledger row for a file that neither the storage nor Rucio has.
    book = ledger()
    book.add_seen(ORM, [Seen(GHOST, 1234, two_days_ago, "magic_raw", GHOST.rsplit("/", 1)[-1], NIGHT, "RAW")], "test")
    with book.session() as session:
        session.execute(update(LedgerFile).where(LedgerFile.path == GHOST).values(state=FileState.REGISTERED))
    # A carrier the ledger still holds whose dataset is gone, and a carrier dataset the ledger never made.
    held = rows_of(plan)[plan[0].path].carrier
    with book.session() as session:
        session.execute(update(LedgerCarrier).where(LedgerCarrier.name == held).values(state=CarrierState.PROTECTING))
    stray = "carrier_ORM-ONSITE_20220301T000000_audit0_00000000"
    rucio_client.add_dataset(CARRIER_SCOPE, stray)

    code, out = audit(capsys, ORM, "--output", str(tmp_path / "orm"))
    assert code == 1, out
    assert listed(tmp_path / "orm", ORM, "D") == [DARK]
    assert listed(tmp_path / "orm", ORM, "LedgerOnly") == [GHOST]
    assert listed(tmp_path / "orm", ORM, "OrphanCarrier") == sorted(
        [f"{CARRIER_SCOPE}:{held}", f"{CARRIER_SCOPE}:{stray}"]
    )
    assert listed(tmp_path / "orm", ORM, "M") == []
    code, out = audit(capsys, PIC, "--output", str(tmp_path / "pic"))
    assert code == 1, out
    assert listed(tmp_path / "pic", PIC, "M") == [placement(lost).path]
    assert listed(tmp_path / "pic", PIC, "D") == []

    # More out of place than the operator allows: nothing is done; a dry run says what would be.
    code, out = audit(capsys, ORM, "--fix", "--max-fraction", "0.01")
    assert code == 1 and "done" not in out
    code, out = audit(capsys, ORM, "--fix", "--dry-run")
    assert "would be handed to the scanner" in out and "would be set aside QUARANTINED" in out
    assert not book.known(ORM, [DARK]) and book.known(ORM, [GHOST])[GHOST].state is FileState.REGISTERED

    code, out = audit(capsys, ORM, "--fix")
    assert code == 1 and "handed to the scanner (SEEN)" in out, out
    assert book.known(ORM, [DARK])[DARK].state is FileState.SEEN
    assert book.known(ORM, [GHOST])[GHOST].state is FileState.QUARANTINED
    with book.session() as session:
        assert session.scalar(select(LedgerCarrier.state).where(LedgerCarrier.name == held)) is CarrierState.GONE
    assert not list(rucio_client.list_dids(CARRIER_SCOPE, {"name": stray}))
    code, out = audit(capsys, PIC, "--fix")
    assert code == 1 and "declared bad" in out, out
    assert replica_state(rucio_client, "magic_dl3", lost.name, PIC) != "AVAILABLE"

    # The flow's own daemons do the rest: the dark file is registered and travels, the lost copy comes back.
    def repaired() -> bool:
        row = book.known(ORM, [DARK])[DARK]
        return (
            row.state is FileState.DELETED and replica_state(rucio_client, "magic_dl3", lost.name, PIC) == "AVAILABLE"
        )

    flow(repaired)
    assert adler32_of(lost_copy) == rows_of([lost])[lost.path].adler32
    row = book.known(ORM, [DARK])[DARK]
    assert row.name == dark.name and row.scope == "magic_raw" and row.adler32
    assert replica_state(rucio_client, "magic_raw", dark.name, PIC) == "AVAILABLE"
    dark_copy = rucio_stack.settings.storage_dir / "pic-disk" / "M1/RAW/2022/03/01" / dark.name
    assert adler32_of(dark_copy) == row.adler32 and not dark.exists()

    for rse in (ORM, PIC):
        code, out = audit(capsys, rse)
        assert code == 0, out
