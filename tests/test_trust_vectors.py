"""
The trust core's shared cases (docs/vectors/*.json), run against the
terminal client's parts; tests/js/trust-vectors.test.mjs runs the same
files against the page's.  A rule fixed in one language and not the other
fails here or there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatsvc.client import inbound
from chatsvc.client.keyexchange import PeerKeys
from chatsvc.client.completion import complete
from chatsvc.client.verification import confirmation
from chatsvc.skeleton import skeleton

VECTORS = Path(__file__).resolve().parent.parent / "docs" / "vectors"
INBOUND = json.loads((VECTORS / "inbound.json").read_text(encoding="utf-8"))
KEYEX = json.loads((VECTORS / "keyexchange.json").read_text(encoding="utf-8"))
VERIFY = json.loads((VECTORS / "verify.json").read_text(encoding="utf-8"))
STRENGTH = json.loads((VECTORS / "strength.json").read_text(encoding="utf-8"))
COMPLETION = json.loads((VECTORS / "completion.json").read_text(encoding="utf-8"))


def view(data: dict) -> inbound.View:
    return inbound.View(
        me=data["me"], wanted=data["wanted"], rooms=frozenset(data.get("rooms", [])),
        history_open=frozenset(data.get("history_open", [])), history_mode=data.get("history_mode", {}),
        last_id=data.get("last_id", {}),
    )


@pytest.mark.parametrize("case", INBOUND["placement"]["cases"], ids=lambda c: c["name"])
def test_placement(case):
    seen = view(case.get("view", INBOUND["placement"]["view"]))
    got = inbound.placement(case["sender"], case["target"], case["tags"], seen)
    assert got.as_dict() == case["expect"]


@pytest.mark.parametrize("case", INBOUND["unreadable"], ids=lambda c: c["name"])
def test_unreadable(case):
    got = inbound.unreadable(case["error"], case["signer"], case["private"], case["history"], case["asked_before"])
    assert got.as_dict() == case["expect"]


def pins_of(pinned: dict) -> inbound.Pins:
    by_skeleton: dict = {}
    for nick in sorted(pinned):
        by_skeleton[skeleton(nick)] = by_skeleton.get(skeleton(nick), ()) + (nick,)
    return inbound.Pins(pinned, skeleton, by_skeleton)


@pytest.mark.parametrize("case", INBOUND["attribution"]["cases"], ids=lambda c: c["name"])
def test_attribution(case):
    common = INBOUND["attribution"]
    own = case.get("own", common["own"])
    selves = tuple(case.get("selves", common["selves"]))
    got = inbound.attribution(case["sender"], case["signer"], own, selves, pins_of(common["pins"]))
    assert got.as_dict() == case["expect"]


@pytest.mark.parametrize("case", INBOUND["interpret"], ids=lambda c: c["name"])
def test_interpret(case):
    flags = set(case["flags"])
    got = inbound.interpret(
        case["text"], private="private" in flags, history="history" in flags, signed="signed" in flags,
        trusted="trusted" in flags, ignored="ignored" in flags, own="own" in flags,
    )
    assert got.as_dict() == case["expect"]


class Recorder:
    def __init__(self) -> None:
        self.log: list[str] = []

    def request(self):
        self.log.append("request")

    def arm(self, seconds):
        self.log.append(f"arm {seconds:g}")

    def disarm(self):
        self.log.append("disarm")

    def deliver(self, message, session):
        self.log.append(f"deliver {message} {session}")

    def tell_unanswered(self, held):
        self.log.append(f"tell_unanswered {held}")

    def deliver_weaker(self, message):
        self.log.append(f"deliver_weaker {message}")

    def dropped(self, messages):
        self.log.append("dropped " + " ".join(messages))


def fire(machine: PeerKeys, step: list) -> None:
    event, *data = step
    getattr(machine, event)(*data)


@pytest.mark.parametrize("row", KEYEX["table"], ids=lambda r: f"{r['state']}-{r['event']}")
def test_key_exchange_table(row):
    effects = Recorder()
    machine = PeerKeys(effects)
    for step in KEYEX["setup"][row["state"]]:
        fire(machine, step)
    assert machine.state() == row["state"]
    effects.log.clear()
    fire(machine, [row["event"], *({"send": ["m1"], "answer": ["s1"]}.get(row["event"], []))])
    assert (machine.state(), effects.log, len(machine.held)) == (row["next"], row["effects"], row["held"])


def test_the_table_covers_every_state_and_event():
    pairs = {(r["state"], r["event"]) for r in KEYEX["table"]}
    states = set(KEYEX["setup"])
    events = {"send", "answer", "timeout", "retry", "force", "gone"}
    assert pairs == {(s, e) for s in states for e in events}
    assert [float(d) for d in KEYEX["retry_delays"]] == list(__import__("chatsvc.client.keyexchange", fromlist=["x"]).RETRY_DELAYS)


LINES = json.loads((VECTORS / "lines.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", LINES["cases"], ids=lambda c: c["name"])
def test_relay_lines_parse_as_documented(case):
    from chatsvc import grammar

    line = grammar.parse_line(case["line"], grammar.SERVER_COMMANDS)
    got = None if line is None else {"command": line.command, "args": list(line.args), "tags": line.tags}
    assert got == case["expect"]


def test_the_shipped_skeleton_table_is_the_relays():
    import importlib.util

    spec = importlib.util.spec_from_file_location("skeleton_table", VECTORS.parent.parent / "tools" / "skeleton_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    shipped = (VECTORS.parent.parent / "chatsvc" / "web" / "skeleton.js").read_text(encoding="utf-8")
    assert shipped == module.render()


LOOKALIKES = ["bob", "bоb", "ｂob", "rnallory", "mallory", "Alice", "аlice", "a1ice", "İlkay", "Straße", "x\u0301"]


def test_the_page_computes_the_same_skeletons():
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    module = VECTORS.parent.parent / "chatsvc" / "web" / "skeleton.js"
    script = f"import {{ skeleton }} from {json.dumps(str(module))}; console.log(JSON.stringify({json.dumps(LOOKALIKES)}.map(skeleton)));"
    out = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout) == [skeleton(n) for n in LOOKALIKES], out.stderr


@pytest.mark.parametrize("case", VERIFY["cases"], ids=lambda c: c["name"])
def test_verify_confirmation(case):
    assert confirmation(case["answer"], case["offered"], case["current"]).as_dict() == case["expect"]


@pytest.mark.parametrize("case", COMPLETION["cases"], ids=lambda c: c["name"])
def test_completion(case):
    text, candidates = complete(case["before"], COMPLETION["commands"], COMPLETION["rooms"], COMPLETION["nicks"])
    assert {"text": text, "candidates": candidates} == case["expect"]


@pytest.mark.parametrize("case", STRENGTH["cases"], ids=lambda c: c["passphrase"])
def test_passphrase_strength_verdict(case):
    from chatsvc.client import passphrases

    bits = passphrases.strength_bits(case["passphrase"])
    got = "refuse" if bits < passphrases.REFUSE_BELOW_BITS else "warn" if bits < passphrases.WARN_BELOW_BITS else "ok"
    assert got == case["verdict"]
