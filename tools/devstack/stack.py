"""A native one-machine Rucio stack: config, database, site bootstrap, REST server and daemons.

    stack = Stack(state_dir, db="postgresql", pg_database="rucio_t1", port=18081)
    stack.up(daemons=[])                      # server only; run daemons step by step:
    stack.run_once("conveyor-submitter")
    stack.down()

With ``storage="xrootd"`` the RSEs' files live behind two real XRootD servers (root:// and WebDAV, adler32
computed by the server, root:// third-party copy), one for ORM-ONSITE and one for PIC-DISK, started and
stopped with the stack; the site is ``etc/site-xrootd.cfg`` with their ports, and every daemon reaches the
files only through the RSEs' protocols.
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
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import database, processes
from .config import DEFAULT_STATE, ETC, REPO, Settings, daemon_config, write_configs
from .daemons import DAEMONS, MEMCACHED, SERVER, Daemon, by_name
from .grid import Grid
from .guard import AUTHS, guard
from .link import Link
from .link import missing as link_missing
from .prometheus import PrometheusServer
from .xrootd import XrootdServer, gfal_missing
from .zygote import Zygote

ONCE_SCRIPT = Path(__file__).with_name("once.py")
SITE_CFG = ETC / "site.cfg"
XROOTD_SITE_CFG = ETC / "site-xrootd.cfg"
STORAGES = ("posix", "xrootd")
#: The stack's XRootD servers: server name -> (RSE, its folder below the server's '/', the RSE's prefix).
XROOTD_RSES = {"orm": ("ORM-ONSITE", "orm-onsite"), "pic": ("PIC-DISK", "pic-disk")}


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
        self._zygote: Zygote | None = None
        self._grid: Grid | None = None  # made by up() for a guarded stack; its token issuer lives in this process

    @property
    def state(self) -> Path:
        return self.settings.state

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def env(self) -> dict[str, str]:
        """The environment of every process of the stack: RUCIO_CONFIG, the venv first on PATH, the repo importable."""
        env = {**os.environ, **self.settings.environment}
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
        self, daemons: Iterable[str] | None = None, site: Path | str | list[Path] | None = None, timeout: float = 60
    ) -> None:
        """Prepare config and database, start the storage servers (``storage="xrootd"``), bootstrap the site
        (default: etc/site.cfg, or etc/site-xrootd.cfg with the servers' ports), start the REST server and
        ``daemons`` (default: all)."""
        if self.settings.storage not in STORAGES:
            raise StackError(f"unknown storage {self.settings.storage!r}: use {' or '.join(STORAGES)}")
        chosen = list(DAEMONS) if daemons is None else [by_name(name) for name in daemons]
        self.settings.cache_port = free_port() if self.settings.cache and shutil.which("memcached") else 0
        if self.settings.storage == "xrootd" and (reason := gfal_missing()):
            raise StackError(reason)
        if self.settings.storage == "xrootd" and not self.settings.xrootd_ports:
            self.settings.xrootd_ports = {name: [free_port(), free_port()] for name in XROOTD_RSES}
        guarded_sites = self._guard()
        self._link_up()
        if self.settings.metrics:
            self.settings.prometheus_port = self.settings.prometheus_port or free_port()
        self.settings.save()
        write_configs(self.settings)
        database.create(self.settings)
        self._step("database", database.build_schema, self.settings, self.env)
        self.start_storage()
        if site is None:
            site = [XROOTD_SITE_CFG, *guarded_sites] if self.settings.storage == "xrootd" else SITE_CFG
        self.bootstrap_site(site)
        try:
            if self.settings.cache_port:
                self._start(MEMCACHED)
                self.wait_for_port(MEMCACHED, self.settings.cache_port)
            self._start(SERVER)
            self.wait_for_server(timeout)
            self.start_daemons([daemon.name for daemon in chosen])
            if self.settings.metrics and chosen:
                self.prometheus().start()
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Stop every process with a pid file in this state (the whole process group of each), then the storage
        servers (their files stay)."""
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None
        processes.stop(sorted(self.settings.run_dir.glob("*.pid")))
        for server in self.xrootd_servers().values():
            server.stop()
        if self._grid is not None:
            self._grid.stop()
        if self.link is not None:
            self.link.down()

    # -- storage --------------------------------------------------------------------------------------------

    def _guard(self) -> list[Path]:
        """A guarded stack's grid, made anew, and what its daemons are given (guard.py); the site files to add."""
        if self.settings.auth not in AUTHS:
            raise StackError(f"unknown auth {self.settings.auth!r}: use {', '.join(AUTHS)}")
        if self.settings.auth == "none":
            return []
        if self.settings.storage != "xrootd":
            raise StackError(f"auth {self.settings.auth} guards XRootD servers: give storage xrootd too")
        shutil.rmtree(self.state / "grid", ignore_errors=True)
        self._grid = Grid.make(self.state / "grid", issuer=self.settings.auth == "token")
        return guard(self.settings, self._grid)

    @property
    def link(self) -> Link | None:
        """The link between the two sites, when the stack has one (``link_mbit``)."""
        if self.settings.storage != "xrootd" or not self.settings.link_mbit:
            return None
        return Link(f"rm{zlib.crc32(str(self.state).encode()) % 10**6:06d}", self.settings.link_mbit)

    def _link_up(self) -> None:
        if not self.settings.link_mbit:
            return
        if self.settings.storage != "xrootd":
            raise StackError("a link between two sites joins XRootD servers: give storage xrootd too")
        if self.settings.auth != "none":
            raise StackError("a guarded stack's certificates name 127.0.0.1 and localhost: no link with auth yet")
        reason = link_missing()
        if reason:
            raise StackError(f"no link between two sites here: {reason}")
        assert self.link is not None
        self.link.up()

    def xrootd_servers(self) -> dict[str, XrootdServer]:
        """The stack's XRootD servers by name ("orm", "pic"); none unless ``storage="xrootd"``. Guarded as the stack
        is when its grid was made in this process; otherwise (``down``, ``status`` from another) only to stop."""
        if self.settings.storage != "xrootd":
            return {}
        auth = self.settings.auth if self._grid is not None else "none"
        link = self.link
        sides = {"orm": (link.there, link.namespace), "pic": (link.here, None)} if link else {}
        return {
            name: XrootdServer(name, self.state / f"xrootd-{name}", port, http_port, unix_auth=False, auth=auth,
                               grid=self._grid, host=sides.get(name, ("127.0.0.1", None))[0],
                               netns=sides.get(name, ("127.0.0.1", None))[1])
            for name, (port, http_port) in self.settings.xrootd_ports.items()
        }

    def start_storage(self) -> None:
        """Start the XRootD servers (kept if running) with their RSE folders, owned by the servers' account."""
        for name, server in self.xrootd_servers().items():
            try:
                server.start()
            except RuntimeError as error:
                self.down()
                raise StackError(f"XRootD server {name}: {error}") from error
            folder = server.data / XROOTD_RSES[name][1]
            folder.mkdir(exist_ok=True)
            server.adopt(folder)

    def data_folder(self, rse: str) -> Path:
        """The local folder under an RSE's protocol prefix (``ORM-ONSITE``, ``PIC-DISK``): where the DAQ writes at
        the observatory. With XRootD it is inside the server's data folder; the daemons reach it only over root://."""
        for name, server in self.xrootd_servers().items():
            if XROOTD_RSES[name][0] == rse:
                return server.data / XROOTD_RSES[name][1]
        return self.settings.storage_dir / rse.lower()

    def adopt(self, path: Path) -> None:
        """Give a file written straight into an XRootD server's data folder to the server's account (nothing to do
        for posix storage), so the server may later delete it."""
        for server in self.xrootd_servers().values():
            if server.data.resolve() in Path(path).resolve().parents:
                server.adopt(Path(path))

    def site_defines(self) -> dict[str, str]:
        """The [vars] of the site description that the stack decides: folders, or its servers' host and ports."""
        defines = {"storage_root": str(self.settings.storage_dir)}
        for name, server in self.xrootd_servers().items():
            defines.update({
                f"{name}_host": server.host,
                f"{name}_root_port": str(server.port),
                f"{name}_web_port": str(server.http_port),
                f"{name}_prefix": f"/{XROOTD_RSES[name][1]}/",
            })
        if self.settings.storage == "xrootd":
            defines["web_scheme"] = "davs" if self.settings.auth != "none" else "http"
        return defines

    def reset(self) -> None:
        """Stop everything, drop the database and remove the state folder."""
        self.down()
        database.drop(self.settings)
        shutil.rmtree(self.state, ignore_errors=True)

    def status(self) -> dict[str, Any]:
        """Each known process alive or not, the database and the REST address."""
        names = [SERVER.name, *(d.name for d in DAEMONS)]
        names += sorted({p.stem for p in self.settings.run_dir.glob("*.pid")} - set(names))
        status = {
            "state": str(self.state),
            "database": self.settings.db_url,
            "rest": self.url,
            "rest_answers": self.ping(),
            "processes": {name: processes.pid_of(self.pid_file(name)) if processes.is_alive(self.pid_file(name))
                          else None for name in names},
        }
        if self.settings.metrics_ports:
            status["metrics"] = {"prometheus": f"http://127.0.0.1:{self.settings.prometheus_port}",
                                 "daemons": {name: f"http://127.0.0.1:{port}/metrics"
                                             for name, port in self.settings.metrics_ports.items()}}
        servers = self.xrootd_servers()
        if servers:
            status["storage"] = {
                f"{XROOTD_RSES[name][0]} (xrootd {name})": {
                    "root": server.root_url, "http": server.http_url, "data": str(server.data),
                    "pid": processes.pid_of(server.pid_file) if server.is_alive() else None,
                }
                for name, server in servers.items()
            }
        return status

    # -- steps ----------------------------------------------------------------------------------------------

    def bootstrap_site(
        self, site: Path | str | list[Path] = SITE_CFG, defines: dict[str, str] | None = None
    ) -> list[str]:
        """Run ``rucio-magic bootstrap`` (idempotent), storages inside the state folder or on the stack's XRootD
        servers, ``defines`` setting further [vars]; return its changes."""
        sites = [site] if isinstance(site, (str, Path)) else site
        values = {**self.site_defines(), **(defines or {})}
        argv = [sys.executable, "-m", "rucio_magic_ext.cli", "bootstrap",
                *(option for one in sites for option in ("--site", str(one))),
                *(option for key, value in values.items() for option in ("--define", f"{key}={value}"))]
        result = subprocess.run(argv, env=self.env, cwd=REPO, capture_output=True, text=True)
        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.settings.log_dir / "bootstrap.log", "a") as log:
            log.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise StackError(f"site bootstrap failed (exit code {result.returncode}):\n{result.stderr[-3000:]}")
        said = ("site already bootstrapped", "site: ")  # the files read, and nothing changed
        return [line for line in result.stdout.splitlines() if not line.startswith(said)]

    def run_once(self, name: str, *args: str, fast: bool = True, timeout: float = 300) -> None:
        """Run one pass of daemon ``name`` to completion; raise if it fails. Output goes to its log file.

        With ``fast`` a daemon that has a one-pass entry (the conveyor) is called without its 10 s
        partition wait, in a child of the stack's zygote; otherwise its console script runs with ``--run-once``.
        """
        daemon = by_name(name)
        log = self.settings.log_dir / f"{daemon.name}.once.log"
        if fast and daemon.once_entry:
            code = self._once([daemon.once_entry, *args], log, timeout)
        else:
            code = self._logged([*daemon.command(), "--run-once", *args], log, timeout)
        if code != 0:
            raise StackError(f"{daemon.name} --run-once exited with {code}; see {log}")

    def run_round(self, *steps: str | tuple[str, ...], timeout: float = 300) -> None:
        """One pass of each daemon in order, in one process (they need a one-pass entry); raise if any fails.

        ``steps`` are daemon names, or (name, option, value, ...) tuples.
        """
        args: list[str] = []
        for step in steps:
            name, *options = (step,) if isinstance(step, str) else step
            daemon = by_name(name)
            if not daemon.once_entry:
                raise StackError(f"{daemon.name} has no one-pass entry: use run_once")
            args += ["--then", daemon.once_entry, *options]
        log = self.settings.log_dir / "round.once.log"
        code = self._once(args, log, timeout)
        if code != 0:
            raise StackError(f"a round of {steps} exited with {code}; see {log}")

    def _once(self, args: list[str], log: Path, timeout: float) -> int:
        """``once.py`` with ``args``, forked from the stack's zygote (Rucio imported once for all passes), or
        in a process of its own while the zygote runs another pass."""
        log.parent.mkdir(parents=True, exist_ok=True)
        env = self.env
        if self._zygote is None or self._zygote.env != env:
            if self._zygote is not None:
                self._zygote.close()
            self._zygote = Zygote(env, log.with_name("zygote.log"))
        code = self._zygote.run(args, log, timeout)
        return self._logged([sys.executable, str(ONCE_SCRIPT), *args], log, timeout) if code is None else code

    def _logged(self, argv: list[str], log: Path, timeout: float) -> int:
        """Exit code of ``argv`` run in the stack's environment, its output appended to ``log``."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            return subprocess.run(argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout).returncode

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

    # -- metrics --------------------------------------------------------------------------------------------

    def start_daemons(self, names: Iterable[str], metrics: bool | None = None) -> None:
        """Start daemons (kept if running); with ``metrics`` (default: the stack's setting) each serves Rucio's
        Prometheus metrics on a port of its own (``metrics_targets``)."""
        metrics = self.settings.metrics if metrics is None else metrics
        for daemon in map(by_name, names):
            if metrics:
                self.settings.metrics_ports.setdefault(daemon.name, free_port())
                self.settings.save()
            self._start(daemon, metrics=metrics)

    def stop_daemons(self, names: Iterable[str]) -> None:
        """Stop daemons (SIGTERM, so they end their step), each with its process group."""
        processes.stop([self.pid_file(by_name(name).name) for name in names])

    def metrics_targets(self) -> dict[str, int]:
        """Daemon -> the port of its /metrics, for the daemons started with metrics."""
        return dict(self.settings.metrics_ports)

    def prometheus(self, scrape_seconds: float = 2.0, targets: dict[str, int] | None = None) -> PrometheusServer:
        """The stack's Prometheus (started by ``up`` with metrics, stopped by ``down``), scraping every daemon."""
        settings = self.settings
        settings.prometheus_port = settings.prometheus_port or free_port()
        return PrometheusServer(self.state / "prometheus", settings.prometheus_port,
                                self.metrics_targets() if targets is None else targets, scrape_seconds,
                                log_dir=settings.log_dir, run_dir=settings.run_dir)

    def _start(self, daemon: Daemon, metrics: bool = False) -> None:
        settings = self.settings
        command = daemon.command(port=settings.port, cache_port=settings.cache_port, user=getpass.getuser())
        env = self.env
        if metrics and daemon.name in settings.metrics_ports:
            env["RUCIO_CONFIG"] = str(daemon_config(settings, daemon.name, settings.metrics_ports[daemon.name]))
        processes.start(daemon.name, command, env, settings.log_dir, settings.run_dir)

    @staticmethod
    def _step(what: str, function: Any, *args: Any, **kwargs: Any) -> None:
        try:
            function(*args, **kwargs)
        except subprocess.CalledProcessError as error:
            detail = f":\n{error.stderr}" if error.stderr else "; its output is above"
            raise StackError(f"{what} failed (exit code {error.returncode}){detail}") from error
