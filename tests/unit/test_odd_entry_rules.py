"""Odd entries of a storage, one rule each, against real files (and the pure decisions behind them)."""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from rucio_magic_ext.daemons import outage_of
from rucio_magic_ext.ledger import FileState, Ledger, Seen
from rucio_magic_ext.ledger.paths import bad_bytes, from_text, to_text
from rucio_magic_ext.scanner.discover import describe, refusal
from rucio_magic_ext.scanner.settle import Settling, decide, mtime_age
from rucio_magic_ext.storage import Entry, StorageUnavailable
from rucio_magic_ext.storage.posix import NotARegularFile, PosixStorage, Refused
from tools.make_night.hostile import bind_socket

NAME = "20200501_M1_05091340.001_P_B2-1420+32-W0.40+180.raw"
FOLDER = "M1/DAQ/RAW/2020_05_01"
NOW = datetime(2026, 1, 1)
SETTLE = timedelta(seconds=300)


@pytest.fixture
def folder(tmp_path: Path) -> tuple[PosixStorage, Path]:
    root = tmp_path / "orm"
    (root / FOLDER).mkdir(parents=True)
    return PosixStorage(root=str(root)), root / FOLDER


def test_paths_not_utf8_are_kept_losslessly_and_refused_naming_the_bytes() -> None:
    raw = os.fsdecode(f"{FOLDER}/".encode() + b"2020\xff\xfe.raw")
    text = to_text(raw)
    assert text == f"{FOLDER}/2020\\xff\\xfe.raw" and text.encode("utf-8")  # storable by any database
    assert from_text(text) == raw and os.fsencode(from_text(text)).endswith(b"2020\xff\xfe.raw")
    assert to_text("a\\b") == "a\\\\b" and from_text("a\\\\b") == "a\\b"  # a backslash never reads as a byte
    assert to_text(f"{FOLDER}/{NAME}") == f"{FOLDER}/{NAME}"  # MAGIC paths are their own text
    assert bad_bytes(raw.rsplit("/", 1)[1]) == [(4, 0xFF), (5, 0xFE)]
    kind, reason = refusal(raw)  # type: ignore[misc]
    assert kind == "not_utf8" and "0xff at byte 4" in reason and "0xfe at byte 5" in reason


def test_names_rucio_would_refuse_are_refused_with_the_exact_reason() -> None:
    long = NAME.replace("B2-1420+32", "B2" + "N" * 240)
    assert refusal(f"{FOLDER}/{long}") == ("name_too_long", f"name is {len(long)} characters long; Rucio takes "
                                           "at most 250")  # fmt: skip
    assert refusal(f"{FOLDER}/{NAME}") is None
    seen, why = describe(f"{FOLDER}/{NAME}", 10, 1.0)
    assert why is None and seen.name == NAME and seen.scope == "magic_raw"
    seen, why = describe(f"{FOLDER}/{NAME} ", 10, 1.0)
    assert why and seen.scope is None


def test_fifos_sockets_and_links_out_of_the_root_are_refused_unopened(folder: tuple[PosixStorage, Path]) -> None:
    storage, where = folder
    (where / NAME).write_bytes(b"data")
    fifo = where / NAME.replace("340.001", "341.001")
    os.mkfifo(fifo)
    bind_socket(where / NAME.replace("340.001", "342.001"))
    outside = where.parents[4] / "outside.bin"
    outside.write_bytes(b"outside")
    os.symlink(outside, where / NAME.replace("340.001", "343.001"))
    os.symlink(where / "nowhere", where / NAME.replace("340.001", "344.001"))
    os.symlink(where / NAME, where / NAME.replace("340.001", "345.001"))  # inside the root: followed
    listed = {Path(entry.path).name[17:20]: entry for entry in storage.files(str(where))}
    assert type(listed["340"]) is Entry and listed["340"].size == 4
    assert isinstance(listed["341"], Refused) and "FIFO" in listed["341"].reason
    assert isinstance(listed["342"], Refused) and "socket" in listed["342"].reason
    assert isinstance(listed["343"], Refused) and "out of the storage root" in listed["343"].reason
    assert isinstance(listed["344"], Refused) and "dangling" in listed["344"].reason
    assert listed["343"].link and listed["344"].link and not listed["341"].link  # type: ignore[attr-defined]
    assert type(listed["345"]) is Entry and listed["345"].size == 4
    started = time.monotonic()
    for call in (storage.stat, storage.open_read, storage.checksum):
        with pytest.raises(NotARegularFile, match="FIFO"):
            call(str(fifo))  # returns at once: a FIFO opened for reading would wait for a writer
    assert time.monotonic() - started < 5
    with pytest.raises(NotARegularFile, match="out of the storage root") as link:
        storage.open_read(str(where / NAME.replace("340.001", "343.001")))
    assert link.value.link
    (where / "sub").mkdir()
    with pytest.raises(IsADirectoryError):
        storage.stat(str(where / "sub"))
    assert outside.read_bytes() == b"outside"


def test_a_future_mtime_waits_a_bounded_time_then_settles() -> None:
    ahead = (NOW + timedelta(days=400) - datetime(1970, 1, 1)).total_seconds()
    entry = Entry("x", 100, ahead)
    first = decide(100, ahead, entry, NOW, SETTLE)
    assert first.settling is Settling.FUTURE and "in the future" in first.reason
    done = decide(100, ahead, entry, NOW, SETTLE, waited_future=True)
    assert done.settling is Settling.STABLE and "longest wait" in done.reason
    assert decide(0, ahead, Entry("x", 0, ahead), NOW, SETTLE, True).settling is Settling.QUARANTINE
    skew = (NOW + timedelta(seconds=20) - datetime(1970, 1, 1)).total_seconds()
    assert decide(100, skew, Entry("x", 100, skew), NOW, SETTLE).settling is Settling.WAIT  # a clock a bit ahead


def test_an_mtime_past_year_9999_is_a_future_mtime_not_a_crash(tmp_path: Path) -> None:
    # ext4 keeps mtimes up to 2446 only; tmpfs (/dev/shm) keeps this one for real.
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no tmpfs at /dev/shm to hold an mtime past year 9999")
    path = shm / f"magic-odd-{os.getpid()}"
    path.write_bytes(b"x" * 10)
    try:
        os.utime(path, (2**40, 2**40))
        entry = PosixStorage().stat(str(path))
    finally:
        path.unlink()
    assert mtime_age(entry.mtime, NOW) is None
    decision = decide(10, entry.mtime, entry, NOW, SETTLE)
    assert decision.settling is Settling.FUTURE and "beyond year 9999" in decision.reason


def test_an_outage_is_told_apart_from_a_fault_of_one_entry(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on: PostgreSQL's driver is refused, no server answers
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OperationalError) as caught:
        create_engine(f"postgresql+psycopg://magic@127.0.0.1:{port}/ledger").connect()
    refused = caught.value
    assert outage_of(refused).service == "database"  # type: ignore[union-attr]
    assert outage_of(RuntimeError("wrapped")) is None
    try:
        try:
            raise refused
        except OperationalError as inner:
            raise RuntimeError("register: carriers") from inner
    except RuntimeError as outer:
        assert outage_of(outer).service == "database"  # type: ignore[union-attr]
    assert outage_of(StorageUnavailable("xrootd: connection refused")).service == "storage"  # type: ignore[union-attr]
    assert outage_of(OperationalError("SELECT", {}, Exception("value too long for type character varying"))) is None
    assert outage_of(FileNotFoundError("gone")) is None and outage_of(IsADirectoryError("dir")) is None
    with pytest.raises(OperationalError) as statement, create_engine(f"sqlite:///{tmp_path / 'x.db'}").connect() as db:
        db.execute(text("SELECT * FROM nowhere"))  # the driver's OperationalError of one statement: no outage
    assert outage_of(statement.value) is None


@pytest.mark.parametrize("dialect", ["sqlite"])
def test_a_failing_folder_is_kept_retried_with_backoff_and_well_again(tmp_path: Path, dialect: str) -> None:
    ledger = Ledger.from_url(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.upgrade()
    first = ledger.folder_failed("ORM", FOLDER, "Stale file handle", timedelta(seconds=60))
    second = ledger.folder_failed("ORM", FOLDER, "Stale file handle", timedelta(seconds=60))
    assert second - first >= timedelta(seconds=60)  # doubled
    (problem,) = ledger.folder_problems("ORM")
    assert (problem.attempts, problem.last_error) == (2, "Stale file handle")
    ledger.save_folders("ORM", {FOLDER: 123.0})
    assert ledger.folder_problems("ORM") == [] and ledger.folders("ORM")[FOLDER].mtime == 123.0


def test_retry_puts_set_aside_files_back_with_who_and_why(tmp_path: Path) -> None:
    ledger = Ledger.from_url(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.upgrade()
    ledger.add_seen("ORM", [Seen(f"{FOLDER}/{NAME}", 0, 1.0, "magic_raw", NAME)], "test")
    row = ledger.known("ORM", [f"{FOLDER}/{NAME}"])[f"{FOLDER}/{NAME}"]
    ledger.set_aside([row], FileState.QUARANTINED, "test", "empty")
    with pytest.raises(ValueError):
        ledger.retry("ORM", "shifter", "why")
    (back,) = ledger.retry("ORM", "shifter", "DAQ rewrote it", state=FileState.QUARANTINED)
    assert back.state is FileState.SEEN
    ((stored, events),) = ledger.history("ORM", NAME)
    assert stored.state is FileState.SEEN and stored.attempts == 0 and stored.last_error is None
    assert (events[-1].actor, events[-1].detail) == ("operator:shifter", "put back by shifter: DAQ rewrote it")
