"""The package layout is the architecture: imports flow one way, no private names cross.

model → sqlgen → runtime → authoring / local / report → cli; `errors` and `sqlfiles` sit below
all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "plaudit"
LAYERS = {"errors": 0, "sqlfiles": 0, "model": 1, "sqlgen": 2, "runtime": 3,
          "authoring": 4, "local": 4, "report": 4, "cli": 5}
PACKAGES = ["model", "sqlgen", "runtime", "authoring", "local", "report", "cli"]


def _room(module: str) -> str:
    """plaudit.runtime.engine → runtime; plaudit.errors → errors."""
    return module.split(".")[1]


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.append((node.lineno, "." * node.level + (node.module or ""), []))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names]
    return [f for f in found if f[1].startswith(("plaudit.", "."))]


MODULES = sorted(p for p in SRC.rglob("*.py"))


def test_the_tree_shows_the_seven_packages() -> None:
    assert sorted(p.name for p in SRC.iterdir() if (p / "__init__.py").exists()) == sorted(
        PACKAGES)
    flat = sorted(p.stem for p in SRC.glob("*.py") if p.stem != "__init__")
    assert flat == ["errors", "sqlfiles"]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_flow_one_way(path: Path) -> None:
    rel = path.relative_to(SRC)
    here = rel.parts[0] if len(rel.parts) > 1 else rel.stem
    wrong = []
    for line, module, names in _imports(path):
        where = f"{rel}:{line}: {module}"
        if module.startswith("."):
            wrong.append(f"{where}: relative import (write plaudit.<package>.<module>)")
            continue
        there = _room(module)
        if there == "__version__" or module == "plaudit":
            continue
        if LAYERS[there] > LAYERS[here] or (LAYERS[there] == LAYERS[here] and there != here):
            wrong.append(f"{where}: {here} may not import {there}")
        private = [n for n in names if n.startswith("_") and n != "__version__"]
        if private:
            wrong.append(f"{where}: imports private {', '.join(private)}")
    assert wrong == []
