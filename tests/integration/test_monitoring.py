"""Monitoring on the real stack: the daemons' metrics agree with the ledger and with Rucio, and ``status``
shows what an operator must see (a stuck rule)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from scenery import ORM, assert_all_in, dids_of, ledger, placement, rows_of, unavailable, write_observed_night
from sqlalchemy import func, select

from rucio_magic_ext import census, cli, layout
from rucio_magic_ext.common import utcnow
from rucio_magic_ext.ledger import FileState
from rucio_magic_ext.ledger.models import LedgerFile
from rucio_magic_ext.ledger.states import FLOW, UNSAFE, timestamp_column

pytestmark = pytest.mark.integration


def scraped(directory: Path) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """What Prometheus would scrape from every daemon process that wrote to ``directory``."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for metric in registry.collect():
        for sample in metric.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            samples[key] = samples.get(key, 0) + sample.value
    return samples


def entered_since(state: FileState, since: Any) -> tuple[int, int]:
    """Files of the observatory, and their bytes, that entered ``state`` since ``since``, by the ledger."""
    column = getattr(LedgerFile, timestamp_column(state))
    query = select(func.count(), func.coalesce(func.sum(LedgerFile.size), 0)).where(
        LedgerFile.rse == ORM, column >= since
    )
    with ledger().session() as session:
        count, size = session.execute(query).one()
    return int(count), int(size)


def test_the_daemons_counters_agree_with_the_ledger(
    rucio_stack: Any, flow: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics = tmp_path / "prometheus"
    metrics.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics))  # every daemon process writes its metrics here
    since = utcnow() - timedelta(milliseconds=1)
    plan = write_observed_night(rucio_stack, date(2020, 5, 1), seed=51)
    flow(lambda: len(rows_of(plan)) == len(plan) and all(r.state is FileState.DELETED for r in rows_of(plan).values()))

    samples = scraped(metrics)

    def value(name: str, **labels: str) -> float:
        return samples.get((name, frozenset(labels.items())), 0.0)

    for state in FLOW:
        files, size = entered_since(state, since)
        assert files >= len(plan), state
        assert value("magic_flow_files_total", rse=ORM, state=state.value) == files, state
        assert value("magic_flow_bytes_total", rse=ORM, state=state.value) == size, state
    verified, _ = entered_since(FileState.VERIFIED, since)
    assert value("magic_flow_seen_to_verified_count", rse=ORM) == verified
    assert value("magic_flow_seen_to_verified_sum", rse=ORM) > 0
    assert value("magic_carrier_files_released_total") == entered_since(FileState.RELEASED, since)[0]
    assert value("magic_scanner_files_total", stage="register") == entered_since(FileState.REGISTERED, since)[0]
    gauges = {name for name, _ in samples}
    assert {"magic_risk_files", "magic_risk_oldest_seconds", "magic_rules", "magic_replicas_files"} <= gauges


def test_the_census_gauges_agree_with_the_ledger_and_with_rucio(rucio_stack: Any, rucio_client: Any) -> None:
    taken = census.take(ledger())
    census.publish(taken)

    def gauge(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    with ledger().session() as session:
        rows = session.execute(
            select(LedgerFile.state, func.count(), func.coalesce(func.sum(LedgerFile.size), 0))
            .where(LedgerFile.rse == ORM)
            .group_by(LedgerFile.state)
        ).all()
    by_state = {state: (count, int(size)) for state, count, size in rows}
    assert by_state.get(FileState.DELETED, (0, 0))[0] > 0
    for state in FileState:
        count, size = by_state.get(state, (0, 0))
        assert gauge("magic_source_files", rse=ORM, state=state.value) == count, state
        assert gauge("magic_source_bytes", rse=ORM, state=state.value) == size, state
    assert gauge("magic_risk_files", rse=ORM) == sum(by_state.get(s, (0, 0))[0] for s in UNSAFE)

    rules: Counter[tuple[str, str]] = Counter()
    for scope in census.MAGIC_SCOPES:
        for rule in rucio_client.list_replication_rules({"scope": scope}):
            kind = census.CARRIER_KIND if scope == census.CARRIER_SCOPE else rule["did_type"]
            rules[(kind, rule["state"])] += 1
    assert rules
    for (kind, state), count in rules.items():
        assert gauge("magic_rules", kind=kind, state=state) == count, (kind, state)

    available: Counter[str] = Counter()
    for scope in layout.SCOPES:
        names = [{"scope": scope, "name": name} for name in rucio_client.list_dids(scope, {}, did_type="file")]
        for start in range(0, len(names), 500):
            for replica in rucio_client.list_replicas(names[start : start + 500], all_states=True):
                available.update(rse for rse, state in replica["states"].items() if state == "AVAILABLE")
    assert available["PIC-DISK"] > 0
    for rse, count in available.items():
        assert gauge("magic_replicas_files", rse=rse) == count, rse


def test_status_shows_a_stuck_rule_and_what_waits_behind_it(
    rucio_stack: Any, rucio_client: Any, flow: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    night = date(2020, 5, 2)
    plan = write_observed_night(rucio_stack, night, seed=52)
    rucio_stack.run_once("magic-scanner")
    assert_all_in(plan, FileState.PROTECTED)
    datasets = {f"{placement(p).scope}:{placement(p).dataset}" for p in plan}

    def stuck() -> set[str]:
        return {rule.did for rule in census.take(ledger()).stuck} & datasets

    # No transfer can find a source: Rucio gives up and the rules get stuck.
    with unavailable(rucio_client, ORM, "read"):
        flow(lambda: bool(stuck()), without=("magic-carrier", "reaper"), rounds=6)
        assert cli.main(["status"]) == 0
        screen = capsys.readouterr().out
        assert "stuck rules" in screen
        assert any(did in screen for did in stuck())
        assert f"{ORM}:" in screen and str(night) in screen
        assert cli.main(["status", "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert {rule["did"] for rule in data["rucio"]["stuck_rules"]} & datasets
        (source,) = [s for s in data["sources"] if s["rse"] == ORM]
        waiting = next(n for n in source["nights"] if n["night"] == str(night))
        assert waiting["states"]["PROTECTED"]["files"] == len(plan)
        assert waiting["waiting_bytes"] == sum(p.size for p in plan)
        assert all((rucio_stack.settings.storage_dir / "orm-onsite" / p.path).exists() for p in plan)
    # Readable again. Rucio's repairer retries a stuck lock two hours after its last attempt (on a rule's first
    # day): those two hours pass here at once, and then the night leaves La Palma as usual.
    two_hours_pass(dids_of(plan))
    flow(lambda: all(r.state is FileState.DELETED for r in rows_of(plan).values()))
    assert not stuck()


def two_hours_pass(dids: list[dict[str, str]]) -> None:
    from rucio.common.types import InternalScope
    from rucio.db.sqla import models
    from rucio.db.sqla.constants import DatabaseOperationType
    from rucio.db.sqla.session import db_session
    from sqlalchemy import tuple_, update

    keys = [(InternalScope(did["scope"]), did["name"]) for did in dids]
    locks = models.ReplicaLock
    with db_session(DatabaseOperationType.WRITE) as session:
        session.execute(
            update(locks)
            .where(tuple_(locks.scope, locks.name).in_(keys))
            .values(updated_at=locks.updated_at - timedelta(hours=3))
            .execution_options(synchronize_session=False)
        )
