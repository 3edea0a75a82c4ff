"""Files a reader can hold: no module of the package over 500 lines, no function over 80
(a dense numerical kernel says "Long on purpose" in its docstring, and why)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "pianomuse"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def test_modules_and_functions_stay_short():
    long_modules, long_functions = [], []
    for path in sorted(PACKAGE.rglob("*")):
        if path.suffix not in (".py", ".js", ".css", ".html"):
            continue
        text = path.read_text()
        name = path.relative_to(PACKAGE)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long_modules.append(name)
        if path.suffix != ".py":
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                why = "Long on purpose" in (ast.get_docstring(node) or "")
                if lines > MAX_FUNCTION_LINES and not why:
                    long_functions.append(f"{name}:{node.name} ({lines} lines)")
    assert long_modules == [] and long_functions == []
    assert len(list(PACKAGE.rglob("*.py"))) > 50  # the walk found the package
