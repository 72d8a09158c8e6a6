"""The README's quick start, run as written: steps 2 to 7 of its admin guide, in a shell, on a database of their own.

Step 1 (PostgreSQL's role and database, the venv) is the machine's: here the suite's venv and a fresh database on
the suite's PostgreSQL take its place, and its variables (MAGIC, DATABASE, PORT) are set as it sets them. The only
changes to the README's lines are the two it names for a trial: ``--trial`` on ``rucio-magic examples`` and
``--sleep-time 2`` for every daemon. Nothing of the dev stack is used: the REST server and every daemon are the
README's command lines, started as it starts them, stopped at the end. The night is the README's one file; the test
ends when it is deleted at the observatory, its copy at PIC-DISK holding the bytes written.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tools.devstack.waiting import wait_until

README = Path(__file__).resolve().parents[2] / "README.md"
BIN = Path(sys.executable).parent
NAME = "20200103_M1_05086952.001_D_CrabNebula-W0.40+035.raw.gz"
COPY = Path("storage/pic-disk/M1/RAW/2020/01/03") / NAME
SOURCE = Path("storage/orm-onsite/M1/DAQ/RAW/2020_01_03") / NAME
TRIAL_SLEEP = "--sleep-time 2"


def quick_start() -> list[str]:
    """The quick start's shell blocks, in order."""
    text = README.read_text()
    section = text[text.index("### Quick start") :]
    section = section[: section.index("\n### ", 1)]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def step(blocks: list[str], number: int) -> str:
    (found,) = [block for block in blocks if block.startswith(f"# step {number}:")]
    return found


def for_a_trial(block: str) -> str:
    """The two changes the README names for a trial, and nothing else."""
    block = re.sub(r"--sleep-time \d+", TRIAL_SLEEP, block)
    return re.sub(r"(rucio-magic examples [^\n]*)", r"\1 --trial", block)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Step 1's variables, on a database of the test's own, dropped at the end."""
    database = f"rucio_magic_qs_{uuid.uuid4().hex[:10]}"
    admin = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c"]
    subprocess.run([*admin, f"CREATE DATABASE {database}"], check=True)
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("RUCIO_", "PROMETHEUS", "POLICY"))
    }
    env.update(
        PATH=f"{BIN}:{env.get('PATH', '')}",
        MAGIC=str(tmp_path / "magic"),
        DATABASE=f"postgresql+psycopg://postgres@127.0.0.1/{database}",
        PORT=str(_free_port()),
    )
    yield env
    subprocess.run([*admin, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"], check=False)


def run(block: str, env: dict[str, str], timeout: float = 300) -> str:
    """A block's lines in one shell, as a person pastes them; it must succeed."""
    done = subprocess.run(["bash", "-euc", block], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{block}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def start(block: str, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    """Each ``... &`` line of a block, as its own process group, so that each is stopped alone."""
    lines = [line.rstrip()[:-1] for line in block.splitlines() if line.rstrip().endswith("&")]
    return [subprocess.Popen(["bash", "-c", f"exec {line}"], env=env, start_new_session=True) for line in lines]


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def wait_for(what: str, check: Callable[[], bool], timeout: float, env: dict[str, str]) -> None:
    """``check`` true within ``timeout`` seconds, else the test fails with where the flow stands and the logs."""
    try:
        wait_until(check, timeout, what, every=2)
        return
    except TimeoutError:
        pass
    status = subprocess.run(["rucio-magic", "status", "--ledger-only"], env=env, capture_output=True, text=True)
    logs = Path(env["MAGIC"], "etc", "log")
    tails = {p.name: p.read_text()[-1500:] for p in sorted(logs.glob("*.log"))}
    pytest.fail(f"{what} not within {timeout} s\n{status.stdout}{status.stderr}\n" + json.dumps(tails, indent=1))


@pytest.mark.integration
def test_the_readme_quick_start_deletes_a_night_at_the_source(site: dict[str, str]) -> None:
    blocks = quick_start()
    assert step(blocks, 1) and "export MAGIC=" in step(blocks, 1)
    magic = Path(site["MAGIC"])
    run(for_a_trial(step(blocks, 2)), site)
    site["RUCIO_CONFIG"] = str(magic / "etc" / "rucio.cfg")  # step 2's export, kept for the next blocks
    run(step(blocks, 3), site)
    assert "ORM-ONSITE" in run(step(blocks, 4), site)
    processes = start(step(blocks, 5), site)
    try:
        port = int(site["PORT"])
        wait_for("the REST server", lambda: _answers(port), 60, site)
        processes += start(for_a_trial(step(blocks, 6)), site)
        written = run(step(blocks, 7), site)
        assert "MAGIC flow at" in written
        source, copy = magic / SOURCE, magic / COPY
        data = source.read_bytes()
        wait_for("the source deleted, as the ledger says", lambda: not source.exists() and _deleted(site), 300, site)
    finally:
        stop(processes)
    assert f"{zlib.adler32(copy.read_bytes()):08x}" == f"{zlib.adler32(data):08x}"
    assert not source.exists()


def _deleted(env: dict[str, str]) -> bool:
    story = subprocess.run(["rucio-magic", "history", NAME], env=env, capture_output=True, text=True).stdout
    return "now DELETED" in story


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
