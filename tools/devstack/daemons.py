"""The processes of the dev stack: the REST server and the daemons, in one list.

Add a daemon by appending to DAEMONS (e.g. the project's ``rucio-magic-scanner``). Conveyor daemons are
built by ``conveyor()`` from CONVEYOR_ARGV and CONVEYOR_ONCE: the single place to change when they are to
start through the project's wrapper (which registers the project's transfer tool first).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

BIN = Path(sys.executable).parent
SLEEP = "5"  # seconds between daemon cycles: short, for a dev stack

# The preparer, submitter and poller look transfer tools up by name: the project's wrappers register the
# `magic` tool (rucio_magic_ext.transfertool.register) and then run the stock daemon. The finisher does not.
CONVEYOR_ARGV: tuple[str, ...] = ("{bin}/rucio-magic-conveyor-{kind}",)
STOCK_CONVEYOR_ARGV: tuple[str, ...] = ("{bin}/rucio-conveyor-{kind}",)
# One pass of a conveyor daemon, called in a child process by run_once with partition_wait_time=0
# (the console scripts wait 10 s for work partitioning first); once.py registers the tool first.
CONVEYOR_ONCE = "rucio.daemons.conveyor.{kind}:{kind}"


@dataclasses.dataclass(frozen=True)
class Daemon:
    """A long-running process of the stack: its command line, and optionally a fast one-pass entry."""

    name: str
    argv: tuple[str, ...]
    once_entry: str | None = None  # "module:function" taking once= (and partition_wait_time= if it can)

    def command(self, **values: object) -> list[str]:
        """The command line, ``{bin}`` being the venv's bin folder and other fields from ``values``."""
        return [part.format(bin=BIN, **values) for part in self.argv]


FAST = "tools.devstack.fast:"  # one-pass functions of the stock daemons, without start-up waits

def conveyor(kind: str, *args: str) -> Daemon:
    """A conveyor daemon (preparer, submitter, poller, finisher)."""
    template = STOCK_CONVEYOR_ARGV if kind == "finisher" else CONVEYOR_ARGV
    argv = tuple(part.format(bin="{bin}", kind=kind) for part in template)
    once = FAST + "submitter" if kind == "submitter" else CONVEYOR_ONCE.format(kind=kind)  # takes --activities
    return Daemon(f"conveyor-{kind}", (*argv, *args), once)


SERVER = Daemon("server", ("{bin}/gunicorn", "--workers", "2", "--timeout", "120", "--no-control-socket",
                           "-b", "127.0.0.1:{port}", "rucio.web.rest.flaskapi.v1.main:application"))

# Rucio's cache, when memcached is installed: the stack's own, on a port of its own, 64 MB.
# memcached refuses to start as root unless told which user to be: it is told the one it runs as.
MEMCACHED = Daemon(
    "memcached", ("memcached", "-l", "127.0.0.1", "-p", "{cache_port}", "-U", "0", "-m", "64", "-u", "{user}")
)

DAEMONS: list[Daemon] = [
    Daemon("judge-evaluator", ("{bin}/rucio-judge-evaluator", "--sleep-time", SLEEP), FAST + "judge_evaluator"),
    conveyor("preparer", "--sleep-time", SLEEP),
    conveyor("submitter", "--sleep-time", SLEEP),
    conveyor("poller", "--sleep-time", SLEEP, "--older-than", "0"),
    conveyor("finisher", "--sleep-time", SLEEP),
    Daemon("judge-cleaner", ("{bin}/rucio-judge-cleaner", "--sleep-time", SLEEP), FAST + "judge_cleaner"),
    Daemon("judge-repairer", ("{bin}/rucio-judge-repairer", "--sleep-time", SLEEP), FAST + "judge_repairer"),
    Daemon("reaper", ("{bin}/rucio-reaper", "--sleep-time", SLEEP), FAST + "reaper"),
    Daemon("necromancer", ("{bin}/rucio-necromancer", "--sleep-time", SLEEP), FAST + "necromancer"),
    Daemon("undertaker", ("{bin}/rucio-undertaker", "--sleep-time", SLEEP)),
    Daemon("magic-scanner", ("{bin}/rucio-magic-scanner", "--sleep-time", SLEEP),
           "rucio_magic_ext.scanner.daemon:scanner"),
    Daemon("magic-carrier", ("{bin}/rucio-magic-carrier", "--sleep-time", SLEEP),
           "rucio_magic_ext.release.daemon:carrier"),
]


def by_name(name: str) -> Daemon:
    """The daemon called ``name``; ``rucio-`` prefixes are accepted (``rucio-conveyor-poller``)."""
    wanted = name.removeprefix("rucio-")
    for daemon in DAEMONS:
        if daemon.name == wanted:
            return daemon
    raise KeyError(f"unknown daemon {name!r}; known: {', '.join(d.name for d in DAEMONS)}")


def once_kwargs(args: Sequence[str]) -> dict[str, object]:
    """Turn command-line style options (``--older-than 0 --greedy``) into keyword arguments."""
    kwargs: dict[str, object] = {}
    items = list(args)
    while items:
        option = items.pop(0)
        if not option.startswith("--"):
            raise ValueError(f"expected an --option, got {option!r}")
        key = option[2:].replace("-", "_")
        if key == "run_once":
            continue
        if items and not items[0].startswith("--"):
            value = items.pop(0)
            kwargs[key] = int(value) if value.lstrip("-").isdigit() else value
        else:
            kwargs[key] = True
    return kwargs
