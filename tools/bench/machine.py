"""The machine a run measured: what the figures mean nothing without."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return float("nan")


def _disk(path: Path) -> str:
    """The file system the benchmarks write to, as df names it, and its size."""
    path.mkdir(parents=True, exist_ok=True)
    usage = shutil.disk_usage(path)
    try:
        out = subprocess.run(["df", "--output=source,fstype", str(path)], capture_output=True, text=True, timeout=5)
        source = " ".join(out.stdout.splitlines()[-1].split())
    except (OSError, subprocess.SubprocessError, IndexError):
        source = "unknown"
    return f"{source}, {usage.total / 1e9:.0f} GB"


def describe(state: Path) -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "ram_gib": round(_ram_gib(), 1),
        "disk": _disk(state),
        "kernel": platform.release(),
    }
