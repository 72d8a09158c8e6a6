"""Where the targets are and where the telescopes point during each data run. Pure, no astropy.

The catalogue's right ascensions only order targets through the night; a DL3 header needs the real position
of its object (J2000, degrees, from SIMBAD-style catalogues; a few hundredths of a degree are enough here).
Zenith angles sweep from 60 deg at dusk down to 10 deg in the middle of the night and back up at dawn, so
that every night has runs on both sides of the usual 40 deg quality cut.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tools.make_night.schedule import Run

# source (as stored in MAGIC names) -> (RA, Dec) in degrees, J2000
POSITIONS: dict[str, tuple[float, float]] = {
    "TXS0025+197": (7.124, 20.007),  # J0028+2000
    "S20109+22": (18.024, 22.744),
    "CGRaBSJ0211+": (32.805, 10.860),  # CGRaBS J0211+1051
    "PSRJ0218+423": (34.526, 42.538),
    "S30218+35": (35.273, 35.937),
    "LSI+61": (40.132, 61.229),  # LS I +61 303
    "Perseus-MA": (49.951, 41.512),  # NGC 1275, the centre of the Perseus cluster
    "CrabNebula": (83.633, 22.014),
    "1ES1218+304": (185.341, 30.177),
    "PKS1413+135": (213.995, 13.340),
    "B2-1420+32": (215.627, 32.386),
    "PKS1502+106": (226.104, 10.494),
    "PKS1510-089": (228.211, -9.100),
    "PG1553+113": (238.929, 11.190),
    "Mrk501": (253.468, 39.760),
    "GalacticCent": (266.417, -29.008),  # Sgr A*
    "HESSJ1809-19": (272.630, -19.300),  # HESS J1809-193
    "HESSJ1943+21": (295.979, 21.302),  # HESS J1943+213
    "1ES1959+650": (299.999, 65.149),
    "1ES2037+521": (309.848, 52.331),
    "BLLac": (330.680, 42.278),
    "Boomerang": (336.930, 60.880),  # PWN G106.6+2.9
    "B2-2234+28A": (339.094, 28.483),
    "TXS2241": (340.899, 40.966),  # TXS 2241+406
    "1ES2344+514": (356.770, 51.705),
}

HIGHEST_ZENITH, LOWEST_ZENITH = 60.0, 10.0


@dataclass(frozen=True, slots=True)
class Observation:
    """What a DL3 header says of its run beyond the name: when it was taken and at what zenith and azimuth."""

    start: datetime
    end: datetime
    zenith: float  # degrees
    azimuth: float  # degrees, from north through east


def position(source: str) -> tuple[float, float]:
    """(RA, Dec) of a catalogue source in degrees."""
    try:
        return POSITIONS[source]
    except KeyError:
        raise KeyError(f"no sky position for {source!r}: add it to tools/make_night/sky.py") from None


def observations(runs: list[Run]) -> dict[int, Observation]:
    """The observation of every data run, by run number: zenith and azimuth follow the night, not the target."""
    data = [run for run in runs if run.run_type == "D"]
    last = max(1, len(data) - 1)
    out: dict[int, Observation] = {}
    for index, run in enumerate(data):
        through = index / last  # 0 at the first data run, 1 at the last
        zenith = LOWEST_ZENITH + (HIGHEST_ZENITH - LOWEST_ZENITH) * abs(2 * through - 1)
        out[run.number] = Observation(run.start, run.end, round(zenith, 4), round(90 + 180 * through, 4))
    return out
