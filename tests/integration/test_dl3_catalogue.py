"""DL3 runs found by their headers and fetched as a gammapy data store, against the real Rucio stack.

Four runs derived from the real MAGIC run (new nights, runs, sources, zenith angles and livetimes, written with
astropy) are uploaded to PIC-ANALYSIS and described with the metadata the scanner registers. ``dl3 find`` must
return exactly the expected runs, selected by the server; ``dl3 fetch`` must give a store gammapy reads.
Every query is bounded to these runs' nights (2017-11-18 to 2017-11-20), which no other test uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from astropy.io import fits

from rucio_magic_ext.cli import main
from rucio_magic_ext.dl3.headers import describe
from rucio_magic_ext.metadata import file_metadata
from rucio_magic_ext.naming import parse

pytestmark = pytest.mark.integration

REAL = Path(__file__).parents[1] / "data" / "20131004_05029747_DL3_CrabNebula-W0.40+035.fits"
RSE = "PIC-ANALYSIS"
SCOPE = "magic_dl3"
DAY = 86400.0
WINDOW = ["--start", "2017-11-17T12:00:00", "--end", "2017-11-21T12:00:00"]


@dataclass(frozen=True)
class Run:
    """A run derived from the real one: shifted by whole days (and ``later`` seconds), pointed and timed anew."""

    night: str
    run: int
    source: str
    days: int  # from the real run's night, 2013-10-04
    later: float = 0.0
    alt_pnt: float = 69.69974
    livetime: float = 1178.06621791733

    @property
    def name(self) -> str:
        return f"{self.night.replace('-', '')}_{self.run:08d}_DL3_{self.source}-W0.40+035.fits"


RUNS = {
    "A": Run("2017-11-18", 7011801, "CrabNebula", days=1506),
    "B": Run("2017-11-19", 7011901, "CrabNebula", days=1507, alt_pnt=45.0),
    "C": Run("2017-11-19", 7011902, "Mrk421", days=1507, later=3600.0, livetime=600.0),
    "D": Run("2017-11-20", 7012001, "CrabNebula", days=1508, alt_pnt=60.0, livetime=300.0),
}


def derive(run: Run, folder: Path) -> Path:
    """The real file with this run's identity, times, pointing and livetime; events and GTI moved in time."""
    shift = run.days * DAY + run.later
    with fits.open(REAL) as hdus:
        hdus = fits.HDUList([hdu.copy() for hdu in hdus])
    events, gti = hdus["EVENTS"], hdus["GTI"]
    events.header.update(
        OBS_ID=run.run,
        OBJECT=run.source,
        TSTART=events.header["TSTART"] + shift,
        TSTOP=events.header["TSTOP"] + shift,
        ALT_PNT=run.alt_pnt,
        LIVETIME=run.livetime,
    )
    events.data["TIME"] += shift
    gti.data["START"] += shift
    gti.data["STOP"] += shift
    hdus["EFFECTIVE AREA"].header["OBS_ID"] = run.run
    path = folder / run.name
    hdus.writeto(path)
    return path


def registered_metadata(path: Path) -> dict[str, Any]:
    """What the scanner registers for a DL3 file: the name's metadata, then its headers'."""
    record = parse(path.name)
    with path.open("rb") as stream:
        return {**file_metadata(record), **describe(stream, path.stat().st_size, record)}


@pytest.fixture(scope="module")
def catalogue(rucio_stack: Any, rucio_client: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The four runs uploaded to PIC-ANALYSIS with their metadata: label -> metadata."""
    from rucio.client.uploadclient import UploadClient

    folder = tmp_path_factory.mktemp("dl3-runs")
    paths = {label: derive(run, folder) for label, run in RUNS.items()}
    UploadClient(rucio_client).upload(
        [{"path": str(path), "rse": RSE, "did_scope": SCOPE, "did_name": path.name} for path in paths.values()]
    )
    described = {label: registered_metadata(path) for label, path in paths.items()}
    for label, meta in described.items():
        rucio_client.set_metadata_bulk(SCOPE, RUNS[label].name, meta)
    return described


def found(capsys: pytest.CaptureFixture[str], *flags: str) -> set[str]:
    """The labels of the runs ``rucio-magic dl3 find --json`` prints."""
    capsys.readouterr()
    assert main(["dl3", "find", "--json", *flags]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(row["did_type"] == "FILE" and row["scope"] == SCOPE for row in rows)
    names = {row["name"] for row in rows}
    labels = {label for label, run in RUNS.items() if run.name in names}
    assert len(labels) == len(names), f"runs other than these four: {names}"
    return labels


def test_the_metadata_is_the_headers(catalogue: dict[str, Any]) -> None:
    meta = catalogue["B"]
    assert meta["night"] == "2017-11-19" and meta["obs_id"] == 7011901 and meta["object"] == "CrabNebula"
    assert meta["zen_pnt"] == pytest.approx(45.0) and meta["tstart"] == "2017-11-19T04:20:52.435217Z"
    assert meta["hdu_classes"] == "events,gti,rad_max_2d,aeff_2d,edisp_2d"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], {"A", "B", "C", "D"}),
        (["--source", "CrabNebula"], {"A", "B", "D"}),
        (["--source", "Mrk*"], {"C"}),
        (["--source", "CrabNebula", "--zenith-max", "35"], {"A", "D"}),
        (["--zenith-min", "25", "--zenith-max", "40"], {"D"}),
        (["--min-livetime", "1000"], {"A", "B"}),
        (["--min-livetime", "600"], {"A", "B", "C"}),
        (["--telescope", "MAGIC"], {"A", "B", "C", "D"}),
        (["--telescope", "HESS"], set()),
    ],
)
def test_find_selects_on_the_server(
    catalogue: dict[str, Any], capsys: pytest.CaptureFixture[str], flags: list[str], expected: set[str]
) -> None:
    assert found(capsys, *WINDOW, *flags) == expected


def test_find_by_night_and_by_time_to_the_microsecond(catalogue: dict[str, Any], capsys: Any) -> None:
    assert found(capsys, "--night", "2017-11-19") == {"B", "C"}
    assert found(capsys, "--night", "2017-11-19", "--source", "Mrk421") == {"C"}
    b_start, b_stop = catalogue["B"]["tstart"], catalogue["B"]["tstop"]
    assert found(capsys, "--start", "2017-11-19T00:00:00", "--end", "2017-11-19T05:00:00") == {"B"}
    assert found(capsys, "--start", b_start, "--end", "2017-11-19T06:00:00") == {"B", "C"}
    assert found(capsys, "--start", moved(b_start, 1), "--end", "2017-11-19T06:00:00") == {"C"}
    assert found(capsys, "--start", "2017-11-19T00:00:00", "--end", b_stop) == {"B"}
    assert found(capsys, "--start", "2017-11-19T00:00:00", "--end", moved(b_stop, -1)) == set()


def moved(iso: str, microseconds: int) -> str:
    """A stored time ("...ffffffZ") some microseconds later (or earlier), in the same form."""
    moment = datetime.fromisoformat(iso[:-1]) + timedelta(microseconds=microseconds)
    return f"{moment:%Y-%m-%dT%H:%M:%S.%f}Z"


def test_find_prints_a_table(catalogue: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dl3", "find", "--night", "2017-11-18"]) == 0
    out = capsys.readouterr().out
    assert "OBS_ID" in out and "7011801" in out and RUNS["A"].name in out and out.rstrip().endswith("1 run(s)")


def test_fetch_downloads_and_gammapy_reads_every_run(catalogue: dict[str, Any], tmp_path: Path) -> None:
    from gammapy.data import DataStore

    assert main(["dl3", "fetch", *WINDOW, "--source", "CrabNebula", str(tmp_path)]) == 0
    store = DataStore.from_dir(tmp_path)
    assert sorted(store.obs_table["OBS_ID"]) == [7011801, 7011901, 7012001]
    assert {"rad_max"} <= set(store.hdu_table["HDU_TYPE"]) and not {"psf", "bkg"} & set(store.hdu_table["HDU_TYPE"])
    for label in ("A", "B", "D"):
        meta = catalogue[label]
        assert (tmp_path / SCOPE / RUNS[label].name).is_file()
        obs = store.obs(meta["obs_id"], required_irf="point-like")
        assert len(obs.events.table) == meta["n_events"]
        assert obs.aeff is not None and obs.edisp is not None and obs.rad_max is not None
        assert obs.gti.time_sum.to_value("s") == pytest.approx(meta["ontime"], rel=1e-6)
        with fits.open(tmp_path / SCOPE / RUNS[label].name) as hdus:
            tstart = hdus["EVENTS"].header["TSTART"]
        row = store.obs_table[store.obs_table["OBS_ID"] == meta["obs_id"]][0]
        assert row["TSTART"] == pytest.approx(tstart, abs=1e-5)
        assert row["ZEN_PNT"] == pytest.approx(90.0 - RUNS[label].alt_pnt)


def test_fetch_without_download_points_at_the_posix_replicas(
    catalogue: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gammapy.data import DataStore

    assert main(["dl3", "fetch", "--night", "2017-11-19", "--no-download", str(tmp_path)]) == 0
    assert not (tmp_path / SCOPE).exists()
    with fits.open(tmp_path / "hdu-index.fits.gz") as hdus:
        places = {(row["FILE_DIR"], row["FILE_NAME"]) for row in hdus[1].data}
    assert {name for _, name in places} == {RUNS["B"].name, RUNS["C"].name}
    for directory, name in places:
        assert Path(directory).is_absolute() and (Path(directory) / name).is_file()
        assert "pic-analysis" in directory
    store = DataStore.from_dir(tmp_path)
    assert len(store.obs(7011902, required_irf="point-like").events.table) == catalogue["C"]["n_events"]

    capsys.readouterr()
    assert main(["dl3", "fetch", "--night", "2017-11-19", "--no-download", "--rse", "PIC-DISK", str(tmp_path)]) == 1
    assert "no replica at PIC-DISK" in capsys.readouterr().err
