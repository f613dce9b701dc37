"""
The shape of the code: classes and functions longer than the limits the
developers' guide sets (a class 300 lines, a function 60).  Python by its
syntax tree; the page's JavaScript by its layout (two-space indentation,
a closing brace at the indentation of what it closes), which the page's
modules keep.  tests/test_code_shape.py runs it on the client, the page
and the relay.

    python tools/shape.py chatsvc
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

CLASS_LINES = 300
FUNCTION_LINES = 60

_JS_START = re.compile(
    r"^(?P<indent>\s*)(?:export\s+)?(?:default\s+)?(?:static\s+)?(?:async\s+)?"
    r"(?:(?P<cls>class)\s+(?P<cname>\w+)[^{]*|function\s*\*?\s*(?P<fname>\w+)\s*\(.*|(?:get |set )?(?P<mname>[\w$]+)\s*\(.*\))\s*\{\s*$"
)
_NOT_METHODS = {"if", "for", "while", "switch", "catch", "function", "return", "else"}


def python_parts(path: Path) -> list[tuple[str, str, int]]:
    """(kind, name, lines) of every class and function in a Python file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            out.append(("class", node.name, node.end_lineno - node.lineno + 1))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append(("function", node.name, node.end_lineno - node.lineno + 1))
    return out


def js_parts(path: Path) -> list[tuple[str, str, int]]:
    """(kind, name, lines) of every class, function and method in a JS module laid out as ours are."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for i, line in enumerate(lines):
        m = _JS_START.match(line)
        if not m or (m.group("mname") in _NOT_METHODS):
            continue
        indent = m.group("indent")
        for j in range(i + 1, len(lines)):
            if lines[j].startswith(indent + "}") and not lines[j].startswith(indent + " "):
                kind = "class" if m.group("cls") else "function"
                name = m.group("cname") or m.group("fname") or m.group("mname")
                out.append((kind, name, j - i + 1))
                break
    return out


def too_long(paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        parts = python_parts(path) if path.suffix == ".py" else js_parts(path)
        for kind, name, count in parts:
            limit = CLASS_LINES if kind == "class" else FUNCTION_LINES
            if count > limit:
                found.append(f"{path}: {kind} {name} has {count} lines (at most {limit})")
    return found


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".py", ".js") and p.name not in ("casefold.js", "skeleton.js"))


if __name__ == "__main__":
    problems = too_long([p for arg in sys.argv[1:] for p in files(Path(arg))])
    print("\n".join(problems) or "every class and function within the limits")
    sys.exit(1 if problems else 0)
