"""The Grafana dashboard (etc/grafana/magic-flow.json) asked of a real Prometheus while a night flows.

Every query of every panel goes through Prometheus' HTTP API (``/api/v1/query``) with Grafana's variables
filled in as Grafana fills them: a template variable with its current value (``All`` is its ``allValue``,
otherwise the values its own query lists), ``$__interval`` and ``$__rate_interval`` from the scrape interval,
``$__range`` the time since the night began. The panels that show the census (files at the source,
registered, deleted, at risk, replicating, rules, at the destination) must show what the ledger and Rucio
hold; every other query must return data at least once, at a poll or in the range Grafana draws over the
night, unless it counts only trouble (errors, retries).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from rucio_magic_ext import census, monitoring
from rucio_magic_ext.ledger import FileState, Ledger
from tools.devstack.config import REPO
from tools.devstack.prometheus import PrometheusError, PrometheusServer

DASHBOARD = REPO / "etc" / "grafana" / "magic-flow.json"
METRIC = re.compile(r"\bmagic_[a-z0-9_]+\b")
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")
MAX_DATA_POINTS = 1000  # about a panel's width in pixels: Grafana's $__interval is the range over this
#: Metrics that a night without trouble leaves empty: queries on them alone may return nothing.
TROUBLE = {
    series
    for metric in (monitoring.FLOW_FAILURES, monitoring.STAGE_ERRORS, monitoring.ODD_ENTRIES, monitoring.OUTAGES,
                   monitoring.CARRIER_HELD, monitoring.CARRIER_ERRORS, monitoring.VERIFICATION_FAILURES,
                   monitoring.COPIES_UNREADABLE, monitoring.SOURCE_RULE_LOST, monitoring.AUDIT_FILES)
    for series in metric.series
}
REGISTERED = (FileState.REGISTERED, FileState.PROTECTED, FileState.REPLICATED, FileState.VERIFIED,
              FileState.RELEASED, FileState.DELETED)
Figures = dict[frozenset[tuple[str, str]], float]


def _by(label: str, values: dict[str, float]) -> Figures:
    return {frozenset({(label, key)}): float(value) for key, value in values.items()}


def _per_kind(taken: census.Census) -> dict[str, float]:
    kinds: dict[str, float] = {}
    for (kind, _state), count in taken.rules.items():
        kinds[kind] = kinds.get(kind, 0) + count
    return kinds


#: (panel title, legend) -> what the ledger and Rucio say that panel must show, from a census.
LEDGER: dict[tuple[str, str], Callable[[census.Census], Figures]] = {
    ("Files at the source RSE", "{{rse}}"): lambda c: _by("rse", {
        rse: c.count(rse).files - c.count(rse, states=[FileState.DELETED]).files for rse in c.rses}),
    ("Files registered in the catalogue", "registered {{rse}}"): lambda c: _by("rse", {
        rse: c.count(rse, states=REGISTERED).files for rse in c.rses}),
    ("Files registered in the catalogue", "deleted at the source {{rse}}"): lambda c: _by("rse", {
        rse: c.count(rse, states=[FileState.DELETED]).files for rse in c.rses}),
    ("Files only at the source", "{{rse}}"): lambda c: _by("rse", {rse: c.at_risk(rse).files for rse in c.rses}),
    ("Bytes only at the source", "{{rse}}"): lambda c: _by("rse", {rse: c.at_risk(rse).bytes for rse in c.rses}),
    ("Replication state", "{{state}}"): lambda c: _by("state", dict(c.locks)),
    ("Rules by kind", "{{kind}}"): lambda c: _by("kind", _per_kind(c)),
    ("Files at the destination", "{{rse}}"): lambda c: _by("rse", {r: n.files for r, n in c.replicas.items()}),
    ("Stuck rules", "stuck"): lambda c: {frozenset(): float(sum(n for (_, s), n in c.rules.items() if s == "STUCK"))},
}


@dataclass(frozen=True)
class Query:
    panel: str
    legend: str
    expr: str

    @property
    def trouble_only(self) -> bool:
        """Counts only trouble (errors, retries, stuck rules): zero, or nothing, in a good night."""
        return set(METRIC.findall(self.expr)) <= TROUBLE or '"STUCK"' in self.expr


@dataclass
class Answer:
    query: Query
    expr: str  # as sent, the variables filled in
    series: Figures = field(default_factory=dict)

    @property
    def has_data(self) -> bool:
        return any(not math.isnan(value) for value in self.series.values())


def load(path: Path = DASHBOARD) -> tuple[list[Query], list[dict[str, Any]]]:
    """Every panel's queries, and the dashboard's template variables."""
    dashboard = json.loads(path.read_text())
    queries = [
        Query(panel["title"], target.get("legendFormat", ""), target["expr"])
        for panel in dashboard["panels"] if panel["type"] != "row"
        for target in panel["targets"]
    ]
    return queries, dashboard["templating"]["list"]


def _duration(seconds: float) -> str:
    return f"{max(round(seconds * 1000), 1)}ms"


def _regex_escape(value: str) -> str:
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\\\1", value)


class Grafana:
    """Fills a query's variables as Grafana would for a panel showing ``range_seconds`` up to now."""

    def __init__(self, server: PrometheusServer, variables: list[dict[str, Any]]) -> None:
        self.server = server
        self.variables = variables

    def values(self, variable: dict[str, Any]) -> list[str]:
        """What a query variable lists (``label_values(metric, label)``)."""
        query = variable.get("query")
        query = query.get("query", "") if isinstance(query, dict) else query or ""
        found = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\)\s*", query)
        if not found:
            raise ValueError(f"variable {variable['name']}: cannot evaluate {query!r}")
        return self.server.label_values(found.group(2), found.group(1))

    def value(self, variable: dict[str, Any]) -> str:
        current = variable.get("current", {}).get("value")
        if variable.get("includeAll") and current in ("$__all", ["$__all"]) and variable.get("allValue"):
            return variable["allValue"]
        chosen = current if isinstance(current, list) else [current] if current else self.values(variable)
        return "(" + "|".join(_regex_escape(value) for value in chosen) + ")"

    def interval(self, range_seconds: float) -> float:
        """Grafana's ``$__interval``: the range over the points a panel draws, at least the scrape interval."""
        return max(range_seconds / MAX_DATA_POINTS, self.server.scrape_seconds)

    def fill(self, expr: str, range_seconds: float) -> str:
        scrape = self.server.scrape_seconds
        interval = self.interval(range_seconds)
        builtin = {
            "__interval": _duration(interval),
            "__interval_ms": str(round(interval * 1000)),
            "__rate_interval": _duration(max(interval + scrape, 4 * scrape)),
            "__range": f"{max(round(range_seconds), 1)}s",
            "__range_s": str(max(round(range_seconds), 1)),
            "__range_ms": str(max(round(range_seconds * 1000), 1)),
        }
        mine = {variable["name"]: variable for variable in self.variables if variable["type"] != "datasource"}

        def one(found: re.Match[str]) -> str:
            name = next(group for group in found.groups() if group)
            if name in builtin:
                return builtin[name]
            if name in mine:
                return self.value(mine[name])
            raise ValueError(f"{expr}: unknown variable ${name}")

        return VARIABLE.sub(one, expr)

    def ask(self, query: Query, range_seconds: float, at: float | None = None) -> Answer:
        expr = self.fill(query.expr, range_seconds)
        answer = Answer(query, expr)
        for series in self.server.query(expr, at):
            labels = frozenset((k, v) for k, v in series["metric"].items() if k not in ("__name__", "job", "instance"))
            answer.series[labels] = float(series["value"][1])
        return answer

    def peak(self, query: Query, start: float, end: float) -> float | None:
        """The largest value the panel draws from ``start`` to ``end`` (``/api/v1/query_range``, one point per
        ``$__interval``, as Grafana asks); None when it draws nothing."""
        expr = self.fill(query.expr, end - start)
        values = [float(value) for series in self.server.query_range(expr, start, end, self.interval(end - start))
                  for _, value in series["values"]]
        drawn = [value for value in values if not math.isnan(value)]
        return max(drawn) if drawn else None


class DashboardCheck:
    """The dashboard asked every ``every`` seconds during the night, then once more, checked, at its end."""

    def __init__(self, server: PrometheusServer, ledger: Ledger, console: Console | None = None,
                 every: float = 20.0, dashboard: Path = DASHBOARD) -> None:
        self.queries, variables = load(dashboard)
        self.grafana = Grafana(server, variables)
        self.ledger = ledger
        self.console = console or Console(width=120)
        self.every = every
        self.began = time.time()
        self.answered: set[Query] = set()  # queries that returned data at least once
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="dashboard", daemon=True)

    def start(self) -> DashboardCheck:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            try:
                answers = self.ask_all()
            except PrometheusError as error:
                self.console.print(f"[red]dashboard: {error}[/]")
                continue
            empty = sorted({a.query.panel for a in answers if not a.has_data})
            self.console.print(f"dashboard at {time.time() - self.began:4.0f} s: "
                               f"{sum(a.has_data for a in answers)}/{len(answers)} queries with data"
                               + (f"; none now: {', '.join(empty)}" if empty else ""))

    def ask_all(self, at: float | None = None) -> list[Answer]:
        answers = [self.grafana.ask(query, time.time() - self.began, at) for query in self.queries]
        self.answered.update(answer.query for answer in answers if answer.has_data)
        return answers

    def finish(self, settle: float = 60.0) -> bool:
        """Ask every query until the census panels agree with the ledger (at most ``settle`` seconds: a
        census and a scrape to wait for); print each panel's answer and what is wrong. True when all is well."""
        self.stop()
        deadline = time.monotonic() + settle
        while True:
            answers = self.ask_all()
            peaks = {q: self.grafana.peak(q, self.began, time.time()) for q in self.queries}
            expected = {(q.panel, q.legend): LEDGER[(q.panel, q.legend)](census.take(self.ledger, errors=False))
                        for q in self.queries if (q.panel, q.legend) in LEDGER}
            problems = self.problems(answers, peaks, expected)
            if not problems or time.monotonic() > deadline:
                break
            time.sleep(self.grafana.server.scrape_seconds)
        self.report(answers, peaks, expected)
        for problem in problems:
            self.console.print(f"[red]dashboard: {problem}[/]")
        if not problems:
            self.console.print(f"dashboard: every panel answered on Prometheus {self.grafana.server.url}; "
                               "the census panels agree with the ledger")
        return not problems

    def problems(self, answers: list[Answer], peaks: dict[Query, float | None],
                 expected: dict[tuple[str, str], Figures]) -> list[str]:
        found = []
        for variable in self.grafana.variables:
            if variable["type"] == "query" and not self.grafana.values(variable):
                found.append(f"variable ${variable['name']} lists nothing")
        for answer in answers:
            query = answer.query
            # A panel draws the range, not the polls: a histogram's increase over a few seconds of scrapes can
            # fall between two polls and still be drawn, so the range query counts as an answer too.
            drawn = query in self.answered or peaks[query] is not None
            if not query.trouble_only and not drawn:
                found.append(f"{query.panel} / {query.legend}: no data now or during the night ({answer.expr})")
            elif not query.trouble_only and not peaks[query]:
                found.append(f"{query.panel} / {query.legend}: draws nothing but 0 over the night ({answer.expr})")
            want = expected.get((query.panel, query.legend))
            if want is not None and _nonzero(answer.series) != _nonzero(want):
                found.append(f"{query.panel} / {query.legend}: Prometheus {_show(answer.series)}, ledger {_show(want)}")
        return found

    def report(self, answers: list[Answer], peaks: dict[Query, float | None],
               expected: dict[tuple[str, str], Figures]) -> None:
        table = Table(title=f"the dashboard on Prometheus ({self.grafana.server.url}), by panel")
        for column in ("panel", "legend", "now: series and values", "ledger", "night's peak"):
            table.add_column(column)
        for answer in answers:
            want = expected.get((answer.query.panel, answer.query.legend))
            shown = _show(answer.series) if answer.series else (
                "none (data earlier)" if answer.query in self.answered else "none")
            peak = peaks[answer.query]
            table.add_row(answer.query.panel, answer.query.legend, shown, "" if want is None else _show(want),
                          "none" if peak is None else f"{peak:g}")
        self.console.print(table)


def _nonzero(figures: Figures) -> Figures:
    """A label set at 0 and one never published show the same: a state emptied out, or never reached."""
    return {labels: value for labels, value in figures.items() if value}


def _show(figures: Figures) -> str:
    if not figures:
        return "none"
    parts = []
    for labels, value in sorted(figures.items(), key=lambda item: sorted(item[0])):
        name = ",".join(v for _, v in sorted(labels)) or "-"
        parts.append(f"{name}: {value:g}")
    return "; ".join(parts)


def metrics_check(stack: Any, ledger: Ledger, console: Console) -> DashboardCheck:
    """The demo's hook: the stack's Prometheus (started with it) asked while the night flows."""
    server = stack.prometheus()
    console.print(f"Prometheus at {server.url} scrapes {len(server.targets)} daemons every "
                  f"{server.scrape_seconds:g} s ({server.config_file}); the dashboard is asked every 20 s")
    return DashboardCheck(server, ledger, console).start()
