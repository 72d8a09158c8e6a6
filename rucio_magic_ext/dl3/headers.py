"""What a DL3 file's FITS headers say (GADF 0.2), checked against its name, read without its data.

At registration the headers become the file's DID metadata, so a file that is not whole, fails its own
checksums, lacks what an analysis needs or contradicts its name is refused (``Dl3Refused``) instead.

astropy reads the FITS: each header with ``Header.fromfile`` from a stream over the storage's ranged reads,
the size of its data with ``Header.data_size``, the CHECKSUM and DATASUM cards with ``verify_checksum`` and
``verify_datasum`` (what ``fits.open(..., checksum=True)`` and gammapy call). Only the header blocks are read,
the data seeked over, so a short file is caught with the exact byte counts; only an HDU with checksum cards
has its data read, to verify them. A ``.fits.gz`` file cannot be read by range: it is decompressed whole
first, its gzip CRC checked.

Times: TSTART and TSTOP are counted from MJDREF in days of 86,400 s of TIMESYS, as MAGIC's DL3 writer
counts them (the real run's ALT_PNT agrees to 0.0004 deg this way, to 0.011 deg when UTC leap seconds are
counted, which astropy and gammapy do, 3 s earlier in 2013).
"""

from __future__ import annotations

import gzip
import io
import math
import zlib
from datetime import date, timedelta
from itertools import chain
from typing import BinaryIO, Literal

import astropy.units as u
from astropy.coordinates import angular_separation
from astropy.io import fits
from astropy.time import Time

from rucio_magic_ext.naming import MagicName

__all__ = ["Dl3Refused", "Kind", "describe"]

Kind = Literal["not_fits", "truncated", "checksum", "missing", "mislabelled"]

BLOCK = 2880
MAX_HEADER_BLOCKS = 200  # a GADF header is a few blocks; a corrupt one without END must not read the whole file
WOBBLE_TOLERANCE_DEG = 0.1
TIME_SCALES = frozenset({"utc", "tt", "tai", "tdb", "tcg", "tcb"})  # UT1 would need IERS tables
REQUIRED_EVENTS_KEYS = ("OBS_ID", "OBJECT", "TSTART", "TSTOP", "RA_PNT", "DEC_PNT", "ONTIME", "LIVETIME", "TELESCOP")
_RESPONSE_TYPES = {"EFF_AREA": "aeff", "EDISP": "edisp", "RPSF": "psf", "BKG": "bkg", "RAD_MAX": "rad_max"}
_FLOATS = {
    "ra_pnt": "RA_PNT",
    "dec_pnt": "DEC_PNT",
    "ra_obj": "RA_OBJ",
    "dec_obj": "DEC_OBJ",
    "alt_pnt": "ALT_PNT",
    "az_pnt": "AZ_PNT",
    "ontime": "ONTIME",
    "livetime": "LIVETIME",
    "deadc": "DEADC",
}
_TEXTS = {"telescop": "TELESCOP", "instrume": "INSTRUME", "obs_mode": "OBS_MODE"}


class Dl3Refused(ValueError):
    """A DL3 file that must not be registered: the reason says what is wrong, values included."""

    def __init__(self, kind: Kind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason

    def __reduce__(self) -> tuple[type[Dl3Refused], tuple[Kind, str]]:
        return type(self), (self.kind, self.reason)  # so that it crosses process boundaries whole


class _Hdu:
    """One HDU's header as stored, and what GADF calls it."""

    def __init__(self, index: int, header: fits.Header) -> None:
        self.index = index
        self.header = header
        self.extname = str(header.get("EXTNAME", "")).strip() if index else "PRIMARY"
        clas1 = str(header.get("HDUCLAS1", "")).strip().upper() or self.extname.upper()
        if clas1 in ("EVENTS", "GTI"):
            self.type = clas1.lower()
        elif clas1 == "RESPONSE":
            self.type = _RESPONSE_TYPES.get(str(header.get("HDUCLAS2", "")).strip().upper(), "")
        else:
            self.type = ""
        clas4 = str(header.get("HDUCLAS4", "")).strip().lower() if clas1 == "RESPONSE" else ""
        self.hdu_class = clas4 or self.type
        self.irf_type = str(header.get("HDUCLAS3", "")).strip().lower() if clas1 == "RESPONSE" else ""

    def __str__(self) -> str:
        return f"HDU {self.index} ({self.extname or 'no EXTNAME'})"


class _Stream:
    """The file by range, as astropy reads it: each read one ranged read at the position, the data seeked over."""

    def __init__(self, stream: BinaryIO, size: int) -> None:
        self.stream = stream
        self.end = size
        self.position = 0
        self.short = False  # the last read met the end of the stream

    def read(self, count: int) -> bytes:
        """Up to ``count`` bytes (fewer only at the end of the stream)."""
        self.stream.seek(self.position)
        data = b""
        while len(data) < count and (piece := self.stream.read(count - len(data))):
            data += piece
        self.position += len(data)
        self.short = len(data) < count
        return data

    def skip(self, count: int) -> int:
        """Move ``count`` bytes on; return how many of them the file holds."""
        present = max(0, min(count, self.end - self.position))
        self.position += count
        return present


class _Blocks:
    """One header's blocks as ``Header.fromfile`` reads them: the first read already, MAX_HEADER_BLOCKS at most."""

    def __init__(self, first: bytes, stream: _Stream) -> None:
        self.coming = chain([first], (stream.read(BLOCK) for _ in range(MAX_HEADER_BLOCKS - 1)))

    def read(self, count: int) -> bytes:
        return next(self.coming, b"")


def _opened(stream: BinaryIO, size: int, gzipped: bool) -> _Stream:
    """The file to read by range; a ``.fits.gz`` cannot be, so it is decompressed whole (its CRC checked) first."""
    if not gzipped:
        return _Stream(stream, size)
    stream.seek(0)
    try:
        data = gzip.GzipFile(fileobj=stream, mode="rb").read()
    except EOFError as error:  # the compressed stream was cut
        raise Dl3Refused("truncated", f"the gzip stream ends before its end marker ({error})") from None
    except (gzip.BadGzipFile, zlib.error) as error:
        kind: Kind = "checksum" if "CRC" in str(error) else "not_fits"
        raise Dl3Refused(kind, f"not a whole gzip stream: {error}") from None
    return _Stream(io.BytesIO(data), len(data))


def _first_block(stream: _Stream, index: int) -> bytes:
    """The first block of HDU ``index``'s header, which must open it."""
    start = stream.position
    first = stream.read(BLOCK)
    if not first:
        if index == 0:
            raise Dl3Refused("not_fits", "the file is empty")
        raise Dl3Refused("truncated", f"the file has {stream.end} bytes but the stream ends at byte {start}")
    expected = b"SIMPLE  =" if index == 0 else b"XTENSION="
    if not first.startswith(expected):
        where = "the file does not start" if index == 0 else f"the bytes from {start}, after the last HDU, do not start"
        hint = " (it is gzip-compressed)" if first.startswith(b"\x1f\x8b") else ""
        raise Dl3Refused("not_fits", f"{where} with {expected.decode()}{hint}: {first[:20]!r}")
    return first


def _header(stream: _Stream, index: int) -> fits.Header | None:
    """HDU ``index``'s header, parsed by astropy; None at the end after the last HDU."""
    if index and stream.position >= stream.end:
        return None
    start = stream.position
    blocks = _Blocks(_first_block(stream, index), stream)
    try:
        return fits.Header.fromfile(blocks)
    except Exception as error:  # astropy raises many kinds on a malformed header: all mean not FITS
        if stream.short:
            cut = f"its header from byte {start} is cut after {stream.position - start} bytes"
            raise Dl3Refused("truncated", f"HDU {index}: {cut}") from None
        raise Dl3Refused("not_fits", f"HDU {index}: the header is not valid FITS: {error}") from None


def _data_size(hdu: _Hdu) -> tuple[int, int]:
    """The bytes of data the header declares, without and with their padding; a malformed header is not FITS."""
    try:
        if hdu.index == 0 and hdu.header.get("SIMPLE") is not True:
            raise ValueError(f"SIMPLE = {hdu.header.get('SIMPLE')!r}, not T")
        size, padded = hdu.header.data_size, hdu.header.data_size_padded
        if size < 0:
            raise ValueError(f"it declares {size} bytes of data")
        return size, padded
    except Exception as error:  # astropy raises many kinds on a malformed header: all mean not FITS
        raise Dl3Refused("not_fits", f"{hdu}: the header is not valid FITS: {error}") from None


def _verify_checksums(hdu: _Hdu, data: bytes) -> None:
    """CHECKSUM and DATASUM verified by astropy, over the header as it writes it back (as ``fits.open(...,
    checksum=True)`` does) and the data as stored."""
    checked = fits.HDUList.fromstring(hdu.header.tostring().encode("ascii") + data)[0]
    declared = hdu.header.get("DATASUM")
    try:
        datasum_holds = checked.verify_datasum()
    except ValueError:
        raise Dl3Refused("checksum", f"{hdu}: DATASUM {declared!r} is not a number") from None
    if not datasum_holds:
        raise Dl3Refused("checksum", f"{hdu}: DATASUM says {declared} but its data sum to {checked.add_datasum()}")
    if not checked.verify_checksum():
        checked.add_checksum(checked.header.comments["CHECKSUM"], override_datasum=True)
        stated, computed = hdu.header["CHECKSUM"], checked.header["CHECKSUM"]
        if computed != stated:  # else only astropy's verify_checksum, which sums no data without DATASUM, failed
            raise Dl3Refused("checksum", f"{hdu}: CHECKSUM says {stated!r} but the HDU as stored gives {computed!r}")


def _walk(stream: _Stream, sums: bool) -> list[_Hdu]:
    """Every HDU's header in file order, the data checked to be there (and verified where checksums say, if
    ``sums``)."""
    hdus: list[_Hdu] = []
    while (header := _header(stream, len(hdus))) is not None:
        hdu = _Hdu(len(hdus), header)
        size, padded = _data_size(hdu)
        start = stream.position
        summed = sums and ("CHECKSUM" in header or "DATASUM" in header)
        data = stream.read(padded) if summed else b""
        present = len(data) if summed else stream.skip(padded)
        if present < size:
            raise Dl3Refused(
                "truncated", f"{hdu}: declares {size} bytes of data from byte {start}, only {present} are present"
            )
        if summed:
            _verify_checksums(hdu, data.ljust(padded, b"\0"))  # missing zero padding adds nothing to the sums
        hdus.append(hdu)
    return hdus


def _unusable(key: str, value: object, wanted: str) -> Dl3Refused:
    return Dl3Refused("missing", f"EVENTS header {key} = {value!r} is not {wanted}")


def _float(header: fits.Header, key: str) -> float | None:
    """A finite number, or None when absent (an unusable value is refused like a missing one)."""
    value = header.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _unusable(key, value, "a finite number")
    return float(value)


def _int(header: fits.Header, key: str) -> int | None:
    value = header.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _unusable(key, value, "an integer")
    return int(value)


def _text(header: fits.Header, key: str) -> str | None:
    value = header.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _unusable(key, value, "a string")
    return value


def _times(events: fits.Header) -> tuple[Time, Time, float]:
    """TSTART and TSTOP in UTC, and MJDREF; the seconds count as days of 86,400 s (see the module)."""
    whole, fraction = _float(events, "MJDREFI"), _float(events, "MJDREFF")
    if whole is None or fraction is None:
        whole, fraction = _float(events, "MJDREF") or 0.0, 0.0
    scale = (_text(events, "TIMESYS") or "UTC").strip()
    if scale.lower() not in TIME_SCALES:
        raise _unusable("TIMESYS", scale, f"one of {', '.join(sorted(TIME_SCALES)).upper()}")
    unit = (_text(events, "TIMEUNIT") or "s").strip()
    try:
        seconds = u.Unit(unit).to(u.s)
    except (ValueError, u.UnitConversionError):
        raise _unusable("TIMEUNIT", unit, "a unit of time") from None

    def at(key: str) -> Time:
        days, rest = divmod((_float(events, key) or 0.0) * seconds, 86400.0)
        return Time(whole + days, fraction + rest / 86400.0, format="mjd", scale=scale.lower()).utc

    return at("TSTART"), at("TSTOP"), whole + fraction


def _iso(time: Time) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ``, to the microsecond."""
    time.precision = 6
    return f"{time.isot}Z"


def _night(iso: str) -> date:
    """The night of a UTC time: MAGIC names it by the date of its sunrise, i.e. the UTC date 12 h later."""
    day = date.fromisoformat(iso[:10])
    return day + timedelta(days=1) if int(iso[11:13]) >= 12 else day


def _require(hdus: list[_Hdu]) -> _Hdu:
    """The EVENTS HDU, once GTI and an effective area are known to be there too and EVENTS has its keys."""
    types = [hdu.type for hdu in hdus]
    listed = ", ".join(hdu.extname for hdu in hdus[1:]) or "none"
    absent = [name for name, kind in (("EVENTS", "events"), ("GTI", "gti"), ("EFF_AREA", "aeff")) if kind not in types]
    if absent:
        raise Dl3Refused("missing", f"no {', '.join(absent)} HDU (HDUCLAS1/HDUCLAS2) among the HDUs: {listed}")
    events = hdus[types.index("events")].header
    lacking = [key for key in REQUIRED_EVENTS_KEYS if events.get(key) is None]
    if (events.get("MJDREFI") is None or events.get("MJDREFF") is None) and events.get("MJDREF") is None:
        lacking.append("MJDREFI+MJDREFF (or MJDREF)")
    if lacking:
        raise Dl3Refused("missing", f"the EVENTS header lacks {', '.join(lacking)}")
    return hdus[types.index("events")]


def _irf_type(hdus: list[_Hdu]) -> str | None:
    kinds = {hdu.irf_type for hdu in hdus if hdu.irf_type}
    if len(kinds) > 1:
        shown = ", ".join(f"{hdu.extname} {hdu.irf_type}" for hdu in hdus if hdu.irf_type)
        raise Dl3Refused("mislabelled", f"the response HDUs disagree on the IRF type: {shown}")
    return kinds.pop() if kinds else None


def _check_name(meta: dict[str, str | int | float], record: MagicName, night: date | None) -> None:
    """The headers must tell the same run, source, night and wobble as the name."""
    if meta["obs_id"] != record.run:
        raise Dl3Refused("mislabelled", f"OBS_ID {meta['obs_id']} in the headers, run {record.run} in the name")
    if record.source is not None and meta["object"] != record.source:
        raise Dl3Refused(
            "mislabelled", f"OBJECT {meta['object']!r} in the headers, source {record.source!r} in the name"
        )
    expected, observed = record.night or night, _night(str(meta["tstart"]))
    if expected is not None and observed != expected:
        raise Dl3Refused(
            "mislabelled", f"TSTART {meta['tstart']} is in the night {observed:%Y%m%d}, the name says {expected:%Y%m%d}"
        )
    if record.wobble_offset is not None and "ra_obj" in meta and "dec_obj" in meta:
        where = (math.radians(float(meta[key])) for key in ("ra_pnt", "dec_pnt", "ra_obj", "dec_obj"))
        separation = math.degrees(angular_separation(*where))
        if abs(separation - float(record.wobble_offset)) > WOBBLE_TOLERANCE_DEG:
            raise Dl3Refused(
                "mislabelled",
                f"pointing and object are {separation:.3f} deg apart, the name says a wobble of {record.wobble_offset}",
            )


def _positions(events: fits.Header) -> dict[str, str | int | float]:
    found: dict[str, str | int | float] = {}
    for key, card in _FLOATS.items():
        value = _float(events, card)
        if value is not None:
            found[key] = value
    zenith = _float(events, "ZEN_PNT")
    if zenith is None and "alt_pnt" in found:
        zenith = round(90.0 - float(found["alt_pnt"]), 9)  # 20.30026, not the subtraction's 20.300259999999994
    if zenith is not None:
        found["zen_pnt"] = zenith
    return found


def describe(
    stream: BinaryIO, size: int, record: MagicName, night: date | None = None, sums: bool = True
) -> dict[str, str | int | float]:
    """Metadata of a DL3 file from its FITS headers, checked against its name. Raises Dl3Refused.

    ``size`` is the file's size on storage (a ``.fits.gz`` is checked against its decompressed size instead);
    ``night`` is the folder's night, for a name without one. Reads the header blocks only, but also the data
    of an HDU with checksum cards (unless ``sums`` is off: they are verified on the file's copy), and the whole
    of a gzip file.
    """
    if size == 0:
        raise Dl3Refused("not_fits", "the file is empty")
    hdus = _walk(_opened(stream, size, record.compression == "gz"), sums)
    events = _require(hdus).header
    start, stop, mjdref = _times(events)
    meta: dict[str, str | int | float] = {
        "obs_id": _int(events, "OBS_ID") or 0,
        "object": _text(events, "OBJECT") or "",
    }
    meta.update(_positions(events))
    meta.update(tstart=_iso(start), tstop=_iso(stop), mjdref=mjdref)
    for key, card in _TEXTS.items():
        value = _text(events, card)
        if value is not None:
            meta[key] = value
    extensions = hdus[1:]
    meta["hdus"] = ",".join(hdu.extname for hdu in extensions)
    meta["hdu_types"] = ",".join(hdu.type for hdu in extensions)
    meta["hdu_classes"] = ",".join(hdu.hdu_class for hdu in extensions)
    irf_type = _irf_type(hdus)
    if irf_type is not None:
        meta["irf_type"] = irf_type
    meta["n_events"] = int(events["NAXIS2"]) if int(events["NAXIS"]) >= 2 else 0
    _check_name(meta, record, night)
    return meta
