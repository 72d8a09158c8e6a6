"""The benchmarks' measured work runs in child processes with the stack's environment.

Rucio reads its configuration once per process; a child per measurement keeps the runner free of it, and
gives each measurement its own peak memory. A child prints one JSON line; its log goes to the stack's logs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tools.devstack.stack import Stack

HERE = Path(__file__).resolve().parent


class ChildFailed(RuntimeError):
    """A measuring child exited with an error; the message names its log."""


def run_child(stack: Stack, script: str, *args: str, log: str, timeout: float = 3600) -> dict[str, Any]:
    """Run ``tools/bench/<script>`` with ``args``; return the JSON it printed last."""
    log_file = stack.settings.log_dir / f"{log}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as stderr:
        result = subprocess.run(
            [sys.executable, str(HERE / script), *args],
            env=stack.env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            timeout=timeout,
        )
    lines = result.stdout.decode().strip().splitlines()
    if result.returncode != 0 or not lines:
        raise ChildFailed(f"{script} exited with {result.returncode}; see {log_file}")
    return json.loads(lines[-1])


def scanner_cycle(stack: Stack, log: str, profile: Path | None = None) -> dict[str, Any]:
    """One timed scanner cycle in a fresh process (tools/bench/one_cycle.py)."""
    args = []
    if profile:
        profile.parent.mkdir(parents=True, exist_ok=True)
        args = ["--profile", str(profile)]
    return run_child(stack, "one_cycle.py", *args, log=log)
