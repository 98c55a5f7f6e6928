"""domain/ decides and never acts: it imports no I/O, web, database or metrics library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import recoverlink.domain

DOMAIN = Path(recoverlink.domain.__file__).parent
FORBIDDEN = {
    "flask", "sqlalchemy", "requests", "prometheus_client", "psycopg", "gunicorn", "werkzeug",
    "os", "socket", "subprocess", "urllib", "http", "recoverlink.store", "recoverlink.web",
    "recoverlink.adapters", "recoverlink.config",
}  # fmt: skip


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(DOMAIN.glob("*.py")), ids=lambda p: p.name)
def test_domain_module_imports_nothing_that_does_io(path: Path) -> None:
    bad = {
        name for name in imported_modules(path) for f in FORBIDDEN if name == f or name.startswith(f + ".")
    }
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_errors_module_is_a_leaf() -> None:
    assert not {m for m in imported_modules(DOMAIN / "errors.py") if m.startswith("recoverlink")}
