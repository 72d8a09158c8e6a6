"""DL3 runs as an astronomer meets them: found by what their headers say, fetched as a gammapy data store,
opened by gammapy. The demo runs the same commands the README gives, on the night's runs and on a real MAGIC
run (tests/data) that travels with them."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

from rich.console import Console

from rucio_magic_ext.naming import Level, parse
from tools.make_night import DEFAULT_DL3_TEMPLATE, Content, PlannedFile, observatory_dir

RUCIO_MAGIC = str(Path(sys.executable).parent / "rucio-magic")


def real_run() -> PlannedFile:
    """The real Crab Nebula run of 2013-10-04, written at the observatory where the on-site analysis puts DL3."""
    record = parse(DEFAULT_DL3_TEMPLATE.name)
    assert record.night is not None
    return PlannedFile(
        record=record,
        path=f"{observatory_dir(record.telescope, Level.DL3, record.night)}/{DEFAULT_DL3_TEMPLATE.name}",
        size=DEFAULT_DL3_TEMPLATE.stat().st_size,
        content=Content.DL3_TEMPLATE,
        content_seed=0,
        closed_at=datetime(2013, 10, 4, 5),
    )


def show_dl3(console: Console, plan: list[PlannedFile], state: Path, fetch: bool = True) -> bool:
    """``dl3 find`` and (with ``fetch``) ``dl3 fetch`` of the most observed source; False when any step fails."""
    sources = Counter(p.record.source for p in plan if p.record.level is Level.DL3 and p.record.source)
    if not sources:
        return True
    source = sources.most_common(1)[0][0]
    store = state / "dl3-store"
    commands = [["dl3", "find", "--source", source], ["dl3", "fetch", "--source", source, str(store)]]
    for command in commands[: 2 if fetch else 1]:
        console.print(f"[bold]$ rucio-magic {' '.join(command)}[/]")
        done = subprocess.run([RUCIO_MAGIC, *command], capture_output=True, text=True)
        print(done.stdout.rstrip(), flush=True)
        if done.returncode != 0:
            console.print(f"[red]rucio-magic {command[1]} failed[/]: {done.stderr.strip()}")
            return False
    if not fetch:
        console.print("dl3 fetch: not tried: behind tokens, Rucio's download client presents the token of an OIDC "
                      "login to Rucio (a JWT), and this stack's accounts log in with a password")
        return True
    return _open(console, store, sources[source])


def _open(console: Console, store: Path, expected: int) -> bool:
    """gammapy reads every run of the store: events, GTI and the point-like IRFs."""
    from gammapy.data import DataStore

    logging.getLogger("gammapy").setLevel(logging.ERROR)  # MAGIC's IRFs store THETA as a scalar: said per run
    data = DataStore.from_dir(store)
    for obs_id in data.obs_table["OBS_ID"]:
        observation = data.obs(int(obs_id), required_irf="point-like")
        console.print(
            f"gammapy: run {obs_id}: {len(observation.events.table)} events, "
            f"{observation.gti.time_sum.to_value('s'):.0f} s of good time, "
            f"IRFs {', '.join(name for name in ('aeff', 'edisp', 'rad_max') if getattr(observation, name) is not None)}"
        )
    opened = len(data.obs_table)
    if opened != expected:
        console.print(f"[red]gammapy opened {opened} runs of {expected}[/]")
    return opened == expected
