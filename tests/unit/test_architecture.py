"""The package's floors, as docs/ARCHITECTURE.md draws them, hold in the code: every import (lazy ones too)
goes to the module's own room or down, and the pure floors import no I/O."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "rucio_magic_ext"
IO_MODULES = ("sqlalchemy", "rucio.core", "rucio.db", "rucio.client", "rucio.rse", "requests", "alembic")


def floors() -> dict[str, tuple[int, str]]:
    """Room -> (floor, floor name), from the table in docs/ARCHITECTURE.md."""
    rooms = {}
    for line in (REPO / "docs" / "ARCHITECTURE.md").read_text().splitlines():
        found = re.match(r"\| (\d) \| (\w+) \| (.+?) \|", line)
        if found:
            for room in re.findall(r"`([\w.]+)`", found[3]):
                rooms[room] = (int(found[1]), found[2])
    return rooms


ROOMS = floors()


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(part for part in parts if part != "__init__")


def room_of(module: str) -> str | None:
    """The longest room that contains ``module`` (``carrier.model`` before ``carrier``)."""
    candidates = [room for room in ROOMS if module == room or module.startswith(room + ".")]
    return max(candidates, key=len) if candidates else None


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every import in a file, the names of ``from rucio_magic_ext import x`` resolved."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                if candidate.startswith("rucio_magic_ext.") and _is_module(candidate):
                    yield node.lineno, candidate


def _is_module(dotted: str) -> bool:
    relative = Path(*dotted.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").exists() or (PACKAGE / relative / "__init__.py").exists()


SOURCES = sorted(path for path in PACKAGE.rglob("*.py") if "migrations" not in path.parts)


def test_the_table_names_every_module() -> None:
    assert ROOMS, "docs/ARCHITECTURE.md has no floor table"
    unplaced = [module_name(path) for path in SOURCES if module_name(path) and room_of(module_name(path)) is None]
    assert not unplaced, f"modules on no floor of docs/ARCHITECTURE.md: {unplaced}"
    missing = [room for room in ROOMS if not _is_module(f"rucio_magic_ext.{room}")]
    assert not missing, f"docs/ARCHITECTURE.md names rooms that do not exist: {missing}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: module_name(path) or "rucio_magic_ext")
def test_imports_go_down_or_stay_in_the_room(path: Path) -> None:
    module = module_name(path)
    room = room_of(module)
    if room is None:
        return  # the package's own __init__
    floor, name = ROOMS[room]
    wrong = []
    for line, imported in imports(path):
        if imported.startswith("rucio_magic_ext."):
            target = room_of(imported.removeprefix("rucio_magic_ext."))
            if target is None or (target != room and ROOMS[target][0] >= floor):
                shown = f"{target} (floor {ROOMS[target][0]})" if target else imported
                wrong.append(f"line {line}: imports {shown}")
        elif floor <= 2 and room != "monitoring" and imported.startswith(IO_MODULES):
            wrong.append(f"line {line}: imports {imported}, but floor {floor} ({name}) does no I/O")
    assert not wrong, f"{module} ({room}, floor {floor} {name}): " + "; ".join(wrong)


def test_the_daemons_do_not_import_each_other() -> None:
    """The rule above implies it; said on its own because it is the reason for the floors."""
    for daemon, other in (("scanner", "release"), ("release", "scanner")):
        for path in (PACKAGE / daemon).rglob("*.py"):
            assert not any(imported.startswith(f"rucio_magic_ext.{other}") for _, imported in imports(path)), path
