"""Every file of one synthetic night: name, observatory path, size and when it is closed.

Pure, but for reading the DL3 template once to learn the size of the DL3 files written from it.

Names come from ``MagicName`` records through ``naming.format_name``, and every path is checked
against ``layout.observatory_folder`` + ``layout.check_folder``, so a night can never disagree with the
grammar the rest of the project reads it with.

The list is in the order files would be closed on site: raw subruns while a run is taken, the on-site
analysis of a run (calibrated, then star) some minutes after it ends, stereo products and DL3 later, so
that each run's raw comes before its calibrated files, which come before its stereo files.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum

from rucio_magic_ext import layout
from rucio_magic_ext.naming import Family, Level, MagicName, Telescope, format_name, parse
from tools.make_night import dl3, sizes
from tools.make_night.content import gzip_minimum
from tools.make_night.schedule import Run, default_first_run, plan_runs
from tools.make_night.sky import Observation, observations

TELESCOPES = (Telescope.M1, Telescope.M2)

# Delays of the on-site analysis after a run ends.
_CALIBRATED_AFTER = timedelta(minutes=6)
_STAR_AFTER = timedelta(minutes=14)
_STEREO_AFTER = timedelta(minutes=30)
_DL3_AFTER = timedelta(minutes=45)


class Content(str, Enum):
    RANDOM = "random"  # pseudo-random bytes
    GZIP = "gzip"  # a valid gzip stream of pseudo-random bytes
    DL3 = "dl3"  # the real DL3 file rewritten for its run (tools/make_night/dl3.py)
    DL3_TEMPLATE = "dl3-template"  # a byte copy of a real DL3 file


@dataclass(frozen=True, slots=True)
class PlannedFile:
    record: MagicName
    path: str  # relative to the storage root: M1/DAQ/RAW/2020_01_03/<name>
    size: int
    content: Content
    content_seed: int
    closed_at: datetime
    observation: Observation | None = None  # DL3 files: what their headers say of the run

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[1]


def observatory_dir(telescope: Telescope, level: Level, night: date) -> str:
    """The on-site folder of a level, relative to the storage root."""
    if level is Level.RAW:
        return f"{telescope.value}/DAQ/RAW/{night:%Y_%m_%d}"
    return f"{telescope.value}/OSA/{level.value}/{night:%Y/%m/%d}"


def _content_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "big")


class _Night:
    """Collects the files of a night, scaling sizes and checking every name against its folder."""

    def __init__(self, night: date, seed: int, scale: float, dl3_template_size: int | None) -> None:
        self.night, self.seed, self.scale = night, seed, scale
        self.dl3_template_size = dl3_template_size
        self.files: list[PlannedFile] = []

    def add(self, record: MagicName, size: float, closed_at: datetime, observation: Observation | None = None) -> None:
        name = format_name(record)
        path = f"{observatory_dir(record.telescope, record.level, self.night)}/{name}"
        parsed = parse(name)
        folder = layout.observatory_folder("/" + path)
        if parsed != record or folder is None:
            raise AssertionError(f"{path}: the name does not round-trip or the folder is not an observatory one")
        layout.check_folder(parsed, folder)
        content, minimum = Content.RANDOM, 1
        scaled = round(size * self.scale)
        if record.compression == "gz":
            content, minimum = Content.GZIP, gzip_minimum(name[: -len(".gz")])
        if record.family is Family.DL3:  # a FITS file has the size it has, whatever the scale
            content, scaled = Content.DL3, dl3.written_size()
            if self.dl3_template_size is not None:
                content, scaled = Content.DL3_TEMPLATE, self.dl3_template_size
        seed = _content_seed(self.seed, name)
        self.files.append(PlannedFile(record, path, max(minimum, scaled), content, seed, closed_at, observation))


def _telescope_record(night: date, run: Run, telescope: Telescope, subrun: int, family: Family, **kw) -> MagicName:
    return MagicName(
        family=family,
        telescope=telescope,
        run=run.number,
        night=night,
        subrun=subrun,
        source=run.target.source,
        wobble_offset=run.wobble_offset,
        wobble_angle=run.wobble_angle,
        **kw,
    )


def _stereo_record(night: date, run: Run, family: Family, run_type: str, extension: str) -> MagicName:
    return MagicName(
        family=family,
        telescope=Telescope.STEREO,
        run=run.number,
        run_type=run_type,
        extension=extension,
        night=night,
        source=run.target.source,
        wobble_offset=run.wobble_offset,
        wobble_angle=run.wobble_angle,
    )


def _plan_run(out: _Night, run: Run, observation: Observation | None, rng: random.Random) -> None:
    night = out.night
    step = (run.end - run.start) / run.subruns
    raw_sizes: dict[tuple[Telescope, int], float] = {}
    for subrun in range(1, run.subruns + 1):
        for lag, telescope in enumerate(TELESCOPES):
            size = sizes.raw(run.run_type, subrun, run.subruns, rng)
            raw_sizes[telescope, subrun] = size
            record = _telescope_record(
                night, run, telescope, subrun, Family.RAW, run_type=run.run_type, extension="raw", compression="gz"
            )
            out.add(record, size, run.start + step * subrun + timedelta(seconds=lag * 2))
    if run.run_type == "C":
        for telescope in TELESCOPES:
            record = MagicName(Family.CALIBRATION_CONSTANTS, telescope, run.number, None, "root")
            out.add(record, sizes.calibration_constants(rng), run.end + _CALIBRATED_AFTER)
    if run.run_type != "D":
        return
    _plan_analysis(out, run, raw_sizes, observation, rng)


def _plan_analysis(
    out: _Night,
    run: Run,
    raw_sizes: dict[tuple[Telescope, int], float],
    observation: Observation | None,
    rng: random.Random,
) -> None:
    night = out.night
    for telescope in TELESCOPES:
        closed = run.end + _CALIBRATED_AFTER
        for subrun in range(1, run.subruns + 1):
            raw_size = raw_sizes[telescope, subrun]
            merpp = _telescope_record(night, run, telescope, subrun, Family.MERPP, run_type="D", extension="root")
            out.add(merpp, sizes.merpp(raw_size, rng), closed + timedelta(seconds=subrun * 10))
            calibrated = _telescope_record(
                night, run, telescope, subrun, Family.CALIBRATED, run_type="Y", extension="root"
            )
            out.add(calibrated, sizes.calibrated(raw_size, rng), closed + timedelta(seconds=subrun * 10 + 5))
        signal = MagicName(Family.SIGNAL, telescope, run.number, None, "root", subrun=1)
        out.add(signal, sizes.signal(rng), closed + timedelta(seconds=(run.subruns + 1) * 10))
    for telescope in TELESCOPES:
        closed = run.end + _STAR_AFTER
        for subrun in range(1, run.subruns + 1):
            star = _telescope_record(night, run, telescope, subrun, Family.STAR, run_type="I", extension="root")
            out.add(star, sizes.star(raw_sizes[telescope, subrun], rng), closed + timedelta(seconds=subrun * 5))
    superstar = sizes.superstar(run.subruns, rng)
    out.add(_stereo_record(night, run, Family.SUPERSTAR, "S", "root"), superstar, run.end + _STEREO_AFTER)
    melibea = sizes.melibea(superstar, rng)
    out.add(_stereo_record(night, run, Family.MELIBEA, "Q", "root"), melibea, run.end + _STEREO_AFTER * 1.2)
    dl3_record = _stereo_record(night, run, Family.DL3, "DL3", "fits")
    out.add(dl3_record, sizes.dl3(run.subruns, rng), run.end + _DL3_AFTER, observation)


def plan_night(
    night: date,
    runs: int = 20,
    seed: int = 0,
    scale: float = 1.0,
    first_run: int | None = None,
    dl3_template_size: int | None = None,
) -> list[PlannedFile]:
    """Every file of the night labelled ``night`` (its sunrise date), in the order they are closed.

    The same arguments always give the same names, sizes and content seeds. ``dl3_template_size`` is the
    size of a real DL3 file that the writer will copy byte for byte; without it, every DL3 file is the
    real run in tests/data rewritten for its own run, whose size is the one the writer will write.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, not {scale}")
    first = default_first_run(night, runs) if first_run is None else first_run
    if not (first >= 5_000_000 and first + runs - 1 <= 5_999_999):
        raise ValueError(f"stereo run numbers are 8 digits starting with 05: {first:08d} + {runs} runs is not")
    rng = random.Random(f"make_night:{night.isoformat()}:{seed}")
    out = _Night(night, seed, scale, dl3_template_size)
    planned_runs = plan_runs(night, runs, first, rng)
    observed = observations(planned_runs)
    for run in planned_runs:
        _plan_run(out, run, observed.get(run.number), rng)
    order = {id(planned): index for index, planned in enumerate(out.files)}
    return sorted(out.files, key=lambda planned: (planned.closed_at, order[id(planned)]))
