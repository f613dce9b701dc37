"""
The developers' guide: no class over 300 lines, no function over 60 --
split by concern.  Held for both clients (the terminal client and the
page) by tools/shape.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _shape():
    spec = importlib.util.spec_from_file_location("shape", REPO / "tools" / "shape.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_client_class_or_function_over_the_limits():
    shape = _shape()
    paths = shape.files(REPO / "chatsvc" / "client") + shape.files(REPO / "chatsvc" / "web")
    assert shape.too_long(paths) == []


def test_the_checker_sees_a_long_function(tmp_path):
    shape = _shape()
    long = tmp_path / "long.py"
    long.write_text("def f():\n" + "    x = 1\n" * 61)
    js = tmp_path / "long.js"
    js.write_text("export class C {\n  m() {\n" + "    x();\n" * 61 + "  }\n}\n")
    assert len(shape.too_long([long])) == 1
    assert [p.split(": ", 1)[1] for p in shape.too_long([js])] == ["function m has 63 lines (at most 60)"]


def test_no_relay_class_or_function_over_the_limits():
    shape = _shape()
    assert shape.too_long(sorted((REPO / "chatsvc").glob("*.py"))) == []


def _imports_of(path: Path) -> set[str]:
    """The chatsvc modules a module imports when it runs (not those only named for type checkers)."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for n in ast.walk(node))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("chatsvc."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("chatsvc."))
    return found


def test_no_import_cycle_between_relay_modules():
    modules = {p.stem: _imports_of(p) for p in (REPO / "chatsvc").glob("*.py") if p.stem != "__init__"}
    graph = {m: {d for d in deps if d in modules and d != m} for m, deps in modules.items()}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(m: str, path: list[str]) -> bool:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycle.extend(path[path.index(d):] + [m, d] if d in path else [m, d])
                return True
            if d not in state and visit(d, path + [m]):
                return True
        state[m] = 2
        return False

    for m in sorted(graph):
        if m not in state and visit(m, []):
            break
    assert not cycle, " -> ".join(cycle)
