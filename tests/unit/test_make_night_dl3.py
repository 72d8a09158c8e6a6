"""DL3 files of a synthetic night are valid GADF files whose headers agree with their names.

The scanner refuses a DL3 file that is not FITS, fails its checksums, lacks a required header or disagrees
with its name; gammapy must read every HDU of them. The night in a MAGIC name is the date of the sunrise
(MARS convention, ../shared/docs/MAGIC_DATA.md), which is the UTC date of TSTART + 12 h.
"""

from __future__ import annotations

import hashlib
import warnings
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time

from rucio_magic_ext.dl3.headers import describe
from rucio_magic_ext.naming import Family, parse
from tools.make_night import Content, PlannedFile, plan_night, write_night
from tools.make_night.catalogue import CATALOGUE
from tools.make_night.dl3 import DEFAULT_DL3_TEMPLATE, pointing, written_size
from tools.make_night.sky import POSITIONS

NIGHT = date(2020, 1, 4)
REQUIRED_HDUS = ("EVENTS", "GTI", "EFFECTIVE AREA")
REQUIRED_KEYS = (
    "OBS_ID",
    "OBJECT",
    "TSTART",
    "TSTOP",
    "MJDREFI",
    "MJDREFF",
    "RA_PNT",
    "DEC_PNT",
    "ONTIME",
    "LIVETIME",
    "TELESCOP",
)


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> tuple[Path, list[PlannedFile]]:
    root = tmp_path_factory.mktemp("orm")
    plan = plan_night(NIGHT, runs=20, seed=3, scale=1e-5)
    dl3 = [planned for planned in plan if planned.record.family is Family.DL3]
    write_night(dl3, root)
    return root, dl3


def _complaints(path: Path) -> list[str]:
    """What astropy says opening the file with CHECKSUM/DATASUM verified (it only warns on a mismatch)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fits.open(path, checksum=True).close()
    return [str(warning.message) for warning in caught]


def _checked(path: Path) -> fits.HDUList:
    assert _complaints(path) == [], path
    return fits.open(path, checksum=True)


def _time(header: fits.Header, key: str) -> datetime:
    """A header time as MAGIC's DL3 writer counts it: days of 86,400 s since MJDREF (no leap seconds)."""
    days = header["MJDREFI"] + header["MJDREFF"] + header[key] / 86400
    return datetime(1858, 11, 17, tzinfo=timezone.utc) + timedelta(days=days)


def _as_gammapy_reads(header: fits.Header, key: str) -> Time:
    """A header time as astropy and gammapy read it: leap seconds since MJDREF counted."""
    return Time(header["MJDREFI"], header["MJDREFF"], format="mjd", scale="utc") + header[key] * u.s


def _sunrise_night(header: fits.Header) -> date:
    return (_time(header, "TSTART") + timedelta(hours=12)).date()


def test_the_real_run_follows_the_naming_rules() -> None:
    """The rules checked below hold for the real file the synthetic ones come from."""
    record = parse(DEFAULT_DL3_TEMPLATE.name)
    with fits.open(DEFAULT_DL3_TEMPLATE) as hdus:
        head = hdus["EVENTS"].header
        assert head["OBS_ID"] == record.run and head["OBJECT"] == record.source
        assert _sunrise_night(head) == record.night
        target = SkyCoord(head["RA_OBJ"], head["DEC_OBJ"], unit="deg")
        separation = target.separation(SkyCoord(head["RA_PNT"], head["DEC_PNT"], unit="deg")).deg
        assert abs(separation - float(record.wobble_offset)) < 0.1


def test_every_dl3_file_is_planned_as_its_own_run(night) -> None:
    _, dl3 = night
    assert len(dl3) > 5
    for planned in dl3:
        assert planned.content is Content.DL3 and planned.size == written_size()
        assert planned.observation is not None and planned.observation.end > planned.observation.start


def test_every_dl3_file_is_valid_fits_with_its_checksums_and_required_headers(night) -> None:
    root, dl3 = night
    for planned in dl3:
        path = root / planned.path
        assert path.stat().st_size == planned.size
        with _checked(path) as hdus:
            assert {name for name in REQUIRED_HDUS} <= {hdu.name for hdu in hdus}
            for hdu in hdus:
                assert "CHECKSUM" in hdu.header and "DATASUM" in hdu.header
            head = hdus["EVENTS"].header
            assert all(key in head for key in REQUIRED_KEYS)
            assert head["TELESCOP"] == "MAGIC" and head["HDUCLASS"] == "GADF"
            assert "DATE" not in head


def test_headers_agree_with_the_name_and_the_planned_run(night) -> None:
    root, dl3 = night
    with fits.open(DEFAULT_DL3_TEMPLATE) as template:
        reference = (template["EVENTS"].header["MJDREFI"], template["EVENTS"].header["MJDREFF"])
    for planned in dl3:
        record, observation = planned.record, planned.observation
        with _checked(root / planned.path) as hdus:
            head = hdus["EVENTS"].header
            assert head["OBS_ID"] == record.run == hdus["EFFECTIVE AREA"].header["OBS_ID"]
            assert head["OBJECT"] == record.source
            assert (head["MJDREFI"], head["MJDREFF"]) == reference
            assert _sunrise_night(head) == record.night == NIGHT
            start, stop = _time(head, "TSTART"), _time(head, "TSTOP")
            assert abs((start - observation.start).total_seconds()) < 1e-3
            assert abs((stop - observation.end).total_seconds()) < 1e-3
            assert head["ONTIME"] == pytest.approx(head["TSTOP"] - head["TSTART"], abs=1e-5)
            assert head["LIVETIME"] == pytest.approx(head["ONTIME"] * head["DEADC"], abs=1e-5)
            gti, times = hdus["GTI"].data, hdus["EVENTS"].data["TIME"]
            assert head["TSTART"] - 1e-5 <= min(gti["START"].min(), times.min())
            assert max(gti["STOP"].max(), times.max()) <= head["TSTOP"] + 1e-5
            assert (head["RA_OBJ"], head["DEC_OBJ"]) == pytest.approx(POSITIONS[record.source], abs=1e-6)
            target = SkyCoord(head["RA_OBJ"], head["DEC_OBJ"], unit="deg")
            aim = SkyCoord(head["RA_PNT"], head["DEC_PNT"], unit="deg")
            assert target.separation(aim).deg == pytest.approx(float(record.wobble_offset), abs=1e-4)
            assert target.position_angle(aim).deg == pytest.approx(record.wobble_angle % 360, abs=1e-3)
            assert 90 - head["ALT_PNT"] == pytest.approx(observation.zenith)
            events = SkyCoord(hdus["EVENTS"].data["RA"], hdus["EVENTS"].data["DEC"], unit="deg")
            assert aim.separation(events).deg.max() < 3  # the events moved with the pointing


def test_the_registration_reader_accepts_every_dl3_file(night) -> None:
    root, dl3 = night
    for planned in dl3:
        with (root / planned.path).open("rb") as stream:
            meta = describe(stream, planned.size, planned.record)
        assert meta["obs_id"] == planned.record.run and meta["object"] == planned.record.source
        assert meta["tstart"] == planned.observation.start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert meta["zen_pnt"] == pytest.approx(planned.observation.zenith)
        assert meta["irf_type"] and "rad_max" in str(meta["hdu_types"])


def test_zenith_angles_span_the_quality_cut(night) -> None:
    root, dl3 = night
    zeniths = []
    for planned in dl3:
        with fits.open(root / planned.path) as hdus:
            zeniths.append(90 - hdus["EVENTS"].header["ALT_PNT"])
    assert all(10 <= zenith <= 60 for zenith in zeniths)
    assert any(zenith < 40 for zenith in zeniths) and any(zenith > 40 for zenith in zeniths)
    assert len({round(zenith, 3) for zenith in zeniths}) >= len(zeniths) // 2  # one run in two at most repeats


def test_same_plan_same_bytes(night, tmp_path) -> None:
    root, dl3 = night
    again = [planned for planned in plan_night(NIGHT, runs=20, seed=3, scale=1e-5) if planned in dl3]
    write_night(again, tmp_path)
    digests = {hashlib.md5((root / planned.path).read_bytes()).hexdigest() for planned in dl3}
    assert len(digests) == len(dl3)  # no two runs share their bytes
    for planned in again:
        assert (tmp_path / planned.path).read_bytes() == (root / planned.path).read_bytes()


def test_every_target_has_a_position_and_its_wobbles_keep_their_offset() -> None:
    assert {target.source for target in CATALOGUE} <= set(POSITIONS)
    for target in CATALOGUE:
        for angle in target.wobble_angles:
            record = parse(f"20200104_05088072_DL3_{target.source}-W{target.wobble_offset}+{angle:03d}.fits")
            source, aim = pointing(record)
            assert source.separation(aim).deg == pytest.approx(float(target.wobble_offset), abs=1e-9)


def test_gammapy_reads_every_hdu(night) -> None:
    from gammapy.data import GTI, EventList
    from gammapy.irf import EffectiveAreaTable2D, EnergyDispersion2D, RadMax2D

    root, dl3 = night
    path = root / dl3[0].path
    events = EventList.read(path)
    assert len(events.table) > 1000
    assert events.table.meta["OBS_ID"] == dl3[0].record.run
    gti = GTI.read(path)
    start = _as_gammapy_reads(fits.getheader(path, "EVENTS"), "TSTART")
    assert abs((gti.time_start[0] - start).to_value(u.s)) < 1e-3
    assert EffectiveAreaTable2D.read(path, hdu="EFFECTIVE AREA").data.max() > 0
    assert EnergyDispersion2D.read(path, hdu="ENERGY DISPERSION").data.max() > 0
    assert RadMax2D.read(path, hdu="RAD_MAX").data.max() > 0


def _hdu_index(root: Path, dl3: list[PlannedFile]) -> Table:
    kinds = [
        ("events", "events", "EVENTS"),
        ("gti", "gti", "GTI"),
        ("aeff", "aeff_2d", "EFFECTIVE AREA"),
        ("edisp", "edisp_2d", "ENERGY DISPERSION"),
        ("rad_max", "rad_max_2d", "RAD_MAX"),
    ]
    rows = [
        (planned.record.run, kind, hdu_class, str((root / planned.path).parent), planned.name, hdu_name)
        for planned in dl3
        for kind, hdu_class, hdu_name in kinds
    ]
    return Table(rows=rows, names=("OBS_ID", "HDU_TYPE", "HDU_CLASS", "FILE_DIR", "FILE_NAME", "HDU_NAME"))


def test_gammapy_data_store_opens_the_runs_point_like(night, tmp_path) -> None:
    from gammapy.data import DataStore

    root, dl3 = night
    _hdu_index(root, dl3).write(tmp_path / "hdu-index.fits.gz")
    store = DataStore.from_dir(tmp_path)
    for planned in dl3[:3]:
        observation = store.obs(planned.record.run, required_irf="point-like")
        assert len(observation.events.table) > 1000 and len(observation.gti.table) == 1
        assert observation.aeff is not None and observation.edisp is not None
        assert observation.rad_max is not None
        start = _as_gammapy_reads(fits.getheader(root / planned.path, "EVENTS"), "TSTART")
        assert abs((observation.tstart - start).to_value(u.s)) < 1e-3
        aim = observation.get_pointing_icrs(observation.tmid)
        target = SkyCoord(*POSITIONS[planned.record.source], unit="deg")
        assert target.separation(aim).deg == pytest.approx(float(planned.record.wobble_offset), abs=1e-4)


def test_a_flipped_byte_fails_the_checksums(night, tmp_path) -> None:
    root, dl3 = night
    data = bytearray((root / dl3[0].path).read_bytes())
    data[-2880 + 100] ^= 0x01  # inside the last HDU's data (one row, in the file's last block)
    broken = tmp_path / dl3[0].name
    broken.write_bytes(bytes(data))
    assert any("datasum" in complaint.lower() for complaint in _complaints(broken))
