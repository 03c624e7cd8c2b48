"""The shape a newcomer can read (issue G): no long functions in the package, a short app factory."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "services" / "modelyard"


def functions() -> list[tuple[str, int]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}"
                found.append((name, node.end_lineno - node.lineno + 1))
    return found


def test_no_function_longer_than_80_lines() -> None:
    long = [(name, n) for name, n in functions() if n > 80]
    assert not long, f"functions over 80 lines: {long}"


def test_create_app_is_short() -> None:
    (n,) = [n for name, n in functions() if name.startswith("app.py") and name.endswith(" create_app")]
    assert n < 60
