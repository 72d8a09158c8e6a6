"""The replication policy: which copies each data level needs, read from ``etc/replication-policy.toml``.

Pure: the scanner turns it into rules on run datasets. An entry may take its copies from another entry's copies
(``source``, Rucio's ``source_replica_expression``), so that a file crosses the slow link from the observatory
once: the first destination copies it from La Palma, the others from that copy.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rucio_magic_ext.naming import Level, Telescope

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_ACTIVITY = "MAGIC Export"
GROUPINGS = ("ALL", "DATASET", "NONE")


class PolicyError(ValueError):
    """The policy file says something the flow cannot do; the message names the entry."""


@dataclass(frozen=True)
class RuleSpec:
    """One permanent copy: where, how many, for how long; applied to every run dataset it matches."""

    name: str
    levels: frozenset[Level]
    telescopes: frozenset[Telescope]
    rse_expression: str
    copies: int = 1
    activity: str = DEFAULT_ACTIVITY
    lifetime: int | None = None  # seconds; None keeps the copy forever
    grouping: str = "DATASET"
    comment: str = ""
    source: str | None = None  # RSE expression the copies are made from; None: wherever Rucio finds one

    def matches(self, level: Level, telescope: Telescope) -> bool:
        return level in self.levels and telescope in self.telescopes

    @property
    def rule_comment(self) -> str:
        """Written on each rule, so the policy entry that made a rule can be told from any other."""
        return f"magic-policy:{self.name}"


@dataclass(frozen=True)
class ReplicationPolicy:
    rules: tuple[RuleSpec, ...]

    def rules_for(self, level: Level, telescope: Telescope) -> list[RuleSpec]:
        return [rule for rule in self.rules if rule.matches(level, telescope)]

    def uncovered(self) -> list[tuple[Telescope, Level]]:
        """Data that no rule would copy: allowed, but such files can never leave the observatory."""
        return [
            (telescope, level) for level in Level for telescope in Telescope if not self.rules_for(level, telescope)
        ]


def parse_policy(document: dict[str, Any]) -> ReplicationPolicy:
    defaults = document.get("defaults", {})
    entries = document.get("rule", [])
    if not entries:
        raise PolicyError("the policy has no [[rule]] entry")
    rules = tuple(_rule(index, {**defaults, **entry}) for index, entry in enumerate(entries, start=1))
    names = [rule.name for rule in rules]
    if len(set(names)) != len(names):
        raise PolicyError(f"rule names must be unique: {names}")
    for rule in rules:
        if rule.source is not None:
            _check_source(rule, rules)
    return ReplicationPolicy(rules)


def feeders(rule: RuleSpec, rules: tuple[RuleSpec, ...]) -> list[RuleSpec]:
    """The entries whose copies a chained entry is made from: those that place copies at its ``source``."""
    return [other for other in rules if other is not rule and other.rse_expression == rule.source]


def _check_source(rule: RuleSpec, rules: tuple[RuleSpec, ...]) -> None:
    """A chained copy waits (Rucio: STUCK, then SUSPENDED after 14 days) until a replica exists at its source,
    holding the observatory copy all that time. So its source must be where another entry, one that copies from
    the observatory and keeps its copies, puts every file this entry takes."""
    where = f"rule {rule.name!r}: source {rule.source!r}"
    if rule.source == rule.rse_expression:
        raise PolicyError(f"{where} is its own destination: a copy cannot be made from itself")
    fed_by = feeders(rule, rules)
    if not fed_by:
        raise PolicyError(
            f"{where} is no other rule's rse_expression: the copies would wait for a replica no rule makes"
        )
    chained = [other.name for other in fed_by if other.source is not None]
    if chained:
        raise PolicyError(
            f"{where} is filled by {chained}, which take their copies from elsewhere too: name the first destination"
        )
    expiring = [other.name for other in fed_by if other.lifetime is not None]
    if expiring:
        raise PolicyError(f"{where} is filled by {expiring}, whose copies expire: the source must keep its copies")
    missing = sorted(
        f"{telescope.value} {level.value}"
        for level in rule.levels
        for telescope in rule.telescopes
        if not any(other.matches(level, telescope) for other in fed_by)
    )
    if missing:
        raise PolicyError(f"{where} gets no copy of {', '.join(missing)}: the rules filling it do not take them")


def load_policy(path: Path | str) -> ReplicationPolicy:
    try:
        with open(path, "rb") as stream:
            return parse_policy(tomllib.load(stream))
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(f"{path}: {error}") from None
    except PolicyError as error:
        raise PolicyError(f"{path}: {error}") from None


def _rule(index: int, entry: dict[str, Any]) -> RuleSpec:
    name = str(entry.get("name") or f"rule-{index}")
    where = f"rule {name!r}"
    known = {"name", "levels", "telescopes", "rse_expression", "copies", "activity", "lifetime_days", "grouping",
             "comment", "source"}  # fmt: skip
    unknown = set(entry) - known
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    try:
        levels = frozenset(Level(level) for level in entry["levels"])
        telescopes = frozenset(
            Telescope(telescope) for telescope in entry.get("telescopes", [t.value for t in Telescope])
        )
    except KeyError as missing:
        raise PolicyError(f"{where}: {missing} is required") from None
    except ValueError as error:
        raise PolicyError(f"{where}: {error}; levels are {[level.value for level in Level]}") from None
    expression = str(entry.get("rse_expression", "")).strip()
    if not expression:
        raise PolicyError(f"{where}: rse_expression is required")
    copies = int(entry.get("copies", 1))
    if copies < 1:
        raise PolicyError(f"{where}: copies must be at least 1")
    grouping = str(entry.get("grouping", "DATASET")).upper()
    if grouping not in GROUPINGS:
        raise PolicyError(f"{where}: grouping must be one of {GROUPINGS}")
    source = str(entry.get("source") or "").strip() or None  # "" in a rule undoes a [defaults] source
    days = entry.get("lifetime_days")
    if days is not None and float(days) <= 0:
        raise PolicyError(f"{where}: lifetime_days must be positive (omit it to keep copies forever)")
    return RuleSpec(
        name=name,
        levels=levels,
        telescopes=telescopes,
        rse_expression=expression,
        copies=copies,
        activity=str(entry.get("activity", DEFAULT_ACTIVITY)),
        lifetime=None if days is None else int(float(days) * 86400),
        grouping=grouping,
        comment=str(entry.get("comment", "")),
        source=source,
    )
