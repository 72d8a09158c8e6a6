"""What the audit says: a summary table on screen, and one list per class in the plain text of Rucio's
storage-consistency tools (``<RSE>_<%Y_%m_%d_%H_%M>_<type>.list``, one path or ``scope:name`` a line, dark
files as ``D`` and missing ones as ``M``, with a ``_stats.json`` beside them), so their readers read ours."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from tabulate import tabulate

from rucio_magic_ext.audit.classes import Findings, Kind, fixed_order


def summary(findings: Findings, taken_at: datetime, show: int = 10) -> str:
    """The table (class, count, bytes) and the first ``show`` findings of each class with why."""
    role = "source" if findings.source else "destination"
    lines = [
        f"audit of {findings.rse} ({role}) at {taken_at:%Y-%m-%d %H:%M:%S} UTC: {findings.listed} file(s) on "
        f"storage, {findings.registered} replica(s) in Rucio, {findings.booked} ledger row(s); "
        f"{findings.fraction:.2%} of the files out of place",
        "",
    ]
    rows = [(kind.value, len(found), sum(f.bytes for f in found)) for kind, found in fixed_order(findings.found)]
    lines.append(tabulate(rows, headers=["class", "count", "bytes"], tablefmt="simple", disable_numparse=True))
    for kind, found in fixed_order(findings.found):
        if not found or show <= 0:
            continue
        lines += ["", f"{kind.value} ({len(found)}{', first ' + str(show) if len(found) > show else ''}):"]
        lines += [f"  {finding.key}  {finding.detail}" for finding in found[:show]]
    lines += ["", "nothing out of place" if findings.clean else "out of place: see the classes above"]
    return "\n".join(lines)


def list_name(rse: str, taken_at: datetime, kind: Kind) -> str:
    return f"{rse}_{taken_at:%Y_%m_%d_%H_%M}_{kind.tag}.list"


def write_lists(findings: Findings, directory: Path, taken_at: datetime, actions: Sequence[str] = ()) -> list[Path]:
    """A list per class (an empty one says the class was looked at) and the stats file, each written whole."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, found in fixed_order(findings.found):
        written.append(
            _write(directory / list_name(findings.rse, taken_at, kind), "".join(f"{f.key}\n" for f in found))
        )
    stats = {
        "rse": findings.rse,
        "source": findings.source,
        "taken_at": taken_at.isoformat(),
        "files_on_storage": findings.listed,
        "replicas_in_rucio": findings.registered,
        "ledger_rows": findings.booked,
        "fraction_out_of_place": findings.fraction,
        "counts": findings.counts(),
        "bytes": findings.sizes(),
        "actions": list(actions),
        "status": "clean" if findings.clean else "out of place",
    }
    stats_path = directory / f"{findings.rse}_{taken_at:%Y_%m_%d_%H_%M}_stats.json"
    written.append(_write(stats_path, json.dumps(stats, indent=2) + "\n"))
    return written


def _write(path: Path, text: str) -> Path:
    partial = path.with_name(f".{path.name}.part")
    partial.write_text(text)
    os.replace(partial, path)
    return path
