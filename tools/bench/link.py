"""Two sites, one link: how soon a night is safe at PIC, against what the link between La Palma and PIC allows.

ORM-ONSITE's XRootD server runs in a network namespace of its own, joined to this host (Rucio's server, its
database, PIC-DISK's XRootD server and every daemon, as at PIC) by one veth link shaped by ``tc tbf``
(``tools/devstack/link.py``). Nothing on PIC's side reads ORM's folder: listing, checksums (the server's
adler32), DL3 header ranges, the third-party copies and the re-read before release all cross the link.

A night scaled so that its copy is link-bound (``Setup``: 745 MB at 10 Mbit/s, about 10 minutes) goes through:

* stock Rucio: the files registered beforehand, one rule per run dataset to PIC-DISK, the same conveyor at the
  same sleep times (``stock.py``), first rule to last copy AVAILABLE;
* the project's flow with every daemon at production sleep times, the night written at once;
* the same, the night trickled as the DAQ writes it, over the link's limit.

Each is sampled every second: the link's own byte counters, the night's bytes written and still at ORM.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tools.bench import benchstack, chain, children, stock
from tools.bench.link_figures import LinkRun, Sample, figures
from tools.bench.report import Figure
from tools.devstack.daemons import DAEMONS
from tools.devstack.link import Link
from tools.devstack.stack import Stack
from tools.make_night import PlannedFile, write_night

CALIBRATION_BYTES = 16 * 2**20  # one plain copy, long enough that its set-up is lost in its framing


@dataclass(frozen=True)
class Setup:
    """The night, the link, and the flow's settings: those of the chain benchmark, over the link."""

    rate_mbit: float = 10
    files: int = chain.REAL_NIGHT_FILES
    scale: float = 1e-3  # a real night's sizes times this: 745 MB, 596 s at 10 Mbit/s
    settle: int = 30
    carrier_max_age: int = 30
    # Third-party copies wait on the servers (XRootD's client polls the destination every 2.5 s), so a site
    # keeps enough of them under way to fill its link: FTS runs dozens per link.
    max_active: int = 30
    own_sleep: bool = True
    timeout: float = 3600

    def chain_setup(self) -> chain.Setup:
        return chain.Setup(files=self.files, scale=self.scale, settle=self.settle,
                           carrier_max_age=self.carrier_max_age, own_sleep=self.own_sleep)


FULL = Setup()
QUICK = Setup(files=300, scale=2e-4, settle=5, carrier_max_age=10, own_sleep=False, timeout=900)


def run(place: benchstack.Place, setup: Setup) -> list[Figure]:
    plan = chain.night(setup.chain_setup())
    night = sum(planned.size for planned in plan)
    real = sum(planned.size for planned in chain.night(dataclasses.replace(setup.chain_setup(), scale=1.0)))
    limit = night * 8 / (setup.rate_mbit * 1e6)
    print(f"link: {len(plan)} files, {night / 1e6:.0f} MB over {setup.rate_mbit:g} Mbit/s: the link's limit "
          f"{limit:.0f} s", file=sys.stderr)
    runs: list[LinkRun] = []
    for measure in (lambda: _stock(place, plan, setup), lambda: _magic(place, plan, setup, 0.0),
                    lambda: _magic(place, plan, setup, limit / len(plan))):  # the last written over the link's limit
        runs.append(dataclasses.replace(measure(), real_bytes=real))
        for figure in figures(runs):  # as each run ends: a run stopped later keeps what was measured
            print(f"link: {figure.line()}", file=sys.stderr)
    return figures(runs)


@contextmanager
def _two_sites(place: benchstack.Place, setup: Setup, extra: dict[str, dict[str, str]], log: str) -> Iterator[Stack]:
    extra = {**extra, "conveyor": {"magic_max_active": str(setup.max_active)}}
    with benchstack.running(place, extra, log, storage="xrootd", link_mbit=setup.rate_mbit) as stack:
        yield stack


class _Watch:
    """Samples the link and the observatory's folder every second in a thread of its own."""

    def __init__(self, link: Link, root: Path, plan: list[PlannedFile]) -> None:
        self.link, self.root, self.plan = link, root, plan
        self.written = 0
        self.closed: dict[str, float] = {}
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> _Watch:
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join()
        return self.samples

    def _loop(self) -> None:
        sizes = {planned.path: planned.size for planned in self.plan}
        while True:
            held = sum(sizes[path] for path in list(self.closed) if (self.root / path).exists())
            crossed = self.link.crossed()
            self.samples.append(Sample(time.time(), crossed["from_orm"], crossed["to_orm"], self.written, held))
            if self._stop.wait(1.0):
                return

    def observer(self, stack: Stack) -> Callable[[PlannedFile, int, bool], None]:
        def observe(planned: PlannedFile, written: int, done: bool) -> None:
            if done:
                path = self.root / planned.path
                stack.adopt(path)
                self.closed[planned.path] = os.stat(path).st_mtime
                self.written += planned.size
        return observe


def _framing(stack: Stack) -> float:
    """Bytes over the link per byte of one plain xrdcp of a large file from ORM's server, outside the night's
    folder: the link's framing (IP, TCP and Ethernet headers, which its counters count), nothing per file."""
    assert stack.link is not None
    server = stack.xrootd_servers()["orm"]
    path = server.data / "link-calibration"
    path.write_bytes(os.urandom(CALIBRATION_BYTES))
    server.adopt(path)
    try:
        before = stack.link.crossed()["from_orm"]
        subprocess.run(["xrdcp", "--force", "--nopbar", server.url("/link-calibration"), "/dev/null"], check=True,
                       capture_output=True, timeout=CALIBRATION_BYTES * 8 / (stack.link.rate_mbit * 1e6) * 5 + 30,
                       env={**os.environ, **server.client_env()})
        return (stack.link.crossed()["from_orm"] - before) / CALIBRATION_BYTES
    finally:
        path.unlink()


def _copies_due(stack: Stack) -> tuple[float, float]:
    return (chain.earliest(stack, chain.FIRST_REQUEST, ("requests", "requests_history")),
            chain.latest(stack, chain.LAST_COPY, ("",)))


def _stock(place: benchstack.Place, plan: list[PlannedFile], setup: Setup) -> LinkRun:
    with _two_sites(place, setup, {}, "link (stock Rucio)") as stack:
        assert stack.link is not None
        framing = _framing(stack)
        print(f"link: one plain xrdcp carries {framing:.4f} bytes per byte", file=sys.stderr)
        root = stack.data_folder(benchstack.ORM)
        write_night(plan, root, stamp_times=True)
        for planned in plan:
            stack.adopt(root / planned.path)
        files = stack.state / "stock-files.json"
        files.write_text(json.dumps(stock.listing(plan)))
        registered = children.run_child(stack, "stock_register.py", str(root), str(files), log="bench-link-stock")
        watch = _Watch(stack.link, root, plan).start()
        deadline = time.monotonic() + setup.timeout
        benchstack.start_daemons(stack, stock.CONVEYOR[:1], own_sleep=setup.own_sleep)
        stock.prepared(stack, deadline)
        benchstack.start_daemons(stack, stock.CONVEYOR[1:], own_sleep=setup.own_sleep)
        count, last = stock.available_at(stack, benchstack.PIC)
        while count < len(plan) and time.monotonic() < deadline:
            time.sleep(2)
            count, last = stock.available_at(stack, benchstack.PIC)
        samples = watch.stop()
        print(f"link: stock Rucio: {count} of {len(plan)} AVAILABLE at PIC-DISK", file=sys.stderr)
        return LinkRun("stock", "registered beforehand", len(plan), sum(p.size for p in plan), setup.rate_mbit,
                       count, float(registered["first_rule_at"]), last, _copies_due(stack), samples,
                       framing=framing)


def _magic(place: benchstack.Place, plan: list[PlannedFile], setup: Setup, trickle: float) -> LinkRun:
    written = f"trickled {trickle:.2f} s apart" if trickle else "at once"
    chained = setup.chain_setup()
    extra = {
        "magic-scanner": {"settle_seconds": str(chained.settle),
                          "carrier_max_age_seconds": str(chained.carrier_max_age)},
        "magic-carrier": {"dwell_seconds": "0"},
    }
    with _two_sites(place, setup, extra, f"link (the flow, night {written})") as stack:
        assert stack.link is not None
        names = tuple(daemon.name for daemon in DAEMONS)
        benchstack.start_daemons(stack, names, own_sleep=setup.own_sleep)
        root = stack.data_folder(benchstack.ORM)
        watch = _Watch(stack.link, root, plan).start()
        writer = threading.Thread(target=write_night, args=(plan, root), daemon=True,
                                  kwargs={"trickle": trickle or None, "observe": watch.observer(stack)})
        writer.start()
        print(f"link: the night is being written ({written}); {len(names)} daemons looping", file=sys.stderr)
        gone, _ = chain.watch(stack, root, plan, watch.closed, setup.timeout + trickle * len(plan))
        samples = watch.stop()
        first = min(watch.closed.values(), default=float("nan"))
        return LinkRun("magic", "at once" if not trickle else "trickled", len(plan), sum(p.size for p in plan),
                       setup.rate_mbit, len(gone), first, max(gone.values(), default=float("nan")),
                       _copies_due(stack), samples)


def with_rate(setup: Setup, rate: float | None) -> Setup:
    """``setup`` at another link rate, from the command line."""
    if rate is not None and rate <= 0:
        raise ValueError(f"--rate must be positive, not {rate}")
    return setup if rate is None else dataclasses.replace(setup, rate_mbit=rate)
