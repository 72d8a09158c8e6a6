"""The MAGIC file-name grammar: the one place that knows how a MAGIC file is named.

``parse`` turns a bare file name into an immutable :class:`MagicName`; ``format_name`` turns it back, byte for
byte. A name is matched against one grammar per family; when it does not match, the grammar is replayed part by
part so that the error says which part is wrong.

A MAGIC name is printable ASCII without spaces. The grammars match ASCII digits only and the whole name:
``\\d`` would take Arabic-Indic or full-width digits, which ``int`` reads as the same run, and ``$`` would let a
final newline through, so one file would reach Rucio under two names. ``parse`` also checks that the record
formats back to the very name it read.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import Enum


class MagicNameError(ValueError):
    """A file name that is not a MAGIC name, or not one that can identify a file by itself."""

    def __init__(self, name: str, part: str, reason: str) -> None:
        super().__init__(f"{name!r}: {part}: {reason}")
        self.name, self.part, self.reason = name, part, reason


class Telescope(str, Enum):
    M1 = "M1"
    M2 = "M2"
    STEREO = "ST"


class Level(str, Enum):
    """Data levels, valued as the directory names of the MAGIC layout."""

    RAW = "RAW"
    CALIBRATED = "Calibrated"
    STAR = "Star"
    SUPERSTAR = "SuperStar"
    MELIBEA = "Melibea"
    DL3 = "DL3"


class Family(str, Enum):
    RAW = "raw"  # DAQ output of any run type
    MERPP = "merpp"  # raw run converted to ROOT
    CALIBRATED = "calibrated"  # sorcerer, type Y
    STAR = "star"  # type I
    SUPERSTAR = "superstar"  # stereo, type S
    MELIBEA = "melibea"  # stereo, type Q
    DL3 = "dl3"  # YYYYMMDD_<run>_DL3_<source>.fits[.gz]
    DL3_RUN = "dl3-run"  # older run_<run>_DL3.fits[.gz]
    SIMULATION = "simulation"  # GA_...
    SIGNAL = "signal"  # sorcerer side product ssignal<run>.<subrun>_M<t>.root
    CALIBRATION_CONSTANTS = "calib"  # sorcerer side product scalib<run>_M<t>.root


RAW_RUN_TYPES = frozenset("DPCLNB")
_ANALYSIS_TYPE_FAMILY = {"Y": Family.CALIBRATED, "I": Family.STAR, "S": Family.SUPERSTAR, "Q": Family.MELIBEA}

LEVEL_OF_FAMILY = {
    Family.RAW: Level.RAW,
    Family.MERPP: Level.CALIBRATED,
    Family.CALIBRATED: Level.CALIBRATED,
    Family.SIGNAL: Level.CALIBRATED,
    Family.CALIBRATION_CONSTANTS: Level.CALIBRATED,
    Family.STAR: Level.STAR,
    Family.SUPERSTAR: Level.SUPERSTAR,
    Family.MELIBEA: Level.MELIBEA,
    Family.DL3: Level.DL3,
    Family.DL3_RUN: Level.DL3,
}

# Fixed-name outputs of the analysis chain: the same name in every run's folder.
NOT_UNIQUE_NAMES = frozenset({"Output_flute.root", "Status_flute.root"})


@dataclass(frozen=True)
class MagicName:
    """One parsed MAGIC file name. Fields that a family does not carry are None."""

    family: Family
    telescope: Telescope
    run: int
    run_type: str | None
    extension: str
    night: date | None = None
    subrun: int | None = None
    source: str | None = None
    wobble_offset: Decimal | None = None
    wobble_angle: int | None = None
    compression: str | None = None
    zenith_range: tuple[int, int] | None = None
    production: int | None = None
    mc_wobble: str | None = None

    @property
    def level(self) -> Level:
        if self.family is Family.SIMULATION:
            return LEVEL_OF_FAMILY[_ANALYSIS_TYPE_FAMILY[str(self.run_type)]]
        return LEVEL_OF_FAMILY[self.family]

    @property
    def is_simulation(self) -> bool:
        return self.family is Family.SIMULATION

    @property
    def name(self) -> str:
        return format_name(self)

    def __str__(self) -> str:
        shown = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        shown["level"] = self.level
        lines = [f"{self.name}"]
        lines += [f"  {key:<14} {_show(value)}" for key, value in shown.items() if value is not None]
        return "\n".join(lines)


def _show(value: object) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


# --- the grammars ---------------------------------------------------------------------------------
# A grammar is a sequence of (part, regex, what the part should look like). Concatenated, the regexes
# match a whole name; replayed one by one, they locate the first part that does not.

Grammar = Sequence[tuple[str, str, str]]

_SOURCE = (
    "source",
    r"(?P<source>[A-Za-z0-9][A-Za-z0-9+.\-]*?)(?:-W(?P<wobble_offset>\d\.\d\d)\+(?P<wobble_angle>\d{3}))?",
    "the target name (letters, digits, '+', '-', '.'), optionally followed by -W<offset>+<angle>",
)
_EXT = "extension"
_NIGHT = ("night", r"(?P<night>\d{8})", "8 digits (0-9), YYYYMMDD")
_RUN = ("run", r"(?P<run>\d{8})", "8 digits (0-9)")
_TEL = ("telescope", r"M(?P<telescope>[12])", "M1 or M2")
_TELESCOPE_EXT = r"\.(?P<extension>raw|root|h5)(?:\.(?P<compression>gz))?"
_STEREO_EXT = r"\.(?P<extension>root|h5)"
_FITS_EXT = r"\.(?P<extension>fits)(?:\.(?P<compression>gz))?"

TELESCOPE_GRAMMAR: Grammar = (
    _NIGHT,
    ("separator", "_", "'_' after the night"),
    _TEL,
    ("separator", "_", "'_' after the telescope"),
    _RUN,
    ("subrun", r"\.(?P<subrun>\d{3})", "'.' and 3 digits (0-9)"),
    ("run type", r"_(?P<run_type>[A-Z])_", "one capital letter between '_'"),
    _SOURCE,
    (_EXT, _TELESCOPE_EXT + r"\Z", ".raw, .raw.gz, .root or .h5 at the end"),
)
STEREO_GRAMMAR: Grammar = (
    _NIGHT,
    ("separator", "_", "'_' after the night"),
    _RUN,
    ("run type", r"_(?P<run_type>[SQ])_", "S (superstar), Q (melibea) or DL3 between '_'"),
    _SOURCE,
    (_EXT, _STEREO_EXT + r"\Z", ".root or .h5 at the end"),
)
DL3_GRAMMAR: Grammar = (
    _NIGHT,
    ("separator", "_", "'_' after the night"),
    _RUN,
    ("run type", r"_(?P<run_type>DL3)_", "DL3 between '_'"),
    _SOURCE,
    (_EXT, _FITS_EXT + r"\Z", ".fits or .fits.gz at the end"),
)
DL3_RUN_GRAMMAR: Grammar = (
    ("prefix", "run_", "'run_'"),
    _RUN,
    ("run type", r"_(?P<run_type>DL3)", "_DL3"),
    (_EXT, _FITS_EXT + r"\Z", ".fits or .fits.gz at the end"),
)
_MC_TAIL: Grammar = (
    ("zenith range", r"_za(?P<zenith_min>\d\d)to(?P<zenith_max>\d\d)", "_za<lo>to<hi>, two digits (0-9) each"),
    ("production", r"_(?P<production>0|[1-9]\d*)", "_ and a number (digits 0-9)"),
    ("run", r"_(?P<run>[1-9]\d*)", "_ and a run number (digits 0-9) without leading zeros"),
)
SIMULATION_TELESCOPE_GRAMMAR: Grammar = (
    ("prefix", "GA_", "'GA_'"),
    _TEL,
    *_MC_TAIL,
    ("run type", r"_(?P<run_type>[YI])", "_Y or _I"),
    ("wobble", r"_(?P<mc_wobble>w\d|wr)", "_w<digit 0-9> or _wr"),
    (_EXT, r"\.(?P<extension>root)\Z", ".root at the end"),
)
SIMULATION_STEREO_GRAMMAR: Grammar = (
    ("prefix", "GA", "'GA'"),
    *_MC_TAIL,
    ("run type", r"_(?P<run_type>[SQ])", "_S or _Q"),
    ("wobble", r"_(?P<mc_wobble>w\d|wr)", "_w<digit 0-9> or _wr"),
    (_EXT, r"\.(?P<extension>root)\Z", ".root at the end"),
)
SIGNAL_GRAMMAR: Grammar = (
    ("prefix", "ssignal", "'ssignal'"),
    _RUN,
    ("subrun", r"\.(?P<subrun>\d{3})", "'.' and 3 digits (0-9)"),
    ("telescope", r"_M(?P<telescope>[12])", "_M1 or _M2"),
    (_EXT, r"\.(?P<extension>root)\Z", ".root at the end"),
)
CALIBRATION_CONSTANTS_GRAMMAR: Grammar = (
    ("prefix", "scalib", "'scalib'"),
    _RUN,
    ("telescope", r"_M(?P<telescope>[12])", "_M1 or _M2"),
    (_EXT, r"\.(?P<extension>root)\Z", ".root at the end"),
)

_COMPILED: dict[int, re.Pattern[str]] = {}


def _foreign_character(name: str) -> str:
    """The first character no MAGIC name holds (not printable ASCII, or a space), described; else ''."""
    for position, character in enumerate(name):
        if not ("!" <= character <= "~"):
            what = unicodedata.name(character, unicodedata.category(character))
            return f"; found {character!r} (U+{ord(character):04X} {what}) at position {position}"
    return ""


def _match(grammar: Grammar, name: str) -> re.Match[str]:
    key = id(grammar)
    if key not in _COMPILED:
        _COMPILED[key] = re.compile("".join(regex for _, regex, _ in grammar), re.ASCII)
    found = _COMPILED[key].fullmatch(name)
    if found:
        return found
    for count, (part, _, expected) in enumerate(grammar, start=1):
        if not re.compile("".join(regex for _, regex, _ in grammar[:count]), re.ASCII).match(name):
            raise MagicNameError(name, part, f"expected {expected}{_foreign_character(name)}")
    raise MagicNameError(name, "name", "does not match the MAGIC grammar")  # pragma: no cover


def _grammar_for(name: str) -> tuple[Grammar, Family | None]:
    """Pick the grammar from the first characters: families never share a prefix. Digits of any script pick it
    here, so that the grammar (ASCII digits only) then names the part that holds the foreign digit."""
    if name.startswith("GA_M"):
        return SIMULATION_TELESCOPE_GRAMMAR, Family.SIMULATION
    if name.startswith("GA_"):
        return SIMULATION_STEREO_GRAMMAR, Family.SIMULATION
    if name.startswith("ssignal"):
        return SIGNAL_GRAMMAR, Family.SIGNAL
    if name.startswith("scalib"):
        return CALIBRATION_CONSTANTS_GRAMMAR, Family.CALIBRATION_CONSTANTS
    if name.startswith("run_"):
        return DL3_RUN_GRAMMAR, Family.DL3_RUN
    if re.match(r"\d{8}_M", name):
        return TELESCOPE_GRAMMAR, None
    if re.match(r"\d{8}_\d{8}_DL3", name):
        return DL3_GRAMMAR, Family.DL3
    if re.match(r"\d{8}_", name):
        return STEREO_GRAMMAR, None
    raise MagicNameError(
        name,
        "name",
        "not a MAGIC name: expected YYYYMMDD_M<t>_..., YYYYMMDD_<run>_..., run_<run>_DL3..., GA_..., "
        f"ssignal... or scalib...{_foreign_character(name)}",
    )


def _telescope_family(name: str, run_type: str, extension: str) -> Family:
    if run_type in RAW_RUN_TYPES:
        return Family.RAW if extension == "raw" else Family.MERPP
    if run_type in ("Y", "I"):
        if extension == "raw":
            raise MagicNameError(name, "extension", f"'.raw' does not fit run type {run_type}")
        return _ANALYSIS_TYPE_FAMILY[run_type]
    raise MagicNameError(
        name, "run type", f"{run_type!r} is not a telescope-level type (raw D P C L N B; analysis Y I)"
    )


def _night(name: str, digits: str) -> date:
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError as error:
        raise MagicNameError(name, "night", f"{digits} is not a calendar date ({error})") from None


def parse(name: str) -> MagicName:
    """Parse a bare MAGIC file name (no directory). Raises MagicNameError saying which part is wrong."""
    if "/" in name:
        raise MagicNameError(name, "name", "a file name, not a path, is expected")
    if name in NOT_UNIQUE_NAMES:
        raise MagicNameError(name, "name", "a fixed-name output, not unique by itself: it cannot be an LFN as it is")
    grammar, family = _grammar_for(name)
    groups = _match(grammar, name).groupdict()
    extension = groups["extension"]
    compression = groups.get("compression")
    if compression and extension not in ("raw", "fits"):
        raise MagicNameError(name, "extension", f"'.{extension}' files are not stored compressed")
    run_type = groups.get("run_type")
    if family is None:
        family = (
            _telescope_family(name, str(run_type), extension)
            if grammar is TELESCOPE_GRAMMAR
            else _ANALYSIS_TYPE_FAMILY[str(run_type)]
        )
    telescope = Telescope("M" + groups["telescope"]) if groups.get("telescope") else Telescope.STEREO
    zenith = (int(groups["zenith_min"]), int(groups["zenith_max"])) if groups.get("zenith_min") else None
    if zenith and zenith[0] >= zenith[1]:
        raise MagicNameError(name, "zenith range", f"za{groups['zenith_min']}to{groups['zenith_max']} is empty")
    record = MagicName(
        family=family,
        telescope=telescope,
        run=int(groups["run"]),
        run_type=run_type,
        extension=extension,
        night=_night(name, groups["night"]) if groups.get("night") else None,
        subrun=int(groups["subrun"]) if groups.get("subrun") else None,
        source=groups.get("source"),
        wobble_offset=Decimal(groups["wobble_offset"]) if groups.get("wobble_offset") else None,
        wobble_angle=int(groups["wobble_angle"]) if groups.get("wobble_angle") else None,
        compression=compression,
        zenith_range=zenith,
        production=int(groups["production"]) if groups.get("production") else None,
        mc_wobble=groups.get("mc_wobble"),
    )
    formatted = format_name(record)
    if formatted != name:  # one file, one name: a record that reads back otherwise would be a second one
        raise MagicNameError(name, "name", f"does not read back as itself (formats as {formatted!r})")
    return record


def _target(record: MagicName) -> str:
    if record.wobble_offset is None:
        return f"{record.source}"
    return f"{record.source}-W{record.wobble_offset:.2f}+{record.wobble_angle:03d}"


def _suffix(record: MagicName) -> str:
    return f".{record.extension}" + (f".{record.compression}" if record.compression else "")


def format_name(record: MagicName) -> str:
    """The file name of a record: ``format_name(parse(x)) == x`` for every name that parses."""
    night = f"{record.night:%Y%m%d}" if record.night else ""
    family = record.family
    if family in (Family.RAW, Family.MERPP, Family.CALIBRATED, Family.STAR):
        return (
            f"{night}_{record.telescope.value}_{record.run:08d}.{record.subrun:03d}_{record.run_type}_"
            f"{_target(record)}{_suffix(record)}"
        )
    if family in (Family.SUPERSTAR, Family.MELIBEA, Family.DL3):
        return f"{night}_{record.run:08d}_{record.run_type}_{_target(record)}{_suffix(record)}"
    if family is Family.DL3_RUN:
        return f"run_{record.run:08d}_DL3{_suffix(record)}"
    if family is Family.SIGNAL:
        return f"ssignal{record.run:08d}.{record.subrun:03d}_{record.telescope.value}{_suffix(record)}"
    if family is Family.CALIBRATION_CONSTANTS:
        return f"scalib{record.run:08d}_{record.telescope.value}{_suffix(record)}"
    assert record.zenith_range is not None
    telescope = "" if record.telescope is Telescope.STEREO else f"_{record.telescope.value}"
    low, high = record.zenith_range
    return (
        f"GA{telescope}_za{low:02d}to{high:02d}_{record.production}_{record.run}_{record.run_type}_"
        f"{record.mc_wobble}{_suffix(record)}"
    )


def is_magic_name(name: str) -> bool:
    try:
        parse(name)
    except MagicNameError:
        return False
    return True
