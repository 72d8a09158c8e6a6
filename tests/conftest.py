"""One Rucio configuration for the whole test run, in place before any test imports Rucio.

Rucio reads parts of its configuration once per process, at import (the database schema, the policy
package). So the stack that the integration tests start is planned here, at configuration time: its
``rucio.cfg`` is written and ``RUCIO_CONFIG`` set before collection, and the stack itself only starts
when a test first asks for it (tests/integration/conftest.py).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.devstack import database
from tools.devstack.config import write_configs
from tools.devstack.grid import Grid
from tools.devstack.grid import missing as grid_missing
from tools.devstack.stack import SITE_CFG, Stack

STACK_KEY = pytest.StashKey[Stack]()
GRID_KEY = pytest.StashKey[Grid]()
INTEGRATION = Path(__file__).parent / "integration"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pytest_configure(config: pytest.Config) -> None:
    state = Path(tempfile.mkdtemp(prefix="rucio-magic-tests-"))
    stack = Stack(
        state,
        db="postgresql",
        port=_free_port(),
        pg_database=f"rucio_magic_test_{uuid.uuid4().hex[:10]}",
        extra={
            "magic-policy": {"embargo_rse_expression": "PIC-DISK"},
            "magic-scanner": {
                "replication_policy": str(INTEGRATION / "replication-policy.toml"),
                "settle_seconds": "3",
                "carrier_max_age_seconds": "0",
            },
            "magic-carrier": {"dwell_seconds": "0"},
            # A test night is about a hundred files of a few bytes: a copier for every ten would spend its
            # time importing Rucio to report, not copying (jobs of ten: tests/unit/test_transfertool.py).
            "conveyor": {"magic_group_bulk": "100"},
        },
    )
    write_configs(stack.settings)
    os.environ["RUCIO_CONFIG"] = str(stack.settings.rucio_cfg)
    # A pytest-xdist worker starts with the controller's environment, and the conftest files of the paths it was
    # given are imported before this hook: tests/integration/conftest.py makes Rucio read the controller's rucio.cfg
    # and open an engine on its database (rucio.core.monitor asks the config table at import), a database never
    # made. Both are dropped, so this worker's are used from here on.
    import rucio.db.sqla.session as rucio_session
    from rucio.common.config import clean_cached_config

    clean_cached_config()
    if rucio_session._ENGINE is not None:
        rucio_session._ENGINE.dispose()
        rucio_session._ENGINE = rucio_session._MAKER = None
    config.stash[STACK_KEY] = stack
    # XRootD's client takes its CA folder (X509_CERT_DIR) once, at its first use in a process, and must find it
    # made: the run's grid is made now, so that guarded servers are trusted whatever test uses the client first.
    if grid_missing() is None:
        made = Grid.make(config.stash[STACK_KEY].state / "grid", issuer=False)
        config.stash[GRID_KEY] = made
        os.environ["X509_CERT_DIR"] = str(made.ca_dir)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``pytest -n`` (tools/test runs two workers), each worker starts a stack of its own; a test module
    stays on one worker so its module fixtures (often a whole night's flow) run once, and the container suite,
    whose images and compose project are the session's, stays whole on one."""
    for item in items:
        module = item.path.relative_to(Path(__file__).parent)
        group = module.parts[0] if module.parts[0] == "docker" else str(module)
        item.add_marker(pytest.mark.xdist_group(group))


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(config.stash[STACK_KEY].state, ignore_errors=True)


@pytest.fixture(scope="session")
def grid(pytestconfig: pytest.Config) -> Iterator[Grid]:
    """The run's CA, host and user certificates, proxies (tools/devstack/grid.py) and its token issuer."""
    made = pytestconfig.stash.get(GRID_KEY, None)
    if made is None:
        pytest.skip(f"no test grid here: {grid_missing()}")
    made.start_issuer()
    try:
        yield made
    finally:
        made.stop()


@pytest.fixture(scope="session")
def rucio_stack(pytestconfig: pytest.Config) -> Iterator[Stack]:
    """The planned stack, running on its own PostgreSQL database; stopped and dropped at the end, even on failure."""
    stack = pytestconfig.stash[STACK_KEY]
    try:
        database.check_postgresql(stack.settings)
    except database.DatabaseUnavailable as error:
        pytest.fail(f"integration tests need PostgreSQL: {error}", pytrace=False)
    try:
        stack.up(daemons=[], site=[SITE_CFG, INTEGRATION / "site-extra.cfg"])
        yield stack
    finally:
        stack.down()
        database.drop(stack.settings)
