"""One bad file never stalls the flow. A hostile night (tools/make_night/hostile.py: a name not UTF-8, a name too
long for Rucio, a FIFO, a socket, links out of the root and nowhere, a future mtime, an empty file, a truncated
gzip, and a directory where a file was) goes through the real stack: every normal file ends verified at PIC and
deleted at ORM-ONSITE, each odd entry ends in a state with its reason, shown by ``rucio-magic status`` and counted.
Then the services go away: the storage renamed away mid-cycle, the REST server stopped, PostgreSQL unreachable for
a cycle and for several. Every test ends by reading the bytes at PIC and looking for the sources at ORM-ONSITE.
"""

from __future__ import annotations

import configparser
import contextlib
import dataclasses
import gzip
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from rucio_magic_ext.ledger import FileState
from rucio_magic_ext.naming import format_name
from tests.integration.conftest import FLOW
from tests.integration.scenery import (
    ORM,
    adler32_of,
    events_of,
    ledger,
    orm_root,
    placement,
    rows_of,
)
from tools.devstack import processes
from tools.devstack.daemons import SERVER, by_name
from tools.devstack.stack import ONCE_SCRIPT
from tools.devstack.waiting import in_rounds, wait_until
from tools.make_night import PlannedFile, plan_night, write_night
from tools.make_night.hostile import write_hostile

pytestmark = pytest.mark.integration


# -- running the stack's daemons with a rucio.cfg of the test's own ----------------------------------------------


def env_with(stack: Any, folder: Path, options: dict[str, dict[str, str]], db_port: int | None = None) -> dict:
    """The stack's environment with a copy of its rucio.cfg changed by ``options`` (and the database reached
    through ``db_port``): the shared configuration, which other tests read, stays as it is."""
    config = configparser.ConfigParser(interpolation=None)
    config.read(stack.settings.rucio_cfg)
    for section, values in options.items():
        if not config.has_section(section):
            config.add_section(section)
        for key, value in values.items():
            config.set(section, key, value)
    if db_port is not None:
        url = make_url(config.get("database", "default")).set(host="127.0.0.1", port=db_port)
        config.set("database", "default", url.render_as_string(hide_password=False))
    path = folder / "rucio.cfg"
    with open(path, "w") as stream:
        config.write(stream)
    env = dict(stack.env)
    env["RUCIO_CONFIG"] = str(path)
    return env


def run_round(env: dict, steps: tuple, log: Path, check: bool = True) -> int:
    argv = [sys.executable, str(ONCE_SCRIPT)]
    for step in steps:
        name, *args = (step,) if isinstance(step, str) else step
        argv += ["--then", str(by_name(name).once_entry), *args]
    with open(log, "ab") as stream:
        code = subprocess.run(argv, env=env, stdout=stream, stderr=subprocess.STDOUT, timeout=300).returncode
    assert code == 0 or not check, f"a round of {steps} exited with {code}; see {log}"
    return code


def flow_with(env: dict, log: Path, done: Callable[[], bool], rounds: int = 14) -> None:
    if in_rounds(lambda: run_round(env, FLOW, log), done, rounds) is None:
        pytest.fail(f"the flow did not get there in {rounds} rounds; see {log}", pytrace=False)


def magic(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rucio_magic_ext.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


# -- looks at the bytes ------------------------------------------------------------------------------------------


def deleted(paths: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        rows = ledger().known(ORM, paths)
        return len(rows) == len(paths) and all(row.state is FileState.DELETED for row in rows.values())

    return check


def assert_safe_at_pic(stack: Any, plan: list[PlannedFile]) -> None:
    """Every file at PIC-DISK with the bytes registered from it, and gone from ORM-ONSITE."""
    rows = rows_of(plan)
    for planned in plan:
        copy = stack.settings.storage_dir / "pic-disk" / placement(planned).path
        row = rows[planned.path]
        assert row.state is FileState.DELETED, (planned.path, row.state, row.last_error)
        assert (copy.stat().st_size, adler32_of(copy)) == (row.size, row.adler32)
        assert not (orm_root(stack) / planned.path).exists()


def extra(first: PlannedFile, run: int, data: bytes, root: Path, mtime: float, gz: bool = False) -> PlannedFile:
    """A file of the first folder beside the plan's, written now."""
    record = dataclasses.replace(first.record, run=run, subrun=1, compression="gz" if gz else None)
    planned = dataclasses.replace(first, record=record, path=f"{first.path.rsplit('/', 1)[0]}/{format_name(record)}",
                                  size=len(data))  # fmt: skip
    target = root / planned.path
    target.write_bytes(data)
    os.utime(target, (mtime, mtime))
    return planned


# -- the hostile night -------------------------------------------------------------------------------------------


def test_a_hostile_night_flows_and_each_odd_entry_says_why(rucio_stack: Any, tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    root = orm_root(rucio_stack)
    plan = plan_night(date(2023, 9, 1), runs=3, seed=93, scale=1e-5)
    write_night(plan, root, stamp_times=True)
    outside = rucio_stack.state / "outside-the-storage.bin"
    outside.write_bytes(b"never to be registered")
    odds = write_hostile(plan, root, outside)
    # A file seen while written, which a directory then replaces; a truncated gzip rewritten whole later.
    swapped = extra(plan[0], 9_990_001, os.urandom(3000), root, time.time() + 50)  # "being written" for a while
    metrics = tmp_path / "prometheus"
    metrics.mkdir()
    env = env_with(rucio_stack, tmp_path, {"magic-scanner": {"future_mtime_max_wait_seconds": "20"}})
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    log = tmp_path / "rounds.log"

    run_round(env, ("magic-scanner",), log)
    rows = ledger().known(ORM, [odd.path for odd in odds])
    for odd in odds:
        assert odd.path in rows, f"{odd.kind} never reached the ledger"
        row = rows[odd.path]
        assert row.state.value == odd.state and odd.says in (row.last_error or ""), (odd, row.state, row.last_error)
    assert all(row.state is FileState.PROTECTED for row in rows_of(plan).values())  # the night went on around them

    (root / swapped.path).unlink()
    (root / swapped.path).mkdir()  # a directory where the file was
    run_round(env, ("magic-scanner",), log)
    held = ledger().known(ORM, [swapped.path])[swapped.path]
    assert held.state is FileState.SEEN and held.attempts == 1 and "directory" in (held.last_error or "")

    shown = magic(env, "status", "--json", "--ledger-only")
    assert shown.returncode == 0, shown.stderr
    troubles = {t["path"]: t for t in json.loads(shown.stdout)["troubles"]}
    for odd in [*odds, dataclasses.replace(odds[0], path=swapped.path, state="SEEN", says="directory")]:
        if odd.kind == "future_mtime" and odd.path not in troubles:
            continue  # settled already, its wait bounded
        assert troubles[odd.path]["state"] == odd.state and odd.says in troubles[odd.path]["error"], odd
    assert "files held or set aside" in magic(env, "status", "--ledger-only").stdout

    (root / swapped.path).rmdir()
    (root / swapped.path).write_bytes(os.urandom(3000))
    os.utime(root / swapped.path, (time.time() - 60, time.time() - 60))
    back = magic(env, "retry", swapped.path, "--why", "the directory was a mistake; file restored", "--who", "shifter")
    assert back.returncode == 0, back.stdout + back.stderr
    cut = next(odd for odd in odds if odd.says == "gzip")
    whole = gzip.compress(os.urandom(5000), mtime=0)
    (root / cut.path).write_bytes(whole)
    os.utime(root / cut.path, (time.time() - 60, time.time() - 60))
    back = magic(env, "retry", "--state", "QUARANTINED", "--night", "2023-09-01", "--why", "rewritten by the DAQ")
    assert back.returncode == 0 and "2 file(s) put back" in back.stdout, back.stdout + back.stderr

    future = next(odd for odd in odds if odd.kind == "future_mtime")
    flow_with(env, log, deleted([p.path for p in plan] + [swapped.path, cut.path, future.path]))

    assert_safe_at_pic(rucio_stack, plan)
    gz_row = ledger().known(ORM, [cut.path])[cut.path]
    assert gz_row.state is FileState.DELETED and gz_row.size == len(whole)
    assert any(e.actor == "operator:shifter" for e in events_of(swapped.path))
    assert any("rewritten by the DAQ" in (e.detail or "") for e in events_of(cut.path))
    final = ledger().known(ORM, [odd.path for odd in odds])
    for odd in odds:
        if odd.kind in ("future_mtime",) or odd.says == "gzip":
            continue
        assert final[odd.path].state.value == odd.state, odd  # the empty file quarantined again, the rest refused
        assert os.path.lexists(os.fsdecode(os.fsencode(str(root)) + b"/" + odd.raw)), f"{odd.kind} left the disk"
    assert outside.read_bytes() == b"never to be registered"

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics))
    counted = {s.labels.get("kind"): s.value for m in registry.collect() for s in m.samples
               if s.name == "magic_scanner_odd_total"}  # fmt: skip
    for kind in ("not_utf8", "name_too_long", "not_regular", "symlink", "future_mtime", "quarantined", "unreadable"):
        assert counted.get(kind, 0) >= 1, (kind, counted)


# -- outages -----------------------------------------------------------------------------------------------------

UNMOUNT = textwrap.dedent(
    """
    import os, sys
    from rucio_magic_ext.scanner import cycle
    from rucio_magic_ext.scanner.daemon import build_context

    root, away = sys.argv[1], sys.argv[2]
    context = build_context()
    stages = []
    for name, function in cycle.STAGES:
        stages.append((name, function))
        if name == "discover":  # the storage goes away between two stages, as an unmount would
            stages.append(("unmount", lambda context: os.rename(root, away) or 0))
    print(cycle.run_cycle(context, tuple(stages)))
    """
)


def small_night(stack: Any, night: date, seed: int, files: int = 10) -> list[PlannedFile]:
    plan = plan_night(night, runs=3, seed=seed, scale=1e-5)[:files]
    write_night(plan, orm_root(stack), stamp_times=True)
    return plan


def test_storage_renamed_away_mid_cycle_and_rest_server_stopped(
    rucio_stack: Any, flow: Any, run_daemon_once: Any, tmp_path: Path
) -> None:
    plan = small_night(rucio_stack, date(2023, 9, 2), seed=94)
    root = orm_root(rucio_stack)
    away = root.with_name("orm-onsite-unmounted")
    try:
        done = subprocess.run([sys.executable, "-c", UNMOUNT, str(root), str(away)], env=rucio_stack.env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        assert "the storage does not answer" in done.stderr
        rows = rows_of(plan)
        assert {row.state for row in rows.values()} == {FileState.SEEN}  # seen, then nothing judged
        assert not any(row.last_error or row.attempts for row in rows.values())
        run_daemon_once("magic-scanner")  # a whole cycle while it is away: still nothing marked
        assert {row.state for row in rows_of(plan).values()} == {FileState.SEEN}
        assert not any(row.last_error for row in rows_of(plan).values())
    finally:
        if away.exists():
            away.rename(root)

    # The REST server stopped: the daemons work on the database; nothing in the flow needs it.
    processes.stop([rucio_stack.pid_file(SERVER.name)])
    try:
        assert not rucio_stack.ping()
        flow(deleted([p.path for p in plan]))
    finally:
        rucio_stack._start(SERVER)
        rucio_stack.wait_for_server()
    assert_safe_at_pic(rucio_stack, plan)


class Proxy:
    """A TCP proxy in front of PostgreSQL that the test's rucio.cfg points at. Stopping it cuts this test's
    daemons off the database (open connections and new ones) while the shared PostgreSQL, which other tests
    use at the same moment, keeps running."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.thread: threading.Thread | None = None
        self.running = threading.Event()

    def start(self) -> None:
        self.running.set()
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        listener.setblocking(False)
        self.thread = threading.Thread(target=self._serve, args=(listener,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.running.clear()
        if self.thread:
            self.thread.join(10)

    def _serve(self, listener: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ)
        pairs: dict[socket.socket, socket.socket] = {}
        while self.running.is_set():
            for key, _ in selector.select(0.2):
                sock = key.fileobj
                if sock.fileno() < 0:  # type: ignore[union-attr]  # closed with its pair earlier in this batch
                    continue
                if sock is listener:
                    client, _ = listener.accept()
                    try:
                        server = socket.create_connection(self.target)
                    except OSError:
                        client.close()
                        continue
                    pairs[client], pairs[server] = server, client
                    selector.register(client, selectors.EVENT_READ)
                    selector.register(server, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(65536)  # type: ignore[union-attr]
                except OSError:
                    data = b""
                if data:
                    try:
                        pairs[sock].sendall(data)  # type: ignore[index]
                        continue
                    except OSError:
                        pass
                other = pairs.pop(sock, None)  # type: ignore[arg-type]
                for one in (sock, other):
                    if one is not None:
                        pairs.pop(one, None)  # type: ignore[arg-type]
                        selector.unregister(one)
                        one.close()  # type: ignore[union-attr]
        for one in list(pairs):
            one.close()
        selector.close()
        listener.close()


def test_postgresql_unreachable_for_a_cycle_and_for_several(rucio_stack: Any, flow: Any, tmp_path: Path) -> None:
    url = make_url(rucio_stack.settings.db_url)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    env = env_with(rucio_stack, tmp_path, {}, db_port=proxy.port)
    plan = small_night(rucio_stack, date(2023, 9, 3), seed=95)
    scanner = [f"{sys.prefix}/bin/rucio-magic-scanner"]
    ledger().upgrade()  # as the daemons do at start: the ledger's tables exist even when this test runs first

    # One cycle without the database: the scanner says why and exits, marking nothing.
    once = subprocess.run([*scanner, "--run-once"], env=env, capture_output=True, text=True, timeout=120)
    said = once.stdout + once.stderr  # Rucio's logging writes to stdout
    assert once.returncode == 75, said[-3000:]
    assert "database does not answer" in said and "Traceback" not in said
    assert ledger().known(ORM, [p.path for p in plan]) == {}

    # Several cycles: the daemon runs on through them and resumes when the database is back.
    proxy.start()
    log = tmp_path / "scanner.log"
    with open(log, "wb") as stream:
        daemon = subprocess.Popen([*scanner, "--sleep-time", "1", "--partition-wait-time", "0"], env=env,
                                  stdout=stream, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_until(lambda: len(rows_of(plan)) == len(plan), 120, "the scanner did not see the night")
        proxy.stop()  # mid-flow: the files are somewhere between SEEN and PROTECTED
        said = lambda: log.read_text(errors="replace")  # noqa: E731
        wait_until(lambda: "does not answer" in said(), 60, lambda: f"no cycle met the outage: {said()[-3000:]}")
        assert daemon.poll() is None, said()[-3000:]  # the daemon's cycles meet no database, and it runs on
        proxy.start()
        with contextlib.suppress(TimeoutError):  # how far it got is asserted below, with the ledger's states
            wait_until(lambda: {row.state for row in rows_of(plan).values()} == {FileState.PROTECTED}, 120, "")
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)  # it ends the current step and exits, as Rucio's daemons do
        assert daemon.wait(timeout=30) == 0
        stopped_in = time.monotonic() - started
    finally:
        if daemon.poll() is None:
            daemon.kill()
        proxy.stop()
    text = log.read_text()
    assert stopped_in < 30
    assert text.count("does not answer") >= 1 and "answers again" in text, text[-3000:]
    assert not any(row.state in (FileState.QUARANTINED, FileState.REJECTED) or row.attempts
                   for row in rows_of(plan).values())  # fmt: skip
    flow(deleted([p.path for p in plan]))
    assert_safe_at_pic(rucio_stack, plan)
