"""What a DL3 file's FITS headers say (GADF 0.2), checked against its name, read without its data.

At registration the headers become the file's DID metadata, so a file that is not whole, fails its own
checksums, lacks what an analysis needs or contradicts its name is refused (``Dl3Refused``) instead.

The HDUs are walked by hand: each header is read block by block (2,880 bytes) up to its END card and parsed
by astropy, and its data size, computed from the mandatory keywords as the FITS standard defines it, is
seeked over. So only the header blocks are read, a short file is caught with the exact byte counts, and
checksums are summed over the bytes as stored. An HDU with CHECKSUM or DATASUM cards is the exception: its
data must be read to verify them. A ``.fits.gz`` file cannot be read by range: it is decompressed as one
stream, its data read through rather than seeked over, and its gzip CRC checked at the end.

Times: TSTART and TSTOP are counted from MJDREF in days of 86,400 s of TIMESYS, as MAGIC's DL3 writer
counts them (the real run's ALT_PNT agrees to 0.0004 deg this way, to 0.011 deg when UTC leap seconds are
counted, which astropy and gammapy do, 3 s earlier in 2013).
"""

from __future__ import annotations

import gzip
import math
import zlib
from datetime import date, timedelta
from typing import BinaryIO, Literal

import astropy.units as u
import numpy as np
from astropy.coordinates import angular_separation
from astropy.io import fits
from astropy.time import Time

from rucio_magic_ext.naming import MagicName

__all__ = ["Dl3Refused", "Kind", "describe"]

Kind = Literal["not_fits", "truncated", "checksum", "missing", "mislabelled"]

BLOCK = 2880
CARD = 80
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


class _Reader:
    """Reads a FITS byte stream: by range on a plain file (data seeked over), straight through a gzip one."""

    def __init__(self, stream: BinaryIO, size: int, gzipped: bool) -> None:
        stream.seek(0)
        self.gzipped = gzipped
        self.stream: BinaryIO = gzip.GzipFile(fileobj=stream, mode="rb") if gzipped else stream  # type: ignore[assignment]
        self.end: int | None = None if gzipped else size
        self.position = 0

    def at_end(self) -> bool:
        return self.end is not None and self.position >= self.end

    def read(self, count: int) -> bytes:
        """Up to ``count`` bytes (fewer only at the end of the stream)."""
        if self.end is not None:
            self.stream.seek(self.position)
        pieces = []
        wanted = count
        try:
            while wanted > 0:
                piece = self.stream.read(wanted)
                if not piece:
                    break
                pieces.append(piece)
                wanted -= len(piece)
        except EOFError as error:  # gzip only: the compressed stream was cut
            raise Dl3Refused("truncated", f"the gzip stream ends before its end marker ({error})") from None
        except (gzip.BadGzipFile, zlib.error) as error:
            kind: Kind = "checksum" if "CRC" in str(error) else "not_fits"
            raise Dl3Refused(kind, f"not a whole gzip stream: {error}") from None
        data = b"".join(pieces)
        self.position += len(data)
        return data

    def skip(self, count: int) -> int:
        """Move ``count`` bytes on; return how many of them the file holds. Only a gzip stream reads them."""
        if self.end is None:
            present = 0
            while present < count:
                piece = self.read(min(count - present, 1 << 20))
                if not piece:
                    break
                present += len(piece)
            return present
        present = max(0, min(count, self.end - self.position))
        self.position += count
        return present


def _padded(count: int) -> int:
    return -(-count // BLOCK) * BLOCK


def _header_bytes(reader: _Reader, index: int) -> bytes | None:
    """The raw header blocks of HDU ``index`` up to its END card; None at a clean end after the last HDU."""
    if index and reader.at_end():
        return None
    start = reader.position
    blocks = [reader.read(BLOCK)]
    if not blocks[0]:
        if index == 0:
            raise Dl3Refused("not_fits", "the file is empty")
        if reader.gzipped:
            return None
        raise Dl3Refused("truncated", f"the file has {reader.end} bytes but the stream ends at byte {start}")
    expected = b"SIMPLE  =" if index == 0 else b"XTENSION="
    if not blocks[0].startswith(expected):
        where = "the file does not start" if index == 0 else f"the bytes from {start}, after the last HDU, do not start"
        hint = " (it is gzip-compressed)" if blocks[0].startswith(b"\x1f\x8b") else ""
        raise Dl3Refused("not_fits", f"{where} with {expected.decode()}{hint}: {blocks[0][:20]!r}")
    while len(blocks[-1]) == BLOCK and not _has_end(blocks[-1]):
        if len(blocks) == MAX_HEADER_BLOCKS:
            raise Dl3Refused("not_fits", f"HDU {index}: no END card in its first {MAX_HEADER_BLOCKS} header blocks")
        blocks.append(reader.read(BLOCK))
    if len(blocks[-1]) < BLOCK:
        present = sum(len(block) for block in blocks)
        raise Dl3Refused("truncated", f"HDU {index}: its header from byte {start} is cut after {present} bytes")
    return b"".join(blocks)


def _has_end(block: bytes) -> bool:
    cards = (block[offset : offset + CARD] for offset in range(0, len(block), CARD))
    return any(card[:3] == b"END" and not card[3:].strip() for card in cards)


def _parse(raw: bytes, index: int) -> tuple[fits.Header, int]:
    """The header and the bytes of data it declares; a malformed one is not FITS."""
    try:
        header = fits.Header.fromstring(raw.decode("ascii"))
        if index == 0 and header.get("SIMPLE") is not True:
            raise ValueError(f"SIMPLE = {header.get('SIMPLE')!r}, not T")
        if not 0 <= _mandatory(header, "NAXIS") <= 999 or _mandatory(header, "BITPIX") not in (8, 16, 32, 64, -32, -64):
            raise ValueError(f"NAXIS = {header['NAXIS']}, BITPIX = {header['BITPIX']} are not FITS values")
        return header, _data_size(header, index)
    except Exception as error:  # astropy raises many kinds on a malformed header: all mean not FITS
        raise Dl3Refused("not_fits", f"HDU {index}: the header is not valid FITS: {error}") from None


def _mandatory(header: fits.Header, key: str, default: int | None = None) -> int:
    value = header.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} = {value!r} is not an integer")
    return value


def _data_size(header: fits.Header, index: int) -> int:
    """Bytes of data the header declares (FITS 4.0, 4.4.1): |BITPIX| x GCOUNT x (PCOUNT + NAXIS1 x ... x NAXISn)."""
    axes = [_mandatory(header, f"NAXIS{axis}") for axis in range(1, _mandatory(header, "NAXIS") + 1)]
    if any(length < 0 for length in axes):
        raise ValueError(f"negative axis length in {axes}")
    if not axes:
        return 0
    if index == 0 and header.get("GROUPS") is True and axes[0] == 0:  # random groups
        axes = axes[1:]
    gcount, pcount = _mandatory(header, "GCOUNT", 1), _mandatory(header, "PCOUNT", 0)
    return abs(_mandatory(header, "BITPIX")) * gcount * (pcount + math.prod(axes)) // 8


def _sum32(data: bytes) -> int:
    """The FITS checksum sum: 32-bit big-endian words added in ones' complement (end-around carry)."""
    if len(data) % 4:
        data += bytes(4 - len(data) % 4)
    return _fold(int(np.frombuffer(data, dtype=">u4").sum(dtype=np.uint64)))


def _fold(total: int) -> int:
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


def _verify_checksums(hdu: _Hdu, raw_header: bytes, data: bytes) -> None:
    datasum = _sum32(data)
    declared = hdu.header.get("DATASUM")
    if declared is not None:
        try:
            matches = int(str(declared).strip()) == datasum
        except ValueError:
            raise Dl3Refused("checksum", f"{hdu}: DATASUM {declared!r} is not a number") from None
        if not matches:
            raise Dl3Refused("checksum", f"{hdu}: DATASUM says {declared} but its data sum to {datasum}")
    if "CHECKSUM" in hdu.header:
        total = _fold(_sum32(raw_header) + datasum)
        if total != 0xFFFFFFFF:
            raise Dl3Refused(
                "checksum", f"{hdu}: CHECKSUM {hdu.header['CHECKSUM']!r} does not match: the HDU sums to {total:#010x}"
            )


def _walk(reader: _Reader) -> list[_Hdu]:
    """Every HDU's header in file order, the data checked to be there (and summed where checksums say)."""
    hdus: list[_Hdu] = []
    while True:
        raw = _header_bytes(reader, len(hdus))
        if raw is None:
            return hdus
        header, size = _parse(raw, len(hdus))
        hdu = _Hdu(len(hdus), header)
        start = reader.position
        summed = "CHECKSUM" in hdu.header or "DATASUM" in hdu.header
        data = reader.read(_padded(size)) if summed else b""
        present = len(data) if summed else reader.skip(_padded(size))
        if present < size:
            raise Dl3Refused(
                "truncated", f"{hdu}: declares {size} bytes of data from byte {start}, only {present} are present"
            )
        if summed:
            _verify_checksums(hdu, raw, data)  # missing zero padding adds nothing to the sums
        hdus.append(hdu)


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


def describe(stream: BinaryIO, size: int, record: MagicName, night: date | None = None) -> dict[str, str | int | float]:
    """Metadata of a DL3 file from its FITS headers, checked against its name. Raises Dl3Refused.

    ``size`` is the file's size on storage (a ``.fits.gz`` is checked against its decompressed stream's end
    instead); ``night`` is the folder's night, for a name without one. Reads the header blocks only, but
    also the data of an HDU with checksum cards, and the whole of a gzip file.
    """
    if size == 0:
        raise Dl3Refused("not_fits", "the file is empty")
    hdus = _walk(_Reader(stream, size, record.compression == "gz"))
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
