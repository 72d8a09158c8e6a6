"""The Grafana dashboard asks only for metrics the code defines, and shows what an operator must see."""

import json
import re
from pathlib import Path

import pytest

from rucio_magic_ext import monitoring

DASHBOARD = Path(__file__).resolve().parents[2] / "etc" / "grafana" / "magic-flow.json"
METRIC = re.compile(r"\bmagic_[a-z0-9_]+\b")
LABELS = re.compile(r"\b([a-z_]+)\s*(?:=~|!=|!~|=)\s*\"")
PROTOTYPE = (
    "Files at the source RSE",
    "Files registered in the catalogue",
    "Replication state",
    "Rules by kind",
    "Files at the destination",
)


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def queries(dashboard: dict) -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def test_every_query_names_a_metric_the_code_defines(dashboard: dict) -> None:
    defined = {series: metric for metric in monitoring.DEFINED for series in metric.series}
    used = set()
    for title, expr in queries(dashboard):
        names = METRIC.findall(expr)
        assert names, f"{title}: {expr} names no MAGIC metric"
        unknown = set(names) - set(defined)
        assert not unknown, f"{title}: {sorted(unknown)} not defined in rucio_magic_ext/monitoring.py"
        labels = {label for name in names for label in defined[name].labels} | {"le"}
        filtered = set(LABELS.findall(expr))
        assert filtered <= labels, f"{title}: filters on {sorted(filtered - labels)}, which {names} do not carry"
        used.update(defined[name].name for name in names)
    at_risk = {monitoring.RISK_FILES, monitoring.RISK_BYTES, monitoring.RISK_OLDEST, monitoring.SEEN_TO_VERIFIED}
    assert {metric.name for metric in at_risk} <= used


def test_the_prototype_panels_and_the_risk_panels_are_there(dashboard: dict) -> None:
    titles = [panel["title"] for panel in dashboard["panels"]]
    assert set(PROTOTYPE) <= set(titles)
    assert {"Files only at the source", "Bytes only at the source", "Oldest file not yet safe"} <= set(titles)
    assert len(titles) == len(set(titles))


def test_panels_fit_the_grid_and_use_the_chosen_prometheus(dashboard: dict) -> None:
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert {"datasource", "source"} <= variables
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert all(target["datasource"]["uid"] == "${datasource}" for target in panel["targets"])
