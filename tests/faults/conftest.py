"""The fault suite runs on the integration tests' stack, with their fixtures."""

from tests.integration.conftest import flow, rucio_client, run_daemon_once  # noqa: F401
