"""Where MAGIC data goes in Rucio: scopes, DID hierarchy and storage paths, from a parsed name.

Pure: a file's scope, datasets and path follow from its name alone. The hierarchy is file -> run dataset ->
night container -> top container, one top container per telescope and level (``M1_RAW``, ``M2_Calibrated``,
``ST_SuperStar``, ...). Simulations are grouped by zenith range and production instead of night.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date

from rucio_magic_ext.naming import Level, MagicName, MagicNameError, Telescope, parse

SCOPE_OF_LEVEL = {
    Level.RAW: "magic_raw",
    Level.CALIBRATED: "magic_cal",
    Level.STAR: "magic_st",
    Level.SUPERSTAR: "magic_st",
    Level.MELIBEA: "magic_st",
    Level.DL3: "magic_dl3",
}
SIMULATION_SCOPE = "magic_mc"
SCOPES = (*dict.fromkeys(SCOPE_OF_LEVEL.values()), SIMULATION_SCOPE)

# The eight main containers of PIC's workflow, plus DL3.
MAIN_CONTAINERS = (
    *(
        (telescope, level)
        for telescope in (Telescope.M1, Telescope.M2)
        for level in (Level.RAW, Level.CALIBRATED, Level.STAR)
    ),
    (Telescope.STEREO, Level.SUPERSTAR),
    (Telescope.STEREO, Level.MELIBEA),
    (Telescope.STEREO, Level.DL3),
)


@dataclass(frozen=True)
class Placement:
    """Where one file sits in Rucio: its DID, its run dataset and the containers above it (innermost first)."""

    scope: str
    name: str
    dataset: str
    containers: tuple[str, ...]
    path: str


def scope(record: MagicName) -> str:
    return SIMULATION_SCOPE if record.is_simulation else SCOPE_OF_LEVEL[record.level]


def top_container(telescope: Telescope, level: Level, simulation: bool = False) -> str:
    return f"{'MC_' if simulation else ''}{telescope.value}_{level.value}"


def main_containers() -> list[tuple[str, str]]:
    """(scope, name) of every top container, created once per site."""
    return [(SCOPE_OF_LEVEL[level], top_container(telescope, level)) for telescope, level in MAIN_CONTAINERS]


def night_container(telescope: Telescope, level: Level, night: date) -> str:
    return f"{top_container(telescope, level)}_{night:%Y%m%d}"


def run_dataset(telescope: Telescope, level: Level, night: date, run: int) -> str:
    return f"{night_container(telescope, level, night)}_{run:08d}"


def placement(record: MagicName, night: date | None = None) -> Placement:
    """Place a file. ``night`` comes from the folder for names that carry none (``ssignal``, ``scalib``)."""
    telescope, level = record.telescope, record.level
    if record.is_simulation:
        top = top_container(telescope, level, simulation=True)
        low, high = record.zenith_range or (0, 0)
        dataset = f"{top}_za{low:02d}to{high:02d}_{record.production}"
        return Placement(scope(record), record.name, dataset, (top,), path(record))
    if record.night and night and record.night != night:
        raise MagicNameError(record.name, "night", f"the name says {record.night}, its folder {night}")
    night = record.night or night
    if night is None:
        raise MagicNameError(record.name, "night", "the name carries no night and none was given")
    containers = (night_container(telescope, level, night), top_container(telescope, level))
    return Placement(
        scope(record), record.name, run_dataset(telescope, level, night, record.run), containers, path(record)
    )


def path(record: MagicName) -> str:
    """Relative path of a file on a MAGIC-laid-out RSE: ``<M1|M2|ST>/<Level>/<YYYY>/<MM>/<DD>/<name>``."""
    if record.is_simulation:
        low, high = record.zenith_range or (0, 0)
        return f"MC/{record.telescope.value}/{record.level.value}/za{low:02d}to{high:02d}/{record.name}"
    if record.night is None:
        return f"{record.telescope.value}/{record.level.value}/runs/{record.run:08d}/{record.name}"
    return f"{record.telescope.value}/{record.level.value}/{record.night:%Y/%m/%d}/{record.name}"


def hashed_path(scope: str, name: str) -> str:
    """Rucio's ``hash`` layout, for names outside the MAGIC grammar."""
    digest = hashlib.md5(f"{scope}:{name}".encode()).hexdigest()
    return f"{scope}/{digest[0:2]}/{digest[2:4]}/{name}"


def path_of_did(scope_name: str, name: str) -> str:
    """The MAGIC layout of a DID whose name parses in its own scope, else Rucio's hash (two DIDs never share a path)."""
    try:
        record = parse(name)
    except MagicNameError:
        return hashed_path(scope_name, name)
    return path(record) if scope(record) == scope_name else hashed_path(scope_name, name)


_COLLECTION = re.compile(
    r"(?P<simulation>MC_)?(?P<telescope>M1|M2|ST)_(?P<level>RAW|Calibrated|Star|SuperStar|Melibea|DL3)"
    r"(?:_\d{8}(?:_\d{8})?|_za\d\dto\d\d_\d+)?",
    re.ASCII,  # names are ASCII, as the grammar's: no other script's digits
)


def scope_of_name(name: str) -> str:
    """Scope of a bare DID name: a MAGIC file, or a run dataset or container named by this module."""
    found = _COLLECTION.fullmatch(name)
    if found:
        return SIMULATION_SCOPE if found["simulation"] else SCOPE_OF_LEVEL[Level(found["level"])]
    return scope(parse(name))


@dataclass(frozen=True)
class ObservatoryFolder:
    """What the on-site folder of a file says about it: telescope, level and night."""

    telescope: Telescope
    level: Level
    night: date


_OBSERVATORY_FOLDERS = (
    (re.compile(r"/M(?P<t>[12])/DAQ/RAW/(?P<y>\d{4})_(?P<m>\d\d)_(?P<d>\d\d)/[^/]+\Z", re.ASCII), Level.RAW),
    (
        re.compile(r"/M(?P<t>[12])/OSA/Calibrated/(?P<y>\d{4})/(?P<m>\d\d)/(?P<d>\d\d)/[^/]+\Z", re.ASCII),
        Level.CALIBRATED,
    ),
    (re.compile(r"/M(?P<t>[12])/OSA/Star/(?P<y>\d{4})/(?P<m>\d\d)/(?P<d>\d\d)/[^/]+\Z", re.ASCII), Level.STAR),
    (re.compile(r"/ST/OSA/SuperStar/(?P<y>\d{4})/(?P<m>\d\d)/(?P<d>\d\d)/[^/]+\Z", re.ASCII), Level.SUPERSTAR),
    (re.compile(r"/ST/OSA/Melibea/(?P<y>\d{4})/(?P<m>\d\d)/(?P<d>\d\d)/[^/]+\Z", re.ASCII), Level.MELIBEA),
    (re.compile(r"/ST/OSA/DL3/(?P<y>\d{4})/(?P<m>\d\d)/(?P<d>\d\d)/[^/]+\Z", re.ASCII), Level.DL3),
)


def observatory_folder(file_path: str) -> ObservatoryFolder | None:
    """Read telescope, level and night off a La Palma path (``/data/M1/DAQ/RAW/2020_01_03/...``)."""
    for pattern, level in _OBSERVATORY_FOLDERS:
        found = pattern.search(file_path)
        if found:
            telescope = Telescope(f"M{found['t']}") if found.groupdict().get("t") else Telescope.STEREO
            try:
                night = date(int(found["y"]), int(found["m"]), int(found["d"]))
            except ValueError:
                return None
            return ObservatoryFolder(telescope, level, night)
    return None


def check_folder(record: MagicName, folder: ObservatoryFolder) -> None:
    """Refuse a file whose name contradicts its folder: a mis-filed file would be mis-placed in Rucio."""
    for part, named, filed in (
        ("telescope", record.telescope, folder.telescope),
        ("level", record.level, folder.level),
        ("night", record.night or folder.night, folder.night),
    ):
        if named != filed:
            shown: tuple[object, object] = (named, filed)
            if hasattr(named, "value") and hasattr(filed, "value"):  # a part's name and folder share a type
                shown = (named.value, filed.value)
            raise MagicNameError(record.name, part, f"the name says {shown[0]}, its folder {shown[1]}")
