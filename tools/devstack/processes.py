"""Start and stop background processes by pid file: one process group per service, its output in a log file.

Each process leads its own session (process group), so stopping it also stops whatever it forked
(gunicorn workers, daemon threads' helpers).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def pid_of(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _group_alive(pgid: int) -> bool:
    """True while a process of the group runs; zombies do not count (our own exited children get reaped)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pgid, os.WNOHANG)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def is_alive(pid_file: Path) -> bool:
    pid = pid_of(pid_file)
    return pid is not None and _group_alive(pid)


def start(name: str, argv: Sequence[str], env: dict[str, str], log_dir: Path, run_dir: Path) -> int:
    """Start ``argv`` in a new session, output appended to ``<log_dir>/<name>.log``; write its pid file.

    A process already running under this pid file is kept (so ``up`` can be repeated).
    """
    pid_file = run_dir / f"{name}.pid"
    pid = pid_of(pid_file)
    if pid is not None and is_alive(pid_file):
        return pid
    log_dir.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(list(argv), env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def stop(pid_files: Sequence[Path], timeout: float = 15.0) -> None:
    """SIGTERM the process groups, SIGKILL those left after ``timeout`` seconds; remove the pid files."""
    groups = [pid for pid in map(pid_of, pid_files) if pid is not None and _group_alive(pid)]
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signum)
        deadline = time.monotonic() + timeout
        while groups and time.monotonic() < deadline:
            groups = [pgid for pgid in groups if _group_alive(pgid)]
            time.sleep(0.1)
    for pid_file in pid_files:
        pid_file.unlink(missing_ok=True)
