"""Real storage at both ends: the scanner's discovery, the server's checksum and the copy over root://.

Two unprivileged XRootD servers on 127.0.0.1 (tools/devstack/xrootd.py: an observatory and a data centre,
adler32 computed by the server, root:// third-party copy allowed), with their state in a temporary folder
removed at the end. Each figure has its baseline measured in the same run, on the same files:

- ``xrootd.incremental_cycle[K=…]``: the scanner's discover stage (``scanner/discover.py``, as a cycle runs
  it) over root:// with K files already known (ledger rows bulk-inserted by ``seed.py``, every folder
  recorded as the previous cycle listed it) and 100 new files in the night's folder; baseline: the same
  stage over posix on the same files, read directly in the server's data folder. Best of two cycles each,
  every cycle with 100 new files of its own, which both storages discover (in turn, the order alternated).
- ``xrootd.server_checksum``: adler32 of a large file by the server's checksum query (it reads the file
  itself), against streaming the file through the client and computing adler32 here, as the storage does
  for a server without checksums. Page cache dropped before each pass. ``.repeated``: the same query again,
  answered from the value the server stored.
- ``xrootd.copy_bytes_per_s``: a night of files copied between the two servers by the project's storage
  copy (``XRootDStorage.copy``: third-party, then proven by the destination's adler32), as many at once as
  the transfer tool of the XRootD dev stack runs, against ``xrdcp --tpc first --parallel`` of the same files
  between the same servers.
"""

from __future__ import annotations

import math
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from tools.bench import benchstack, nights, seed
from tools.bench.checksum import drop_cache, write_file
from tools.bench.report import Figure, Target
from tools.devstack import database
from tools.devstack import xrootd as servers
from tools.make_night import plan_night, write_night

FIRST_NIGHT = date(2019, 6, 1)
TARGET_SECONDS = 3.0
TARGET_COPY_RATIO = 0.8
REPEAT = 2  # cycles per storage, and checksum passes: the best counts (other work shares the machine)
RSE_XROOTD, RSE_POSIX = "ORM-XRD", "ORM-POSIX"  # one ledger, the same files seen through each storage
PREFIX = "orm"  # the RSE's folder in the observatory server's data
COPY_PARALLEL = 6  # magic_max_active of the XRootD dev stack


@dataclass(frozen=True)
class Scale:
    known: int
    new: int
    checksum_bytes: int
    copy_files: int
    copy_bytes: int


FULL = Scale(known=100_000, new=100, checksum_bytes=2 << 30, copy_files=200, copy_bytes=300_000_000)
QUICK = Scale(known=10_000, new=100, checksum_bytes=64 << 20, copy_files=40, copy_bytes=40_000_000)


def missing() -> str | None:
    """Why the benchmark cannot run here, or None."""
    reason = servers.missing()
    if reason:
        return f"no XRootD server: {reason}"
    try:
        from XRootD import client  # noqa: F401
    except ImportError:
        return "no XRootD Python client: pip install xrootd (extra 'xrootd')"
    return None


def run(place: benchstack.Place, scale: Scale) -> list[Figure]:
    reason = missing()
    if reason:
        print(f"xrootd: skipped, {reason}", file=sys.stderr)
        return [Figure("xrootd", math.nan, "", detail=f"skipped: {reason}")]
    state = Path(tempfile.mkdtemp(prefix="rucio-magic-bench-xrootd-"))
    state.chmod(0o755)  # the servers run as nobody under root: they must traverse it
    started: list[servers.XrootdServer] = []
    try:
        orm = _start(state, "orm", started)
        pic = _start(state, "pic", started)
        return [
            discovery(place, orm, scale),
            *server_checksum(orm, scale.checksum_bytes),
            copy_night(orm, pic, scale.copy_files, scale.copy_bytes),
        ]
    finally:
        for server in started:
            server.stop()
        shutil.rmtree(state, ignore_errors=True)


def _start(state: Path, name: str, started: list[servers.XrootdServer]) -> servers.XrootdServer:
    server = servers.XrootdServer(name, state / name, servers.free_port(), servers.free_port())
    started.append(server)
    server.start()
    print(f"xrootd: server {name} at {server.root_url}, data in {server.data}", file=sys.stderr)
    return server


# -- the scanner's discovery ------------------------------------------------------------------------------


def discovery(place: benchstack.Place, orm: servers.XrootdServer, scale: Scale) -> Figure:
    from rucio_magic_ext.ledger import Ledger

    own = benchstack.Place(place.state, place.port, f"{place.pg_database}_xrootd")  # a database of its own
    settings = own.stack({}).settings
    database.drop(settings)
    database.create(settings)
    try:
        ledger = Ledger.from_url(settings.db_url)
        ledger.upgrade()
        try:
            return _discovery(ledger, orm, scale)
        finally:
            ledger.engine.dispose()
    finally:
        database.drop(settings)


def _discovery(ledger: Any, orm: servers.XrootdServer, scale: Scale) -> Figure:
    from rucio_magic_ext.common import utcnow
    from rucio_magic_ext.storage.posix import PosixStorage
    from rucio_magic_ext.storage.xroot import XRootDStorage

    k, new = scale.known, scale.new
    root = orm.data / PREFIX
    plan = nights.plan_files(k + REPEAT * new, FIRST_NIGHT)
    began = time.monotonic()
    now = utcnow()
    tail_night = seed.night_of(plan[-1])
    seed.create_files(root, plan[:k])
    stores = {
        RSE_POSIX: (PosixStorage(root=str(root)), str(root)),
        RSE_XROOTD: (XRootDStorage(root=orm.url(PREFIX)), f"/{PREFIX}"),
    }
    for rse, (storage, native) in stores.items():
        seed.add_rows(ledger, rse, plan[:k], tail_night, now)
        seed.close_nights(ledger, rse, {seed.night_of(p) for p in plan[:k]} - {tail_night}, now)
        folders = _record_folders(ledger, rse, storage, native)
    seed.settle_database(ledger)
    print(f"xrootd: K={k} known ({folders} folders, seeded in {time.monotonic() - began:.0f} s)", file=sys.stderr)
    cycles: dict[str, list[dict[str, Any]]] = {rse: [] for rse in stores}
    for attempt in range(REPEAT):
        time.sleep(1.1)  # XRootD gives folder mtimes in whole seconds: the new files must move them
        write_night(plan[k + attempt * new : k + (attempt + 1) * new], root, stamp_times=True)
        order = list(stores) if attempt % 2 == 0 else list(reversed(stores))
        for rse in order:
            storage, native = stores[rse]
            cycles[rse].append(_discover_once(ledger, rse, storage, native))
    best = {rse: min(runs, key=lambda cycle: cycle["seconds"]) for rse, runs in cycles.items()}
    found = ", ".join(f"{cycle['discovered']}" for cycle in cycles[RSE_XROOTD])
    return Figure(
        f"xrootd.incremental_cycle[K={k}]",
        best[RSE_XROOTD]["seconds"],
        "s",
        baseline=best[RSE_POSIX]["seconds"],
        baseline_name="posix",
        target=Target(TARGET_SECONDS, "<="),
        detail=(
            f"scanner's discover stage over root://, best of {REPEAT}; {found} of {new} new discovered; "
            f"{folders} folders, {k} files known; posix: the same files in the server's data folder"
        ),
        extra={"cycles": cycles, "folders": folders},
    )


def _record_folders(ledger: Any, rse: str, storage: Any, native: str) -> int:
    """Every folder as the storage gives it now, as the previous cycle left it in the ledger."""
    from rucio_magic_ext.ledger.paths import to_text

    mtimes = {}
    for folder in storage.folders(native):
        relative = os.path.relpath(folder.path, native) if folder.path != native else ""
        mtimes[to_text(relative)] = folder.mtime
    ledger.save_folders(rse, mtimes)
    return len(mtimes)


def _discover_once(ledger: Any, rse: str, storage: Any, native: str) -> dict[str, Any]:
    """The discover stage of one scanner cycle, as the cycle runs it, timed."""
    from rucio_magic_ext.scanner.config import ScannerConfig
    from rucio_magic_ext.scanner.context import Context
    from rucio_magic_ext.scanner.discover import discover

    config = ScannerConfig(rse=rse, replication_policy=Path("unused"))
    context = Context(config, ledger, None, storage, None, native)  # type: ignore[arg-type]  # discover needs neither
    started = time.perf_counter()
    discovered = discover(context)
    return {"seconds": time.perf_counter() - started, "discovered": discovered, "rse": rse}


# -- the server's checksum ---------------------------------------------------------------------------------


def server_checksum(orm: servers.XrootdServer, size: int) -> list[Figure]:
    from rucio_magic_ext.checksum import ADLER32, StreamingChecksum, read_blocks
    from rucio_magic_ext.storage.xroot import XRootDStorage

    folder = orm.data / "checksum"
    folder.mkdir()
    path = folder / "payload.bin"
    print(f"xrootd: {size / (1 << 30):.2f} GiB file for the checksum, page cache dropped before each pass",
          file=sys.stderr)
    write_file(path, size)
    orm.adopt(path)  # the server's own file: it may store the checksum it computed (an extended attribute)
    storage = XRootDStorage(endpoint=orm.root_url)
    location = orm.url("checksum/payload.bin")

    def streamed() -> str:
        digest = StreamingChecksum((ADLER32,))
        with storage.open_read(location) as reader:
            for block in read_blocks(reader):
                digest.update(block)
        return digest.hexdigests()[ADLER32]

    def queried() -> str:
        proven = storage.checksum_detail(location, (ADLER32,), stream=False)
        assert proven.storage_side and ADLER32 in proven.values, proven
        return proven.values[ADLER32]

    seconds: dict[str, list[float]] = {"streamed": [], "first": [], "repeated": []}
    values = set()
    for attempt in range(REPEAT):
        stamp = time.time() - 3600 * (attempt + 1)  # a new mtime: the server's stored value no longer holds
        os.utime(path, (stamp, stamp))
        for name, how, cold in (("streamed", streamed, True), ("first", queried, True), ("repeated", queried, False)):
            if cold:
                drop_cache(path)
            began = time.perf_counter()
            values.add(how())
            seconds[name].append(time.perf_counter() - began)
    if len(values) != 1:
        raise AssertionError(f"the ways of computing adler32 disagree: {sorted(values)}")
    best = {name: min(times) for name, times in seconds.items()}
    mb = size / 1e6
    gib = size / (1 << 30)
    return [
        Figure(
            "xrootd.server_checksum",
            mb / best["first"],
            "MB/s",
            baseline=mb / best["streamed"],
            baseline_name="streamed",
            detail=(
                f"{gib:.2f} GiB, first query (the server reads the file) {best['first']:.2f} s, streamed through "
                f"the client and computed here {best['streamed']:.2f} s; best of {REPEAT}, page cache dropped"
            ),
            extra={"seconds": seconds, "size_bytes": size, "adler32": values.pop()},
        ),
        Figure(
            "xrootd.server_checksum.repeated",
            best["repeated"] * 1000,
            "ms",
            baseline=best["streamed"] * 1000,
            baseline_name="streamed",
            detail="the same query again, answered from the value the server stored",
        ),
    ]


# -- copies between the two servers ------------------------------------------------------------------------


def copy_night(orm: servers.XrootdServer, pic: servers.XrootdServer, count: int, total: int) -> Figure:
    from rucio_magic_ext.storage.xroot import XRootDStorage

    plan = _night_of_bytes(count, total)
    source = orm.data / "night"
    write_night(plan, source, stamp_times=True)
    orm.adopt_tree(source)
    size = sum((source / planned.path).stat().st_size for planned in plan)
    urls = [orm.url(f"night/{planned.path}") for planned in plan]
    names = [planned.path.rsplit("/", 1)[1] for planned in plan]
    print(f"xrootd: copying {len(plan)} files, {size / 1e6:.0f} MB, {COPY_PARALLEL} at once", file=sys.stderr)
    origin = XRootDStorage(root=orm.url("night"))
    for url in urls:  # as the scanner left them: checksummed on the source's server already
        origin.checksum(url)

    subprocess.run(["xrdfs", pic.root_url, "mkdir", "-p", "/xrdcp"], check=True, capture_output=True)
    began = time.perf_counter()
    result = subprocess.run(
        ["xrdcp", "--tpc", "first", "--parallel", str(COPY_PARALLEL), "--silent", *urls, f"{pic.root_url}//xrdcp/"],
        capture_output=True,
        text=True,
    )
    xrdcp_seconds = time.perf_counter() - began
    if result.returncode != 0:
        raise RuntimeError(f"xrdcp exited with {result.returncode}: {result.stderr[-2000:]}")
    copied = [(pic.data / "xrdcp" / name).stat().st_size for name in names]
    if sum(copied) != size:
        raise AssertionError(f"xrdcp wrote {sum(copied)} bytes of {size}")

    jobs: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
    for url, name in zip(urls, names):
        jobs.put((url, pic.url(f"project/{name}")))
    methods: dict[str, int] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def copier() -> None:  # one copier, as one job of the transfer tool: its own storages, files in turn
        origin = XRootDStorage(root=orm.url("night"))
        target = XRootDStorage(root=pic.url("project"))
        while True:
            try:
                source, destination = jobs.get_nowait()
            except queue.Empty:
                return
            try:
                origin.stat(source)
                done = target.copy(source, destination, source_storage=origin)
            except BaseException as error:
                with lock:
                    errors.append(error)
                return
            with lock:
                methods[done.method] = methods.get(done.method, 0) + 1

    began = time.perf_counter()
    threads = [threading.Thread(target=copier) for _ in range(COPY_PARALLEL)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    project_seconds = time.perf_counter() - began
    if errors:
        raise errors[0]
    how = ", ".join(f"{n} {method}" for method, n in sorted(methods.items()))
    return Figure(
        "xrootd.copy_bytes_per_s",
        size / project_seconds / 1e6,
        "MB/s",
        baseline=size / xrdcp_seconds / 1e6,
        baseline_name="xrdcp",
        target=Target(TARGET_COPY_RATIO, ">=", on_ratio=True),
        detail=(
            f"{len(plan)} files, {size / 1e6:.0f} MB, {COPY_PARALLEL} at once: {how}, each proven by the "
            f"destination's adler32, {project_seconds:.1f} s; xrdcp --tpc first --parallel {COPY_PARALLEL} "
            f"{xrdcp_seconds:.1f} s"
        ),
        extra={"bytes": size, "files": len(plan), "seconds": project_seconds, "xrdcp_seconds": xrdcp_seconds,
               "methods": methods, "parallel": COPY_PARALLEL},
    )


def _night_of_bytes(count: int, total: int) -> list[Any]:
    """The first ``count`` files of a night, scaled so that together they hold about ``total`` bytes."""
    night = date(2026, 11, 1)
    full = sum(planned.size for planned in plan_night(night)[:count])
    return plan_night(night, scale=total / full)[:count]
