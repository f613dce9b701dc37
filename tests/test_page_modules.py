"""
The page's JavaScript modules under Node's own test runner (tests/js):
crypto against docs/encryption.md's vectors, the protocol parser, the
session against a fake socket.  Plus: the shipped casefold table is
Python's str.casefold.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")


@needs_node
def test_page_modules_pass_their_node_tests():
    env = {**os.environ, "CHATSVC_PYTHON": sys.executable}  # (strength.test.mjs asks this Python for the word lists)
    out = subprocess.run([NODE, "--test", str(REPO / "tests" / "js")], capture_output=True, text=True, timeout=120,
                         env=env)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_the_shipped_casefold_table_is_this_python_s():
    import importlib.util

    spec = importlib.util.spec_from_file_location("casefold_table", REPO / "tools" / "casefold_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    shipped = (REPO / "chatsvc" / "web" / "casefold.js").read_text(encoding="utf-8")
    if f'UNICODE_VERSION = "{unicodedata.unidata_version}"' not in shipped:
        pytest.skip("this Python has another Unicode version than the one the table was made from")
    assert shipped == module.render()


NAMES = ["Straße", "STRASSE", "ẞ", "ΌΣΟΣ", "ς", "İstanbul", "ǅ", "ﬃ", "Ꭰꭰ", "𐐀𐐨", "ᾼ", "Ⅻ", "ＡＢＣ", "ß̈", "K", "Å"]


@needs_node
def test_the_page_casefolds_names_as_python_does():
    script = (
        f"import {{ casefold }} from {json.dumps(str(REPO / 'chatsvc' / 'web' / 'casefold.js'))};"
        f"console.log(JSON.stringify({json.dumps(NAMES)}.map(casefold)));"
    )
    out = subprocess.run([NODE, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout) == [name.casefold() for name in NAMES], out.stderr
