"""Every name on the real La Palma path list, checked against the folder it sits in."""

import gzip
from collections import Counter
from pathlib import Path

import pytest

from rucio_magic_ext import layout
from rucio_magic_ext.naming import MagicNameError, format_name, parse

PATH_LIST = Path(__file__).parents[1] / "data" / "magic_orm_paths_2019_2020.txt.gz"


@pytest.fixture(scope="module")
def observatory_paths() -> list[str]:
    with gzip.open(PATH_LIST, "rt") as listing:
        return [line.strip() for line in listing if line.strip()]


def test_every_real_name_parses_round_trips_and_agrees_with_its_folder(
    observatory_paths: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    families: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    for path in observatory_paths:
        name = path.rsplit("/", 1)[1]
        try:
            record = parse(name)
        except MagicNameError as error:
            refused[f"{error.part}: {error.reason}"] += 1
            continue
        assert format_name(record) == name
        folder = layout.observatory_folder(path)
        assert folder is not None, f"{path}: not in a known observatory folder"
        layout.check_folder(record, folder)  # telescope, level and night agree, or this raises
        layout.placement(record, folder.night)
        families[record.family.value] += 1
    with capsys.disabled():
        print(
            f"\n{len(observatory_paths)} real paths: {sum(families.values())} parsed {dict(families)}; "
            f"{sum(refused.values())} refused"
        )
        for reason, count in refused.most_common():
            print(f"  refused x{count}: {reason}")
    assert len(observatory_paths) == 41_383
    assert not refused, "a MAGIC-convention name on the real list was refused"


def test_a_mis_filed_name_is_caught_by_its_folder() -> None:
    record = parse("20191127_M1_05086952.001_Y_CrabNebula-W0.40+035.root")
    for path, part in [
        ("/data/M2/OSA/Calibrated/2019/11/27/x", "telescope"),
        ("/data/M1/DAQ/RAW/2019_11_27/x", "level"),
        ("/data/M1/OSA/Calibrated/2019/11/28/x", "night"),
    ]:
        folder = layout.observatory_folder(path)
        assert folder is not None
        with pytest.raises(MagicNameError) as caught:
            layout.check_folder(record, folder)
        assert caught.value.part == part
