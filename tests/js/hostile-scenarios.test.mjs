// The hostile-relay scenarios of docs/vectors/hostile.json, played against
// the page's whole session (the test is the relay); the terminal client
// plays the same file in tests/test_hostile_scenarios.py.
import { kdf } from "./kdf.mjs";
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { ChatSession } from "../../chatsvc/web/session.js";
import { Cipher, deriveMasterV1, deriveMasterV2, generateIdentity, identityFromSeeds, unhex } from "../../chatsvc/web/crypto.js";

const DOC = JSON.parse(readFileSync(new URL("../../docs/vectors/hostile.json", import.meta.url), "utf-8"));
const PASS = "correct horse battery staple";
const SALT = "AAECAwQFBgcICQoLDA0ODw";
const v1 = await kdf.v1(PASS);
const v2 = await kdf.v2(PASS, SALT);
const other = await deriveMasterV2("another passphrase entirely", SALT);
const IDS = {};
for (const [name, d] of Object.entries(DOC.identities)) {
  IDS[name] = await identityFromSeeds(unhex(d.sign_seed), unhex(d.agree_seed), unhex(d.sign), unhex(d.agree));
}

class FakeSocket {
  static all = [];
  constructor() { this.readyState = 1; this.sent = []; FakeSocket.all.push(this); }
  send(line) { this.sent.push(line); }
  close() { this.readyState = 3; this.onclose?.({ code: 1000 }); }
}

async function signedIn(scenario) {
  const lines = [];
  const ui = { line: (conv, entry) => lines.push(entry), acked() {}, refused() {}, status() {}, changed() {}, current() {},
               ended() {}, clear() {} };
  const s = new ChatSession({ kdf, url: "ws://x/chat", nick: "alice", passphrase: PASS, room: "#lobby", ui, identity: IDS.alice,
                              WebSocketImpl: FakeSocket, now: () => Date.now(), setTimer: () => 0, clearTimer: () => {} });
  await s.start();
  for (const [nick, who] of Object.entries(scenario.pins || {})) s.trust.known.pin(nick, IDS[who].public);
  const ws = FakeSocket.all.at(-1);
  for (const line of ["HELLO chatsvc 1 test", `CAPS join-proof topic max-line=65536 salt=${SALT}`, "OK NICK alice",
                      "JOIN #lobby alice", "NAMES #lobby alice bob", "ENDNAMES #lobby"]) await s.received(line);
  if (!scenario.history_open) await s.received("ENDHISTORY #lobby complete");
  ws.sent.length = 0;
  lines.length = 0;
  return { s, ws, lines };
}

async function makePayload(spec, sender, target) {
  const age = (spec.age_minutes || 0) * 60000;
  const c = new Cipher({ masterV1: v1, identity: spec.by ? IDS[spec.by] : null, now: () => Date.now() - age });
  c.useV2(spec.passphrase === "other" ? other : v2, SALT);
  if (spec.peer === "identity") c.peerAgree = () => IDS.alice.public.agree;
  if (spec.peer === "random") {
    const stranger = (await generateIdentity()).public.agree;
    c.peerAgree = () => stranger;
  }
  return c.encrypt(spec.text, spec.for || target, spec.as || sender, false);
}

function keyed(line) {
  const [, to, payload] = line.split(" ");
  const raw = Buffer.from(payload.split(":")[1].replace(/-/g, "+").replace(/_/g, "/"), "base64");
  const peer = raw.subarray(raw.length - 96, raw.length - 64).toString("hex");
  const agrees = Object.values(DOC.identities).map((d) => d.agree);
  return { to, keyed: /^0+$/.test(peer) ? "passphrase" : agrees.includes(peer) ? "identity" : "session" };
}

for (const scenario of DOC.scenarios) {
  test(scenario.name, async () => {
    const { s, ws, lines } = await signedIn(scenario);
    const decisions = [];
    s.onDecision = (stage, d) => decisions.push([stage, d.action, ...(d.reason ? [d.reason] : [])]);
    let payload = null;
    for (const step of scenario.steps) {
      const words = step.line.split(" ");
      if (step.payload !== "again") {
        const [sender, target] = words[0] === "MSG" ? [words[1], words[2]] : [words[2], words[1]];
        payload = await makePayload(step.payload, sender, target);
      }
      const tags = Object.entries(step.tags || {}).map(([k, v]) => (v ? `${k}=${v}` : k)).join(";");
      await s.received((tags ? `@${tags} ` : "") + `${step.line} ${payload}`);
    }
    assert.deepEqual(decisions, scenario.expect.decisions);
    assert.deepEqual(ws.sent.filter((l) => l.startsWith("MSG ")).map(keyed), scenario.expect.sent);
    for (const text of scenario.expect.shown || []) assert.ok(lines.some((e) => e.kind === "msg" && e.text.includes(text)), text);
    for (const text of scenario.expect.hidden || []) assert.ok(!lines.some((e) => (e.text || "").includes(text)), text);
  });
}
