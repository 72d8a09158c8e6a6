"""A native one-machine Rucio stack: config, database, site bootstrap, REST server and daemons.

    stack = Stack(state_dir, db="postgresql", pg_database="rucio_t1", port=18081)
    stack.up(daemons=[])                      # server only; run daemons step by step:
    stack.run_once("conveyor-submitter")
    stack.down()
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import database, processes
from .config import DEFAULT_STATE, ETC, REPO, Settings, write_configs
from .daemons import DAEMONS, MEMCACHED, SERVER, Daemon, by_name

ONCE_SCRIPT = Path(__file__).with_name("once.py")
SITE_CFG = ETC / "site.cfg"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StackError(RuntimeError):
    """A step of bringing the stack up failed; the message says which and where its log is."""


class Stack:
    """One dev stack, identified by its state folder (``rucio.cfg``, logs, pid files, SQLite file, storage)."""

    def __init__(self, state_dir: Path | str = DEFAULT_STATE, **settings: Any) -> None:
        state = Path(state_dir).resolve()
        saved = Settings.load(state)
        self.settings = dataclasses.replace(saved, **settings) if saved else Settings(state=state, **settings)

    @property
    def state(self) -> Path:
        return self.settings.state

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def env(self) -> dict[str, str]:
        """The environment of every process of the stack: RUCIO_CONFIG, the venv first on PATH, the repo importable."""
        env = dict(os.environ)
        env["RUCIO_CONFIG"] = str(self.settings.rucio_cfg)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("RUCIO_HOME", None)
        return env

    def pid_file(self, name: str) -> Path:
        return self.settings.run_dir / f"{name}.pid"

    # -- up / down ------------------------------------------------------------------------------------------

    def up(
        self, daemons: Iterable[str] | None = None, site: Path | str | list[Path] = SITE_CFG, timeout: float = 60
    ) -> None:
        """Prepare config and database, bootstrap the site, start the server and ``daemons`` (default: all)."""
        chosen = list(DAEMONS) if daemons is None else [by_name(name) for name in daemons]
        self.settings.cache_port = free_port() if self.settings.cache and shutil.which("memcached") else 0
        self.settings.save()
        write_configs(self.settings)
        database.create(self.settings)
        self._step("database", database.build_schema, self.settings, self.env)
        self.bootstrap_site(site)
        try:
            if self.settings.cache_port:
                self._start(MEMCACHED)
                self.wait_for_port(MEMCACHED, self.settings.cache_port)
            self._start(SERVER)
            self.wait_for_server(timeout)
            for daemon in chosen:
                self._start(daemon)
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Stop every process with a pid file in this state (the whole process group of each)."""
        processes.stop(sorted(self.settings.run_dir.glob("*.pid")))

    def reset(self) -> None:
        """Stop everything, drop the database and remove the state folder."""
        self.down()
        database.drop(self.settings)
        shutil.rmtree(self.state, ignore_errors=True)

    def status(self) -> dict[str, Any]:
        """Each known process alive or not, the database and the REST address."""
        names = [SERVER.name, *(d.name for d in DAEMONS)]
        names += sorted({p.stem for p in self.settings.run_dir.glob("*.pid")} - set(names))
        return {
            "state": str(self.state),
            "database": self.settings.db_url,
            "rest": self.url,
            "rest_answers": self.ping(),
            "processes": {name: processes.pid_of(self.pid_file(name)) if processes.is_alive(self.pid_file(name))
                          else None for name in names},
        }

    # -- steps ----------------------------------------------------------------------------------------------

    def bootstrap_site(self, site: Path | str | list[Path] = SITE_CFG) -> list[str]:
        """Run ``rucio-magic bootstrap`` (idempotent), storages inside the state folder; return its changes."""
        sites = [site] if isinstance(site, (str, Path)) else site
        argv = [sys.executable, "-m", "rucio_magic_ext.cli", "bootstrap",
                *(option for one in sites for option in ("--site", str(one))),
                "--define", f"storage_root={self.settings.storage_dir}"]
        result = subprocess.run(argv, env=self.env, cwd=REPO, capture_output=True, text=True)
        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.settings.log_dir / "bootstrap.log", "a") as log:
            log.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise StackError(f"site bootstrap failed (exit code {result.returncode}):\n{result.stderr[-3000:]}")
        return [line for line in result.stdout.splitlines() if not line.startswith("site already bootstrapped")]

    def run_once(self, name: str, *args: str, fast: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run one pass of daemon ``name`` to completion; raise if it fails. Output goes to its log file.

        With ``fast`` a daemon that has a one-pass entry (the conveyor) is called without its 10 s
        partition wait; otherwise its console script runs with ``--run-once``.
        """
        daemon = by_name(name)
        if fast and daemon.once_entry:
            argv = [sys.executable, str(ONCE_SCRIPT), daemon.once_entry, *args]
        else:
            argv = [*daemon.command(), "--run-once", *args]
        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.settings.log_dir / f"{daemon.name}.once.log", "ab") as log:
            result = subprocess.run(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        if result.returncode != 0:
            raise StackError(f"{daemon.name} --run-once exited with {result.returncode}; "
                             f"see {self.settings.log_dir / f'{daemon.name}.once.log'}")
        return result

    def run_round(self, *steps: str | tuple[str, ...], timeout: float = 300) -> None:
        """One pass of each daemon in order, in one process (they need a one-pass entry); raise if any fails.

        ``steps`` are daemon names, or (name, option, value, ...) tuples.
        """
        argv = [sys.executable, str(ONCE_SCRIPT)]
        for step in steps:
            name, *args = (step,) if isinstance(step, str) else step
            daemon = by_name(name)
            if not daemon.once_entry:
                raise StackError(f"{daemon.name} has no one-pass entry: use run_once")
            argv += ["--then", daemon.once_entry, *args]
        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.settings.log_dir / "round.once.log", "ab") as log:
            result = subprocess.run(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        if result.returncode != 0:
            log_file = self.settings.log_dir / "round.once.log"
            raise StackError(f"a round of {steps} exited with {result.returncode}; see {log_file}")

    def wait_for_port(self, daemon: Daemon, port: int, timeout: float = 10) -> None:
        """Wait until ``daemon`` accepts connections on ``port``; raise, naming its log, if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.1)
        raise StackError(f"{daemon.name} does not answer on port {port}; see {self.settings.log_dir / daemon.name}.log")

    def ping(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_for_server(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.ping():
            if not processes.is_alive(self.pid_file(SERVER.name)):
                raise StackError(f"the REST server exited; see {self.settings.log_dir / 'server.log'}")
            if time.monotonic() > deadline:
                raise StackError(f"the REST server did not answer {self.url}/ping within {timeout} s")
            time.sleep(0.3)

    def _start(self, daemon: Daemon) -> None:
        settings = self.settings
        command = daemon.command(port=settings.port, cache_port=settings.cache_port, user=getpass.getuser())
        processes.start(daemon.name, command, self.env, settings.log_dir, settings.run_dir)

    @staticmethod
    def _step(what: str, function: Any, *args: Any, **kwargs: Any) -> None:
        try:
            function(*args, **kwargs)
        except subprocess.CalledProcessError as error:
            detail = f":\n{error.stderr}" if error.stderr else "; its output is above"
            raise StackError(f"{what} failed (exit code {error.returncode}){detail}") from error
