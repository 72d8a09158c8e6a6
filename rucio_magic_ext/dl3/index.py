"""The GADF index tables of a selection of DL3 files, built from their DID metadata alone.

gammapy (``DataStore.from_dir``) finds observations through ``hdu-index`` and ``obs-index``; Rucio already
holds what they say (the scanner copied it from each file's headers), so a store can be indexed without
opening a file. The HDU rows come from each file's own ``hdus``/``hdu_types``/``hdu_classes``: MAGIC runs are
point-like, so they list ``rad_max`` and no psf or background, which gammapy's own index writer gets wrong.
Spec: https://gamma-astro-data-formats.readthedocs.io (data storage: HDU index and observation index tables).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time

HDUDOC = "https://github.com/open-gamma-ray-astro/gamma-astro-data-formats"
HDUVERS = "0.3"
TIMESYS = "UTC"  # the metadata's tstart/tstop are UTC, as the files' TIMESYS
# Telescopes of a run, from the name's telescope: N_TELS and TELLIST of the obs-index.
TELESCOPES = {"ST": (2, "1,2"), "M1": (1, "1"), "M2": (1, "2")}


@dataclass(frozen=True)
class IndexedFile:
    """One DL3 file as the index places it: its DID metadata, and its directory and name as the index says."""

    metadata: Mapping[str, Any]
    file_dir: str
    file_name: str


def hdu_rows(metadata: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(HDU_TYPE, HDU_CLASS, HDU_NAME) of each HDU a file lists, in file order."""
    names, types, classes = (_split(metadata[key]) for key in ("hdus", "hdu_types", "hdu_classes"))
    if not len(names) == len(types) == len(classes):
        raise ValueError(f"hdus, hdu_types and hdu_classes differ in length: {names}, {types}, {classes}")
    if metadata.get("irf_type") == "point-like" and "rad_max" not in types:
        raise ValueError(f"a point-like file without a rad_max HDU: {names}")
    return list(zip(types, classes, names))


def time_reference(files: Sequence[IndexedFile]) -> Time:
    """The index's MJDREF: the earliest of the files' own, so every TSTART stays positive."""
    if not files:
        raise ValueError("an index of no file")
    return Time(min(float(entry.metadata["mjdref"]) for entry in files), format="mjd", scale=TIMESYS.lower())


def hdu_index(files: Sequence[IndexedFile]) -> fits.BinTableHDU:
    """The ``HDU_INDEX`` table: one row per HDU of each file."""
    rows = [
        (int(entry.metadata["obs_id"]), hdu_type, hdu_class, entry.file_dir, entry.file_name, hdu_name)
        for entry in files
        for hdu_type, hdu_class, hdu_name in hdu_rows(entry.metadata)
    ]
    names = ("OBS_ID", "HDU_TYPE", "HDU_CLASS", "FILE_DIR", "FILE_NAME", "HDU_NAME")
    table = Table(rows=rows or None, names=names, dtype=(np.int64, str, str, str, str, str))
    return _hdu(table, "HDU_INDEX", "HDU", {})


def obs_index(files: Sequence[IndexedFile]) -> fits.BinTableHDU:
    """The ``OBS_INDEX`` table: one row per file, times in seconds since the index's own MJDREF."""
    reference = time_reference(files)
    table = Table([_obs_row(entry.metadata, reference) for entry in files])
    for name, unit in OBS_UNITS.items():
        table[name].unit = unit
    cards = _time_cards(reference)
    for key in ("TELESCOP", "INSTRUME"):
        values = {str(entry.metadata[key.lower()]) for entry in files if entry.metadata.get(key.lower())}
        if len(values) == 1:
            cards[key] = values.pop()
    return _hdu(table, "OBS_INDEX", "OBS", cards)


OBS_UNITS = {
    **dict.fromkeys(("RA_PNT", "DEC_PNT", "ZEN_PNT", "ALT_PNT", "AZ_PNT", "RA_OBJ", "DEC_OBJ"), u.deg),
    **dict.fromkeys(("ONTIME", "LIVETIME", "TSTART", "TSTOP"), u.s),
}


def _obs_row(meta: Mapping[str, Any], reference: Time) -> dict[str, Any]:
    start, stop = Time(_iso(meta["tstart"]), scale="utc"), Time(_iso(meta["tstop"]), scale="utc")
    alt = float(meta["alt_pnt"])
    n_tels, tellist = TELESCOPES.get(str(meta.get("telescope")), (-1, ""))
    return {
        "OBS_ID": int(meta["obs_id"]),
        "RA_PNT": float(meta["ra_pnt"]),
        "DEC_PNT": float(meta["dec_pnt"]),
        "ZEN_PNT": float(meta.get("zen_pnt", 90.0 - alt)),
        "ALT_PNT": alt,
        "AZ_PNT": float(meta["az_pnt"]),
        "ONTIME": float(meta["ontime"]),
        "LIVETIME": float(meta["livetime"]),
        "DEADC": float(meta["deadc"]),
        "TSTART": seconds_since(start, reference),
        "TSTOP": seconds_since(stop, reference),
        "DATE_OBS": start.strftime("%Y-%m-%d"),
        "TIME_OBS": start.strftime("%H:%M:%S"),
        "DATE_END": stop.strftime("%Y-%m-%d"),
        "TIME_END": stop.strftime("%H:%M:%S"),
        "N_TELS": n_tels,
        "TELLIST": tellist,
        "QUALITY": -1,  # unknown: MAGIC's DL3 headers carry no data-quality flag
        "OBJECT": str(meta.get("object", meta.get("source", ""))),
        "RA_OBJ": float(meta.get("ra_obj", math.nan)),
        "DEC_OBJ": float(meta.get("dec_obj", math.nan)),
        "TELESCOP": str(meta.get("telescop", "")),
        "EVENT_COUNT": int(meta.get("n_events", -1)),
    }


def seconds_since(moment: Time, reference: Time) -> float:
    """Seconds from MJDREF counted in days of 86,400 s of UTC, as MAGIC's DL3 writer counts TSTART (and
    dl3.headers reads it): so the index's TSTART is the file's own, which gammapy reads as it reads the GTI."""
    days = (moment.utc.jd1 - reference.utc.jd1) + (moment.utc.jd2 - reference.utc.jd2)
    return float(days * 86400.0)


def _time_cards(reference: Time) -> dict[str, Any]:
    mjdrefi = math.floor(reference.mjd)
    return {
        "MJDREFI": mjdrefi,
        "MJDREFF": float(reference.mjd - mjdrefi),
        "TIMEUNIT": "s",
        "TIMESYS": TIMESYS,
        "TIMEREF": "local",
    }


def _hdu(table: Table, extname: str, clas2: str, cards: Mapping[str, Any]) -> fits.BinTableHDU:
    hdu = fits.table_to_hdu(table)
    hdu.name = extname
    header = {"HDUCLASS": "GADF", "HDUDOC": HDUDOC, "HDUVERS": HDUVERS, "HDUCLAS1": "INDEX", "HDUCLAS2": clas2}
    for key, value in {**header, **cards}.items():
        hdu.header[key] = value
    return hdu


def _split(value: str) -> list[str]:
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _iso(value: str) -> str:
    """astropy reads ISO times without the zone letter; the metadata's are UTC by contract."""
    return value[:-1] if value.endswith("Z") else value
