"""``rucio-magic report``: the timeline series, the per-night table, the time range, and the files it writes."""

from __future__ import annotations

import csv
import io
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from rucio_magic_ext.cli import main
from rucio_magic_ext.ledger import FileState, Ledger, Seen
from rucio_magic_ext.ledger.states import FLOW
from rucio_magic_ext.report import nights, plot, timeline
from rucio_magic_ext.report.rows import FileRow
from rucio_magic_ext.report.timeline import AT_DESTINATION, AT_SOURCE, DELETED, REGISTERED, REPLICATING
from rucio_magic_ext.report.window import parse_instant, parse_window

T0 = datetime(2020, 1, 4, 6, 0, 0)
NIGHT = date(2020, 1, 4)
ORM = "ORM-ONSITE"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def at(seconds: float | None) -> datetime | None:
    return None if seconds is None else T0 + timedelta(seconds=seconds)


def row(
    state: FileState, *stamps: float | None, size: int = 100, night: date | None = NIGHT, rse: str = ORM
) -> FileRow:
    """A file with seen, registered, protected, replicated, verified, deleted at these seconds after T0."""
    names = ("seen_at", "registered_at", "protected_at", "replicated_at", "verified_at", "deleted_at")
    return FileRow(rse, night, "RAW", size, state, **{name: at(value) for name, value in zip(names, stamps)})


ROWS = [
    row(FileState.DELETED, 0, 10, 20, 30, 35, 50),  # the whole flow
    row(FileState.PROTECTED, 5, 15, 25),  # its copy still on its way
    row(FileState.REJECTED, 8),  # not a MAGIC name: stays at the source, never registered
    row(FileState.PROTECTED, 0, 10, 40, 30, 32),  # its copy failed verification: sent back at 40
]


# -- timeline -------------------------------------------------------------------------------------------------


def test_timeline_counts_each_series_at_each_instant() -> None:
    instants = [at(s) for s in (0, 9, 12, 22, 30, 45, 60)]
    series = timeline.timeline(ROWS, instants).series  # type: ignore[arg-type]
    assert series[AT_SOURCE] == [2, 4, 4, 4, 4, 4, 3]
    assert series[REGISTERED] == [0, 0, 2, 3, 3, 3, 3]
    assert series[REPLICATING] == [0, 0, 0, 1, 1, 2, 2]  # at 30 the first file has arrived: a change at t counts
    assert series[AT_DESTINATION] == [0, 0, 0, 0, 2, 1, 1]  # the file sent back leaves the destination at 40
    assert series[DELETED] == [0, 0, 0, 0, 0, 0, 1]


def test_files_before_the_range_count_from_its_start() -> None:
    series = timeline.timeline(ROWS, [at(100)]).series  # type: ignore[list-item]
    assert {name: values[0] for name, values in series.items()} == {
        AT_SOURCE: 3,
        REGISTERED: 3,
        REPLICATING: 2,
        AT_DESTINATION: 1,
        DELETED: 1,
    }


def test_change_instants_are_every_step_inside_the_range_and_its_ends() -> None:
    instants = timeline.change_instants(ROWS, at(9), at(45))  # type: ignore[arg-type]
    assert instants == [at(s) for s in (9, 10, 15, 20, 25, 30, 40, 45)]


def test_too_many_changes_give_an_even_grid() -> None:
    rows = [row(FileState.SEEN, second) for second in range(100)]
    assert len(timeline.sample_instants(rows, at(-1), at(101))) == 102  # type: ignore[arg-type]
    grid = timeline.sample_instants(rows, at(0), at(100), limit=11)  # type: ignore[arg-type]
    assert grid == [at(s) for s in range(0, 101, 10)]


def test_an_empty_ledger_gives_an_empty_timeline() -> None:
    assert timeline.timeline([], [at(0), at(10)]).empty  # type: ignore[list-item]
    assert not timeline.timeline(ROWS, [at(10)]).empty  # type: ignore[list-item]


# -- per-night table ------------------------------------------------------------------------------------------


TABLE_ROWS = [
    *ROWS,
    row(FileState.DELETED, 0, 2, 4, 6, 8, 12, size=1_000),
    row(FileState.QUARANTINED, 1, size=0),
    row(FileState.VERIFIED, 0, 4, 5, 9, 9.5, night=date(2020, 1, 5), size=2_500_000),
    row(FileState.REJECTED, 3, night=None, size=7),
]


def test_nights_count_files_bytes_milestones_and_latencies() -> None:
    table = nights.nights(TABLE_ROWS)
    assert [(entry.rse, entry.label) for entry in table] == [
        (ORM, "2020-01-04"),
        (ORM, "2020-01-05"),
        (ORM, "unknown"),
    ]
    first = table[0]
    assert (first.files, first.bytes, first.refused) == (6, 1_400, 2)
    assert first.reached == {"registered": 4, "replicated": 2, "verified": 2, "deleted at source": 2}
    latencies = first.latencies
    assert latencies["seen -> registered"] == nights.Latency(4, 10.0, 10.0)  # spans 10, 10, 10, 2
    assert latencies["registered -> replicated"] == nights.Latency(3, 20.0, 20.0)  # 20, 20, 4
    assert latencies["replicated -> verified"] == nights.Latency(3, 2.0, 5.0)  # 5, 2, 2
    assert latencies["verified -> deleted at source"] == nights.Latency(2, 9.5, 15.0)  # 15, 4
    assert latencies["seen -> deleted at source"] == nights.Latency(2, 31.0, 50.0)  # 50, 12
    assert table[1].reached == {"registered": 1, "replicated": 1, "verified": 1, "deleted at source": 0}
    assert table[1].latencies["verified -> deleted at source"] is None
    assert (table[2].files, table[2].refused) == (1, 1)


def test_milestones_follow_the_flow() -> None:
    rows = [row(state, 0) for state in FLOW]
    (entry,) = nights.nights(rows)
    assert entry.reached == {"registered": 6, "replicated": 4, "verified": 3, "deleted at source": 1}


def test_csv_keeps_exact_numbers_and_leaves_stages_no_file_did_empty() -> None:
    parsed = list(csv.DictReader(io.StringIO(nights.to_csv(nights.nights(TABLE_ROWS)))))
    assert [line["night"] for line in parsed] == ["2020-01-04", "2020-01-05", "unknown"]
    first, second = parsed[0], parsed[1]
    assert (first["rse"], first["files"], first["bytes"], first["refused"]) == (ORM, "6", "1400", "2")
    assert first["deleted_at_source"] == "2"
    assert (first["replicated_to_verified_median_s"], first["replicated_to_verified_max_s"]) == ("2.000", "5.000")
    assert (second["verified_to_deleted_at_source_median_s"], second["verified_to_deleted_at_source_max_s"]) == ("", "")


def test_markdown_is_one_table_with_sizes_and_median_over_slowest() -> None:
    lines = nights.to_markdown(nights.nights(TABLE_ROWS)).splitlines()
    assert len(lines) == 5
    assert lines[0].startswith("| RSE | night | files | size | registered |")
    assert "seen -> deleted at source (median / max s)" in lines[0]
    assert lines[1].count("|") == lines[0].count("|")
    assert lines[2] == (
        "| ORM-ONSITE | 2020-01-04 | 6 | 1.4 kB | 4 | 2 | 2 | 2 | 2 "
        "| 10.0 / 10.0 | 20.0 / 20.0 | 2.0 / 5.0 | 9.5 / 15.0 | 31.0 / 50.0 |"
    )
    assert lines[3].startswith("| ORM-ONSITE | 2020-01-05 | 1 | 2.5 MB | 1 | 1 | 1 | 0 | 0 | 4.0 / 4.0 |")
    assert lines[3].endswith("| - | - |")
    assert "no files" in nights.to_markdown([])


# -- --since and --until --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", datetime(2020, 1, 3, 12, 0)),
        ("12h", datetime(2020, 1, 10, 0, 0)),
        ("90m", datetime(2020, 1, 10, 10, 30)),
        ("2w", datetime(2019, 12, 27, 12, 0)),
        ("30s", datetime(2020, 1, 10, 11, 59, 30)),
        ("2020-01-04", datetime(2020, 1, 4)),
        ("2020-01-04T06:30", datetime(2020, 1, 4, 6, 30)),
        ("2020-01-04 06:30:15", datetime(2020, 1, 4, 6, 30, 15)),
        ("2020-01-04T06:30Z", datetime(2020, 1, 4, 6, 30)),
        ("2020-01-04T06:30+01:00", datetime(2020, 1, 4, 5, 30)),
    ],
)
def test_since_reads_durations_and_iso_times_as_naive_utc(text: str, expected: datetime) -> None:
    assert parse_instant(text, now=datetime(2020, 1, 10, 12, 0)) == expected


@pytest.mark.parametrize("text", ["yesterday", "7x", "-7d", "2020-13-01", "", "d7"])
def test_since_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError, match="neither an ISO date"):
        parse_instant(text, now=datetime(2020, 1, 10))


def test_the_range_ends_now_by_default_and_must_not_be_empty() -> None:
    now = datetime(2020, 1, 10, 12, 0)
    assert parse_window("1d", None, now) == (datetime(2020, 1, 9, 12, 0), now)
    with pytest.raises(ValueError, match="must come before --until"):
        parse_window("2020-01-05", "2020-01-04", now)


# -- the command ----------------------------------------------------------------------------------------------


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    """A ledger with a night at every stage of the flow, moved by the ledger's own operations."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger.from_url(url)
    ledger.upgrade()
    seen = [
        Seen(f"M1/DAQ/RAW/2020_01_04/f{index:03d}.raw.gz", 1_000_000 + index, 0.0, night=NIGHT, level="RAW")
        for index in range(12)
    ]
    ledger.add_seen(ORM, seen, actor="discover")
    rows = sorted(ledger.due(ORM, [FileState.SEEN], 100), key=lambda found: found.path)
    for depth, state in enumerate(FLOW[1:], start=1):
        ledger.move(rows[depth:], state, actor="test")  # file i stops at FLOW[i]; the last four go all the way
    ledger.set_aside(rows[:1], FileState.REJECTED, actor="test", reason="not a MAGIC name")
    ledger.engine.dispose()
    return url


def test_report_writes_a_plot_and_a_csv(ledger_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png, table = tmp_path / "report.png", tmp_path / "nights.csv"
    assert main(["report", "--ledger-url", ledger_url, "--since", "1h", "--plot", str(png), "--table", str(table)]) == 0
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 20_000
    (line,) = csv.DictReader(io.StringIO(table.read_text()))
    assert (line["rse"], line["night"], line["files"], line["bytes"]) == (ORM, "2020-01-04", "12", "12000066")
    assert (line["registered"], line["replicated"], line["verified"], line["deleted_at_source"]) == ("9", "7", "6", "4")
    assert line["refused"] == "1"
    assert float(line["seen_to_deleted_at_source_max_s"]) >= 0
    assert f"plot: {png}" in capsys.readouterr().out


def test_report_prints_markdown_without_a_table_file(ledger_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--ledger-url", ledger_url, "--rse", ORM]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| RSE | night |")
    assert "| ORM-ONSITE | 2020-01-04 | 12 | 12.0 MB | 9 | 7 | 6 | 4 | 1 |" in out


def test_an_empty_range_still_writes_a_plot(
    ledger_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png, table = tmp_path / "empty.png", tmp_path / "empty.md"
    argv = ["report", "--ledger-url", ledger_url, "--since", "2000-01-01", "--until", "2000-01-02"]
    assert main([*argv, "--plot", str(png), "--table", str(table)]) == 0
    assert png.read_bytes().startswith(PNG_MAGIC)
    assert "no files" in table.read_text()
    assert main([*argv, "--rse", "NO-SUCH-RSE"]) == 0
    assert "no files" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--since", "last week"], "neither an ISO date"),
        (["--since", "1d", "--until", "2d"], "must come before --until"),
        (["--table", "nights.txt"], "suffix says its format: .csv or .md"),
        (["--plot", "timeline.jpg"], "must end in .png"),
    ],
)
def test_bad_input_is_refused_before_reading_the_ledger(
    options: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "absent" / "ledger.db"  # never opened: the input is checked first
    assert main(["report", "--ledger-url", f"sqlite:///{missing}", *options]) == 2
    assert message in capsys.readouterr().err
    assert not missing.parent.exists()


def test_an_unreadable_ledger_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--ledger-url", f"sqlite:///{tmp_path / 'empty.db'}"]) == 1
    assert "cannot read the ledger" in capsys.readouterr().err


def test_without_matplotlib_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(plot.PlotUnavailable, match=r"pip install 'rucio-magic-ext\[report\]'"):
        plot.draw(timeline.timeline(ROWS, [at(0)]), tmp_path / "x.png", "title")  # type: ignore[list-item]
