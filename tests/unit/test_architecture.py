"""The domain package stays pure: no Prefect, no database (only the CLI, the composition root, may reach out)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ATS = ROOT / "ats"
FORBIDDEN = ("prefect", "sqlalchemy", "psycopg", "alembic", "db", "flows", "tasks", "monitor")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    "path",
    [p for p in sorted(ATS.rglob("*.py")) if "cli" not in p.relative_to(ATS).parts],
    ids=lambda p: str(p.relative_to(ATS)),
)
def test_domain_module_imports_no_shell_packages(path: Path) -> None:
    assert not _imports(path) & set(FORBIDDEN), f"{path} imports {_imports(path) & set(FORBIDDEN)}"


def test_cli_reaches_shell_packages_only_lazily() -> None:
    for path in sorted((ROOT / "cli").rglob("*.py")):
        tree = ast.parse(path.read_text())
        top_level = {(node.module or "").split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom)} | {
            alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names
        }
        assert not top_level & set(FORBIDDEN), f"{path} imports {top_level & set(FORBIDDEN)} at module level"
