"""Imports go one way: pipelines -> steps -> mpnas. A step importing pipelines/ would make a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package, forbidden", [("steps", ("pipelines",)), ("mpnas", ("pipelines", "steps"))])
def test_imports_go_one_way(package: str, forbidden: tuple[str, ...]):
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in _imported_modules(p) if m.split(".")[0] in forbidden)
                 for p in sorted((ROOT / package).rglob("*.py"))}
    assert not {k: v for k, v in offenders.items() if v}
