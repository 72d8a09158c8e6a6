"""The census of a ledger, the gauges it publishes, the flow counters every move emits, and ``status``."""

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from rucio_magic_ext import census, cli, monitoring, status
from rucio_magic_ext.ledger import FileState, Ledger, Seen
from rucio_magic_ext.ledger.states import FLOW, UNSAFE

RSE = "ORM-TEST-CENSUS"
NIGHT = date(2020, 1, 4)


def _seen(count: int, night: date = NIGHT, start: int = 0) -> list[Seen]:
    folder = f"M1/DAQ/RAW/{night:%Y_%m_%d}"
    return [
        Seen(f"{folder}/f{index:05d}.raw.gz", 1000 + index, 1.7e9, "magic_raw", f"f{index:05d}", night, "RAW")
        for index in range(start, start + count)
    ]


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _walk(ledger: Ledger, rows: list, until: FileState, start: FileState = FileState.SEEN) -> None:
    for state in FLOW[FLOW.index(start) + 1 : FLOW.index(until) + 1]:
        ledger.move(rows, state, "test")


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    built = Ledger.from_url(f"sqlite:///{tmp_path / 'ledger.db'}")
    built.upgrade()
    return built


@pytest.fixture
def flowing(ledger: Ledger) -> Ledger:
    """30 files of one night and 5 of the next: 10 deleted at the source, 10 registered, 10 seen; 5 quarantined."""
    ledger.add_seen(RSE, _seen(30), "test")
    ledger.add_seen(RSE, _seen(5, date(2020, 1, 5), start=100), "test")
    rows = sorted(ledger.known(RSE, [s.path for s in _seen(30)]).values(), key=lambda row: row.path)
    _walk(ledger, rows[:10], FileState.DELETED)
    _walk(ledger, rows[10:20], FileState.REGISTERED)
    later = list(ledger.known(RSE, [s.path for s in _seen(5, date(2020, 1, 5), start=100)]).values())
    ledger.set_aside(later, FileState.QUARANTINED, "scanner.checksum", "empty file")
    return ledger


def test_the_census_counts_files_per_night_and_state_and_what_is_at_risk(flowing: Ledger) -> None:
    taken = census.take(flowing, RSE, rucio=False)
    assert taken.rses == [RSE]
    assert taken.nights(RSE) == [NIGHT, date(2020, 1, 5)]
    assert taken.count(RSE, NIGHT, [FileState.DELETED]) == census.Count(10, sum(1000 + i for i in range(10)))
    assert taken.count(RSE, NIGHT, [FileState.REGISTERED]).files == 10
    assert taken.count(RSE, NIGHT, [FileState.SEEN]).files == 10
    assert taken.at_risk(RSE) == census.Count(20, sum(1000 + i for i in range(10, 30)))
    assert taken.at_risk(RSE, date(2020, 1, 5)).files == 0  # quarantined files are a person's, not the flow's
    assert taken.oldest(RSE) is not None and taken.oldest_age(RSE) >= timedelta(0)
    errors = {(e.state, e.actor, e.detail) for e in taken.errors}
    assert len(taken.errors) == 5 and errors == {("QUARANTINED", "scanner.checksum", "empty file")}


def test_gauges_agree_with_the_census_and_drop_to_zero_when_a_state_empties(flowing: Ledger) -> None:
    taken = census.take(flowing, RSE, rucio=False)
    census.publish(taken)
    for state in FileState:
        assert _sample("magic_source_files", rse=RSE, state=state.value) == taken.count(RSE, states=[state]).files
    assert _sample("magic_risk_files", rse=RSE) == 20
    assert _sample("magic_risk_bytes", rse=RSE) == taken.at_risk(RSE).bytes
    assert _sample("magic_risk_oldest_seconds", rse=RSE) == taken.oldest_age(RSE).total_seconds()

    rows = [row for row in flowing.known(RSE, [s.path for s in _seen(30)]).values() if row.state in UNSAFE]
    by_state: dict[FileState, list] = {}
    for row in rows:
        by_state.setdefault(row.state, []).append(row)
    for state, group in by_state.items():
        _walk(flowing, group, FileState.VERIFIED, start=state)
    census.publish(census.take(flowing, RSE, rucio=False))
    assert _sample("magic_risk_files", rse=RSE) == 0
    assert _sample("magic_risk_oldest_seconds", rse=RSE) == 0
    assert _sample("magic_source_files", rse=RSE, state="SEEN") == 0
    assert _sample("magic_source_files", rse=RSE, state="VERIFIED") == 20


def test_every_committed_move_is_counted_once_per_state(ledger: Ledger) -> None:
    rse = "ORM-TEST-FLOW"
    before = {state: _sample("magic_flow_files_total", rse=rse, state=state.value) for state in FileState}
    verified_before = _sample("magic_flow_seen_to_verified_count", rse=rse)
    ledger.add_seen(rse, _seen(12), "test")
    ledger.add_seen(rse, _seen(12), "test")  # listed again: nothing new
    rows = list(ledger.known(rse, [s.path for s in _seen(12)]).values())
    _walk(ledger, rows[:8], FileState.VERIFIED)
    ledger.fail(rows[8:], "storage: timeout", "scanner.checksum", timedelta(seconds=1))

    def delta(state: FileState) -> float:
        return _sample("magic_flow_files_total", rse=rse, state=state.value) - before[state]

    assert delta(FileState.SEEN) == 12
    assert all(delta(state) == 8 for state in FLOW[1 : FLOW.index(FileState.VERIFIED) + 1])
    assert delta(FileState.RELEASED) == 0
    assert _sample("magic_flow_bytes_total", rse=rse, state="SEEN") >= sum(1000 + i for i in range(12))
    assert _sample("magic_flow_seen_to_verified_count", rse=rse) - verified_before == 8
    assert _sample("magic_flow_failures_total", actor="scanner.checksum") >= 4


def test_status_shows_each_night_and_what_waits(flowing: Ledger, tmp_path: Path, capsys) -> None:
    url = str(flowing.engine.url)
    assert cli.main(["status", "--ledger-only", "--ledger-url", url]) == 0
    screen = capsys.readouterr().out
    assert f"{RSE}: 20 files" in screen and "only here" in screen
    assert "2020-01-04" in screen and "2020-01-05" in screen
    assert "QUARANTINED" in screen and "empty file" in screen

    assert cli.main(["status", "--ledger-only", "--ledger-url", url, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (source,) = data["sources"]
    assert source["rse"] == RSE and source["at_risk"]["files"] == 20
    first = next(n for n in source["nights"] if n["night"] == "2020-01-04")
    assert first["states"]["DELETED"]["files"] == 10 and first["oldest_unsafe"]
    assert len(data["recent_errors"]) == 5


def test_status_of_an_empty_ledger_says_so(ledger: Ledger) -> None:
    assert "knows no file yet" in status.render(census.take(ledger, rucio=False))


def test_every_metric_has_a_unique_prometheus_name() -> None:
    names = [metric.prometheus for metric in monitoring.DEFINED]
    assert len(names) == len(set(names))
    assert monitoring.FLOW_FILES.series == ("magic_flow_files_total",)
    assert monitoring.FLOW_FILES.labels == ("rse", "state")


def test_status_ages_read_like_a_person_would_say_them() -> None:
    assert status._age(timedelta(seconds=42)) == "42 s"
    assert status._age(timedelta(minutes=30)) == "30 min"
    assert status._age(timedelta(hours=5)) == "5.0 h"
    assert status._age(timedelta(days=3)) == "3.0 d"
    assert status._size(4_800_000) == "4.8 MB"


def test_files_held_for_a_person_lead_the_troubles_however_many_newer_ones_follow(ledger: Ledger) -> None:
    from rucio_magic_ext.release.verify import SOURCE_CHANGED

    ledger.add_seen(RSE, _seen(3 + census.TROUBLE_LIMIT), "test")
    rows = sorted(ledger.known(RSE, [s.path for s in _seen(3 + census.TROUBLE_LIMIT)]).values(), key=lambda r: r.path)
    _walk(ledger, rows[:3], FileState.VERIFIED)
    held = f"{SOURCE_CHANGED}, held for a person: adler32 0a0b0c0d"
    ledger.fail(rows[:3], held, "carrier.release", timedelta(days=1))
    for row in rows[3:]:  # each newer than the held ones
        ledger.fail([row], "mtime in the future", "scanner.settle", timedelta(minutes=5))

    taken = census.take(ledger, RSE, rucio=False)
    assert len(taken.troubles) == census.TROUBLE_LIMIT
    assert {t.path for t in taken.troubles[:3]} == {row.path for row in rows[:3]}
    assert all(t.error.startswith("mtime in the future") for t in taken.troubles[3:])
    shown = status.render(taken)
    assert all(row.path in shown for row in rows[:3]) and "held for a person first" in shown
