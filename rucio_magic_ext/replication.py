"""The replication policy: which copies each data level needs, read from ``etc/replication-policy.toml``.

Pure: the scanner turns it into rules on run datasets, and the carrier hook asks it which rules must be
satisfied before a source copy may go.
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
    return ReplicationPolicy(rules)


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
    known = {
        "name",
        "levels",
        "telescopes",
        "rse_expression",
        "copies",
        "activity",
        "lifetime_days",
        "grouping",
        "comment",
    }
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
    )
