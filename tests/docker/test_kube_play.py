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
DAEMONS = {"rucio-magic-scanner-pod-0": "magic-scanner", "rucio-magic-carrier-pod-0": "magic-carrier"}
#: How long each daemon must keep running, past its start, to count as started.
STEADY_SECONDS = 30


def _pod_containers(stack: Stack) -> dict[str, tuple[str, int]]:
    """Container name -> (state, restarts) of the played pods' containers (their infra containers left out)."""
    rows = stack.podman("ps", "-a", "--filter", "label=app-group=rucio-daemons", "--format",
                        "{{.Names}} {{.State}} {{.Restarts}}").stdout.split("\n")
    found = {}
    for row in rows:
        parts = row.split()
        if len(parts) == 3 and parts[2].isdigit():
            found[parts[0]] = (parts[1], int(parts[2]))
    return found


def test_magic_daemons_start_under_podman_kube_play(stack: Stack) -> None:
    network = stack.project
    stack.podman("kube", "play", "--network", network, str(MANIFEST), timeout=300)
    try:
        time.sleep(STEADY_SECONDS)
        containers = _pod_containers(stack)
        for pod, daemon in DAEMONS.items():
            mine = {name: state for name, state in containers.items() if name.startswith(pod)}
            assert mine, f"{pod}: no container ({containers})"
            logs = "".join(stack.podman("logs", name, check=False).stdout + stack.podman("logs", name, check=False)
                           .stderr for name in mine)
            assert f"starting daemon with: {daemon}" in logs, logs[-2000:]
            assert all(state == ("running", 0) for state in mine.values()), f"{pod}: {mine}\n{logs[-3000:]}"
            assert "Traceback" not in logs, logs[-3000:]
    finally:
        stack.podman("kube", "down", str(MANIFEST), check=False, timeout=300)
