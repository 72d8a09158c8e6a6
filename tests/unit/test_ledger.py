"""The ledger on SQLite and on a real PostgreSQL, in a schema of its own per test."""

import os
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from rucio_magic_ext.common import utcnow
from rucio_magic_ext.ledger import FileState, Ledger, LostRace, Seen
from rucio_magic_ext.ledger.states import IllegalMove, check_move

PG_URL = os.environ.get("MAGIC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
RSE = "ORM-ONSITE"


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        built = Ledger.from_url(f"sqlite:///{tmp_path / 'ledger.db'}")
        built.upgrade()
        yield built
        return
    schema = f"ledger_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL)
    try:
        with admin.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
    except Exception as error:
        pytest.fail(f"PostgreSQL is needed at {PG_URL} (set MAGIC_TEST_PG_URL): {error}")
    built = Ledger.from_url(PG_URL, schema)
    built.upgrade()
    yield built
    built.engine.dispose()
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def _seen(count: int, folder: str = "M1/DAQ/RAW/2020_01_03") -> list[Seen]:
    return [Seen(f"{folder}/f{index:05d}.raw.gz", 100 + index, 1_700_000_000.0 + index) for index in range(count)]


def test_upgrade_is_idempotent_and_creates_the_tables(ledger: Ledger) -> None:
    ledger.upgrade()
    tables = set(inspect(ledger.engine).get_table_names(schema=ledger.schema))
    assert {"magic_ledger_files", "magic_ledger_events", "magic_ledger_folders"} <= tables


def test_seen_files_are_recorded_once(ledger: Ledger) -> None:
    assert ledger.add_seen(RSE, _seen(1200), actor="discover") == 1200
    assert ledger.add_seen(RSE, _seen(1250), actor="discover") == 50  # a second listing adds only the new ones
    known = ledger.known(RSE, [seen.path for seen in _seen(1300)])
    assert len(known) == 1250
    assert all(row.state is FileState.SEEN and row.seen_at for row in known.values())


def test_due_splits_work_between_workers_without_overlap(ledger: Ledger) -> None:
    ledger.add_seen(RSE, _seen(100), actor="discover")
    shares = [{row.id for row in ledger.due(RSE, [FileState.SEEN], 1000, worker, 3)} for worker in range(3)]
    assert sum(len(share) for share in shares) == 100
    assert not (shares[0] & shares[1]) and not (shares[1] & shares[2]) and not (shares[0] & shares[2])


def test_moves_record_time_values_and_events(ledger: Ledger) -> None:
    ledger.add_seen(RSE, _seen(3), actor="discover")
    rows = ledger.due(RSE, [FileState.SEEN], 10)
    ledger.move(rows, FileState.STABLE, actor="settle")
    ledger.move(
        rows,
        FileState.CHECKSUMMED,
        actor="checksum",
        values={row.id: {"adler32": f"{row.id:08x}"} for row in rows},
    )
    again = ledger.known(RSE, [row.path for row in rows])
    for row in rows:
        stored = again[row.path]
        assert stored.state is FileState.CHECKSUMMED
        assert stored.adler32 == f"{row.id:08x}"
        assert stored.seen_at <= stored.stable_at <= stored.checksummed_at
    (row, events), *_ = ledger.history(RSE, rows[0].path)
    assert [event.state for event in events] == [FileState.SEEN, FileState.STABLE, FileState.CHECKSUMMED]
    assert [event.actor for event in events] == ["discover", "settle", "checksum"]


def test_header_metadata_is_kept_as_json_beside_the_checksums(ledger: Ledger) -> None:
    ledger.add_seen(RSE, _seen(2), actor="discover")
    rows = ledger.due(RSE, [FileState.SEEN], 10)
    ledger.move(rows, FileState.STABLE, actor="settle")
    described = {"obs_id": 5029747, "zen_pnt": 20.30026, "tstart": "2013-10-05T04:20:52.435217Z", "object": "Crab"}
    ledger.move(
        rows,
        FileState.CHECKSUMMED,
        actor="checksum",
        values={rows[0].id: {"adler32": "00000001", "header_metadata": described}, rows[1].id: {"adler32": "00000002"}},
    )
    again = ledger.known(RSE, [row.path for row in rows])
    assert again[rows[0].path].header_metadata == described
    assert again[rows[1].path].header_metadata is None


def test_a_stale_move_loses_the_race_and_changes_nothing(ledger: Ledger) -> None:
    ledger.add_seen(RSE, _seen(2), actor="discover")
    mine = ledger.due(RSE, [FileState.SEEN], 10)
    theirs = ledger.due(RSE, [FileState.SEEN], 10)
    ledger.move(theirs[:1], FileState.STABLE, actor="other worker")
    with pytest.raises(LostRace):
        ledger.move(mine, FileState.STABLE, actor="this worker")
    states = {row.path: row.state for row in ledger.known(RSE, [row.path for row in mine]).values()}
    assert sorted(states.values()) == [FileState.SEEN, FileState.STABLE]


def test_failures_back_off_and_are_kept(ledger: Ledger) -> None:
    ledger.add_seen(RSE, _seen(1), actor="discover")
    rows = ledger.due(RSE, [FileState.SEEN], 10)
    ledger.fail(rows, "storage did not answer", actor="settle", backoff=timedelta(minutes=5))
    assert ledger.due(RSE, [FileState.SEEN], 10) == []
    later = rows[0].retry_after + timedelta(seconds=1)
    (again,) = ledger.due(RSE, [FileState.SEEN], 10, now=later)
    assert again.attempts == 1 and again.last_error == "storage did not answer"
    ledger.fail([again], "still down", actor="settle", backoff=timedelta(minutes=5))
    assert again.retry_after - utcnow() > timedelta(minutes=9)  # doubled


def test_illegal_moves_are_refused() -> None:
    check_move(FileState.VERIFIED, FileState.RELEASED)
    check_move(FileState.VERIFIED, FileState.PROTECTED)  # a failed verification waits for the re-transfer
    for current, target in [
        (FileState.SEEN, FileState.REGISTERED),
        (FileState.DELETED, FileState.SEEN),
        (FileState.PROTECTED, FileState.RELEASED),
        (FileState.REPLICATED, FileState.RELEASED),
    ]:
        with pytest.raises(IllegalMove):
            check_move(current, target)


def test_folders_remember_their_mtime(ledger: Ledger) -> None:
    ledger.save_folders(RSE, {"M1/DAQ/RAW/2020_01_03": 1.0, "M2/DAQ/RAW/2020_01_03": 2.0})
    ledger.save_folders(RSE, {"M1/DAQ/RAW/2020_01_03": 3.0})
    assert ledger.folder_mtimes(RSE) == {"M1/DAQ/RAW/2020_01_03": 3.0, "M2/DAQ/RAW/2020_01_03": 2.0}
    assert ledger.folder_mtimes("OTHER") == {}


def test_folder_marks_say_what_discovery_needs(ledger: Ledger) -> None:
    ledger.save_folders(RSE, {"M1/DAQ/RAW/2020_01_03": 1.0})
    retry = ledger.folder_failed(RSE, "M2/DAQ/RAW/2020_01_03", "Permission denied", timedelta(minutes=1))
    marks = ledger.folder_marks(RSE)
    assert marks["M1/DAQ/RAW/2020_01_03"] == (1.0, None, None)
    failing = marks["M2/DAQ/RAW/2020_01_03"]
    assert failing.last_error == "Permission denied" and failing.retry_after == retry and failing.mtime == -1.0
    ledger.save_folders(RSE, {"M2/DAQ/RAW/2020_01_03": 4.0})  # lists again: well again, with its mtime
    assert ledger.folder_marks(RSE)["M2/DAQ/RAW/2020_01_03"] == (4.0, None, None)
    assert ledger.folder_marks("OTHER") == {}


def test_known_paths_are_those_the_ledger_holds(ledger: Ledger) -> None:
    seen = _seen(700)  # more than one IN list
    ledger.add_seen(RSE, seen[:600], actor="discover")
    asked = [s.path for s in seen] + ["M1/DAQ/RAW/2020_01_03/other.raw.gz"]
    assert ledger.known_paths(RSE, asked) == {s.path for s in seen[:600]} == set(ledger.known(RSE, asked))
    assert ledger.known_paths("OTHER", asked) == set()


def test_finished_nights_are_the_open_nights_whose_last_file_is_old_enough(ledger: Ledger) -> None:
    from datetime import date

    from rucio_magic_ext.ledger.store import finished_nights, record_closed_night

    nights = [date(2020, 1, day) for day in (3, 4, 6)]
    seen = [
        Seen(f"M1/DAQ/RAW/2020_01_0{night.day}/f{index}.raw.gz", 1, 1.0, "magic_raw", f"n{night.day}{index}", night)
        for night in nights
        for index in range(3)
    ]
    ledger.add_seen(RSE, [*seen, Seen("M1/odd/notes.txt", 1, 1.0)], actor="discover")  # no night: never finished
    ledger.add_seen("OTHER", [Seen("M1/DAQ/RAW/2020_01_05/f.raw.gz", 1, 1.0, "magic_raw", "o", date(2020, 1, 5))], "x")
    record_closed_night(ledger, RSE, nights[0], datasets=1)
    later = utcnow() + timedelta(minutes=1)
    assert finished_nights(ledger, RSE, later) == nights[1:]
    assert finished_nights(ledger, RSE, utcnow() - timedelta(minutes=1)) == []  # their files appeared just now
    assert finished_nights(ledger, "OTHER", later) == [date(2020, 1, 5)]
    assert finished_nights(ledger, "NONE", later) == []
