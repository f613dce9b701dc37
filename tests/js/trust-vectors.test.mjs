// The trust core's shared cases (docs/vectors/*.json), run against the
// page's parts; tests/test_trust_vectors.py runs the same files against the
// terminal client's.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { attribution, interpret, placement, unreadable } from "../../chatsvc/web/inbound.js";
import { PeerKeys, RETRY_DELAYS, TABLE } from "../../chatsvc/web/keyexchange.js";
import { skeleton } from "../../chatsvc/web/skeleton.js";
import { confirmation } from "../../chatsvc/web/verification.js";
import { complete } from "../../chatsvc/web/completion.js";

const load = (name) => JSON.parse(readFileSync(new URL(`../../docs/vectors/${name}`, import.meta.url), "utf-8"));
const INBOUND = load("inbound.json");
const KEYEX = load("keyexchange.json");
const VERIFY = load("verify.json");
const COMPLETION = load("completion.json");

const view = (v) => ({ me: v.me, wanted: v.wanted, rooms: new Set(v.rooms || []), historyOpen: new Set(v.history_open || []),
                       historyMode: v.history_mode || {}, lastId: v.last_id || {} });

for (const c of INBOUND.placement.cases) {
  test(`placement: ${c.name}`, () => {
    assert.deepEqual(placement(c.sender, c.target, c.tags, view(c.view || INBOUND.placement.view)), c.expect);
  });
}

for (const c of INBOUND.unreadable) {
  test(`unreadable: ${c.name}`, () => {
    assert.deepEqual(unreadable(c.error, c.signer, c.private, c.history, c.asked_before), c.expect);
  });
}

function pinsOf(pinned) {
  const bySkeleton = new Map();
  for (const nick of Object.keys(pinned).sort()) bySkeleton.set(skeleton(nick), [...(bySkeleton.get(skeleton(nick)) || []), nick]);
  return { pinned: new Map(Object.entries(pinned)), skeleton, bySkeleton };
}

for (const c of INBOUND.attribution.cases) {
  test(`attribution: ${c.name}`, () => {
    const common = INBOUND.attribution;
    const own = "own" in c ? c.own : common.own;
    assert.deepEqual(attribution(c.sender, c.signer, own, c.selves || common.selves, pinsOf(common.pins)), c.expect);
  });
}

for (const c of INBOUND.interpret) {
  test(`interpret: ${c.name}`, () => {
    const f = new Set(c.flags);
    const got = interpret(c.text, { isPrivate: f.has("private"), history: f.has("history"), signed: f.has("signed"),
                                    trusted: f.has("trusted"), ignored: f.has("ignored"), own: f.has("own") });
    assert.deepEqual(got, c.expect);
  });
}

function recorder() {
  const log = [];
  return { log, request: () => log.push("request"), arm: (s) => log.push(`arm ${s}`), disarm: () => log.push("disarm"),
           deliver: (m, s) => log.push(`deliver ${m} ${s}`), tellUnanswered: (n) => log.push(`tell_unanswered ${n}`),
           deliverWeaker: (m) => log.push(`deliver_weaker ${m}`), dropped: (ms) => log.push(`dropped ${ms.join(" ")}`) };
}

const fire = (machine, [event, ...data]) => machine[event](...data);

for (const row of KEYEX.table) {
  test(`key exchange: ${row.state} + ${row.event}`, async () => {
    const effects = recorder();
    const machine = new PeerKeys(effects);
    for (const step of KEYEX.setup[row.state]) await fire(machine, step);
    assert.equal(machine.state, row.state);
    effects.log.length = 0;
    await fire(machine, [row.event, ...({ send: ["m1"], answer: ["s1"] }[row.event] || [])]);
    assert.deepEqual([machine.state, effects.log, machine.held.length], [row.next, row.effects, row.held]);
  });
}

test("the key exchange table covers every state and event, with the same delays", () => {
  assert.deepEqual(Object.keys(TABLE).sort(), Object.keys(KEYEX.setup).sort());
  for (const state of Object.keys(TABLE)) assert.deepEqual(Object.keys(TABLE[state]).sort(), ["answer", "force", "gone", "retry", "send", "timeout"]);
  assert.deepEqual(RETRY_DELAYS, KEYEX.retry_delays);
});

import { parseLine } from "../../chatsvc/web/proto.js";

for (const c of load("lines.json").cases) {
  test(`line: ${c.name}`, () => {
    const line = parseLine(c.line);
    assert.deepEqual(line === null ? null : { command: line.command, args: line.args, tags: line.tags }, c.expect);
  });
}

for (const c of VERIFY.cases) {
  test(`verify: ${c.name}`, () => {
    assert.deepEqual(confirmation(c.answer, c.offered, c.current), c.expect);
  });
}

for (const c of COMPLETION.cases) {
  test(`completion: ${c.name}`, () => {
    const [text, candidates] = complete(c.before, COMPLETION.commands, COMPLETION.rooms, COMPLETION.nicks);
    assert.deepEqual({ text, candidates }, c.expect);
  });
}
