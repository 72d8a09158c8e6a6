"""Daemon passes forked from one process that has imported Rucio already.

A pass in a fresh interpreter spends about 1.8 s of CPU importing Rucio and the daemons before its first
query, and the step-by-step tests run hundreds of them. Forked from this process, which imported those
modules once and never reached the database, a pass starts with them loaded and shares nothing else: its
configuration cache, engine, connections and Rucio's in-memory caches are made in the child, as in a fresh
process. Only what importing did is shared, which is why the configuration a stack's passes read must not
change after its first pass (``Zygote`` is made per stack, with that stack's environment).

Protocol, one JSON line each way: a request ``{"argv": [...], "log": path}`` runs ``once.main(argv)`` in a
child whose output goes to ``log``; the answer is ``{"pid": n}`` at once and ``{"code": n}`` when the child
ends (negative: killed by that signal, as ``subprocess`` says). End of input ends the process.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import random
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import IO, Any

SELF = Path(__file__).resolve()


class Zygote:
    """The client: one zygote process for one environment, started on first use, one pass at a time."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log  # the zygote's own output: why it could not start, if it could not
        self._process: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def run(self, argv: list[str], log: Path, timeout: float) -> int | None:
        """``once.main(argv)`` in a forked child; its exit code, or None when the zygote is busy with another
        pass (the caller then runs one process of its own). Raises ``subprocess.TimeoutExpired`` after
        ``timeout`` seconds, the child killed, as ``subprocess.run`` does."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            process = self._started()
            assert process.stdin is not None and process.stdout is not None
            try:
                process.stdin.write(json.dumps({"argv": argv, "log": str(log)}) + "\n")
                process.stdin.flush()
            except BrokenPipeError:
                raise RuntimeError(f"the zygote process ended; see {self.log}") from None
            pid = self._answer(process.stdout)["pid"]
            expired = threading.Event()

            def expire() -> None:
                expired.set()
                _kill(pid)

            timer = threading.Timer(timeout, expire)
            timer.start()
            try:
                code = self._answer(process.stdout)["code"]
            finally:
                timer.cancel()
            if expired.is_set() and code == -9:
                raise subprocess.TimeoutExpired([sys.executable, *argv], timeout)
            return int(code)
        finally:
            self._lock.release()

    def _started(self) -> subprocess.Popen[str]:
        if self._process is None or self._process.poll() is not None:
            with open(self.log, "ab") as log:
                self._process = subprocess.Popen(
                    [sys.executable, str(SELF)], env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=log, text=True, bufsize=1,
                )
        return self._process

    def _answer(self, stream: IO[str]) -> dict[str, Any]:
        line = stream.readline()
        if not line:
            raise RuntimeError(f"the zygote process ended; see {self.log}")
        return json.loads(line)

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 9)


# -- the zygote process ------------------------------------------------------------------------------------------


def _preload() -> Any:
    """Import what every pass imports, then close the connections importing opened (Rucio's modules query
    the database at import): a connection held here would be one server session shared by every child."""
    sys.path.insert(0, str(SELF.parents[2]))
    once = importlib.import_module("tools.devstack.once")
    from tools.devstack.daemons import DAEMONS

    for daemon in DAEMONS:
        if daemon.once_entry:
            importlib.import_module(daemon.once_entry.split(":")[0])
    for engine in _engines():
        engine.dispose()
    return once


def _engines() -> list[Any]:
    from sqlalchemy.engine import Engine

    return [thing for thing in gc.get_objects() if isinstance(thing, Engine)]


def _child(once: Any, argv: list[str], log: str) -> None:
    code = 1
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        random.seed()
        once.main(argv)
        code = 0
    except SystemExit as error:
        code = error.code if isinstance(error.code, int) else (0 if error.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def serve() -> None:
    once = _preload()
    replies = sys.stdout
    sys.stdout = sys.stderr  # nothing the modules print may reach the protocol
    for line in sys.stdin:
        request = json.loads(line)
        replies.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(once, request["argv"], request["log"])
        replies.write(json.dumps({"pid": pid}) + "\n")
        replies.flush()
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n")
        replies.flush()


if __name__ == "__main__":
    serve()
