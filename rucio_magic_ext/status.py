"""``rucio-magic status``: one screen for an operator, from a census; ``--json`` for scripts.

Pure rendering: the census (census.py) does the reading, so the screen shows the same numbers as the
gauges. "Waiting" bytes are those that exist only at the source; "oldest unsafe" is when the oldest of
them appeared. The audit line is the scanner's last cheap audit of the RSE, and a line starting with '!' a
service of it (its storage, its credentials) the scanner finds not answering, as recorded in the ledger: status
lists no storage itself, so the screen stays quick and shows what the gauges show.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any

from tabulate import tabulate

from rucio_magic_ext.census import Audit, Census, Waiting
from rucio_magic_ext.ledger.states import FileState

NO_NIGHT = "no night"  # files whose name gives none: names that are not MAGIC's (REJECTED)
PATH_WIDTH = 60  # a path or name longer than this is shortened in the tables; --json keeps it whole


@dataclass(frozen=True)
class Timing:
    """The settings that say until when a file waits (the scanner's and the carrier's sections of rucio.cfg)."""

    settle: timedelta
    carrier_age: timedelta
    carrier_files: int
    dwell: timedelta


def render(census: Census, timing: Timing | None = None) -> str:
    lines = [f"MAGIC flow at {census.taken_at:%Y-%m-%d %H:%M:%S} UTC", ""]
    if not census.rses:
        lines.append("the ledger knows no file yet")
    for rse in census.rses:
        lines += _source(census, rse)
        lines += _waiting([w for w in census.waiting if w.rse == rse], timing)
    lines += credential_lines(census)
    lines += _troubles(census)
    if census.rules or census.replicas:
        lines += _rucio(census)
    lines += ["", f"recent errors ({len(census.errors)} in the last 24 h, newest first)"]
    rows = [
        (f"{e.at:%m-%d %H:%M:%S}", e.rse, _short(e.path, PATH_WIDTH), e.state, e.actor, _short(e.detail))
        for e in census.errors
    ]
    lines.append(_indent(tabulate(rows, tablefmt="plain")) if rows else "  none")
    return "\n".join(lines)


def _source(census: Census, rse: str) -> list[str]:
    risk, age = census.at_risk(rse), census.oldest_age(rse)
    carriers = ", ".join(f"{state.value} {n}" for (r, state), n in sorted(census.carriers.items()) if r == rse)
    lines = [
        f"{rse}: {risk.files} files ({_size(risk.bytes)}) only here"
        + (f", the oldest seen {_age(age)} ago" if age is not None else "")
        + f"; carriers: {carriers or 'none'}",
        _audit(census, census.audits.get(rse)),
    ]
    for outage in (o for o in census.outages if o.rse == rse):
        lasting = _age(census.taken_at - outage.since)
        lines.append(
            f"! its {outage.service} does not answer since {_when(outage.since)} ({lasting}; last found so "
            f"{_when(outage.seen_at)}): {_short(outage.why or '', 200)}"
        )
    states = [state for state in FileState if census.count(rse, states=[state]).files]
    header = ["night", "files", *(state.value for state in states), "waiting", "oldest unsafe"]
    rows = []
    for night in census.nights(rse):
        night_age = census.oldest_age(rse, night)
        rows.append(
            [
                str(night or NO_NIGHT),
                census.count(rse, night).files,
                *(census.count(rse, night, [state]).files or "" for state in states),
                _size(census.at_risk(rse, night).bytes),
                _age(night_age) if night_age is not None else "",
            ]
        )
    if len(rows) > 1:
        total = census.count(rse)
        rows.append(
            [
                "total",
                total.files,
                *(census.count(rse, states=[state]).files or "" for state in states),
                _size(census.at_risk(rse).bytes),
                _age(age) if age is not None else "",
            ]
        )
    lines.append(_indent(tabulate(rows, headers=header, tablefmt="simple", disable_numparse=True)))
    return lines


def _waiting(waits: list[Waiting], timing: Timing | None) -> list[str]:
    """What each file not yet deleted waits on, and until when (the settings' times from ``timing``)."""
    if not waits:
        return []
    rows = [(w.files, _short(w.carrier, 40) or "", _what(w, timing)) for w in waits]
    return ["  waiting for", _indent(tabulate(rows, headers=["files", "carrier", "what, until when"]), 4)]


def _what(wait: Waiting, timing: Timing | None) -> str:
    def until(delay: timedelta) -> str:
        return f" until {wait.since + delay:%m-%d %H:%M:%S}" if timing and wait.since else ""

    if wait.detail and wait.kind in ("copies", "dwell", "carrier"):
        return _short(f"held: {wait.detail}")
    if wait.kind == "settling":
        return "settling: size and mtime unchanged" + (until(timing.settle) if timing else "")
    if wait.kind == "scanner":
        return "the scanner's next cycle (checksum, register)"
    if wait.kind == "carrier":
        full = f" or at {timing.carrier_files} files" if timing else ""
        return "its carrier to close" + (f", at{until(timing.carrier_age)[6:]}" if timing else "") + full
    if wait.kind == "copies":
        return "its copies: the policy's rules to be OK, each copy read back (rucio-magic audit names a rule gone)"
    if wait.kind == "dwell":
        return "the dwell time" + (until(timing.dwell) if timing else "") + ", then the release"
    return "the reaper to delete the released source copy"


def _audit(census: Census, audit: Audit | None) -> str:
    """One line: what the last audit found out of place, how long ago, and why the last try failed if it did."""
    if audit is None:
        return "  audit: none taken yet (the scanner's census takes one every [magic-scanner] audit_seconds)"
    if audit.taken_at is None:
        line = "  audit: none taken yet"
    else:
        found = ", ".join(f"{kind} {n}" for kind, n in audit.out_of_place.items()) or "nothing out of place"
        line = f"  audit {_since(census, audit.taken_at)} ago: {found}"
        if new := audit.counts.get("new", 0):
            line += f"; {new} new (under a day old)"
        if audit.out_of_place:
            line += f"; rucio-magic audit {audit.rse} lists them"
    if audit.error:
        line += f"; the last try, {_since(census, audit.tried_at)} ago, failed: {_short(audit.error, 60)}"
    return line


def _since(census: Census, moment: datetime) -> str:
    return _age(max(census.taken_at - moment, timedelta(0)))  # another host's clock may run ahead


def credential_lines(census: Census) -> list[str]:
    """What each guarded storage is presented, and how long it lasts; a line starting with '!' needs a person."""
    if not census.credentials:
        return []
    lines = ["", "storage credentials (never their content)"]
    for outlook in census.credentials:
        mark = "!" if outlook.warning else " "
        lines.append(f" {mark}{outlook.rse}: {outlook.mechanism}: {outlook.warning or outlook.told}")
    return lines


def _troubles(census: Census) -> list[str]:
    """Every file that carries a reason now (held on a retry, or set aside) and every folder that fails to list."""
    lines: list[str] = []
    if census.folders:
        lines += ["", f"folders that fail to list ({len(census.folders)}): their files are not known yet"]
        rows: list[tuple[object, ...]] = [
            (f.rse, _short(f.path, PATH_WIDTH), f.attempts, f"{f.since:%m-%d %H:%M:%S}", _when(f.retry_after),
             _short(f.error))
            for f in census.folders
        ]
        lines.append(_indent(tabulate(rows, headers=["rse", "folder", "tries", "since", "next", "why"])))
    if census.troubles:
        held = sum(census.held.values())
        lines += ["", f"files held or set aside ({held} waiting on a retry; {len(census.troubles)} shown: "
                  "those held for a person first, then the newest)"]
        rows = [
            (t.rse, _short(t.path, PATH_WIDTH), t.state, t.attempts, f"{t.since:%m-%d %H:%M:%S}",
             _when(t.retry_after), _short(t.error))
            for t in census.troubles
        ]
        lines.append(_indent(tabulate(rows, headers=["rse", "path", "state", "tries", "since", "next", "why"])))
    return lines


def _when(moment: datetime | None) -> str:
    return f"{moment:%m-%d %H:%M:%S}" if moment else ""


def _rucio(census: Census) -> list[str]:
    kinds = sorted({kind for kind, _ in census.rules})
    rules = "; ".join(
        f"{kind}: " + ", ".join(f"{state} {n}" for (k, state), n in sorted(census.rules.items()) if k == kind)
        for kind in kinds
    )
    locks = ", ".join(f"{state} {n}" for state, n in census.locks.items())
    replicas = "; ".join(f"{rse} {c.files} files {_size(c.bytes)}" for rse, c in sorted(census.replicas.items()))
    lines = [
        "",
        "Rucio, MAGIC scopes",
        f"  rules     {rules or 'none'}",
        f"  files     {locks or 'none'} (locks of the policy's rules)",
        f"  replicas  {replicas or 'none'}",
    ]
    if stuck := census.stuck:
        lines.append(f"  stuck rules ({len(stuck)}):")
        rows = [(r.rule_id, r.did, r.rse_expression, f"{r.since:%m-%d %H:%M}", _short(r.error or "")) for r in stuck]
        lines.append(_indent(tabulate(rows, tablefmt="plain"), 4))
    return lines


def as_json(census: Census) -> dict[str, Any]:
    def night_key(night: date | None) -> str | None:
        return night.isoformat() if night else None

    sources = []
    for rse in census.rses:
        nights = []
        for night in census.nights(rse):
            states = {
                state.value: {"files": c.files, "bytes": c.bytes}
                for state in FileState
                if (c := census.count(rse, night, [state])).files
            }
            nights.append(
                {
                    "night": night_key(night),  # null: files whose name gives no night (not MAGIC's)
                    "states": states,
                    "waiting_bytes": census.at_risk(rse, night).bytes,
                    "oldest_unsafe": _iso(census.oldest(rse, night)),
                }
            )
        risk = census.at_risk(rse)
        sources.append(
            {
                "rse": rse,
                "at_risk": {"files": risk.files, "bytes": risk.bytes},
                "oldest_unsafe": _iso(census.oldest(rse)),
                "oldest_unsafe_age_seconds": _seconds(census.oldest_age(rse)),
                "carriers": {state.value: n for (r, state), n in sorted(census.carriers.items()) if r == rse},
                "audit": _plain(audit) if (audit := census.audits.get(rse)) else None,
                "outages": [_plain(o) for o in census.outages if o.rse == rse],
                "waiting": [_plain(w) for w in census.waiting if w.rse == rse],
                "nights": nights,
            }
        )
    return {
        "taken_at": census.taken_at.isoformat(),
        "sources": sources,
        "rucio": {
            "rules": [{"kind": kind, "state": state, "count": n} for (kind, state), n in sorted(census.rules.items())],
            "locks": census.locks,
            "replicas": {rse: {"files": c.files, "bytes": c.bytes} for rse, c in sorted(census.replicas.items())},
            "stuck_rules": [_plain(rule) for rule in census.stuck],
        },
        "recent_errors": [_plain(error) for error in census.errors],
        "held_files": census.held,
        "troubles": [_plain(trouble) for trouble in census.troubles],
        "failing_folders": [_plain(folder) for folder in census.folders],
        "credentials": [
            {"rse": o.rse, "mechanism": o.mechanism, "told": o.told, "seconds_left": _seconds(o.left),
             "warning": o.warning}
            for o in census.credentials
        ],
    }


def _plain(record: Any) -> dict[str, Any]:
    return {key: _iso(value) if isinstance(value, datetime) else value for key, value in asdict(record).items()}


def _size(size: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _age(age: timedelta) -> str:
    seconds = int(age.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _seconds(age: timedelta | None) -> float | None:
    return age.total_seconds() if age is not None else None


def _short(text: str, width: int = 90) -> str:
    """One line of at most ``width`` characters; a long one keeps its start and its end (a name's tail says much)."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    head = (width - 1) * 2 // 3
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]


def _indent(text: str, by: int = 2) -> str:
    return "\n".join(" " * by + line for line in text.splitlines())
