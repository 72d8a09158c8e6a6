"""A source file rewritten at La Palma after its copy reached PIC, on the real stack: the carrier reads every
source again just before release, keeps the new bytes where they are, held for a person, and lets the rest of
their carrier leave. A file only touched leaves with the others."""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from scenery import ORM, PIC, adler32_of, all_in, events_of, orm_root, placement, rows_of, write_observed_night

from rucio_magic_ext import cli
from rucio_magic_ext.ledger import FileState
from rucio_magic_ext.release.hook import Hook
from rucio_magic_ext.release.verify import SOURCE_CHANGED, SOURCE_GONE
from tools.make_night import PlannedFile

pytestmark = pytest.mark.integration

COUNTED = "magic_carrier_source_changed_total"


def copies_in_place(rucio_client: Any, plan: list[PlannedFile]) -> bool:
    """Every file AVAILABLE at PIC-DISK (the carrier and the reaper not run yet: nothing has left La Palma)."""
    dids = [{"scope": placement(p).scope, "name": p.name} for p in plan]
    found = rucio_client.list_replicas(dids, rse_expression=PIC, all_states=True)
    return sorted(r["name"] for r in found if r["states"].get(PIC) == "AVAILABLE") == sorted(p.name for p in plan)


def pic_copy(stack: Any, planned: PlannedFile) -> Path:
    return stack.settings.storage_dir / "pic-disk" / placement(planned).path


def rewrite(stack: Any, planned: PlannedFile, keep_mtime: bool) -> str:
    """Other bytes of the same size at the source, its mtime kept or moved; their adler32."""
    source = orm_root(stack) / planned.path
    before = source.stat()
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0xFF
    source.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    else:
        os.utime(source, (before.st_mtime + 3600, before.st_mtime + 3600))
    assert source.stat().st_size == before.st_size
    return adler32_of(source)


def carrier_pass() -> None:
    """One pass of the carrier in this process, so that its counters are this process's to read."""
    Hook.from_config().run_cycle()


def counted(kind: str) -> float:
    return REGISTRY.get_sample_value(COUNTED, {"kind": kind}) or 0.0


def said(capsys: Any, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize("keep_mtime", [True, False], ids=["mtime-kept", "mtime-moved"])
def test_a_source_rewritten_after_its_copy_reached_pic_is_held_and_the_rest_of_its_carrier_leaves(
    rucio_stack: Any, rucio_client: Any, flow: Any, capsys: Any, keep_mtime: bool
) -> None:
    plan = write_observed_night(rucio_stack, date(2020, 8, 1 + keep_mtime), seed=81 + keep_mtime)
    flow(lambda: copies_in_place(rucio_client, plan), without=("magic-carrier", "reaper"))
    rows = rows_of(plan)
    victim = plan[0]
    registered = rows[victim.path].adler32
    mates = [p for p in plan if rows[p.path].carrier == rows[victim.path].carrier and p is not victim]
    assert mates, "the file shares its carrier"
    new = rewrite(rucio_stack, victim, keep_mtime)
    assert new != registered

    before = counted("changed")
    carrier_pass()  # verifies the copies; the release reads the sources again and finds the rewritten one
    assert counted("changed") == before + 1
    others = [p for p in plan if p is not victim]
    flow(lambda: all_in(others, FileState.DELETED))

    source = orm_root(rucio_stack) / victim.path
    assert adler32_of(source) == new  # the new bytes, which exist only here, are still here
    assert adler32_of(pic_copy(rucio_stack, victim)) == registered  # and the copy at PIC holds the registered ones
    for planned in mates:  # its carrier's other files left La Palma, their copies verified at PIC
        assert not (orm_root(rucio_stack) / planned.path).exists()
        assert adler32_of(pic_copy(rucio_stack, planned)) == rows[planned.path].adler32
    row = rows_of([victim])[victim.path]
    assert row.state is FileState.VERIFIED and row.carrier != rows[victim.path].carrier  # a carrier of its own
    assert row.last_error.startswith(SOURCE_CHANGED) and f"adler32 {registered}" in row.last_error
    assert f"adler32 {new}" in row.last_error
    replicas = rucio_client.list_replicas([{"scope": placement(victim).scope, "name": victim.name}], all_states=True)
    assert next(iter(replicas))["states"].get(ORM) == "AVAILABLE"  # its source rule keeps it from the reaper
    code, out = said(capsys, "history", victim.path)
    assert code == 0 and f"{SOURCE_CHANGED}, held for a person" in out and "moved from carrier" in out
    code, out = said(capsys, "status", "--rse", ORM, "--ledger-only")
    shown = next(line for line in out.splitlines() if victim.path[-15:] in line)  # the table keeps a path's tail
    assert victim.path[:30] in shown and SOURCE_CHANGED in shown  # and its start, held for a person on top
    code, out = said(capsys, "status", "--rse", ORM, "--ledger-only", "--json")
    assert victim.path in out and SOURCE_CHANGED in out

    code, out = said(capsys, "retry", victim.path, "--why", "looked at it, not fixed yet", "--who", "operator1")
    assert code == 0, out
    rucio_stack.run_round("magic-carrier", ("reaper", "--rses", ORM))
    assert adler32_of(source) == new, "a retry alone never lets other bytes go"
    story = [(event.actor, event.detail or "") for event in events_of(victim.path)]
    retried = max(i for i, (actor, _) in enumerate(story) if actor.startswith("operator:"))
    assert any(detail.startswith(f"error: {SOURCE_CHANGED}") for _, detail in story[retried + 1 :]), story[retried:]

    kept = rucio_stack.settings.storage_dir / f"kept-{victim.name}"  # the person keeps the new bytes elsewhere
    if keep_mtime:  # ... and puts the registered ones back, from the copy at PIC
        shutil.move(source, kept)
        shutil.copyfile(pic_copy(rucio_stack, victim), source)
        expected = "source touched"
    else:  # ... and leaves the path empty
        shutil.move(source, kept)
        expected = f"{SOURCE_GONE}, its absence accepted by a person"
    code, out = said(capsys, "retry", victim.path, "--why", "new bytes kept aside", "--who", "operator1")
    assert code == 0, out
    flow(lambda: all_in([victim], FileState.DELETED))
    assert adler32_of(kept) == new and not source.exists()
    assert adler32_of(pic_copy(rucio_stack, victim)) == registered
    assert any(expected in (event.detail or "") for event in events_of(victim.path))


def test_a_touched_source_leaves_with_its_carrier(rucio_stack: Any, rucio_client: Any, flow: Any) -> None:
    plan = write_observed_night(rucio_stack, date(2020, 8, 5), seed=85)
    flow(lambda: copies_in_place(rucio_client, plan), without=("magic-carrier", "reaper"))
    touched = plan[0]
    source = orm_root(rucio_stack) / touched.path
    moved = source.stat().st_mtime + 7200
    os.utime(source, (moved, moved))
    flow(lambda: all_in(plan, FileState.DELETED))
    rows = rows_of(plan)
    for planned in plan:
        assert not (orm_root(rucio_stack) / planned.path).exists()
        assert adler32_of(pic_copy(rucio_stack, planned)) == rows[planned.path].adler32
    notes = [event.detail or "" for event in events_of(touched.path)]
    assert any(note.startswith("source touched") and "bytes as registered" in note for note in notes), notes
