"""The benchmarks' pure parts: figure lines, ratios against baselines, targets, the choice of benchmarks."""

from __future__ import annotations

import json
import math

import pytest

from tools.bench.benchstack import default_sleep
from tools.bench.report import Figure, Target, write_json
from tools.bench.runner import chosen
from tools.devstack.daemons import Daemon


def test_ratio_is_value_over_baseline() -> None:
    figure = Figure("registration.files_per_s", 700.0, "files/s", baseline=7.0)
    assert figure.ratio == pytest.approx(100.0)


def test_no_ratio_without_a_usable_baseline() -> None:
    assert Figure("x", 1.0, "s").ratio is None
    assert Figure("x", 1.0, "s", baseline=0.0).ratio is None
    assert Figure("x", 1.0, "s", baseline=math.nan).ratio is None


def test_target_on_the_ratio() -> None:
    target = Target(50, ">=", on_ratio=True)
    assert Figure("r", 400.0, "files/s", baseline=7.0, target=target).met is True
    assert Figure("r", 300.0, "files/s", baseline=7.0, target=target).met is False
    assert Figure("r", 300.0, "files/s", target=target).met is False  # no baseline: cannot be met


def test_target_on_the_value() -> None:
    assert Figure("t", 2.5, "s", target=Target(3.0, "<=")).met is True
    assert Figure("t", 3.5, "s", target=Target(3.0, "<=")).met is False
    assert Figure("t", math.nan, "s", target=Target(3.0, "<=")).met is False
    assert Figure("t", 1.0, "s").met is None


def test_a_target_compares_with_ge_or_le_only() -> None:
    with pytest.raises(ValueError):
        Target(1.0, "<")


def test_line_has_value_baseline_ratio_and_target() -> None:
    figure = Figure(
        "registration.files_per_s",
        412.3,
        "files/s",
        baseline=7.1,
        baseline_name="prototype-2020",
        target=Target(50, ">=", on_ratio=True),
        detail="5000 files",
    )
    line = figure.line()
    assert "\n" not in line
    assert line.startswith("registration.files_per_s")
    expected = ("412 files/s", "prototype-2020 7.10 files/s", "ratio 58.1", "target ratio >= 50", ": met")
    for part in (*expected, "(5000 files)"):
        assert part in line


def test_line_says_when_a_target_is_missed() -> None:
    line = Figure("incremental.cycle_time[K=100000]", 4.2, "s", target=Target(3.0, "<=")).line()
    assert "target value <= 3.00 s: NOT met" in line
    assert "ratio" not in line


def test_json_has_every_figure_with_ratio_and_verdict(tmp_path) -> None:
    path = tmp_path / "out" / "results.json"
    write_json(path, [Figure("a", 10.0, "MB/s", baseline=20.0, target=Target(0.8, ">=", on_ratio=True))], {"quick": 1})
    data = json.loads(path.read_text())
    assert data["quick"] == 1
    (figure,) = data["figures"]
    assert figure["ratio"] == 0.5 and figure["met"] is False and figure["target"]["bound"] == 0.8


def test_default_sleep_drops_only_the_sleep_time() -> None:
    daemon = Daemon("conveyor-poller", ("{bin}/poller", "--sleep-time", "5", "--older-than", "0"))
    assert default_sleep(daemon).argv == ("{bin}/poller", "--older-than", "0")


def test_only_chooses_benchmarks_in_the_runners_order() -> None:
    assert chosen(None) == ["registration", "incremental", "checksum", "latency", "xrootd"]
    assert chosen("latency, registration") == ["registration", "latency"]
    with pytest.raises(SystemExit):
        chosen("registration,nope")
