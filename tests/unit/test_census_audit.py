"""The census's cheap audit of the source RSE: taken on its own schedule (kept in the ledger), counted without
reading data, published as gauges and shown by ``status``; a storage that does not list fails nothing."""

import json
import logging
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY

from rucio_magic_ext import census, cli, status
from rucio_magic_ext.audit import classes
from rucio_magic_ext.audit.classes import Booked, Replica, StoredFile, Views
from rucio_magic_ext.ledger import FileState, Ledger
from rucio_magic_ext.scanner import census as stage
from rucio_magic_ext.scanner.config import ScannerConfig

RSE = "ORM-TEST-AUDIT"
NOW = datetime(2025, 6, 11, 12, 0, 0)
OLD = (NOW - timedelta(days=2)).timestamp()


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    monkeypatch.setattr(census, "_rucio_counts", lambda *_: None)  # the scanner's census asks Rucio too: no Rucio here
    built = Ledger.from_url(f"sqlite:///{tmp_path / 'ledger.db'}")
    built.upgrade()
    return built


class Logged(list):
    def __call__(self, level: int, message: str, *args: Any, **_: Any) -> None:
        self.append((level, message % args))


def context(ledger: Ledger, every: float = 3600, worker: int = 0) -> Any:
    config = ScannerConfig(rse=RSE, replication_policy=Path(), roots=("M1",), audit=timedelta(seconds=every))
    policy = SimpleNamespace(rules=())
    return SimpleNamespace(
        config=config, ledger=ledger, rse=RSE, worker=worker, outages={}, logger=Logged(), policy=policy,
        census_taken=None,
    )  # fmt: skip


class Counter:
    """Stands for the audit's reading: counts what was asked, or fails as a storage that does not list."""

    def __init__(self, counts: dict[str, int] | None = None, error: Exception | None = None) -> None:
        self.counts, self.error, self.calls = counts or {"dark": 1, "new": 2}, error, 0

    def __call__(self, _context: Any, _now: datetime) -> dict[str, int]:
        self.calls += 1
        if self.error:
            raise self.error
        return dict(self.counts)


def _gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_the_audit_follows_its_own_schedule_kept_in_the_ledger(ledger: Ledger, monkeypatch) -> None:
    counter = Counter()
    monkeypatch.setattr(stage, "count_classes", counter)
    scanner = context(ledger)
    assert stage.take_audit(scanner, NOW) is True
    assert stage.take_audit(scanner, NOW + timedelta(minutes=59)) is False
    assert stage.take_audit(context(ledger), NOW + timedelta(minutes=30)) is False  # a restarted scanner too
    assert counter.calls == 1
    assert stage.take_audit(scanner, NOW + timedelta(hours=1)) is True
    assert counter.calls == 2
    with ledger.session() as session:
        (audit,) = census.audits(session).values()
    assert audit.counts == {"dark": 1, "new": 2} and audit.taken_at == NOW + timedelta(hours=1) and not audit.error
    assert audit.out_of_place == {"dark": 1}


@pytest.mark.parametrize(
    "change", [{"every": 0}, {"worker": 1}, {"outage": True}], ids=["turned off", "worker 1", "storage outage"]
)
def test_no_audit_when_off_on_another_worker_or_while_the_storage_is_out(ledger: Ledger, monkeypatch, change) -> None:
    counter = Counter()
    monkeypatch.setattr(stage, "count_classes", counter)
    scanner = context(ledger, every=change.get("every", 3600), worker=change.get("worker", 0))
    if change.get("outage"):
        scanner.outages["storage"] = "not mounted"
    stage.refresh_gauges(scanner)
    assert counter.calls == 0
    with ledger.session() as session:
        assert census.audits(session) == {}


def test_a_storage_that_does_not_list_keeps_the_last_counts_and_fails_nothing(ledger: Ledger, monkeypatch) -> None:
    monkeypatch.setattr(stage, "count_classes", Counter({"dark": 3, "lost": 1}))
    scanner = context(ledger)
    assert stage.take_audit(scanner, NOW)
    census.publish(census.take(ledger, rucio=False, errors=False))
    assert _gauge("magic_audit_files", rse=RSE, **{"class": "dark"}) == 3

    failing = Counter(error=FileNotFoundError("/storage/orm-onsite"))
    monkeypatch.setattr(stage, "count_classes", failing)
    later = NOW + timedelta(hours=2)
    assert stage.take_audit(scanner, later) is False
    assert any(level == logging.WARNING and "last counts stay" in text for level, text in scanner.logger)
    taken = census.take(ledger, rucio=False, errors=False)
    audit = taken.audits[RSE]
    assert audit.counts == {"dark": 3, "lost": 1} and audit.taken_at == NOW
    assert audit.tried_at == later and "FileNotFoundError" in (audit.error or "")
    census.publish(taken)
    assert _gauge("magic_audit_files", rse=RSE, **{"class": "dark"}) == 3
    assert _gauge("magic_audit_files", rse=RSE, **{"class": "lost"}) == 1
    assert stage.take_audit(scanner, later + timedelta(minutes=10)) is False  # the failed try waits its period
    assert failing.calls == 1

    screen = status.render(taken)
    assert "dark 3, lost 1" in screen and "failed: FileNotFoundError" in screen


def test_a_ledger_that_does_not_answer_fails_nothing_either(ledger: Ledger, monkeypatch) -> None:
    monkeypatch.setattr(census, "audit_tried", lambda *_: (_ for _ in ()).throw(RuntimeError("database gone")))
    monkeypatch.setattr(stage, "count_classes", Counter())
    scanner = context(ledger)
    assert stage.take_audit(scanner, NOW) is False
    assert any("database gone" in text for _, text in scanner.logger)


def test_the_census_publishes_every_class_and_the_audit_s_age(ledger: Ledger, monkeypatch) -> None:
    monkeypatch.setattr(stage, "count_classes", Counter({"dark": 1, "new": 2}))
    scanner = context(ledger)
    stage.refresh_gauges(scanner)  # the census is due at the first cycle: the audit with it
    assert scanner.census_taken is not None
    for kind in classes.Kind:
        expected = {"dark": 1, "new": 2}.get(kind.value, 0)
        assert _gauge("magic_audit_files", rse=RSE, **{"class": kind.value}) == expected, kind
    age = _gauge("magic_audit_taken_seconds", rse=RSE)
    assert age is not None and 0 <= age < 60


def test_the_count_reads_the_three_views_and_no_data(ledger: Ledger, monkeypatch) -> None:
    """Dark, lost, size and new told apart from listings alone: the storage is never asked for a checksum."""
    asked: dict[str, Any] = {}

    def read(rse: str, source: str, _ledger: Ledger, policy: Any, **options: Any) -> Views:
        asked.update(rse=rse, source=source, policy=policy, **options)
        storage = [
            StoredFile("M1/a.raw.gz", 10, OLD),  # dark
            StoredFile("M1/b.raw.gz", 11, OLD),  # registered, another size
            StoredFile("M1/c.raw.gz", 12, NOW.timestamp()),  # new
            StoredFile("M1/d.raw.gz", 13, OLD),  # seen by the scanner
        ]
        replicas = [
            Replica("magic_raw", "b", "M1/b.raw.gz", 99, "0000abcd", "AVAILABLE"),
            Replica("magic_raw", "e", "M1/e.raw.gz", 5, "0000abcd", "AVAILABLE"),  # lost
        ]
        booked = [Booked("M1/d.raw.gz", None, None, FileState.SEEN, 13, None)]
        return Views(rse, rse == source, storage, replicas, booked)

    monkeypatch.setattr(stage, "read_views", read)
    counts = stage.count_classes(context(ledger), NOW)
    assert asked == {"rse": RSE, "source": RSE, "policy": (), "roots": ("M1",), "account": "magic_scanner"}
    assert {kind: n for kind, n in counts.items() if n} == {"dark": 1, "lost": 1, "size": 1, "new": 1}


def test_status_says_when_no_audit_was_taken_and_prints_it_in_json(ledger: Ledger, monkeypatch, capsys) -> None:
    census.record_audit(ledger, RSE, NOW, None, "OSError: storage gone")  # only a failed try so far
    assert "audit: none taken yet; the last try" in status.render(census.take(ledger, rucio=False))
    census.record_audit(ledger, RSE, NOW, {"dark": 0, "new": 0})
    assert "nothing out of place" in status.render(census.take(ledger, rucio=False))

    assert cli.main(["status", "--ledger-only", "--ledger-url", str(ledger.engine.url), "--json"]) == 0
    (source,) = json.loads(capsys.readouterr().out)["sources"]
    assert source["rse"] == RSE
    assert source["audit"]["counts"] == {"dark": 0, "new": 0} and source["audit"]["error"] is None
    assert source["audit"]["taken_at"] == NOW.isoformat()


def test_config_reads_audit_seconds(monkeypatch, tmp_path: Path) -> None:
    from rucio.common import config as rucio_config

    from rucio_magic_ext.scanner.config import load_config

    policy = Path(__file__).resolve().parents[2] / "etc" / "replication-policy.toml"
    options = {"rse": RSE, "replication_policy": str(policy), "audit_seconds": "0"}
    monkeypatch.setattr(rucio_config, "config_has_section", lambda section: True)

    def config_get(section, option, raise_exception=False, default=None, convert_type_fnc=str, **_):
        return convert_type_fnc(options[option]) if option in options else default

    monkeypatch.setattr(rucio_config, "config_get", config_get)
    assert load_config().audit == timedelta(0)
    del options["audit_seconds"]
    assert load_config().audit == timedelta(hours=1)
