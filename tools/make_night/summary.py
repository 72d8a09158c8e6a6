"""What a planned night holds, for people (a table) and for scripts (JSON)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tools.make_night.plan import PlannedFile


def summarize(plan: list[PlannedFile]) -> dict[str, Any]:
    """Counts and bytes per telescope and level, runs per type, targets in observing order.

    The plan is in closing order, so the first appearance of each target is its observing order.
    """
    runs: dict[int, str] = {}
    targets: list[str] = []
    files: Counter[str] = Counter()
    volume: Counter[str] = Counter()
    for planned in plan:
        record = planned.record
        key = f"{record.telescope.value}/{record.level.value}"
        files[key] += 1
        volume[key] += planned.size
        if record.run_type in ("P", "C", "D"):
            runs.setdefault(record.run, record.run_type)
        if record.source and record.source not in targets:
            targets.append(record.source)
    night = next((planned.record.night for planned in plan if planned.record.night), None)
    return {
        "night": night.isoformat() if night else None,
        "files": len(plan),
        "bytes": sum(planned.size for planned in plan),
        "runs": len(runs),
        "first_run": f"{min(runs):08d}" if runs else None,
        "last_run": f"{max(runs):08d}" if runs else None,
        "run_types": dict(sorted(Counter(runs.values()).items())),
        "sources": targets,
        "by_folder": {key: {"files": files[key], "bytes": volume[key]} for key in sorted(files)},
    }


def human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1000
    return f"{size:.2f} TB"
