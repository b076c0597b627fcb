"""The house plan: each first-party package imports only the floors below it, so the core stays pure.

ats/ is the ground floor (decisions, no I/O framework); db/ and sim/ stand on it; tasks/ on db/; flows/ and the
monitor on tasks/ and db/ respectively; cli/, the composition root, on everything. Lazy imports count too: a
function-level import is still an arrow in the graph.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ats", "db", "sim", "tasks", "flows", "monitor", "cli")
# What each package may import from the others (every package may import itself and any third party).
ALLOWED: dict[str, frozenset[str]] = {
    "ats": frozenset(),
    "db": frozenset({"ats"}),
    "sim": frozenset({"ats"}),
    "tasks": frozenset({"ats", "db"}),
    "flows": frozenset({"ats", "db", "tasks"}),
    "monitor": frozenset({"ats", "db"}),
    "cli": frozenset({"ats", "db", "sim", "tasks", "flows", "monitor"}),
}
# Third parties the core never touches: the shell carries data to and from them.
CORE_FORBIDDEN_THIRD_PARTY = frozenset({"prefect", "sqlalchemy", "psycopg", "alembic"})


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """Top-level names of every absolute import in the file, with its line."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0], node.lineno


def _arrows(package: str) -> dict[str, list[str]]:
    """The first-party packages `package` imports, each with where."""
    arrows: dict[str, list[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        for name, line in _imports(path):
            if name in PACKAGES and name != package:
                arrows.setdefault(name, []).append(f"{path.relative_to(ROOT)}:{line}")
    return arrows


def test_allowed_floors_form_a_stack() -> None:
    assert set(ALLOWED) == set(PACKAGES)
    assert not _cycle({package: set(allowed) for package, allowed in ALLOWED.items()})


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_the_floors_below(package: str) -> None:
    upward = {name: where for name, where in _arrows(package).items() if name not in ALLOWED[package]}
    assert not upward, f"{package}/ imports {upward}"


def test_core_imports_no_io_framework() -> None:
    found = {
        f"{path.relative_to(ROOT)}:{line} {name}"
        for path in sorted((ROOT / "ats").rglob("*.py"))
        for name, line in _imports(path)
        if name in CORE_FORBIDDEN_THIRD_PARTY
    }
    assert not found


def test_no_import_cycle_among_packages() -> None:
    graph = {package: set(_arrows(package)) for package in PACKAGES}
    assert not _cycle(graph), f"import cycle: {_cycle(graph)}"


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of the graph as a path (first node repeated at the end), or [] when there is none."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str]:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return []
        for successor in sorted(graph.get(node, ())):
            found = visit(successor, [*path, node])
            if found:
                return found
        done.add(node)
        return []

    for start in sorted(graph):
        found = visit(start, [])
        if found:
            return found
    return []


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []
