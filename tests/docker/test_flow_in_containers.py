"""The MAGIC flow in containers: XRootD storages, the REST server under httpd, the stock and the project's daemons.

A synthetic night is written into the ORM-ONSITE storage container (xrd1); the scanner registers and
protects it, the magic transfer tool copies it to PIC-DISK (xrd2) by third-party copy from the daemons'
containers, the carrier releases the source rules once the copies are verified and the reaper deletes the
files at the observatory. Mid-night the scanner's container is killed and started again and the REST server
restarted. The tests check the end state in Rucio and on both storages, by the storages' own adler32.
Skipped with the reason when no container engine answers (see conftest.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from tests.docker.conftest import Stack

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
FLOW_TIMEOUT = float(os.environ.get("RUCIO_MAGIC_FLOW_TIMEOUT", "1800"))

NIGHT = "2020-01-04"
ORM_ROOT = "/rucio/orm-onsite"
PIC_ROOT = "/rucio/pic-disk"
POLL_SECONDS = 5
WATCHED_DAEMONS = ("magic-scanner", "magic-carrier", "judge-evaluator", "magic-conveyor-submitter",
                   "magic-conveyor-poller", "conveyor-finisher", "reaper")
RESTART_TIMEOUT = 180

# Runs in the client container: Rucio's replicas of the given file names, as JSON, through the REST server.
REPLICAS_SCRIPT = """
import json, sys
from rucio.client import Client
from rucio.common.exception import DataIdentifierNotFound
from rucio_magic_ext.layout import scope_of_name

client = Client()
report = {}
for name in json.load(sys.stdin):
    try:
        scope = scope_of_name(name)
    except Exception:
        report[name] = None
        continue
    try:
        found = list(client.list_replicas([{"scope": scope, "name": name}], all_states=True, schemes=["root"]))
    except DataIdentifierNotFound:
        found = []
    replica = found[0] if found else {}
    report[name] = {"scope": scope, "bytes": replica.get("bytes"), "adler32": replica.get("adler32"),
                    "states": replica.get("states") or {}, "pfns": replica.get("rses") or {}}
print(json.dumps(report))
"""

# Runs in the client container: the PFN that the REST server computes at PIC-DISK for a MAGIC file. PIC-DISK's
# lfn2pfn_algorithm is the policy package's `magic`: only a server that loaded the package answers it.
LFN2PFN_SCRIPT = """
import json, sys
from rucio.client import Client
from rucio_magic_ext.layout import scope_of_name

name = json.load(sys.stdin)
did = f"{scope_of_name(name)}:{name}"
print(json.dumps(Client().lfns2pfns("PIC-DISK", [did], operation="read", scheme="root")[did]))
"""


def _adler32(path: Path) -> str:
    value = 1
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            value = zlib.adler32(chunk, value)
    return f"{value & 0xFFFFFFFF:08x}"


@dataclass(frozen=True)
class WrittenFile:
    path: str  # relative to the storage root, as the telescopes lay it out
    size: int
    adler32: str


@dataclass(frozen=True)
class Night:
    root: Path
    files: dict[str, WrittenFile]  # by file name (the DID name)


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Night:
    """A small synthetic night (3 runs, a few hundred kB) written on the host by tools/make_night."""
    root = tmp_path_factory.mktemp("night")
    subprocess.run([sys.executable, str(REPO / "tools" / "make_night"), str(root), "--night", NIGHT,
                    "--runs", "3", "--scale", "1e-5", "--seed", "7"], check=True, cwd=REPO, timeout=300)
    files = {path.name: WrittenFile(str(path.relative_to(root)), path.stat().st_size, _adler32(path))
             for path in sorted(root.rglob("*")) if path.is_file()}
    assert files, "make_night wrote nothing"
    return Night(root, files)


def _storage_path(pfn: str) -> str:
    """root://xrd2:1095//rucio/pic-disk/M1/... -> /rucio/pic-disk/M1/..."""
    return "/" + urlsplit(pfn).path.lstrip("/")


def _replicas(stack: Stack, names: list[str]) -> dict[str, Any]:
    report = stack.python_json("client", REPLICAS_SCRIPT, names)
    assert isinstance(report, dict)
    return report


def test_server_is_rucio_41_under_httpd_with_the_magic_policy_package(stack: Stack, night: Night) -> None:
    from rucio_magic_ext.layout import path as magic_path
    from rucio_magic_ext.naming import parse

    pinged = stack.exec("rucio", "curl", "-fsS", "http://localhost/ping").stdout
    assert json.loads(pinged)["version"].startswith("41."), pinged
    processes = stack.exec("rucio", "ps", "-eo", "comm").stdout.split()
    assert "apache2" in processes, processes
    policy = stack.python_json("rucio", "import json; from rucio.common.config import config_get; "
                                        "print(json.dumps(config_get('policy', 'package')))")
    assert policy == "rucio_magic_ext.policy"
    name = sorted(night.files)[0]
    pfn = stack.python_json("client", LFN2PFN_SCRIPT, name)
    assert isinstance(pfn, str)
    assert _storage_path(pfn) == f"{PIC_ROOT}/{magic_path(parse(name))}", pfn


def test_site_bootstrap_is_in_place_and_idempotent(stack: Stack) -> None:
    # init.sh bootstrapped the site at start-up; the same description again changes nothing.
    result = stack.exec("client", "rucio-magic", "bootstrap", "--site", "/etc/rucio-magic/site.cfg")
    assert "nothing changed" in result.stdout, result.stdout + result.stderr
    rses = stack.exec("client", "rucio", "rse", "list").stdout
    assert "ORM-ONSITE" in rses and "PIC-DISK" in rses, rses


def _started_at(stack: Stack, service: str) -> str:
    return stack.podman("inspect", "--format", "{{.State.StartedAt}}", stack.container(service)).stdout.strip()


def _kill_and_start(stack: Stack, service: str) -> None:
    """SIGKILL the service's container, as a crash would, and see it run again (its restart policy, or a start)."""
    before = _started_at(stack, service)
    stack.podman("kill", "--signal", "KILL", stack.container(service))
    deadline = time.monotonic() + RESTART_TIMEOUT
    while _started_at(stack, service) == before or stack.states()[service][0] != "running":
        if stack.states()[service][0] == "exited":
            stack.podman("start", stack.container(service))
        if time.monotonic() > deadline:
            raise AssertionError(f"{service} did not run again within {RESTART_TIMEOUT} s")
        time.sleep(1)


def test_night_is_replicated_to_pic_and_deleted_at_orm(stack: Stack, night: Night) -> None:
    from rucio_magic_ext.layout import path as magic_path
    from rucio_magic_ext.naming import parse

    # The telescopes write the night into the observatory storage (as the xrootd user, like the server).
    stack.podman("cp", f"{night.root}/.", f"{stack.container('xrd1')}:{ORM_ROOT}/")
    stack.exec("xrd1", "chown", "-R", "xrootd:xrootd", ORM_ROOT)

    names = sorted(night.files)
    deadline = time.monotonic() + FLOW_TIMEOUT
    report: dict[str, Any] = {}
    scanner_killed = server_restarted = False
    while True:
        report = _replicas(stack, names)
        expected = {name for name, entry in report.items() if entry is not None}
        known = {name for name in expected if report[name]["states"]}
        done = {name for name in expected
                if report[name]["states"].get("PIC-DISK") == "AVAILABLE" and "ORM-ONSITE" not in report[name]["states"]}
        if expected and done == expected:
            break
        # Mid-night: the scanner dies once it has registered part of the night, then the REST server restarts
        # once copies have begun; the night goes on from where each left it.
        if known and not scanner_killed:
            _kill_and_start(stack, "magic-scanner")
            scanner_killed = True
        elif scanner_killed and not server_restarted and any(
                report[name]["states"].get("PIC-DISK") for name in known):
            stack.podman("restart", stack.container("rucio"))
            stack.wait_ping(RESTART_TIMEOUT)
            server_restarted = True
        if time.monotonic() > deadline:
            registered = sum(1 for name in expected if report[name]["states"])
            at_pic = sum(1 for name in expected if report[name]["states"].get("PIC-DISK") == "AVAILABLE")
            at_orm = sum(1 for name in expected if "ORM-ONSITE" in report[name]["states"])
            print(stack.logs(WATCHED_DAEMONS, tail=40))
            pytest.fail(f"after {FLOW_TIMEOUT:.0f} s, of {len(expected)} MAGIC files: {registered} known to Rucio, "
                        f"{at_pic} AVAILABLE at PIC-DISK, {at_orm} still with a replica at ORM-ONSITE")
        time.sleep(POLL_SECONDS)

    assert expected == set(names), f"not MAGIC names: {sorted(set(names) - expected)}"
    assert scanner_killed and server_restarted, "the night ended before the scanner was killed or the server restarted"

    # Rucio recorded the bytes and checksums that were written.
    for name in expected:
        written = night.files[name]
        assert (report[name]["bytes"], report[name]["adler32"]) == (written.size, written.adler32), name

    # The PIC copies sit at the MAGIC layout and hold the same bytes, by the storage's own adler32.
    pic_paths = {}
    for name in expected:
        pfns = report[name]["pfns"].get("PIC-DISK") or []
        assert pfns, f"{name}: no PFN at PIC-DISK"
        pic_paths[name] = _storage_path(pfns[0])
        assert pic_paths[name] == f"{PIC_ROOT}/{magic_path(parse(name))}", pfns[0]
    listing = stack.exec("xrd2", "sh", "-c", 'for f in "$@"; do xrdadler32 "$f"; done', "sh",
                         *pic_paths.values()).stdout
    at_pic = {}
    for line in listing.splitlines():
        checksum, _, path = line.strip().partition(" ")
        if path:
            at_pic[path.strip()] = checksum.lower().rjust(8, "0")
    for name, path in pic_paths.items():
        assert at_pic.get(path) == night.files[name].adler32, f"{path}: {at_pic.get(path)}"

    # Nothing of the night is left at the observatory.
    left = set(stack.exec("xrd1", "find", ORM_ROOT, "-type", "f").stdout.split())
    still_there = sorted(path for path in (f"{ORM_ROOT}/{f.path}" for f in night.files.values()) if path in left)
    assert not still_there, still_there[:10]
