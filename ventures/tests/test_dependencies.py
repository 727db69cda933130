"""Dependencies point one way: the site depends on the apps, an app never on one to its right."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# DESIGN.md: ventures <- leads <- templating <- outreach <- reporting; the site sits above all.
ORDER = ["ventures", "leads", "templating", "outreach", "reporting"]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def forbidden_for(app: str) -> set[str]:
    return {"aicmo_site", *ORDER[ORDER.index(app) + 1 :]}


def source_files(app: str) -> list[Path]:
    """The app's code, migrations included; its tests may use helpers from anywhere."""
    return [p for p in (REPO / app).rglob("*.py") if "tests" not in p.relative_to(REPO).parts]


@pytest.mark.parametrize("app", ORDER)
def test_app_imports_neither_the_site_nor_an_app_to_its_right(app):
    files = source_files(app)
    assert files, f"no source files found for {app}"
    wrong = {
        f"{path.relative_to(REPO)}: {name}"
        for path in files
        for name in imported_modules(path)
        if name.split(".")[0] in forbidden_for(app)
    }
    assert not wrong, "imports against the arrows:\n" + "\n".join(sorted(wrong))
