"""File sizes drawn like the real ones (docs/MAGIC_DATA.md, "Volumes"), before scaling.

Documented: raw subruns about 1 GB, calibrated and star files tens of MB, superstar and melibea tens to
hundreds of MB per run, DL3 from 0.35 MB (20 minutes) to a few MB. Not documented, so chosen to fit the
"about 1 TB a day" total: pedestal and calibration raw files a few hundred MB, merpp ``_D_`` ROOT files
sized like calibrated ones, ``ssignal``/``scalib`` side products a few MB.
"""

from __future__ import annotations

import random

MB = 1_000_000
GB = 1_000_000_000

# The DAQ closes a subrun when it reaches about 1 GB; the last subrun of a run is whatever is left.
RAW_SUBRUN = 1.0 * GB


def raw(run_type: str, subrun: int, subruns: int, rng: random.Random) -> float:
    if run_type != "D":
        return rng.uniform(150, 600) * MB
    if subrun < subruns:
        return RAW_SUBRUN * rng.uniform(0.985, 1.015)
    return RAW_SUBRUN * rng.uniform(0.05, 1.0)


def merpp(raw_size: float, rng: random.Random) -> float:
    return raw_size / RAW_SUBRUN * rng.uniform(30, 70) * MB


def calibrated(raw_size: float, rng: random.Random) -> float:
    return raw_size / RAW_SUBRUN * rng.uniform(25, 60) * MB


def star(raw_size: float, rng: random.Random) -> float:
    return raw_size / RAW_SUBRUN * rng.uniform(10, 35) * MB


def signal(rng: random.Random) -> float:
    return rng.uniform(0.5, 3) * MB


def calibration_constants(rng: random.Random) -> float:
    return rng.uniform(2, 8) * MB


def superstar(subruns: int, rng: random.Random) -> float:
    return subruns * rng.uniform(5, 10) * MB


def melibea(superstar_size: float, rng: random.Random) -> float:
    return superstar_size * rng.uniform(1.05, 1.3)


def dl3(subruns: int, rng: random.Random) -> float:
    """0.35 MB for a short run, growing with its length to a few MB.

    Still drawn so that the draws after it do not move, but a written DL3 file is a real FITS file whose
    size the plan takes from ``dl3.written_size`` (or from the file that ``--real-dl3`` copies).
    """
    return (0.3 + subruns * rng.uniform(0.02, 0.12)) * MB
