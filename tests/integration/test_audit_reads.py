"""What ``rucio-magic audit`` reads only when asked: the copies' data (``--checksums``), and Rucio's replicas from
a replica dump (``--replica-dump``) instead of its database."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from rucio_magic_ext import cli
from rucio_magic_ext.ledger import FileState
from rucio_magic_ext.naming import Level
from tests.integration.scenery import PIC, all_in, dids_of, placement, write_observed_night

pytestmark = pytest.mark.integration

NIGHT = date(2022, 3, 8)
PHANTOM = "20220308_M1_05110000.001_D_CrabNebula-W0.40+035.raw.gz"


def audit(capsys: Any, *options: str) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(["audit", PIC, "--night", NIGHT.isoformat(), *options])
    said = capsys.readouterr()
    return code, said.out + said.err


def listed(directory: Path, tag: str) -> list[str]:
    (found,) = directory.glob(f"{PIC}_*_{tag}.list")
    return found.read_text().splitlines()


def dump_line(replica: dict[str, Any]) -> str:
    """A line of Rucio's replica dump: rse, scope, name, adler32, size, created, path, updated, state."""
    fields = [PIC, replica["scope"], replica["name"], replica["adler32"], str(replica["bytes"]), "", "", "", "A"]
    return "\t".join(fields)


def test_checksums_are_read_only_when_asked_and_a_replica_dump_stands_for_the_database(
    rucio_stack: Any, rucio_client: Any, flow: Any, capsys: Any, tmp_path: Path
) -> None:
    plan = write_observed_night(rucio_stack, NIGHT, runs=3, seed=2208)
    flow(lambda: all_in(plan, FileState.DELETED))
    assert audit(capsys)[0] == 0

    # A copy at PIC rots in place: same size, one byte changed. Only reading its data tells.
    rotten = next(p for p in plan if p.record.level is Level.RAW)
    copy = rucio_stack.settings.storage_dir / "pic-disk" / placement(rotten).path
    good = copy.read_bytes()
    spoilt = bytearray(good)
    spoilt[len(spoilt) // 2] ^= 0xFF
    copy.write_bytes(bytes(spoilt))
    try:
        code, out = audit(capsys)
        assert code == 0, out
        code, out = audit(capsys, "--checksums", "--output", str(tmp_path / "sums"))
        assert code == 1, out
        assert [line for line in listed(tmp_path / "sums", "Checksum") if rotten.name in line], out
    finally:
        copy.write_bytes(good)

    # The same replicas from a dump, and one the dump says is there that the storage never had: lost.
    replicas = list(rucio_client.list_replicas(dids_of(plan), rse_expression=PIC))
    phantom = {"scope": "magic_raw", "name": PHANTOM, "adler32": "0badcafe", "bytes": 1234}
    dump = tmp_path / "replicas.dump"
    dump.write_text("\n".join(dump_line(replica) for replica in [*replicas, phantom]) + "\n")
    code, out = audit(capsys, "--replica-dump", str(dump), "--output", str(tmp_path / "dumped"))
    assert code == 1, out
    lost = listed(tmp_path / "dumped", "M")
    assert len(lost) == 1 and PHANTOM in lost[0], lost
    assert audit(capsys, "--checksums")[0] == 0  # the database's view, with the copy mended, is clean again
