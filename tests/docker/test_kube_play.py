"""The Kubernetes manifests of etc/k8s run the project's daemons on the same images: checked with podman kube play.

The scanner's and the carrier's Deployments are played on the container stack's network, against its database,
and must start their daemons and keep them running; then they are taken down again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.docker.conftest import Stack

pytestmark = pytest.mark.docker

MANIFEST = Path(__file__).resolve().parents[2] / "etc" / "k8s" / "magic-daemons.yaml"
#: Pod name (podman names a Deployment's pod <name>-pod-0) -> the daemon its container runs.
DAEMONS = {"rucio-magic-scanner-pod-0": "magic-scanner", "rucio-magic-carrier-pod-0": "magic-carrier"}
#: How long each daemon must keep running, past its start, to count as started.
STEADY_SECONDS = 30


def _pod_containers(stack: Stack) -> dict[str, tuple[str, int]]:
    """Container name -> (state, restarts) of the played pods' containers (their infra containers carry no label)."""
    names = stack.podman("ps", "-a", "--filter", "label=app-group=rucio-daemons", "--format", "{{.Names}}").stdout
    found = {}
    for name in names.split():
        inspected = stack.podman("inspect", "--format", "{{.State.Status}} {{.RestartCount}}", name).stdout
        state, restarts = inspected.split()
        found[name] = (state, int(restarts))
    return found


def _logs(stack: Stack, container: str) -> str:
    result = stack.podman("logs", container, check=False)
    return result.stdout + result.stderr


def test_magic_daemons_start_under_podman_kube_play(stack: Stack) -> None:
    network = stack.project
    stack.podman("kube", "play", "--network", network, str(MANIFEST), timeout=300)
    try:
        time.sleep(STEADY_SECONDS)
        containers = _pod_containers(stack)
        for pod, daemon in DAEMONS.items():
            mine = {name: state for name, state in containers.items() if name.startswith(pod)}
            assert mine, f"{pod}: no container ({containers})"
            logs = "".join(_logs(stack, name) for name in mine)
            assert f"starting daemon with: {daemon}" in logs, logs[-2000:]
            assert all(state == ("running", 0) for state in mine.values()), f"{pod}: {mine}\n{logs[-3000:]}"
            assert "Traceback" not in logs, logs[-3000:]
    finally:
        stack.podman("kube", "down", str(MANIFEST), check=False, timeout=300)
