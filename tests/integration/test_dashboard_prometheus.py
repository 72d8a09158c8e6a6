"""The Grafana dashboard on a real Prometheus: the flow's daemons run looping, each serving Rucio's metrics on a
port of its own, a Prometheus scrapes them every second while a small night travels, and every query of
etc/grafana/magic-flow.json must draw something, its census panels what the ledger and Rucio hold."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from rich.console import Console
from scenery import flow_steps, ledger, rows_of, states_of, write_observed_night

from rucio_magic_ext.ledger import FileState
from tools.demo.metrics import DashboardCheck
from tools.devstack import prometheus
from tools.devstack.waiting import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(prometheus.missing() is not None, reason=str(prometheus.missing())),
]

#: The daemons a night without trouble needs (no necromancer, repairer or cleaner): fewer processes, fewer
#: database connections.
DAEMONS = [name for name in (step if isinstance(step, str) else step[0] for step in flow_steps())
           if name not in ("necromancer", "judge-repairer", "judge-cleaner")]


@pytest.fixture
def scraped(rucio_stack: Any) -> Iterator[prometheus.PrometheusServer]:
    """The flow's daemons looping with metrics, and a Prometheus of their own; both stopped afterwards, so the
    other tests go on step by step."""
    server = None
    try:
        rucio_stack.start_daemons(DAEMONS, metrics=True)
        targets = {name: port for name, port in rucio_stack.metrics_targets().items() if name in DAEMONS}
        server = rucio_stack.prometheus(scrape_seconds=1, targets=targets)
        server.start()
        yield server
    finally:
        rucio_stack.stop_daemons(DAEMONS)
        if server is not None:
            server.stop()


def test_every_panel_draws_and_the_census_panels_agree_with_the_ledger(
    rucio_stack: Any, scraped: prometheus.PrometheusServer
) -> None:
    check = DashboardCheck(scraped, ledger(), Console(width=160), every=5).start()
    try:
        plan = write_observed_night(rucio_stack, date(2020, 5, 9), seed=59)
        wait_until(lambda: all_deleted(plan), 300, lambda: f"the night did not reach DELETED: {states_of(plan)}", 2)
    finally:
        check.stop()
    assert check.finish(), "the dashboard does not show the night: see the panels printed above"


def all_deleted(plan: list[Any]) -> bool:
    rows = rows_of(plan)
    return len(rows) == len(plan) and all(row.state is FileState.DELETED for row in rows.values())
