"""docs/THREATS.md says which test tries each attack: every row names tests, and every test it names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CITED = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(?:\[[^\]]*\])?`")


def attack_rows() -> list[str]:
    """The rows of the table of attacks: those whose first cell is a number."""
    text = (REPO / "docs" / "THREATS.md").read_text()
    return [line for line in text.splitlines() if re.match(r"\| \d+\w? \|", line)]


def functions_of(path: Path) -> set[str]:
    return {
        node.name
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }


def test_every_attack_names_the_tests_that_try_it_and_they_exist() -> None:
    rows = attack_rows()
    assert len(rows) >= 10
    for row in rows:
        cited = CITED.findall(row)
        assert cited or "rows " in row.split("|")[-2], f"no test named in: {row[:80]}"
        for path, name in cited:
            assert (REPO / path).exists(), f"{path} (cited in THREATS.md) does not exist"
            assert name in functions_of(REPO / path), f"{path}::{name} (cited in THREATS.md) does not exist"
