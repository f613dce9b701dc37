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
