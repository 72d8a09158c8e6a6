"""The GADF index tables of DL3 files from their metadata (opened by gammapy beside the real MAGIC run), the
selection's list_dids filters as Rucio's filter engine reads them, and the replica path of a mounted store."""

from __future__ import annotations

import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from rucio_magic_ext.dl3.fetch import HDU_INDEX, OBS_INDEX, replica_path, write_index
from rucio_magic_ext.dl3.headers import describe
from rucio_magic_ext.dl3.index import IndexedFile, hdu_index, hdu_rows, obs_index
from rucio_magic_ext.dl3.selection import Selection, filters, time_bound
from rucio_magic_ext.metadata import file_metadata
from rucio_magic_ext.naming import parse

REAL = Path(__file__).parents[1] / "data" / "20131004_05029747_DL3_CrabNebula-W0.40+035.fits"
POINT_LIKE = ("rad_max", "rad_max_2d")


def dl3_metadata(path: Path) -> dict[str, Any]:
    """The DID metadata the scanner registers for a DL3 file: from its name, then from its headers."""
    record = parse(path.name)
    with path.open("rb") as stream:
        return {**file_metadata(record), **describe(stream, path.stat().st_size, record)}


@pytest.fixture(scope="module")
def real() -> dict[str, Any]:
    return dl3_metadata(REAL)


def test_the_real_runs_metadata_lists_its_five_hdus(real: dict[str, Any]) -> None:
    assert real["hdus"] == "EVENTS,GTI,RAD_MAX,EFFECTIVE AREA,ENERGY DISPERSION"
    assert real["hdu_classes"] == "events,gti,rad_max_2d,aeff_2d,edisp_2d"
    assert real["tstart"] == "2013-10-04T04:20:52.435217Z" and real["mjdref"] == 52706.0


def test_the_hdu_index_has_rad_max_and_no_psf_or_background(real: dict[str, Any]) -> None:
    table = hdu_index([IndexedFile(real, ".", REAL.name)])
    rows = {(row["HDU_TYPE"], row["HDU_CLASS"]): row["HDU_NAME"] for row in table.data}
    assert rows[POINT_LIKE] == "RAD_MAX" and rows[("aeff", "aeff_2d")] == "EFFECTIVE AREA"
    assert not {kind for kind, _ in rows} & {"psf", "bkg"} and len(rows) == 5
    assert set(table.data["OBS_ID"]) == {5029747} and set(table.data["FILE_NAME"]) == {REAL.name}
    head = table.header
    assert (head["EXTNAME"], head["HDUCLASS"], head["HDUVERS"], head["HDUCLAS1"], head["HDUCLAS2"]) == (
        "HDU_INDEX", "GADF", "0.3", "INDEX", "HDU")  # fmt: skip


def test_the_obs_index_times_are_the_files_own(real: dict[str, Any]) -> None:
    table = obs_index([IndexedFile(real, ".", REAL.name)])
    row, head = table.data[0], table.header
    with fits.open(REAL) as hdus:
        events = hdus["EVENTS"].header
    assert (head["MJDREFI"], head["MJDREFF"], head["TIMESYS"], head["HDUCLAS2"]) == (52706, 0.0, "UTC", "OBS")
    assert row["TSTART"] == pytest.approx(events["TSTART"], abs=1e-6)
    assert row["TSTOP"] == pytest.approx(events["TSTOP"], abs=1e-6)
    assert row["ZEN_PNT"] == pytest.approx(20.30026) and row["LIVETIME"] == pytest.approx(1178.066, abs=1e-3)
    assert (row["OBJECT"], row["N_TELS"], row["TELLIST"], row["DATE_OBS"]) == ("CrabNebula", 2, "1,2", "2013-10-04")
    assert head["TELESCOP"] == "MAGIC" and table.columns["RA_PNT"].unit == "deg"


def test_files_with_other_references_share_the_earliest(real: dict[str, Any]) -> None:
    later = {**real, "obs_id": 1, "mjdref": real["mjdref"] + 1.5}
    table = obs_index([IndexedFile(later, ".", "b.fits"), IndexedFile(real, ".", "a.fits")])
    assert (table.header["MJDREFI"], table.header["MJDREFF"]) == (52706, 0.0)
    assert np.allclose(table.data["TSTART"], table.data["TSTART"][1])  # same run, same time, one reference


def test_hdu_lists_that_disagree_are_refused(real: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="differ in length"):
        hdu_rows({**real, "hdu_types": "events,gti"})
    with pytest.raises(ValueError, match="point-like file without a rad_max"):
        hdu_rows({**real, "hdus": "EVENTS,GTI", "hdu_types": "events,gti", "hdu_classes": "events,gti"})


def test_gammapy_opens_the_store_and_reads_every_hdu(real: dict[str, Any], tmp_path: Path) -> None:
    from gammapy.data import DataStore

    (tmp_path / "runs").mkdir()
    shutil.copy(REAL, tmp_path / "runs" / REAL.name)
    write_index([IndexedFile(real, "runs", REAL.name)], tmp_path)
    assert (tmp_path / HDU_INDEX).exists() and (tmp_path / OBS_INDEX).exists()

    store = DataStore.from_dir(tmp_path)
    obs = store.obs(5029747, required_irf="point-like")
    assert len(obs.events.table) == real["n_events"]
    assert obs.gti.time_sum.to_value("s") == pytest.approx(real["ontime"], rel=1e-6)
    assert obs.aeff is not None and obs.edisp is not None and obs.rad_max is not None
    assert store.obs_table["OBS_ID"][0] == 5029747
    assert abs((store.obs_table.time_start[0] - obs.gti.time_start[0]).to_value("s")) < 1e-3


def test_a_selection_becomes_one_and_group_of_json_keys() -> None:
    selection = Selection(
        source="CrabNebula", night=date(2013, 10, 4), start=datetime(2013, 10, 4, 4), end=datetime(2013, 10, 4, 5),
        zenith_min=5, zenith_max=30.5, min_livetime=600, telescope="MAGIC",
    )  # fmt: skip
    assert filters(selection) == [{
        "source": "CrabNebula", "night": "2013-10-04", "telescop": "MAGIC",
        "tstart.gte": "2013-10-04T04:00:00.000000", "tstop.lt": "2013-10-04T05:00:00.000001",
        "zen_pnt.gte": 5.0, "zen_pnt.lte": 30.5, "livetime.gte": 600.0,
    }]  # fmt: skip
    assert filters(Selection()) == [{}]


def test_rucio_keeps_the_values_as_strings_and_floats() -> None:
    """Rucio's filter engine turns strings it reads as dates into datetimes; the bounds must stay strings."""
    from rucio.core.did_meta_plugins.filter_engine import FilterEngine

    selection = Selection(source="1ES1959+650", night=date(2013, 10, 4), start=datetime(2013, 10, 4, 4),
                          end=datetime(2013, 10, 4, 5), zenith_max=30.0, min_livetime=600)  # fmt: skip
    (group,) = FilterEngine(filters(selection), strict_coerce=False).filters
    values = {key: value for key, _, value in group}
    assert all(isinstance(values[key], str) for key in ("source", "night", "tstart", "tstop"))
    assert isinstance(values["zen_pnt"], float) and isinstance(values["livetime"], float)


@pytest.mark.parametrize(
    ("stored", "after_start"),
    [
        ("2013-10-04T04:20:49.435217Z", True),
        ("2013-10-04T04:20:49.435216Z", False),
        ("2013-10-04T04:20:49.435218Z", True),
        ("2013-10-04T04:20:48.999999Z", False),
        ("2013-10-04T04:21:00.000000Z", True),
    ],
)
def test_a_time_bound_orders_against_stored_times_to_the_microsecond(stored: str, after_start: bool) -> None:
    bound = time_bound(datetime(2013, 10, 4, 4, 20, 49, 435217))
    assert (stored >= bound) is after_start
    assert (stored < time_bound(datetime(2013, 10, 4, 4, 20, 49, 435217) + timedelta(microseconds=1))) is not (
        stored > "2013-10-04T04:20:49.435217Z")  # fmt: skip


def test_an_aware_bound_is_converted_to_utc() -> None:
    moment = datetime(2013, 10, 4, 6, 0, tzinfo=timezone(timedelta(hours=2)))
    assert time_bound(moment) == "2013-10-04T04:00:00.000000"


def test_the_replica_path_is_the_local_pfns() -> None:
    pfns = {
        "root://pic:1094//data/pic/ST/DL3/a.fits": {"rse": "PIC-XRD", "priority": 1},
        "file://localhost/storage/pic-analysis/ST/DL3/a.fits": {"rse": "PIC-ANALYSIS", "priority": 2},
    }
    assert replica_path(pfns) == Path("/storage/pic-analysis/ST/DL3/a.fits")
    assert replica_path(pfns, "PIC-XRD") == Path("/data/pic/ST/DL3/a.fits")
    assert replica_path(pfns, "PIC-DISK") is None
    assert replica_path({"root://pic:1094//d/a.fits": {"rse": "PIC-XRD"}}) is None
