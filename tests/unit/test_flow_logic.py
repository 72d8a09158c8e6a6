"""The pure decisions of the scanner and the carrier hook, case by case."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import zlib
from datetime import datetime, timedelta

import pytest

from rucio_magic_ext.carrier.model import (
    CarrierLimits,
    NewFile,
    OpenCarrier,
    closing_reason,
    plan_batches,
)
from rucio_magic_ext.checksum import Corrupt, Unfinished, digest_stream
from rucio_magic_ext.release.verify import (
    Copy,
    Readiness,
    Reading,
    Requirement,
    assess,
    may_release,
    mismatches,
    unreadable,
)
from rucio_magic_ext.scanner.discover import describe, wanted
from rucio_magic_ext.scanner.settle import Settling, decide
from rucio_magic_ext.storage.base import Entry

NOW = datetime(2020, 1, 4, 12, 0, 0)
SETTLE = timedelta(minutes=5)


def _entry(size: int, age: timedelta) -> Entry:
    from datetime import timezone

    mtime = (NOW - age).replace(tzinfo=timezone.utc).timestamp()
    return Entry("/f", size, mtime)


# --- settle -------------------------------------------------------------------------------------------------


def test_settle_waits_for_an_unchanged_file_to_age() -> None:
    old = _entry(100, timedelta(minutes=10))
    young = _entry(100, timedelta(minutes=1))
    assert decide(100, old.mtime, old, NOW, SETTLE).settling is Settling.STABLE
    assert decide(100, young.mtime, young, NOW, SETTLE).settling is Settling.WAIT
    assert decide(50, young.mtime - 1, young, NOW, SETTLE).settling is Settling.GREW


@pytest.mark.parametrize(
    ("known", "entry", "says"),
    [
        (100, None, "vanished"),
        (100, _entry(40, timedelta(minutes=10)), "shrank from 100 to 40"),
        (0, _entry(0, timedelta(minutes=10)), "empty"),
    ],
)
def test_settle_quarantines_what_went_wrong(known: int, entry: Entry | None, says: str) -> None:
    decision = decide(known, entry.mtime if entry else 0.0, entry, NOW, SETTLE)
    assert decision.settling is Settling.QUARANTINE and says in decision.reason


def test_an_empty_file_just_created_may_still_grow() -> None:
    entry = _entry(0, timedelta(seconds=5))
    assert decide(0, entry.mtime, entry, NOW, SETTLE).settling is Settling.WAIT


# --- checksum ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [3_000, 3_000_000, 20_000_000])
def test_digest_of_a_plain_stream_is_zlib_adler32(size: int) -> None:
    data = os.urandom(size)
    digest = digest_stream(io.BytesIO(data), ("adler32", "md5"), gzip=False, size=size)
    assert digest.size == len(data)
    assert digest.checksums["adler32"] == f"{zlib.adler32(data):08x}"
    assert digest.checksums["md5"] == hashlib.md5(data).hexdigest()


def test_a_file_that_grew_after_its_size_was_taken_is_read_to_its_end() -> None:
    data = os.urandom(50_000)
    assert digest_stream(io.BytesIO(data), ("adler32",), gzip=False, size=1_000).size == len(data)


def test_a_whole_gzip_stream_passes_and_a_truncated_or_broken_one_does_not() -> None:
    whole = gzip.compress(os.urandom(200_000) + b"\0" * 2_000_000)
    assert digest_stream(io.BytesIO(whole), ("adler32",), gzip=True, size=len(whole)).size == len(whole)
    with pytest.raises(Unfinished, match="trailer"):
        digest_stream(io.BytesIO(whole[:-8]), ("adler32",), gzip=True, size=len(whole[:-8]))
    broken = bytearray(whole)
    broken[200:240] = b"\xff" * 40
    with pytest.raises(Corrupt):
        digest_stream(io.BytesIO(bytes(broken)), ("adler32",), gzip=True, size=len(broken))
    with pytest.raises(Corrupt, match="after the end"):
        digest_stream(io.BytesIO(whole + b"junk"), ("adler32",), gzip=True, size=len(whole + b"junk"))


# --- discover -------------------------------------------------------------------------------------------------


def test_include_and_exclude_patterns() -> None:
    assert wanted("20200103_M2_05088072.001_D_BLLac.raw", ("*",), (".*", "*.tmp"))
    assert not wanted(".20200103_M2_05088072.001_D_BLLac.raw.part", ("*",), (".*",))
    assert not wanted("x.tmp", ("*",), ("*.tmp",))
    assert not wanted("x.root", ("*.raw*",), ())


def test_describe_places_a_file_or_says_why_not() -> None:
    seen, why = describe("M1/OSA/Calibrated/2019/07/01/scalib05083180_M1.root", 10, 1.0)
    assert why is None and (seen.scope, str(seen.night), seen.level) == ("magic_cal", "2019-07-01", "Calibrated")
    _, why = describe("M2/OSA/Calibrated/2019/07/01/scalib05083180_M1.root", 10, 1.0)
    assert why and why.startswith("telescope:")
    _, why = describe("M1/DAQ/RAW/2020_01_03/notes.txt", 10, 1.0)
    assert why and "not a MAGIC name" in why


# --- carrier batches -----------------------------------------------------------------------------------------


def _tokens():  # type: ignore[no-untyped-def]
    counter = iter(range(1000))
    return lambda: f"t{next(counter)}"


def test_files_of_one_policy_share_a_carrier_and_a_full_one_closes() -> None:
    limits = CarrierLimits(max_files=3, max_bytes=10**9, max_age=timedelta(hours=1))
    files = [NewFile(i, 10, "raw-to-pic") for i in range(4)] + [NewFile(9, 10, "analysis-to-pic")]
    plan = plan_batches("ORM", [], files, limits, NOW, _tokens())
    names = [carrier.name for carrier in plan.opened]
    assert len(names) == 3 and len(set(plan.assigned.values())) == 3
    assert [plan.assigned[i] for i in range(4)] == [names[0]] * 3 + [names[1]]
    assert list(plan.full) == [names[0]] and "3 files" in plan.full[names[0]]
    assert plan.assigned[9] == names[2]


def test_age_closes_a_carrier_on_a_later_cycle_only() -> None:
    limits = CarrierLimits(max_files=100, max_bytes=10**9, max_age=timedelta(0))
    plan = plan_batches("ORM", [], [NewFile(1, 10, "p")], limits, NOW, _tokens())
    assert plan.full == {}  # a carrier never closes in the pass that opens it
    old = OpenCarrier("c_old", "p", 5, 50, NOW - timedelta(hours=2))
    plan = plan_batches("ORM", [old], [NewFile(2, 10, "p")], CarrierLimits(max_age=timedelta(hours=1)), NOW, _tokens())
    assert plan.assigned[2] != "c_old" and "open since" in plan.full["c_old"]
    assert closing_reason(OpenCarrier("c", "p", 1, 5 * 10**12, NOW), CarrierLimits(), NOW)


# --- verification --------------------------------------------------------------------------------------------


def _need(state: str = "OK", copies: int = 1, found: tuple[Copy, ...] | None = None, rule: str | None = "r1"):  # type: ignore[no-untyped-def]
    return Requirement(
        "magic-policy:x",
        rule,
        state,
        copies,
        (Copy("PIC", "OK", "AVAILABLE", "file:///p"),) if found is None else found,
    )


@pytest.mark.parametrize(
    ("requirements", "expected", "says"),
    [
        ([], Readiness.HOLD, "no replication rule"),
        ([_need(rule=None)], Readiness.HOLD, "no rule magic-policy:x on its run dataset"),
        ([_need(state="STUCK")], Readiness.HOLD, "STUCK"),
        ([_need(state="SUSPENDED")], Readiness.HOLD, "SUSPENDED"),
        ([_need(copies=2)], Readiness.WAIT, "1 of 2 copies"),
        ([_need(found=(Copy("PIC", "REPLICATING", None, None),))], Readiness.WAIT, "0 of 1"),
        ([_need(found=(Copy("PIC", "OK", "BAD", "file:///p"),))], Readiness.WAIT, "not AVAILABLE at PIC"),
        ([_need(), _need()], Readiness.READY, "in place"),
    ],
)
def test_readiness(requirements: list[Requirement], expected: Readiness, says: str) -> None:
    assessment = assess(requirements)
    assert assessment.readiness is expected and says in assessment.reason


def test_two_destinations_are_two_copies_to_verify() -> None:
    two = [_need(), Requirement("magic-policy:y", "r2", "OK", 1, (Copy("PIC2", "OK", "AVAILABLE", "file:///q"),))]
    assert sorted(copy.rse for copy in assess(two).copies) == ["PIC", "PIC2"]


def test_mismatches_and_release() -> None:
    readings = [Reading("A", "a", 10, "0000000a"), Reading("B", "b", 9, "0000000a"), Reading("C", "c", 10, "ffffffff"),
                Reading("D", "d", None, None, "missing at the storage", missing=True)]  # fmt: skip
    wrong = mismatches(10, "0000000a", readings)
    assert set(wrong) == {"B", "C", "D"} and "size 9" in wrong["B"] and "adler32 ffffffff" in wrong["C"]
    assert may_release(1, 1, NOW - timedelta(hours=2), NOW, timedelta(hours=1)).allowed
    assert "dwell" in may_release(1, 1, NOW - timedelta(minutes=2), NOW, timedelta(hours=1)).reason
    assert "2 required" in may_release(1, 2, NOW - timedelta(hours=2), NOW, timedelta(0)).reason
    assert not may_release(1, 1, None, NOW, timedelta(0))  # never seen in place: not released


# --- one cycle ------------------------------------------------------------------------------------------------


def test_a_failing_stage_never_stops_the_others() -> None:
    import types

    from sqlalchemy.exc import OperationalError

    from rucio_magic_ext.scanner.cycle import run_cycle

    logged: list[str] = []

    def down(context: object) -> int:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    context = types.SimpleNamespace(logger=lambda level, message, *args, **kwargs: logged.append(message % args))
    moved = run_cycle(context, (("discover", lambda c: 3), ("register", down), ("protect", lambda c: 2)))  # type: ignore[arg-type]
    assert moved == {"discover": 3, "register": 0, "protect": 2}
    assert any("stage register failed" in line and "connection refused" in line for line in logged)


def test_a_copy_that_cannot_be_read_is_not_wrong() -> None:
    readings = [
        Reading("A", "a", None, None, "Permission denied"),
        Reading("B", "b", None, None, "no storage for scheme 'gsiftp'"),
        Reading("C", "c", None, None, "missing at the storage", missing=True),
    ]
    assert set(mismatches(10, "0000000a", readings)) == {"C"}  # only a proven loss is declared bad
    cannot = unreadable(readings)
    assert set(cannot) == {"A", "B"} and "Permission denied" in cannot["A"]


def test_only_copies_that_stay_away_from_the_source_count() -> None:
    at_source = _need(found=(Copy("ORM", "OK", "AVAILABLE", "file:///o"),))
    held = assess([at_source], source_rse="ORM")
    assert held.readiness is Readiness.HOLD and "at the source" in held.reason
    expiring = Requirement("magic-policy:t", "r9", "OK", 1, (Copy("TMP", "OK", "AVAILABLE", "file:///t"),), NOW)
    assert assess([expiring], source_rse="ORM").readiness is Readiness.HOLD
    both = assess([_need(), expiring, at_source], source_rse="ORM")
    assert both.readiness is Readiness.READY and [copy.rse for copy in both.copies] == ["PIC"]


# --- the source, read again just before release --------------------------------------------------------------

from rucio_magic_ext.release.verify import (  # noqa: E402
    SOURCE_CHANGED,
    SOURCE_GONE,
    Registered,
    SourceReading,
    SourceState,
    absence_accepted,
    held_for_a_person,
    source_verdict,
)

REGISTERED = Registered(size=1000, mtime=1_578_000_000.25, adler32="0a0b0c0d")
PFN = "file://localhost/orm/M1/RAW/f.raw.gz"


def _source(size: int | None = 1000, mtime: float | None = 1_578_000_000.25, adler32: str | None = "0a0b0c0d",
            **kw: object) -> SourceReading:  # fmt: skip
    return SourceReading(PFN, size, mtime, adler32, **kw)  # type: ignore[arg-type]


def test_a_source_with_its_registered_bytes_may_go_touched_or_not() -> None:
    assert source_verdict(REGISTERED, _source()).state is SourceState.UNCHANGED
    touched = source_verdict(REGISTERED, _source(mtime=1_600_000_000.0))
    assert touched and touched.state is SourceState.TOUCHED
    assert "2020-01-02 21:20:00.250000 UTC -> 2020-09-13 12:26:40.000000 UTC" in touched.reason


@pytest.mark.parametrize(
    ("reading", "says"),
    [
        (_source(adler32="ffff0000"), "adler32 ffff0000"),  # same size, mtime kept: only the bytes tell
        (_source(mtime=1_600_000_000.0, adler32="ffff0000"), "mtime 2020-09-13 12:26:40.000000 UTC"),
        (_source(size=2000, adler32="ffff0000"), "is size 2000"),
        (_source(size=2000, adler32=None, error="unreadable: EIO"), "adler32 unread (unreadable: EIO)"),
    ],
)
def test_a_source_with_other_bytes_is_held_for_a_person_naming_both(reading: SourceReading, says: str) -> None:
    verdict = source_verdict(REGISTERED, reading)
    assert not verdict and verdict.state is SourceState.CHANGED
    assert verdict.reason.startswith(SOURCE_CHANGED) and held_for_a_person(verdict.reason)
    assert "was size 1000, mtime 2020-01-02 21:20:00.250000 UTC, adler32 0a0b0c0d" in verdict.reason
    assert says in verdict.reason and "rucio-magic retry" in verdict.reason


def test_a_source_that_cannot_be_read_proves_nothing_and_is_not_held_for_a_person() -> None:
    for reading in (_source(adler32=None, error="unreadable: EIO"), _source(None, None, None, error="timeout")):
        verdict = source_verdict(REGISTERED, reading)
        assert not verdict and verdict.state is SourceState.UNREADABLE
        assert not held_for_a_person(verdict.reason)


def test_an_empty_path_goes_only_once_a_person_knows_why() -> None:
    gone = _source(None, None, None, error="nothing at its path", missing=True)
    held = source_verdict(REGISTERED, gone)
    assert not held and held.state is SourceState.GONE and held.reason.startswith(SOURCE_GONE)
    assert held_for_a_person(held.reason)
    assert source_verdict(REGISTERED, gone, absence_accepted=True)


def test_a_persons_retry_counts_only_after_the_last_hold() -> None:
    changed = f"error: {SOURCE_CHANGED}, held: ..."
    retry = ("operator:alice", "put back by alice: new bytes renamed")
    assert not absence_accepted([])
    assert not absence_accepted([retry])  # a retry for something else, before any hold
    assert absence_accepted([("carrier", changed), retry])
    assert not absence_accepted([("carrier", changed), retry, ("carrier", f"error: {SOURCE_GONE}, held: ...")])
    assert not absence_accepted([("carrier", changed), ("carrier", "release stopped: ...")])
