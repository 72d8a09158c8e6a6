import gzip
import hashlib
import json
import os
import subprocess
import sys
import zlib
from collections import defaultdict
from datetime import date
from pathlib import Path

import pytest

from rucio_magic_ext import layout
from rucio_magic_ext.naming import Family, Level, Telescope, format_name, parse
from tools.make_night import Content, plan_night, write_night
from tools.make_night.catalogue import CATALOGUE
from tools.make_night.cli import main
from tools.make_night.content import gzip_bytes, gzip_minimum
from tools.make_night.write import DEFAULT_DL3_TEMPLATE

ROOT = Path(__file__).resolve().parents[2]
NIGHT = date(2020, 1, 4)
TINY = 1e-5  # a whole night in a few MB


@pytest.fixture(scope="module")
def plan():
    return plan_night(NIGHT, runs=20, seed=3)


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.md5(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_same_seed_same_night_and_another_seed_another(plan):
    assert plan_night(NIGHT, runs=20, seed=3) == plan
    other = plan_night(NIGHT, runs=20, seed=4)
    assert [(p.path, p.size) for p in other] != [(p.path, p.size) for p in plan]


def test_same_seed_same_bytes(tmp_path):
    night = plan_night(NIGHT, runs=5, seed=1, scale=TINY)
    write_night(night, tmp_path / "a")
    write_night(night, tmp_path / "b")
    first = _digest(tmp_path / "a")
    assert first == _digest(tmp_path / "b")
    assert len(set(first.values())) == len(first)  # no two files share their bytes


def test_every_name_is_formatted_parses_and_agrees_with_its_folder(plan):
    for planned in plan:
        assert planned.name == format_name(planned.record)
        assert parse(planned.name) == planned.record
        for prefix in ("/data/", "/"):
            folder = layout.observatory_folder(prefix + planned.path)
            assert folder is not None, planned.path
            layout.check_folder(planned.record, folder)
            assert folder.night == NIGHT


def test_folders_are_the_observatory_ones(plan):
    folders = {planned.path.rsplit("/", 1)[0] for planned in plan}
    assert folders == {
        "M1/DAQ/RAW/2020_01_04",
        "M2/DAQ/RAW/2020_01_04",
        "M1/OSA/Calibrated/2020/01/04",
        "M2/OSA/Calibrated/2020/01/04",
        "M1/OSA/Star/2020/01/04",
        "M2/OSA/Star/2020/01/04",
        "ST/OSA/SuperStar/2020/01/04",
        "ST/OSA/Melibea/2020/01/04",
        "ST/OSA/DL3/2020/01/04",
    }


def _runs(plan):
    raw = [p.record for p in plan if p.record.family is Family.RAW]
    types = {record.run: record.run_type for record in raw}
    subruns: dict[tuple[int, Telescope], set[int]] = defaultdict(set)
    for record in raw:
        subruns[record.run, record.telescope].add(record.subrun)
    return types, subruns, raw


def test_run_structure(plan):
    types, subruns, raw = _runs(plan)
    numbers = sorted(types)
    assert len(numbers) == 20
    assert numbers == list(range(numbers[0], numbers[0] + 20))
    assert all(f"{number:08d}".startswith("05") for number in numbers)
    assert {record.night for record in raw} == {NIGHT}
    sequence = "".join(types[number] for number in numbers)
    assert sequence.startswith("PCD")
    for block in sequence.split("PC")[1:]:  # every target: pedestal, calibration, then data runs only
        assert block and set(block) == {"D"}
    for (run, _), found in subruns.items():
        assert found == set(range(1, len(found) + 1))
        low, high = (5, 25) if types[run] == "D" else (1, 2)
        assert low <= len(found) <= high
    for run in numbers:  # M1 and M2 take the same run, subrun for subrun
        assert subruns[run, Telescope.M1] == subruns[run, Telescope.M2]


def test_stereo_and_side_products_per_run(plan):
    types, subruns, _ = _runs(plan)
    data = {run for run, kind in types.items() if kind == "D"}
    calibration = {run for run, kind in types.items() if kind == "C"}
    per_family: dict[Family, list] = defaultdict(list)
    for planned in plan:
        per_family[planned.record.family].append(planned.record)
    for family in (Family.SUPERSTAR, Family.MELIBEA, Family.DL3):
        assert sorted(record.run for record in per_family[family]) == sorted(data)
    for family in (Family.MERPP, Family.CALIBRATED, Family.STAR):
        found = {(r.run, r.telescope, r.subrun) for r in per_family[family]}
        assert found == {(run, tel, sub) for (run, tel), subs in subruns.items() if run in data for sub in subs}
    assert {(r.run, r.telescope) for r in per_family[Family.SIGNAL]} == {
        (run, tel) for run in data for tel in (Telescope.M1, Telescope.M2)
    }
    assert {(r.run, r.telescope) for r in per_family[Family.CALIBRATION_CONSTANTS]} == {
        (run, tel) for run in calibration for tel in (Telescope.M1, Telescope.M2)
    }


def test_real_targets_and_wobble_rotation(plan):
    targets = {target.source: target for target in CATALOGUE}
    data = sorted({p.record.run: p.record for p in plan if p.record.family is Family.RAW}.items())
    previous = None
    for _, record in data:
        target = targets[record.source]
        if record.run_type != "D":
            previous = None
            continue
        assert record.wobble_offset == target.wobble_offset
        angles = target.wobble_angles
        if previous is not None and previous.source == record.source:
            assert angles.index(record.wobble_angle) == (angles.index(previous.wobble_angle) + 1) % len(angles)
        previous = record


def test_crab_wobbles_at_035_and_215():
    crab = [
        p.record
        for seed in range(6)
        for p in plan_night(date(2020, 1, 4), runs=20, seed=seed)
        if p.record.source == "CrabNebula" and p.record.run_type == "D"
    ]
    assert crab  # a winter night points at the Crab now and then
    assert {r.wobble_angle for r in crab} == {35, 215}


def test_files_appear_raw_then_calibrated_then_stereo_in_run_order(plan):
    position = {id(planned): index for index, planned in enumerate(plan)}
    by_run: dict[int, dict[Level, list[int]]] = defaultdict(lambda: defaultdict(list))
    for planned in plan:
        by_run[planned.record.run][planned.record.level].append(position[id(planned)])
    for levels in by_run.values():
        order = [levels[level] for level in Level if level in levels]
        for earlier, later in zip(order, order[1:]):
            assert max(earlier) < min(later)
    for level in Level:
        runs = [planned.record.run for planned in plan if planned.record.level is level]
        assert runs == sorted(runs)


def test_sizes_look_real_at_scale_one(plan):
    sizes: dict[Level, list[int]] = defaultdict(list)
    for planned in plan:
        if planned.record.family not in (Family.SIGNAL, Family.CALIBRATION_CONSTANTS, Family.MERPP):
            sizes[planned.record.level].append(planned.size)
    full_raw = [
        p.size for p in plan if p.record.family is Family.RAW and p.record.run_type == "D" and p.record.subrun == 1
    ]
    assert all(0.9e9 < size < 1.1e9 for size in full_raw)
    for level in (Level.CALIBRATED, Level.STAR):  # tens of MB, less for a run's last, partial subrun
        assert sorted(sizes[level])[len(sizes[level]) // 2] >= 1e7 and max(sizes[level]) < 1e8
    assert all(1e7 <= size < 1e9 for level in (Level.SUPERSTAR, Level.MELIBEA) for size in sizes[level])
    assert all(0.35e6 <= size < 5e6 for size in sizes[Level.DL3])
    assert 2e11 < sum(p.size for p in plan) < 2e12


def test_scale_shrinks_the_night_and_disk_matches_the_plan(tmp_path, plan):
    small = plan_night(NIGHT, runs=20, seed=3, scale=TINY)
    assert [p.path for p in small] == [p.path for p in plan]
    total = sum(p.size for p in small)
    assert total < 20e6
    written = write_night(small, tmp_path)
    assert written.files == len(small) and written.bytes == total
    for planned in small:
        assert (tmp_path / planned.path).stat().st_size == planned.size
    assert sum(path.stat().st_size for path in tmp_path.rglob("*") if path.is_file()) == total


def test_raw_files_are_valid_gzip(tmp_path):
    night = plan_night(NIGHT, runs=4, seed=2, scale=1e-4)
    raw = [p for p in night if p.record.family is Family.RAW]
    write_night(raw, tmp_path)
    for planned in raw:
        assert planned.content is Content.GZIP
        data = (tmp_path / planned.path).read_bytes()
        payload = gzip.decompress(data)  # checks CRC32 and ISIZE in the trailer
        assert len(payload) == int.from_bytes(data[-4:], "little")
        assert data[10 : 10 + len(planned.name) - 3] == planned.name[:-3].encode()  # FNAME, as gzip writes it


@pytest.mark.parametrize("extra", [0, 1, 5, 6, 65534, 65539, 65540, 65541, 65546, 131080, 131081, 200_000])
def test_gzip_streams_have_the_exact_size(extra):
    size = gzip_minimum("x.raw") + extra
    data = b"".join(gzip_bytes(7, size, "x.raw"))
    assert len(data) == size
    payload = gzip.decompress(data)
    assert zlib.crc32(payload) == int.from_bytes(data[-8:-4], "little")


def test_trickled_files_grow_under_their_final_name(tmp_path):
    night = plan_night(NIGHT, runs=3, seed=5, scale=1e-4)[:6]
    seen: dict[str, list[tuple[int, bool]]] = defaultdict(list)

    def observe(planned, written, closed):
        seen[planned.path].append(((tmp_path / planned.path).stat().st_size, closed))
        assert (tmp_path / planned.path).stat().st_size == written

    written = write_night(night, tmp_path, trickle=0.02, pieces=3, observe=observe)
    assert written.seconds >= 0.02 * (len(night) - 1)
    for planned in night:
        growth = seen[planned.path]
        sizes = [size for size, _ in growth]
        assert len(growth) == 4 and [closed for _, closed in growth] == [False, False, False, True]
        assert sizes == sorted(sizes) and sizes[0] < planned.size
        assert sizes[-1] == planned.size == (tmp_path / planned.path).stat().st_size


def test_real_dl3_copies_and_stamped_times(tmp_path):
    template_size = DEFAULT_DL3_TEMPLATE.stat().st_size
    night = plan_night(NIGHT, runs=3, seed=0, scale=1e-6, dl3_template_size=template_size)
    write_night(night, tmp_path, stamp_times=True)
    dl3 = [p for p in night if p.record.family is Family.DL3]
    assert dl3
    for planned in dl3:
        assert (tmp_path / planned.path).read_bytes() == DEFAULT_DL3_TEMPLATE.read_bytes()
    for planned in night:
        assert os.stat(tmp_path / planned.path).st_mtime == pytest.approx(planned.closed_at.timestamp())


def test_cli_lists_and_writes(tmp_path, capsys):
    assert main(["--list", "--json", "--night", "20200104", "--runs", "5", "--seed", "1", "--scale", "1e-6"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["night"] == "2020-01-04" and summary["runs"] == 5
    assert summary["files"] == len(summary["planned"])
    assert main([str(tmp_path), "--night", "2020-01-04", "--runs", "5", "--seed", "1", "--scale", "1e-6"]) == 0
    on_disk = {str(p.relative_to(tmp_path)): p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()}
    assert on_disk == {planned["path"]: planned["size"] for planned in summary["planned"]}


def test_cli_runs_from_the_repo_root():
    done = subprocess.run(
        [sys.executable, "tools/make_night", "--list", "--night", "2020-01-04", "--runs", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    first = done.stdout.splitlines()[0].split("\t")
    assert first[0].startswith("M1/DAQ/RAW/2020_01_04/20200104_M1_05") and int(first[1]) > 0


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        plan_night(NIGHT, runs=2)
    with pytest.raises(ValueError):
        plan_night(NIGHT, scale=0)
    with pytest.raises(ValueError):
        plan_night(NIGHT, first_run=4_999_999)
