"""The container stack of etc/docker/docker-compose.yml, run with podman, for the tests marked ``docker``.

Before anything starts, collection checks that podman answers and that podman-compose is at hand; when one is
missing every docker test is skipped with the reason, in a second at most. Otherwise the images are built where
missing (tools/images: a Debian base by mmdebstrap, the rest layered on it; no registry is needed), and the stack
is started once per session through pytest-docker under its own project and network names, waited for, and
removed at the end with its volumes (``RUCIO_MAGIC_KEEP_STACK=1`` keeps it for a look).

podman-compose (PyPI) drives podman itself: no Docker-compatible socket or service has to run beside it.
Environment: ``RUCIO_MAGIC_STARTUP_TIMEOUT`` and ``RUCIO_MAGIC_FLOW_TIMEOUT`` (seconds).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "etc" / "docker" / "docker-compose.yml"
HERE = Path(__file__).resolve().parent
#: Services that stay up; "init" runs once and exits.
LONG_RUNNING = (
    "ruciodb", "xrd1", "xrd2", "rucio", "client", "judge-evaluator", "magic-conveyor-submitter",
    "magic-conveyor-poller", "conveyor-finisher", "judge-cleaner", "reaper", "magic-scanner", "magic-carrier",
)
BASE_IMAGE = "localhost/rucio-magic/debian:bookworm"
STARTUP_TIMEOUT = float(os.environ.get("RUCIO_MAGIC_STARTUP_TIMEOUT", "600"))
PROJECT = f"rucio-magic-test-{os.getpid()}"


def compose_command() -> str | None:
    """podman-compose from the venv or PATH."""
    beside = Path(sys.executable).parent / "podman-compose"
    return str(beside) if beside.exists() else shutil.which("podman-compose")


def _probe(*command: str, timeout: float = 10) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


@cache
def unavailable_reason() -> str | None:
    """Why the stack cannot run here, or None. Cheap: no container is started."""
    if shutil.which("podman") is None:
        return "no container engine: podman is not on PATH (apt-get install podman runc; .ci/run sets it up)"
    info = _probe("podman", "info", "--format", "{{.Host.OCIRuntime.Name}}")
    if info is None or info.returncode != 0 or not info.stdout.strip():
        detail = "timed out" if info is None else (info.stderr.strip().splitlines() or ["no answer"])[-1]
        return f"no container engine answers `podman info`: {detail}"
    if compose_command() is None:
        return "podman-compose is missing (it comes with the test extra: pip install -e '.[test]')"
    base = _probe("podman", "image", "exists", BASE_IMAGE)
    if shutil.which("mmdebstrap") is None and (base is None or base.returncode != 0):
        return "mmdebstrap is missing to make the base image (apt-get install mmdebstrap)"
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
def images() -> float:
    """Build every missing image (tools/images); the seconds it took."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    started = time.monotonic()
    subprocess.run([sys.executable, str(REPO / "tools" / "images"), "build"], check=True, cwd=REPO, timeout=1800)
    seconds = time.monotonic() - started
    print(f"images ready in {seconds:.0f} s")
    return seconds


@pytest.fixture(scope="session")
def compose_environment(images: float) -> Iterator[dict[str, str]]:
    """Variables read by the compose file, set for every podman-compose call of the session."""
    values = {"RUCIO_MAGIC_NETWORK": PROJECT}
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
def docker_compose_command() -> str:
    return compose_command() or "podman-compose"


@pytest.fixture(scope="session")
def docker_compose_file(compose_environment: dict[str, str]) -> str:
    return str(COMPOSE_FILE)


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    return PROJECT


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    # Images are built by the `images` fixture; readiness is waited for by `stack`, service by service.
    return ["up -d"]


@pytest.fixture(scope="session")
def docker_cleanup() -> list[str]:
    if os.environ.get("RUCIO_MAGIC_KEEP_STACK"):
        return []
    return ["down -v"]


# ------------------------------------------------------------------ the running stack

@dataclass(frozen=True)
class Stack:
    """The test project's containers, reached with podman itself (exec, cp, kill, start, logs)."""

    project: str

    def container(self, service: str) -> str:
        """The container of a service: podman-compose names it <project>_<service>_1."""
        return f"{self.project}_{service}_1"

    def podman(self, *args: str, input: str | None = None, timeout: float = 600,
               check: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["podman", *args]
        result = subprocess.run(command, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def exec(self, service: str, *command: str, input: str | None = None, timeout: float = 600,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.podman("exec", "-i", self.container(service), *command, input=input, timeout=timeout,
                           check=check)

    def python_json(self, service: str, script: str, payload: object = None, timeout: float = 600) -> object:
        """Run `script` with python3 in `service`, `payload` as JSON on its stdin; its last stdout line as JSON."""
        result = self.exec(service, "python3", "-c", script, input=json.dumps(payload), timeout=timeout)
        return json.loads(result.stdout.strip().splitlines()[-1])

    def states(self) -> dict[str, tuple[str, int]]:
        """Service -> (state, exit code) of every container of the project, stopped ones included."""
        out = self.podman("ps", "-a", "--filter", f"label=io.podman.compose.project={self.project}",
                          "--format", "json").stdout
        rows = json.loads(out or "[]")
        return {row["Labels"]["com.docker.compose.service"]: (row.get("State", ""), int(row.get("ExitCode") or 0))
                for row in rows}

    def logs(self, services: tuple[str, ...] = (), tail: int = 60) -> str:
        chunks = []
        for service in services or tuple(self.states()):
            result = self.podman("logs", "--tail", str(tail), self.container(service), check=False)
            chunks.append(f"---- {service}\n{result.stdout}{result.stderr}")
        return "\n".join(chunks)

    def host_port(self, service: str, port: int) -> int:
        out = self.podman("port", self.container(service), str(port)).stdout.strip().splitlines()[-1]
        return int(out.rsplit(":", 1)[-1])

    def wait_running(self, services: tuple[str, ...], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            states = self.states()
            waiting = [name for name in services if states.get(name, ("", 0))[0] != "running"]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not running after {timeout:.0f} s: {', '.join(waiting)}")
            time.sleep(2)

    def wait_ping(self, timeout: float) -> None:
        """Until the REST server answers /ping from the host (through its published port)."""
        url = f"http://127.0.0.1:{self.host_port('rucio', 80)}/ping"
        deadline = time.monotonic() + timeout
        while not _ping(url):
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} does not answer after {timeout:.0f} s")
            time.sleep(2)


def _ping(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def stack(docker_services, docker_compose_project_name: str) -> Stack:  # type: ignore[no-untyped-def]
    """The stack, once init has bootstrapped the site, the server answers and every service runs."""
    running = Stack(docker_compose_project_name)
    started = time.monotonic()
    try:
        deadline = started + STARTUP_TIMEOUT
        while running.states().get("init", ("", 0))[0] != "exited":
            if time.monotonic() > deadline:
                raise AssertionError(f"init has not finished after {STARTUP_TIMEOUT:.0f} s")
            time.sleep(2)
        code = running.states()["init"][1]
        assert code == 0, f"init exited {code}"
        running.wait_ping(max(deadline - time.monotonic(), 1))
        running.wait_running(LONG_RUNNING, max(deadline - time.monotonic(), 1))
    except Exception:
        print(running.logs(tail=80))
        raise
    print(f"stack up in {time.monotonic() - started:.0f} s")
    return running
