"""The benchmarks' pure parts: figure lines, ratios against baselines, targets, the choice of benchmarks, and the
chain's process accounting and figures."""

from __future__ import annotations

import json
import math

import pytest

from tools.bench.benchstack import production_sleep
from tools.bench.chain import FULL
from tools.bench.chain import night as chain_night
from tools.bench.chain import setup as chain_setup
from tools.bench.chain_figures import ChainRun, Cost, PlainCopy, StockRun, cost, rate, stock_cpu
from tools.bench.chain_figures import figures as chain_figures
from tools.bench.procstat import Proc, Track, Usage, parse_stat, parse_status, quiet, tree, usage
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


def test_production_sleep_drops_the_dev_stacks_sleep_time() -> None:
    daemon = Daemon("conveyor-poller", ("{bin}/poller", "--sleep-time", "5", "--older-than", "0"))
    assert production_sleep(daemon).argv == ("{bin}/poller", "--older-than", "0")


def test_production_sleep_is_the_helm_charts_where_it_sets_one() -> None:
    daemon = Daemon("conveyor-submitter", ("{bin}/submitter", "--sleep-time", "5"))
    assert production_sleep(daemon).argv == ("{bin}/submitter", "--sleep-time", "10")
    reaper = Daemon("reaper", ("{bin}/rucio-reaper", "--sleep-time", "5"))
    assert production_sleep(reaper).argv == ("{bin}/rucio-reaper", "--threads", "4")


def test_only_chooses_benchmarks_in_the_runners_order() -> None:
    assert chosen(None) == ["registration", "incremental", "checksum", "latency", "xrootd"]
    assert chosen("latency, registration") == ["registration", "latency"]
    with pytest.raises(SystemExit):
        chosen("registration,nope")


# -- chain: process accounting, rates, figures --------------------------------------------------------------

STAT = "4242 (rucio-magic (x)) S 1 4242 4242 0 -1 4194560 10 0 0 0 250 50 30 20 20 0 3 0 100 0 0"


def test_stat_is_read_after_the_name_even_with_parentheses_in_it() -> None:
    proc = parse_stat(4242, STAT, ticks=100)
    assert (proc.ppid, proc.pgid) == (1, 4242)
    assert proc.cpu == pytest.approx(3.0) and proc.children_cpu == pytest.approx(0.5)


def test_status_gives_resident_and_peak_memory_and_zero_for_a_zombie() -> None:
    assert parse_status("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n") == (1024, 2048)
    assert parse_status("Name:\tx\nState:\tZ (zombie)\n") == (0, 0)


def _proc(pid: int, ppid: int, pgid: int, cpu: float, children: float = 0.0, rss: int = 0, hwm: int = 0) -> Proc:
    return Proc(pid, ppid, pgid, cpu, children, rss, hwm)


def test_a_daemons_tree_is_its_group_and_every_descendant_in_other_sessions() -> None:
    procs = {
        10: _proc(10, 1, 10, 5.0, children=2.0, rss=100, hwm=150),  # the submitter, two copiers reaped
        11: _proc(11, 10, 10, 1.0, rss=10),  # same group
        20: _proc(20, 10, 20, 0.5, rss=40),  # a copier in a session of its own
        21: _proc(21, 20, 20, 0.25),  # whatever it started
        30: _proc(30, 1, 30, 9.0, rss=999),  # another daemon
    }
    assert [one.pid for one in tree(10, procs)] == [10, 11, 20, 21]
    used = usage(10, procs)
    assert used is not None
    assert used.cpu == pytest.approx(5.0 + 2.0 + 1.0 + 0.5 + 0.25)
    assert (used.leader_cpu, used.rss_kb, used.leader_hwm_kb, used.processes) == (5.0, 150, 150, 4)
    assert usage(99, procs) is None


def test_quiet_once_cpu_stands_still_between_samples() -> None:
    def at(cpu: float) -> dict[str, Usage | None]:
        return {"magic-scanner": Usage(cpu, cpu, 0, 0, 1)}

    assert quiet([at(3.0), at(3.02), at(3.04)]) is True
    assert quiet([at(1.0), at(2.5), at(2.5)]) is False
    assert quiet([at(1.0), {"magic-scanner": None}]) is False
    assert quiet([]) is False


def test_cost_counts_from_the_mark_and_keeps_the_start_up_apart() -> None:
    track = Track()
    track.add(Usage(cpu=4.0, leader_cpu=4.0, rss_kb=90_000, leader_hwm_kb=90_000, processes=1))
    track.mark = Usage(cpu=5.0, leader_cpu=5.0, rss_kb=100_000, leader_hwm_kb=100_000, processes=1)
    track.add(Usage(cpu=30.0, leader_cpu=20.0, rss_kb=300_000, leader_hwm_kb=180_000, processes=4))
    track.add(Usage(cpu=35.0, leader_cpu=23.0, rss_kb=150_000, leader_hwm_kb=190_000, processes=1))
    found = cost(track)
    assert found is not None
    assert found.cpu == pytest.approx(30.0) and found.startup_cpu == pytest.approx(5.0)
    assert found.children_cpu == pytest.approx(12.0)  # 30 in all, 18 of it the leader's own
    assert found.peak_rss_mb == pytest.approx(300.0)  # the sampled tree's peak beats the leader's own
    assert cost(Track()) is None


def _chain_run(**changes: object) -> ChainRun:
    values: dict[str, object] = {
        "files": 2000,
        "bytes": 1_000_000_000,
        "deleted": 2000,
        "seconds": 500.0,
        "milestones": {"registered": 90.0, "copied": 400.0, "deleted": 500.0},
        "costs": {"magic-scanner": Cost(cpu=40.0, startup_cpu=4.0, peak_rss_mb=180.0)},
        "setup": "night written at once",
        "load": (1.5, 2.5),
    }
    values.update(changes)
    return ChainRun(**values)  # type: ignore[arg-type]


def test_chain_rates_are_over_the_whole_span_beside_the_copy_and_stock_rucio() -> None:
    copy = PlainCopy(files=2000, bytes=1_000_000_000, seconds=2.0)
    costs = {"conveyor-submitter": Cost(cpu=50.0, startup_cpu=1.0, peak_rss_mb=200.0)}
    stock_run = StockRun(files=2000, replicated=2000, rules=150, seconds=250.0, costs=costs, load=(1.0, 2.0))
    mine = {"magic-scanner": Cost(40.0, 4.0, 180.0), "conveyor-submitter": Cost(60.0, 5.0, 220.0, 45.0)}
    found = {figure.name: figure for figure in chain_figures(_chain_run(costs=mine), copy, stock_run)}
    bytes_per_s = found["chain.bytes_per_s"]
    assert bytes_per_s.value == pytest.approx(2.0) and bytes_per_s.baseline == pytest.approx(500.0)
    assert bytes_per_s.ratio == pytest.approx(0.004) and bytes_per_s.met is False
    assert "4.00 files/s" in bytes_per_s.detail and "1000 files/s" in bytes_per_s.detail
    files_per_s = found["chain.files_per_s"]
    assert files_per_s.value == pytest.approx(4.0) and files_per_s.baseline == pytest.approx(8.0)
    assert files_per_s.ratio == pytest.approx(0.5) and files_per_s.met is False
    assert "load 1.5 -> 2.5" in files_per_s.line() and "stock Rucio load 1.0 -> 2.0" in files_per_s.line()
    assert "registered +90 s, copied +400 s, deleted +500 s" in found["chain.span"].detail
    scanner = found["chain.cpu_per_1000_files[magic-scanner]"]
    assert scanner.value == pytest.approx(20.0) and scanner.baseline is None
    submitter = found["chain.cpu_per_1000_files[conveyor-submitter]"]
    # stock's 51 s with its start-up, less the chain's start-up of the same daemon: 46 s for 2000 files
    assert submitter.value == pytest.approx(30.0) and submitter.baseline == pytest.approx(23.0)
    assert found["chain.peak_rss[conveyor-submitter]"].ratio == pytest.approx(1.1)
    assert "chain.cpu_per_1000_files[magic-carrier]" not in found  # never seen: no figure


def test_an_unfinished_chain_counts_what_left_and_says_so() -> None:
    chain = _chain_run(deleted=1000, seconds=1000.0)
    found = {f.name: f for f in chain_figures(chain, PlainCopy(2000, 1_000_000_000, 2.0), None)}
    assert found["chain.files_per_s"].value == pytest.approx(1.0)
    assert found["chain.files_per_s"].ratio is None and found["chain.files_per_s"].met is False
    assert found["chain.bytes_per_s"].value == pytest.approx(0.5)
    assert "INCOMPLETE: 1000 of 2000" in found["chain.bytes_per_s"].detail
    assert math.isnan(rate(5, 0.0))


def test_each_byte_read_once_at_the_observatory_meets_the_target_and_a_second_read_does_not() -> None:
    copy = PlainCopy(2000, 1_000_000_000, 2.0)
    once = {f.name: f for f in chain_figures(_chain_run(source_reads=(2000, 1_000_000_000)), copy, None)}
    assert once["chain.source_reads"].ratio == pytest.approx(1.0) and once["chain.source_reads"].met is True
    assert "2000 transfers read at the observatory" in once["chain.source_reads"].detail
    twice = {f.name: f for f in chain_figures(_chain_run(source_reads=(2100, 1_050_000_000)), copy, None)}
    assert twice["chain.source_reads"].ratio == pytest.approx(1.05) and twice["chain.source_reads"].met is False
    assert "chain.source_reads" not in {f.name for f in chain_figures(_chain_run(), copy, None)}  # not counted


def test_the_copying_alone_is_set_beside_stock_rucio_and_the_rest_of_the_span_said() -> None:
    stock_run = StockRun(files=2000, replicated=2000, rules=150, seconds=250.0)
    copy = PlainCopy(2000, 1_000_000_000, 2.0)
    found = {f.name: f for f in chain_figures(_chain_run(copy_started=100.0), copy, stock_run)}
    copying = found["chain.copying_files_per_s"]
    assert copying.value == pytest.approx(2000 / 300) and copying.ratio == pytest.approx(2000 / 300 / 8.0)
    assert copying.target is None  # a part of the span, not a promise of its own
    assert "+100 s -> last copy done +400 s: 300 s of copying; before it 100 s, after it 100 s" in copying.detail
    assert "chain.copying_files_per_s" not in {f.name for f in chain_figures(_chain_run(), copy, stock_run)}


def test_stock_cpu_never_goes_below_zero() -> None:
    assert stock_cpu(Cost(1.0, 10.0, 1.0), Cost(5.0, 0.5, 1.0)) == 0.0


def test_chain_is_run_only_when_named_and_its_options_apply() -> None:
    assert "chain" not in chosen(None)
    assert chosen("chain") == ["chain"]
    trickled = chain_setup(FULL, scale=1e-4, trickle=2.0)
    assert (trickled.scale, trickled.trickle, trickled.files) == (1e-4, 2.0, 2763)
    assert trickled.timeout == FULL.timeout + 2.0 * 2763
    assert chain_setup(FULL) == FULL
    with pytest.raises(ValueError):
        chain_setup(FULL, scale=0)
    real = chain_setup(FULL, scale=1.0, files=6)
    assert (real.scale, real.files) == (1.0, 6)
    assert sum(planned.size for planned in chain_night(real)) == pytest.approx(3.33e9, rel=0.01)  # a few GB
    for files in (0, 2764):
        with pytest.raises(ValueError):
            chain_setup(FULL, files=files)


# -- registration: the bulk REST baseline and the figures against both baselines ------------------------------


def _placed(path: str):  # type: ignore[no-untyped-def]
    from rucio_magic_ext.naming import Level, Telescope
    from rucio_magic_ext.replication import ReplicationPolicy, RuleSpec
    from tools.bench.bulk_rest import place

    spec = RuleSpec("raw-to-pic", frozenset({Level.RAW}), frozenset(Telescope), "PIC-DISK")
    return place(path, ReplicationPolicy((spec,)))


RAW_FOLDER = "M1/DAQ/RAW/2020_01_03"


def test_bulk_rest_places_files_as_the_scanner_does() -> None:
    from rucio_magic_ext import layout
    from rucio_magic_ext.metadata import file_metadata
    from rucio_magic_ext.naming import parse

    name = "20200103_M1_05086952.001_D_CrabNebula-W0.40+035.raw.gz"
    placed = _placed(f"{RAW_FOLDER}/{name}")
    expected = layout.placement(parse(name))
    assert (placed.scope, placed.dataset, placed.containers) == (expected.scope, expected.dataset, expected.containers)
    assert placed.metadata == file_metadata(parse(name)) and [r.name for r in placed.rules] == ["raw-to-pic"]


def test_bulk_rest_attaches_each_parent_once_and_makes_one_rule_per_dataset() -> None:
    from tools.bench.bulk_rest import attachments, collections, rule_calls

    names = [f"20200103_M1_0508695{run}.00{sub}_D_CrabNebula-W0.40+035.raw.gz" for run in (2, 3) for sub in (1, 2)]
    files = [_placed(f"{RAW_FOLDER}/{name}") for name in names]
    kinds, tops = collections(files)
    assert sorted(kinds.values()) == ["CONTAINER", "CONTAINER", "DATASET", "DATASET"]
    assert tops == {(files[0].scope, files[0].containers[-1])}
    parents = {(a["scope"], a["name"]): [d["name"] for d in a["dids"]] for a in attachments(files)}
    assert len(parents) == 4  # two run datasets, the night container, the top container
    assert parents[(files[0].scope, files[0].dataset)] == names[:2]
    assert parents[(files[0].scope, files[0].containers[0])] == [files[0].dataset, files[2].dataset]
    ((spec, dids),) = rule_calls(files)
    assert spec.name == "raw-to-pic" and [d["name"] for d in dids] == [files[0].dataset, files[2].dataset]


def test_registration_targets_hold_without_memcached_only() -> None:
    from tools.bench.registration import figures

    cycle = {"seconds": 10.0}
    proto = {"files": 300, "seconds": 30.0, "rest_calls": 2000}
    bulk = {"files": 5000, "seconds": 100.0, "rest_calls": 12}
    plain = figures(5000, 5000, cycle, proto, bulk, cached=False)
    assert [f.name for f in plain] == ["registration.files_per_s", "registration.files_per_s[bulk-rest]"]
    assert [f.ratio for f in plain] == [pytest.approx(50.0), pytest.approx(10.0)]
    assert [f.met for f in plain] == [True, True]
    cached = figures(5000, 5000, cycle, proto, bulk, cached=True)
    names = ["registration.files_per_s[memcached]", "registration.files_per_s[memcached,bulk-rest]"]
    assert [f.name for f in cached] == names
    assert [f.target for f in cached] == [None, None] and "memcached" in cached[0].line()
