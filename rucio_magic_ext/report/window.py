"""``--since`` and ``--until``: an ISO date or date-time, or a duration back from now such as ``7d`` or ``12h``.
Pure. Instants come out as naive UTC, as the ledger (and Rucio) store them; an ISO time without an offset is UTC."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_instant(text: str, now: datetime) -> datetime:
    """``now`` minus a duration (``90m``, ``12h``, ``7d``, ``2w``), or an ISO 8601 date or date-time."""
    match = DURATION.match(text)
    if match:
        amount, unit = match.groups()
        return now - timedelta(**{UNITS[unit]: float(amount)})
    cleaned = text.strip()
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"  # Python 3.9's fromisoformat does not read "Z"
    try:
        if len(cleaned) == 10:
            return datetime.combine(date.fromisoformat(cleaned), datetime.min.time())
        instant = datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO date or date-time (2020-01-04, 2020-01-04T06:30) "
            "nor a duration back from now (90m, 12h, 7d, 2w)"
        ) from None
    if instant.tzinfo is not None:
        instant = instant.astimezone(timezone.utc).replace(tzinfo=None)
    return instant


def parse_window(since: str, until: str | None, now: datetime) -> tuple[datetime, datetime]:
    """The range [since, until], ``until`` defaulting to ``now``; an empty or reversed range is an error."""
    end = parse_instant(until, now) if until else now
    start = parse_instant(since, now)
    if start >= end:
        raise ValueError(f"--since ({start:%Y-%m-%d %H:%M:%S}) must come before --until ({end:%Y-%m-%d %H:%M:%S})")
    return start, end
