"""Fixtures for integration tests: a real Rucio stack (PostgreSQL, REST server, daemons) per test run.

    @pytest.mark.integration
    def test_something(rucio_stack, rucio_client, run_daemon_once):
        rucio_client.add_rule(...)
        run_daemon_once("judge-evaluator")
        run_daemon_once("conveyor-submitter")          # one pass, without the 10 s partition wait

``rucio_stack`` (tests/conftest.py) is a ``tools.devstack.stack.Stack`` started on a fresh PostgreSQL database with
the REST server only: daemons run when a test asks, so every step is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.scenery import flow_steps
from tools.devstack.stack import Stack
from tools.devstack.waiting import in_rounds


@pytest.fixture(scope="session")
def rucio_client(rucio_stack: Stack) -> Any:
    """A Rucio client logged in as root through the stack's REST server."""
    from rucio.client import Client

    return Client()


@pytest.fixture
def run_daemon_once(rucio_stack: Stack) -> Callable[..., None]:
    """``run_daemon_once(name, *args)``: one pass of a stack daemon, to completion; fails the test if it fails."""

    def run(name: str, *args: str) -> None:
        rucio_stack.run_once(name, *args)

    return run


FLOW = flow_steps()


@pytest.fixture
def flow(rucio_stack: Stack) -> Callable[..., None]:
    """``flow(done, without=(), rounds=12)``: rounds of every daemon of the MAGIC flow (the reaper at the
    observatory last) until ``done()`` holds; fails the test when it never does."""

    def run(done: Callable[[], bool], without: tuple[str, ...] = (), rounds: int = 12) -> None:
        steps = [step for step in FLOW if (step if isinstance(step, str) else step[0]) not in without]
        if in_rounds(lambda: rucio_stack.run_round(*steps), done, rounds) is None:
            pytest.fail(f"the flow did not get there in {rounds} rounds", pytrace=False)

    return run
