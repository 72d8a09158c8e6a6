"""What a daemon costs: CPU seconds and resident memory of its processes, read from /proc while it runs.

A daemon of the stack is its leader process (the pid in its pid file) and everything below it: the
leader's process group and its descendants by parent pid, such as the transfer tool's copiers, which run
in sessions of their own. The kernel adds a child's CPU to its parent's ``cutime``/``cstime`` when the
parent reaps it, so the CPU of a tree at one instant is the sum, over the processes present, of their own
and their reaped children's seconds: nothing counted twice, nothing lost between two samples. Memory peaks
are sampled (the sum over the tree) beside the leader's own peak, which the kernel keeps (``VmHWM``).
The parsers are pure; ``Sampler`` polls in a thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Proc:
    """One process at one instant: family, CPU seconds (its own, its reaped children's) and memory (kB)."""

    pid: int
    ppid: int
    pgid: int
    cpu: float
    children_cpu: float
    rss_kb: int = 0
    hwm_kb: int = 0


def parse_stat(pid: int, text: str, ticks: int = CLOCK_TICKS) -> Proc:
    """A process from ``/proc/<pid>/stat``; the command name may hold spaces and parentheses."""
    fields = text.rsplit(")", 1)[1].split()
    # after the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
    ppid, pgid = int(fields[1]), int(fields[2])
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return Proc(pid, ppid, pgid, (utime + stime) / ticks, (cutime + cstime) / ticks)


def parse_status(text: str) -> tuple[int, int]:
    """(VmRSS, VmHWM) in kB from ``/proc/<pid>/status``; 0 for a zombie, which has no memory."""
    values = {"VmRSS": 0, "VmHWM": 0}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in values:
            values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def read(pid: int, proc: Path = Path("/proc")) -> Proc | None:
    """The process now, or None once it is gone."""
    try:
        found = parse_stat(pid, (proc / str(pid) / "stat").read_text())
        rss, hwm = parse_status((proc / str(pid) / "status").read_text())
    except (OSError, ValueError, IndexError):
        return None
    return Proc(found.pid, found.ppid, found.pgid, found.cpu, found.children_cpu, rss, hwm)


def everything(proc: Path = Path("/proc")) -> dict[int, Proc]:
    """Every process on the machine, by pid."""
    found = {}
    for entry in proc.iterdir():
        if entry.name.isdigit() and (one := read(int(entry.name), proc)) is not None:
            found[one.pid] = one
    return found


def tree(leader: int, procs: Mapping[int, Proc]) -> list[Proc]:
    """The leader, its process group and every descendant of any of them."""
    members = {pid for pid, one in procs.items() if pid == leader or one.pgid == leader}
    grown = True
    while grown:
        below = {pid for pid, one in procs.items() if one.ppid in members} - members
        members |= below
        grown = bool(below)
    return [procs[pid] for pid in sorted(members)]


@dataclass(frozen=True)
class Usage:
    """A daemon's tree at one instant: CPU seconds (leader alone, and all), memory now and the leader's peak."""

    cpu: float
    leader_cpu: float
    rss_kb: int
    leader_hwm_kb: int
    processes: int


def usage(leader: int, procs: Mapping[int, Proc]) -> Usage | None:
    """The tree of ``leader`` summed; None when the leader is gone."""
    if leader not in procs:
        return None
    members = tree(leader, procs)
    head = procs[leader]
    return Usage(
        cpu=sum(one.cpu + one.children_cpu for one in members),
        leader_cpu=head.cpu,
        rss_kb=sum(one.rss_kb for one in members),
        leader_hwm_kb=head.hwm_kb,
        processes=len(members),
    )


@dataclass
class Track:
    """What is known of one daemon over a run: its first and last sample and its peak tree memory."""

    first: Usage | None = None
    last: Usage | None = None
    peak_rss_kb: int = 0
    mark: Usage | None = None  # the sample when the measured work began

    def add(self, now: Usage | None) -> None:
        if now is None:
            return
        self.first = self.first or now
        self.last = now
        self.peak_rss_kb = max(self.peak_rss_kb, now.rss_kb)


@dataclass
class Sampler:
    """Polls the trees of named leaders every ``interval`` seconds in a thread, until stopped."""

    leaders: dict[str, int]
    interval: float = 2.0
    tracks: dict[str, Track] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tracks = {name: Track() for name in self.leaders}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="procstat", daemon=True)

    def sample(self) -> dict[str, Usage | None]:
        procs = everything()
        now = {name: usage(pid, procs) for name, pid in self.leaders.items()}
        with self._lock:
            for name, one in now.items():
                self.tracks[name].add(one)
        return now

    def mark(self) -> None:
        """Take a sample now and keep it as where the measured work begins."""
        now = self.sample()
        with self._lock:
            for name, one in now.items():
                self.tracks[name].mark = one

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> Sampler:
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> dict[str, Track]:
        """Stop polling after one last sample; the tracks by daemon name."""
        self._stop.set()
        self._thread.join()
        self.sample()
        return self.tracks


def quiet(samples: Iterable[Mapping[str, Usage | None]], tolerance: float = 0.05) -> bool:
    """Whether the daemons' CPU stood still from each sample to the next: their start-up is over."""
    previous: Mapping[str, Usage | None] | None = None
    for sample in samples:
        if previous is not None:
            for name, now in sample.items():
                before = previous.get(name)
                if now is None or before is None or now.cpu - before.cpu > tolerance:
                    return False
        previous = sample
    return previous is not None
