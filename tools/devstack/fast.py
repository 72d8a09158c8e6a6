"""One pass of the stock daemons whose loop function waits for work partitioning first (necromancer 10 s,
judge 1 s): their own ``run_once`` under Rucio's ``run_daemon`` without the wait, for step-by-step tests.
Same code as the daemons run; only the start-up wait differs."""

from __future__ import annotations

import functools
import importlib
from typing import Any


def _pass(module: str, **state: Any) -> None:
    from rucio.daemons.common import run_daemon

    daemon = importlib.import_module(module)
    run_daemon(
        once=True,
        graceful_stop=daemon.graceful_stop,
        executable=daemon.DAEMON_NAME,
        partition_wait_time=0,
        sleep_time=1,
        run_once_fnc=functools.partial(daemon.run_once, **state),
    )


def judge_evaluator(once: bool = True) -> None:
    _pass("rucio.daemons.judge.evaluator", paused_dids={}, did_limit=100)


def judge_cleaner(once: bool = True) -> None:
    _pass("rucio.daemons.judge.cleaner", paused_rules={})


def judge_repairer(once: bool = True) -> None:
    _pass("rucio.daemons.judge.repairer", paused_rules={}, delta=-1)


def necromancer(once: bool = True) -> None:
    _pass("rucio.daemons.badreplicas.necromancer", bulk=100)


def reaper(once: bool = True, rses: str = "") -> None:
    """The reaper's own loop (no start-up wait with once), on a comma-separated list of RSEs (default: all)."""
    from rucio.daemons.reaper.reaper import reaper as stock_reaper

    stock_reaper(rses=[rse for rse in rses.split(",") if rse], include_rses=None, exclude_rses=None, once=True)


def submitter(once: bool = True, activities: str = "", **options: Any) -> None:
    """The submitter without its start-up wait, on a comma-separated list of activities (default: all)."""
    from rucio.daemons.conveyor.submitter import submitter as stock_submitter

    chosen = [activity for activity in activities.split(",") if activity] or None
    stock_submitter(once=True, partition_wait_time=0, activities=chosen, **options)
