"""DL3 headers as registration reads them: the real MAGIC run described exactly, and every way a file is refused."""

from __future__ import annotations

import gzip
import io
import json
import pickle
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from astropy.io import fits

from rucio_magic_ext.dl3.headers import Dl3Refused, describe
from rucio_magic_ext.naming import parse

NAME = "20131004_05029747_DL3_CrabNebula-W0.40+035.fits"
REAL = Path(__file__).resolve().parents[1] / "data" / NAME

EXPECTED = {
    "obs_id": 5029747,
    "object": "CrabNebula",
    "ra_pnt": 83.98333,
    "dec_pnt": 22.24389,
    "ra_obj": 83.63333,
    "dec_obj": 22.01444,
    "alt_pnt": 69.69974,
    "az_pnt": 103.8848,
    "zen_pnt": 20.30026,
    "tstart": "2013-10-04T04:20:52.435217Z",  # 333778852.435217 s after MJD 52706, in days of 86,400 s
    "tstop": "2013-10-04T04:40:40.546979Z",
    "mjdref": 52706.0,
    "ontime": 1188.111761868,
    "livetime": 1178.06621791733,
    "deadc": 0.991545,
    "telescop": "MAGIC",
    "instrume": "MAGIC stereo",
    "obs_mode": "POINTING",
    "hdus": "EVENTS,GTI,RAD_MAX,EFFECTIVE AREA,ENERGY DISPERSION",
    "hdu_types": "events,gti,rad_max,aeff,edisp",
    "hdu_classes": "events,gti,rad_max_2d,aeff_2d,edisp_2d",
    "irf_type": "point-like",
    "n_events": 11189,
}


class CountingReader(io.RawIOBase):
    """A file that counts what is read from it, as a ranged remote stream would bill it."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("rb")
        self.bytes_read = 0
        self.reads = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.file.seek(offset, whence)

    def tell(self) -> int:
        return self.file.tell()

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.file.read(len(buffer))
        buffer[: len(data)] = data
        self.bytes_read += len(data)
        self.reads += 1
        return len(data)

    def close(self) -> None:
        self.file.close()
        super().close()


def run(path: Path, name: str = NAME, night: date | None = None) -> dict[str, str | int | float]:
    with path.open("rb") as stream:
        return describe(stream, path.stat().st_size, parse(name), night)


def refused(path: Path, name: str = NAME, night: date | None = None) -> Dl3Refused:
    with pytest.raises(Dl3Refused) as caught:
        run(path, name, night)
    return caught.value


def variant(tmp_path: Path, edit: Callable[[fits.HDUList], None], checksum: bool = False) -> Path:
    """The real file, edited with astropy and written anew under its own name."""
    target = tmp_path / NAME
    with fits.open(REAL) as hdus:
        edit(hdus)
        hdus.writeto(target, checksum=checksum)
    return target


def unchanged(hdus: fits.HDUList) -> None:
    pass


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


# --- the real file --------------------------------------------------------------------------------


def test_the_real_run_is_described_exactly() -> None:
    meta = run(REAL)
    assert meta == EXPECTED
    assert all(type(value) in (str, int, float) for value in meta.values())
    assert json.loads(json.dumps(meta)) == meta


def test_only_the_header_blocks_are_read() -> None:
    raw = CountingReader(REAL)
    with raw:
        assert describe(raw, REAL.stat().st_size, parse(NAME)) == EXPECTED
    assert raw.bytes_read == 8 * 2880  # six headers, two of them two blocks long
    assert raw.bytes_read < REAL.stat().st_size / 10


def test_a_buffered_remote_stream_costs_two_ranged_reads() -> None:
    raw = CountingReader(REAL)
    with io.BufferedReader(raw, buffer_size=1 << 16) as stream:
        assert describe(stream, REAL.stat().st_size, parse(NAME)) == EXPECTED
    assert raw.reads == 2  # the first headers, then the IRF headers after the events
    assert raw.bytes_read < REAL.stat().st_size / 3


def test_a_name_without_night_takes_the_folders() -> None:
    path_name = "run_05029747_DL3.fits"
    meta = run(REAL, path_name, night=date(2013, 10, 4))
    assert meta["obs_id"] == 5029747
    error = refused(REAL, path_name, night=date(2013, 10, 3))
    assert error.kind == "mislabelled"
    assert "20131004" in str(error) and "20131003" in str(error)


def test_a_name_without_night_nor_folder_night_is_not_checked_for_it() -> None:
    assert run(REAL, "run_05029747_DL3.fits")["tstart"] == EXPECTED["tstart"]


# --- checksums ------------------------------------------------------------------------------------


def test_checksum_cards_are_verified(tmp_path: Path) -> None:
    path = variant(tmp_path, unchanged, checksum=True)
    assert run(path) == EXPECTED
    raw = CountingReader(path)
    with raw:
        describe(raw, path.stat().st_size, parse(NAME))
    assert raw.bytes_read == path.stat().st_size  # every HDU has its cards: all its data is summed


def test_a_flipped_data_byte_fails_the_checksum(tmp_path: Path) -> None:
    path = variant(tmp_path, unchanged, checksum=True)
    with fits.open(path) as hdus:
        events_data = hdus.fileinfo(1)["datLoc"]
    flip(path, events_data + 1000)
    error = refused(path)
    assert error.kind == "checksum"
    assert "EVENTS" in str(error) and "DATASUM" in str(error)


def test_a_flipped_header_byte_fails_the_checksum(tmp_path: Path) -> None:
    path = variant(tmp_path, unchanged, checksum=True)
    with fits.open(path) as hdus:
        gti_header = hdus.fileinfo(2)["hdrLoc"]
    flip(path, gti_header + 79)  # the last character of the XTENSION card's comment
    error = refused(path)
    assert error.kind == "checksum"
    assert "GTI" in str(error) and "CHECKSUM" in str(error)


def test_a_checksum_refusal_names_both_values(tmp_path: Path) -> None:
    path = variant(tmp_path, unchanged, checksum=True)
    with fits.open(path) as hdus:
        events_data, gti_header = hdus.fileinfo(1)["datLoc"], hdus.fileinfo(2)["hdrLoc"]
        datasum, checksum = hdus["EVENTS"].header["DATASUM"], hdus["GTI"].header["CHECKSUM"]
    flip(path, events_data + 1000)
    said = str(refused(path))
    assert f"says {datasum} but its data sum to " in said and said.split()[-1] != datasum
    flip(path, events_data + 1000)
    flip(path, gti_header + 79)
    said = str(refused(path))
    assert f"CHECKSUM says {checksum!r} but the HDU as stored gives '" in said


def test_a_checksum_without_datasum_covers_the_data(tmp_path: Path) -> None:
    """astropy's verify_checksum counts no data where DATASUM is absent: such a card is summed over the data too."""

    def checksum_only(hdus: fits.HDUList) -> None:
        for hdu in hdus:
            hdu.add_checksum(when="HDU checksum")
            del hdu.header["DATASUM"]
            hdu.add_checksum(when="HDU checksum", override_datasum=True)

    path = tmp_path / NAME
    with fits.open(REAL) as hdus:
        checksum_only(hdus)
        hdus.writeto(path, checksum=False)
    assert run(path) == EXPECTED
    with fits.open(path) as hdus:
        events_data = hdus.fileinfo(1)["datLoc"]
    flip(path, events_data + 1000)
    error = refused(path)
    assert error.kind == "checksum" and "EVENTS" in str(error) and "CHECKSUM" in str(error)


# --- not FITS, not whole --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage, not FITS " * 400, gzip.compress(REAL.read_bytes()[:5760])],
    ids=["empty", "garbage", "gzip-named-fits"],
)
def test_what_is_not_fits_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / NAME
    path.write_bytes(content)
    assert refused(path).kind == "not_fits"


def test_a_malformed_mandatory_card_is_not_fits(tmp_path: Path) -> None:
    data = bytearray(REAL.read_bytes())
    data[2880 + 4 * 80 : 2880 + 5 * 80] = f"{'NAXIS2  = '}{'lots':>20}".ljust(80).encode()
    path = tmp_path / NAME
    path.write_bytes(bytes(data))
    error = refused(path)
    assert error.kind == "not_fits" and "HDU 1" in str(error)


def test_a_cut_file_is_truncated_with_both_sizes(tmp_path: Path) -> None:
    path = tmp_path / NAME
    path.write_bytes(REAL.read_bytes()[:200_000])
    error = refused(path)
    assert error.kind == "truncated"
    assert "313292" in str(error) and str(200_000 - 8640) in str(error) and "EVENTS" in str(error)


def test_a_file_cut_in_a_header_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / NAME
    path.write_bytes(REAL.read_bytes()[:4000])
    assert refused(path).kind == "truncated"


def test_a_header_without_end_stops_after_its_block_limit(tmp_path: Path) -> None:
    primary = REAL.read_bytes()[:2880].replace(b"END" + b" " * 77, b" " * 80)
    path = tmp_path / NAME
    path.write_bytes(primary + b"COMMENT".ljust(80) * 36 * 400)  # 400 blocks of comments, no END
    raw = CountingReader(path)
    with raw, pytest.raises(Dl3Refused) as caught:
        describe(raw, path.stat().st_size, parse(NAME))
    assert caught.value.kind == "not_fits" and "END" in str(caught.value)
    assert raw.bytes_read == 200 * 2880 < path.stat().st_size


def test_a_storage_size_beyond_the_stream_is_truncated() -> None:
    with REAL.open("rb") as stream, pytest.raises(Dl3Refused) as caught:
        describe(stream, REAL.stat().st_size + 2880, parse(NAME))
    assert caught.value.kind == "truncated"


def test_bytes_after_the_last_hdu_are_not_fits(tmp_path: Path) -> None:
    path = tmp_path / NAME
    path.write_bytes(REAL.read_bytes() + b"\0" * 2880)
    error = refused(path)
    assert error.kind == "not_fits" and "348480" in str(error)


# --- gzip -----------------------------------------------------------------------------------------


def test_a_gzip_copy_is_described_alike(tmp_path: Path) -> None:
    path = tmp_path / f"{NAME}.gz"
    path.write_bytes(gzip.compress(REAL.read_bytes()))
    assert run(path, f"{NAME}.gz") == EXPECTED


def test_a_cut_gzip_copy_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / f"{NAME}.gz"
    path.write_bytes(gzip.compress(REAL.read_bytes())[:-100])
    assert refused(path, f"{NAME}.gz").kind == "truncated"


def test_a_gzip_copy_of_a_cut_file_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / f"{NAME}.gz"
    path.write_bytes(gzip.compress(REAL.read_bytes()[:200_000]))
    error = refused(path, f"{NAME}.gz")
    assert error.kind == "truncated" and "313292" in str(error)


# --- what an analysis needs -----------------------------------------------------------------------


def test_a_missing_object_is_refused(tmp_path: Path) -> None:
    path = variant(tmp_path, lambda hdus: hdus["EVENTS"].header.remove("OBJECT"))
    error = refused(path)
    assert error.kind == "missing" and "OBJECT" in str(error)


def test_missing_time_reference_is_refused(tmp_path: Path) -> None:
    def edit(hdus: fits.HDUList) -> None:
        hdus["EVENTS"].header.remove("MJDREFF")

    error = refused(variant(tmp_path, edit))
    assert error.kind == "missing" and "MJDREFI+MJDREFF" in str(error)


def test_a_single_mjdref_serves_too(tmp_path: Path) -> None:
    def edit(hdus: fits.HDUList) -> None:
        header = hdus["EVENTS"].header
        header.remove("MJDREFI")
        header.remove("MJDREFF")
        header["MJDREF"] = 52706.0

    assert run(variant(tmp_path, edit)) == EXPECTED


def test_a_missing_effective_area_is_refused(tmp_path: Path) -> None:
    path = variant(tmp_path, lambda hdus: hdus.pop(4))
    error = refused(path)
    assert error.kind == "missing" and "EFF_AREA" in str(error)


def test_a_missing_gti_is_refused(tmp_path: Path) -> None:
    error = refused(variant(tmp_path, lambda hdus: hdus.pop(2)))
    assert error.kind == "missing" and "GTI" in str(error)


def test_a_value_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    def edit(hdus: fits.HDUList) -> None:
        hdus["EVENTS"].header["TSTART"] = "soon"

    error = refused(variant(tmp_path, edit))
    assert error.kind == "missing" and "TSTART" in str(error) and "soon" in str(error)


def test_tt_times_are_given_in_utc(tmp_path: Path) -> None:
    def edit(hdus: fits.HDUList) -> None:
        hdus["EVENTS"].header["TIMESYS"] = "TT"

    meta = run(variant(tmp_path, edit))
    assert meta["tstart"] == "2013-10-04T04:19:45.251217Z"  # TT - UTC = 32.184 s + 35 leap seconds


def test_optional_keys_are_left_out_and_zenith_is_taken_as_given(tmp_path: Path) -> None:
    def edit(hdus: fits.HDUList) -> None:
        header = hdus["EVENTS"].header
        for key in ("DEADC", "RA_OBJ", "DEC_OBJ", "OBS_MODE"):
            header.remove(key)
        header["ZEN_PNT"] = 20.25

    meta = run(variant(tmp_path, edit))
    assert not {"deadc", "ra_obj", "dec_obj", "obs_mode"} & set(meta)
    assert meta["zen_pnt"] == 20.25


# --- the name -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "header_value", "name_value"),
    [
        ("20131004_05029748_DL3_CrabNebula-W0.40+035.fits", "5029747", "5029748"),
        ("20131004_05029747_DL3_Crab-W0.40+035.fits", "'CrabNebula'", "'Crab'"),
        ("20131005_05029747_DL3_CrabNebula-W0.40+035.fits", "20131004", "20131005"),
        ("20131003_05029747_DL3_CrabNebula-W0.40+035.fits", "20131004", "20131003"),
        ("20131004_05029747_DL3_CrabNebula-W0.70+035.fits", "0.397", "0.70"),
    ],
    ids=["run", "source", "night-after", "night-before", "wobble"],
)
def test_headers_contradicting_the_name_are_mislabelled(name: str, header_value: str, name_value: str) -> None:
    error = refused(REAL, name)
    assert error.kind == "mislabelled"
    assert header_value in str(error) and name_value in str(error)


def test_the_night_is_named_by_its_sunrise(tmp_path: Path) -> None:
    """An evening observation (20:00 UTC on 3 October) belongs to the night 20131004 too."""

    def edit(hdus: fits.HDUList) -> None:
        hdus["EVENTS"].header["TSTART"] = 333778852.435217 - 8.5 * 3600

    assert run(variant(tmp_path, edit))["tstart"] == "2013-10-03T19:50:52.435217Z"


def test_a_refusal_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(refused(REAL, "20131004_05029748_DL3_CrabNebula-W0.40+035.fits")))
    assert error.kind == "mislabelled" and "5029748" in str(error)
