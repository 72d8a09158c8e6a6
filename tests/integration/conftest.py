"""Fixtures for integration tests: a real Rucio stack (PostgreSQL, REST server, daemons) per test run.

    @pytest.mark.integration
    def test_something(rucio_stack, rucio_client, run_daemon_once):
        rucio_client.add_rule(...)
        run_daemon_once("judge-evaluator")
        run_daemon_once("conveyor-submitter")          # one pass, without the 10 s partition wait

``rucio_stack`` is a ``devstack.stack.Stack`` started on a fresh PostgreSQL database with the REST server
only: daemons run when a test asks, so every step is deterministic. Its database is dropped at the end.
"""

from __future__ import annotations

import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from devstack import database
from devstack.stack import Stack


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def rucio_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A running stack on its own PostgreSQL database; stopped and dropped at the end, even on failure."""
    stack = Stack(tmp_path_factory.mktemp("devstack"), db="postgresql", port=_free_port(),
                  pg_database=f"rucio_magic_test_{uuid.uuid4().hex[:10]}")
    try:
        database.check_postgresql(stack.settings)
    except database.DatabaseUnavailable as error:
        pytest.fail(f"integration tests need PostgreSQL: {error}", pytrace=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RUCIO_CONFIG", str(stack.settings.rucio_cfg))
        try:
            stack.up(daemons=[])
            yield stack
        finally:
            stack.down()
            database.drop(stack.settings)


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
