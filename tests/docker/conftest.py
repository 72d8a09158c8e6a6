"""The container stack of etc/docker/docker-compose.yml for the tests marked ``docker``, through pytest-docker.

Before any fixture of pytest-docker runs, collection checks that a Docker engine answers, that the compose
plugin exists and that the upstream dev certificates are at hand; when one is missing every docker test is
skipped with the reason, in a second at most. Otherwise the stack is built and started once per session
under its own project and network names, waited for, and removed at the end with its volumes (set
``RUCIO_MAGIC_KEEP_STACK=1`` to keep it for a look).

Environment: ``RUCIO_CERTS`` (folder with Rucio's dev certificates, default etc/docker/certs),
``RUCIO_VERSION`` (upstream images, default in the compose file), ``RUCIO_MAGIC_STARTUP_TIMEOUT`` and
``RUCIO_MAGIC_FLOW_TIMEOUT`` (seconds).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "etc" / "docker" / "docker-compose.yml"
HERE = Path(__file__).resolve().parent
#: What the dev certificates of rucio/rucio (etc/certs) must provide to the storages, FTS3 and the daemons.
CERT_FILES = (
    "rucio_ca.pem",
    "hostcert_fts.pem",
    "hostcert_fts.key.pem",
    "hostcert_xrd1.pem",
    "hostcert_xrd1.key.pem",
    "hostcert_xrd2.pem",
    "hostcert_xrd2.key.pem",
    "ruciouser.pem",
    "ruciouser.key.pem",
)
#: Services that stay up; "init" runs once and exits.
LONG_RUNNING = (
    "ruciodb", "ftsdb", "fts", "xrd1", "xrd2", "rucio", "client", "judge-evaluator", "conveyor-submitter",
    "conveyor-poller", "conveyor-finisher", "judge-cleaner", "reaper", "magic-scanner", "magic-carrier",
)
STARTUP_TIMEOUT = float(os.environ.get("RUCIO_MAGIC_STARTUP_TIMEOUT", "900"))
FLOW_TIMEOUT = float(os.environ.get("RUCIO_MAGIC_FLOW_TIMEOUT", "1800"))


def certs_dir() -> Path:
    return Path(os.environ.get("RUCIO_CERTS") or COMPOSE_FILE.parent / "certs").resolve()


def _probe(*command: str, timeout: float = 10) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


@cache
def unavailable_reason() -> str | None:
    """Why the stack cannot run here, or None. Cheap: no container is started."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    docker_host = os.environ.get("DOCKER_HOST", "")
    if not docker_host and not Path("/var/run/docker.sock").exists():
        return "no Docker engine: /var/run/docker.sock does not exist and DOCKER_HOST is not set"
    info = _probe("docker", "info", "--format", "{{.ServerVersion}}")
    if info is None or info.returncode != 0 or not info.stdout.strip():
        detail = "timed out" if info is None else (info.stderr.strip().splitlines() or ["no answer"])[-1]
        return f"no Docker engine answers `docker info`: {detail}"
    compose = _probe("docker", "compose", "version")
    if compose is None or compose.returncode != 0:
        return "the Docker compose plugin (`docker compose`) is missing"
    missing = [name for name in CERT_FILES if not (certs_dir() / name).is_file()]
    if missing:
        return (f"Rucio's dev certificates are missing in {certs_dir()} ({', '.join(missing)}): set RUCIO_CERTS "
                "to etc/certs of a rucio/rucio checkout (see etc/docker/README.md)")
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    docker_items = [item for item in items if item.get_closest_marker("docker") and HERE in Path(item.path).parents]
    if not docker_items:
        return
    reason = unavailable_reason()
    if reason:
        skip = pytest.mark.skip(reason=reason)
        for item in docker_items:
            item.add_marker(skip)


# ------------------------------------------------------------------ pytest-docker's fixtures, for this stack

@pytest.fixture(scope="session")
def compose_environment() -> Iterator[dict[str, str]]:
    """Variables read by the compose file, set for every `docker compose` call of the session."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    values = {"RUCIO_CERTS": str(certs_dir()), "RUCIO_MAGIC_NETWORK": f"rucio-magic-test-{os.getpid()}"}
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield values
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def docker_compose_file(compose_environment: dict[str, str]) -> str:
    return str(COMPOSE_FILE)


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    return f"rucio-magic-test-{os.getpid()}"


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    # Build first (both images), then start detached: readiness is waited for by `stack`, service by service.
    return ["build", "up -d"]


@pytest.fixture(scope="session")
def docker_cleanup() -> list[str]:
    if os.environ.get("RUCIO_MAGIC_KEEP_STACK"):
        return []
    return ["down -v --remove-orphans"]


# ------------------------------------------------------------------ the running stack

@dataclass(frozen=True)
class Compose:
    """`docker compose` on the test project, for what pytest-docker does not cover (exec, cp, ps, logs)."""

    file: str
    project: str

    def run(self, *args: str, input: str | None = None, timeout: float = 600,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["docker", "compose", "-f", self.file, "-p", self.project, *args]
        result = subprocess.run(command, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def exec(self, service: str, *command: str, input: str | None = None, timeout: float = 600,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("exec", "-T", service, *command, input=input, timeout=timeout, check=check)

    def python_json(self, service: str, script: str, payload: object = None, timeout: float = 600) -> object:
        """Run `script` with python3 in `service`, `payload` as JSON on its stdin; its last stdout line as JSON."""
        result = self.exec(service, "python3", "-c", script, input=json.dumps(payload), timeout=timeout)
        return json.loads(result.stdout.strip().splitlines()[-1])

    def states(self) -> dict[str, tuple[str, str]]:
        """Service -> (state, health) of every container, stopped ones included."""
        out = self.run("ps", "-a", "--format", "json").stdout.strip()
        if not out:
            return {}
        rows = json.loads(out) if out.startswith("[") else [json.loads(line) for line in out.splitlines() if line]
        return {row["Service"]: (row.get("State", ""), row.get("Health", "")) for row in rows}

    def logs(self, services: Sequence[str] = (), tail: int = 60) -> str:
        return self.run("logs", "--no-color", "--tail", str(tail), *services, check=False).stdout


def _ping(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def stack(docker_services, docker_compose_file: str, docker_compose_project_name: str) -> Compose:  # type: ignore[no-untyped-def]
    """The stack, once the server answers and every long-running service is up (and healthy where checked)."""
    compose = Compose(docker_compose_file, docker_compose_project_name)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    try:
        port = docker_services.port_for("rucio", 80)
        docker_services.wait_until_responsive(lambda: _ping(f"http://127.0.0.1:{port}/ping"),
                                              timeout=STARTUP_TIMEOUT, pause=3)
        while True:
            states = compose.states()
            init_state = states.get("init", ("missing", ""))[0]
            if init_state not in ("exited", "running", "created"):
                raise AssertionError(f"init is {init_state}")
            waiting = [name for name in LONG_RUNNING
                       if states.get(name, ("", ""))[0] != "running" or states[name][1] not in ("", "healthy")]
            if not waiting:
                return compose
            if time.monotonic() > deadline:
                raise AssertionError(f"not up after {STARTUP_TIMEOUT:.0f} s: {', '.join(waiting)}")
            time.sleep(3)
    except Exception:
        print(compose.logs(tail=80))
        raise
