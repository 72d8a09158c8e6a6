from datetime import date

from rucio_magic_ext.metadata import collection_metadata, file_metadata
from rucio_magic_ext.naming import parse


def test_file_metadata_carries_every_field_of_the_name() -> None:
    meta = file_metadata(parse("20200103_M2_05088072.001_D_BLLac-W0.40+090.raw.gz"))
    assert meta == {
        "project": "MAGIC",
        "datatype": "RAW",
        "run_number": 5088072,
        "telescope": "M2",
        "family": "raw",
        "night": "2020-01-03",
        "subrun": 1,
        "run_type": "D",
        "source": "BLLac",
        "wobble_offset": 0.4,
        "wobble_angle": 90,
    }


def test_night_from_the_folder_and_absent_fields_left_out() -> None:
    meta = file_metadata(parse("scalib05083180_M1.root"), night=date(2019, 7, 1))
    assert meta["night"] == "2019-07-01" and meta["datatype"] == "Calibrated"
    assert "source" not in meta and "subrun" not in meta


def test_simulations_carry_their_zenith_range() -> None:
    meta = file_metadata(parse("GA_M1_za05to35_8_821318_Y_w0.root"))
    assert (meta["zenith_min"], meta["zenith_max"], meta["production"]) == (5, 35, 8)
    assert "night" not in meta


def test_a_run_dataset_keeps_only_what_its_files_share() -> None:
    meta = collection_metadata(parse("20210314_M1_05095172.001_Y_CrabNebula-W0.40+035.root"))
    assert "subrun" not in meta and "family" not in meta
    assert meta["source"] == "CrabNebula" and meta["night"] == "2021-03-14"
