"""DL3 files through the whole flow: described by their FITS headers at registration, found by that
metadata on Rucio's server, fetched as a gammapy data store that gammapy opens; bad ones refused with the
reason and left on the observatory's disk byte for byte."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from rucio_magic_ext.dl3.headers import describe
from rucio_magic_ext.ledger import FileState
from rucio_magic_ext.naming import Level, parse
from tests.integration.scenery import ORM, adler32_of, ledger, orm_root, rows_of
from tools.make_night import PlannedFile, plan_night, write_night

pytestmark = pytest.mark.integration

GOOD_NIGHT, BAD_NIGHT = date(2024, 11, 26), date(2024, 11, 27)
REAL = Path(__file__).parents[1] / "data" / "20131004_05029747_DL3_CrabNebula-W0.40+035.fits"
REAL_PATH = f"ST/OSA/DL3/2013/10/04/{REAL.name}"
RUCIO_MAGIC = str(Path(sys.executable).parent / "rucio-magic")


def rucio_magic(*args: str) -> str:
    done = subprocess.run([RUCIO_MAGIC, *args], capture_output=True, text=True, env=os.environ.copy())
    assert done.returncode == 0, f"rucio-magic {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def dl3_night(root: Path, night: date, seed: int) -> list[PlannedFile]:
    """The DL3 folder of a night at the observatory (four runs), closed long ago."""
    whole = plan_night(night, runs=6, seed=seed, scale=1e-5)
    plan = [planned for planned in whole if planned.record.level is Level.DL3]
    write_night(plan, root, stamp_times=True)
    return plan


def headers_of(path: Path) -> dict[str, Any]:
    with path.open("rb") as stream:
        return describe(stream, path.stat().st_size, parse(path.name))


def ledger_rows(paths: list[str]) -> dict[str, Any]:
    return ledger().known(ORM, paths)


def spoil(root: Path, bad: list[PlannedFile]) -> dict[str, tuple[str, list[str]]]:
    """Four ways a DL3 file goes wrong at the observatory: path -> (refusal kind, words the reason must hold)."""
    corrupt, truncated, mislabelled, garbage = (root / planned.path for planned in bad[:4])
    data = bytearray(corrupt.read_bytes())
    data[-100] ^= 0xFF  # in the last HDU's data: its DATASUM no longer holds
    corrupt.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    # A run's file under the next run's number: its OBS_ID says otherwise.
    record = parse(mislabelled.name)
    renamed = mislabelled.with_name(mislabelled.name.replace(f"_{record.run:08d}_", f"_{record.run + 1:08d}_"))
    mislabelled.rename(renamed)
    garbage.write_bytes(b"<html><body>502 Bad Gateway</body></html>\n" * 100)  # a failed download saved as the run
    return {
        str(corrupt.relative_to(root)): ("checksum", ["DATASUM"]),
        str(truncated.relative_to(root)): ("truncated", ["bytes"]),
        str(renamed.relative_to(root)): ("mislabelled", [str(record.run), str(record.run + 1)]),
        str(garbage.relative_to(root)): ("not_fits", ["SIMPLE"]),
    }


def test_dl3_runs_are_described_found_and_opened_by_gammapy_and_bad_ones_refused(
    rucio_stack: Any, rucio_client: Any, flow: Any, tmp_path: Path
) -> None:
    from gammapy.data import DataStore

    root = orm_root(rucio_stack)
    good = dl3_night(root, GOOD_NIGHT, seed=63)
    bad = dl3_night(root, BAD_NIGHT, seed=63)
    (root / REAL_PATH).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REAL, root / REAL_PATH)
    described = {planned.name: headers_of(root / planned.path) for planned in good}
    assert len(described) == 4
    refused = spoil(root, bad)
    refused_sums = {path: adler32_of(root / path) for path in refused}

    def settled() -> bool:
        rows = rows_of(good)
        others = ledger_rows([REAL_PATH, *refused])
        return (
            len(rows) == len(good)
            and all(row.state is FileState.DELETED for row in rows.values())
            and len(others) == 1 + len(refused)
            and others[REAL_PATH].state is FileState.DELETED
            and all(others[path].state is FileState.QUARANTINED for path in refused)
        )

    flow(settled, rounds=16)

    # The real file's own headers are its metadata in Rucio.
    meta = rucio_client.get_metadata("magic_dl3", REAL.name, plugin="JSON")
    assert meta["obs_id"] == 5029747 and meta["object"] == "CrabNebula" and meta["source"] == "CrabNebula"
    assert meta["tstart"] == "2013-10-04T04:20:52.435217Z" and meta["night"] == "2013-10-04"
    assert meta["zen_pnt"] == pytest.approx(20.30026) and meta["livetime"] == pytest.approx(1178.066, abs=1e-3)
    assert meta["hdus"] == "EVENTS,GTI,RAD_MAX,EFFECTIVE AREA,ENERGY DISPERSION" and meta["n_events"] == 11189

    # Each bad file: quarantined with its reason, never registered, its bytes untouched at the observatory.
    rows = ledger_rows(list(refused))
    for path, (kind, words) in refused.items():
        row = rows[path]
        assert f"DL3 refused ({kind})" in str(row.last_error), (path, row.last_error)
        assert all(word in str(row.last_error) for word in words), (path, row.last_error)
        assert not list(rucio_client.list_replicas([{"scope": "magic_dl3", "name": Path(path).name}]))
        assert adler32_of(root / path) == refused_sums[path]

    # dl3 find: the server selects the good night's runs of one source below a zenith angle.
    source = Counter(meta["object"] for meta in described.values()).most_common(1)[0][0]
    zeniths = sorted(meta["zen_pnt"] for meta in described.values() if meta["object"] == source)
    assert zeniths[0] < zeniths[-1], zeniths
    limit = (zeniths[0] + zeniths[-1]) / 2
    wanted = {name for name, meta in described.items() if meta["object"] == source and meta["zen_pnt"] <= limit}
    assert wanted
    selection = ["--source", source, "--night", GOOD_NIGHT.isoformat(), "--zenith-max", f"{limit}"]
    found = json.loads(rucio_magic("dl3", "find", *selection, "--json"))
    assert {row["name"] for row in found} == wanted
    table = rucio_magic("dl3", "find", *selection)
    assert all(name in table for name in wanted) and f"{len(wanted)} run(s)" in table

    # dl3 fetch: downloaded (the source copies are gone: from the data centre), indexed, opened by gammapy.
    store_dir = tmp_path / "store"
    rucio_magic("dl3", "fetch", *selection, str(store_dir))
    store = DataStore.from_dir(store_dir)
    assert sorted(store.obs_table["OBS_ID"]) == sorted(described[name]["obs_id"] for name in wanted)
    for name in wanted:
        observation = store.obs(described[name]["obs_id"], required_irf="point-like")
        assert len(observation.events.table) == described[name]["n_events"]
        assert observation.gti.time_sum.to_value("s") > 0
        assert observation.aeff is not None and observation.edisp is not None and observation.rad_max is not None
        fetched = next(store_dir.rglob(name))
        replica = next(iter(rucio_client.list_replicas([{"scope": "magic_dl3", "name": name}])))
        assert adler32_of(fetched) == replica["adler32"]
