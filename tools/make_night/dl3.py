"""DL3 products of a synthetic night: the real MAGIC run in tests/data, rewritten for each planned run.

The scanner reads every DL3 file's headers and refuses one whose headers disagree with its name, so each
file is a GADF file of its own run: OBS_ID, OBJECT, times, pointing and zenith are the planned ones. The
events and IRFs stay those of the real run (gammapy reads them as such); events are moved with the pointing
so that the source sits where it did, and their times are mapped onto the run's good time interval.

The bytes depend on the plan only: CHECKSUM/DATASUM cards get a fixed comment instead of a timestamp, and
the size never changes from run to run (the template's, plus the checksum cards), so the plan knows it.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits

from rucio_magic_ext.naming import MagicName
from tools.make_night.sky import Observation, position

DEFAULT_DL3_TEMPLATE = (
    Path(__file__).resolve().parents[2] / "tests/data/20131004_05029747_DL3_CrabNebula-W0.40+035.fits"
)
_MJD_ZERO = datetime(1858, 11, 17, tzinfo=timezone.utc)
_DATASUM_NOTE = "data unit checksum"
_CHECKSUM_NOTE = "HDU checksum"


@cache
def _template(path: Path) -> bytes:
    return path.read_bytes()


def _open(template: Path) -> fits.HDUList:
    return fits.open(io.BytesIO(_template(template)), memmap=False)


def _finish(hdus: fits.HDUList) -> bytes:
    """Checksum cards with fixed comments (astropy's default comment holds the time of writing), then bytes."""
    for hdu in hdus:
        hdu.add_datasum(when=_DATASUM_NOTE)
        hdu.add_checksum(when=_CHECKSUM_NOTE, override_datasum=True)
    out = io.BytesIO()
    hdus.writeto(out, checksum=False)  # keep the cards just computed
    return out.getvalue()


@cache
def written_size(template: Path = DEFAULT_DL3_TEMPLATE) -> int:
    """The size of every DL3 file rewritten from ``template``: only values change, never the layout."""
    with _open(template) as hdus:
        return len(_finish(hdus))


def seconds_since_mjdref(header: fits.Header, moment: datetime) -> float:
    """TSTART/TSTOP as MAGIC's DL3 writer counts them (and dl3.headers reads them): days of 86,400 s of UTC
    since MJDREFI + MJDREFF, leap seconds not counted (astropy and gammapy count them, reading ~5 s earlier)."""
    reference = _MJD_ZERO + timedelta(days=header["MJDREFI"]) + timedelta(days=header["MJDREFF"])
    return (moment - reference).total_seconds()


def pointing(record: MagicName) -> tuple[SkyCoord, SkyCoord]:
    """(object, pointing): the pointing lies the wobble offset away at the wobble angle (a position angle)."""
    if record.source is None:
        raise ValueError(f"run {record.run}: a DL3 file needs a source")
    target = SkyCoord(*position(record.source), unit="deg")
    if record.wobble_offset is None or record.wobble_angle is None:
        return target, target
    offset = float(record.wobble_offset) * u.deg
    return target, target.directional_offset_by(record.wobble_angle * u.deg, offset)


def _move_events(columns: fits.FITS_rec, was: tuple[SkyCoord, SkyCoord], now: tuple[SkyCoord, SkyCoord]) -> None:
    """Keep each event's distance from the object and turn it with the pointing around the object."""
    (old_target, old_pointing), (target, new_pointing) = was, now
    turn = target.position_angle(new_pointing) - old_target.position_angle(old_pointing)
    events = SkyCoord(columns["RA"], columns["DEC"], unit="deg")
    moved = target.directional_offset_by(old_target.position_angle(events) + turn, old_target.separation(events))
    columns["RA"] = moved.ra.deg
    columns["DEC"] = moved.dec.deg


def _header_coords(header: fits.Header) -> tuple[SkyCoord, SkyCoord]:
    target = SkyCoord(header["RA_OBJ"], header["DEC_OBJ"], unit="deg")
    return target, SkyCoord(header["RA_PNT"], header["DEC_PNT"], unit="deg")


def render(record: MagicName, observation: Observation, template: Path = DEFAULT_DL3_TEMPLATE) -> bytes:
    """The DL3 file of ``record``'s run: a GADF file whose headers agree with its name."""
    target, aim = pointing(record)
    with _open(template) as hdus:
        events, gti = hdus["EVENTS"].data, hdus["GTI"].data
        head = hdus["EVENTS"].header
        template_run = f"{int(head['OBS_ID']):08d}"
        start, stop = (seconds_since_mjdref(head, moment) for moment in (observation.start, observation.end))
        stretch = (stop - start) / (head["TSTOP"] - head["TSTART"])
        for column in (events["TIME"], gti["START"], gti["STOP"]):
            column[:] = start + (column - head["TSTART"]) * stretch
        ontime = float(np.sum(gti["STOP"] - gti["START"]))
        _move_events(events, _header_coords(head), (target, aim))
        for hdu in hdus:
            if "OBS_ID" in hdu.header:
                hdu.header["OBS_ID"] = record.run
        head.update(
            OBJECT=record.source,
            TSTART=round(start, 6),
            TSTOP=round(stop, 6),
            ONTIME=round(ontime, 6),
            LIVETIME=round(ontime * head["DEADC"], 6),
            RA_OBJ=round(target.ra.deg, 6),
            DEC_OBJ=round(target.dec.deg, 6),
            RA_PNT=round(aim.ra.deg, 6),
            DEC_PNT=round(aim.dec.deg, 6),
            ALT_PNT=round(90 - observation.zenith, 4),
            AZ_PNT=round(observation.azimuth, 4),
        )
        head["CREATOR"] = ("make_night", f"events and IRFs of MAGIC run {template_run}")
        return _finish(hdus)
