"""Figures, their targets, and how they are shown: one line each on stdout, all of them in a JSON file. Pure."""

from __future__ import annotations

import dataclasses
import json
import math
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMPARISONS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True)
class Target:
    """What a figure should reach: its value, or its ratio to the baseline, compared with a bound."""

    bound: float
    comparison: str = ">="  # ">=" or "<="
    on_ratio: bool = False

    def __post_init__(self) -> None:
        if self.comparison not in COMPARISONS:
            raise ValueError(f"a target compares with >= or <=, not {self.comparison!r}")

    def text(self, unit: str) -> str:
        subject = "ratio" if self.on_ratio else "value"
        suffix = "" if self.on_ratio else f" {unit}"
        return f"{subject} {self.comparison} {_number(self.bound)}{suffix}"


@dataclass(frozen=True)
class Figure:
    """One measured figure, with the baseline measured beside it in the same run, where there is one."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = "baseline"
    target: Target | None = None
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """value / baseline; None without a usable baseline."""
        if self.baseline is None or self.baseline == 0 or math.isnan(self.baseline) or math.isnan(self.value):
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        """Whether the target is reached; None without a target (or without the ratio it needs)."""
        if self.target is None:
            return None
        measured = self.ratio if self.target.on_ratio else self.value
        if measured is None or math.isnan(measured):
            return False
        return COMPARISONS[self.target.comparison](measured, self.target.bound)

    def line(self) -> str:
        """The figure on one line: name, value and unit, baseline and ratio, target and whether met."""
        parts = [f"{self.name:<38} {_number(self.value):>10} {self.unit:<8}"]
        if self.baseline is not None:
            parts.append(f"{self.baseline_name} {_number(self.baseline)} {self.unit}")
            ratio = self.ratio
            parts.append(f"ratio {_number(ratio) if ratio is not None else 'n/a'}")
        if self.target is not None:
            parts.append(f"target {self.target.text(self.unit)}: {'met' if self.met else 'NOT met'}")
        if self.detail:
            parts.append(f"({self.detail})")
        return "  ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["ratio"] = self.ratio
        data["met"] = self.met
        return data


def _number(value: float) -> str:
    """Three significant digits or so, whatever the magnitude; integers stay whole."""
    if math.isnan(value):
        return "n/a"
    if value == int(value) and abs(value) >= 100:
        return f"{int(value)}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def write_json(path: Path, figures: Iterable[Figure], context: dict[str, Any]) -> None:
    """All figures, with the machine and the options of the run, for comparing runs later."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**context, "figures": [figure.as_dict() for figure in figures]}
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
