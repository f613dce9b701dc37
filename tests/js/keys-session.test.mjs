// Per-user keys in the page's session, as in the terminal client: a
// member with the passphrase but another key cannot write under a pinned
// nick, unsigned messages are marked, /verify, and a private message waits
// for its recipient's keys and then only the two can read it.
import { kdf } from "./kdf.mjs";
import { test } from "node:test";
import assert from "node:assert/strict";
import { ChatSession } from "../../chatsvc/web/session.js";
import { Cipher, deriveMasterV1, deriveMasterV2, fingerprint, generateIdentity, safetyNumber } from "../../chatsvc/web/crypto.js";

const PASS = "correct horse battery staple";
const SALT = "AAECAwQFBgcICQoLDA0ODw";
const v1 = await kdf.v1(PASS);
const v2 = await kdf.v2(PASS, SALT);
const BOB = await generateIdentity();
const MALLORY = await generateIdentity();

class FakeSocket {
  static all = [];
  constructor() { this.readyState = 1; this.sent = []; FakeSocket.all.push(this); queueMicrotask(() => this.onopen?.()); }
  send(line) { this.sent.push(line); }
  close() { this.readyState = 3; this.onclose?.({ code: 1000 }); }
}

function recorder() {
  const lines = [];
  return { lines, texts: () => lines.map(([, e]) => e.text), line: (conv, entry) => lines.push([conv, entry]),
           acked() {}, refused() {}, status() {}, changed() {}, current() {}, ended() {}, clear() {} };
}

/** A fake localStorage: what a reloaded page finds again (pinned keys). */
export function memoryStore() {
  const items = new Map();
  return { getItem: (k) => items.get(k) ?? null, setItem: (k, v) => items.set(k, String(v)), removeItem: (k) => items.delete(k) };
}

function envelopePeer(line) {
  const body = line.split(" ").at(-1).split(":")[1];
  const raw = Buffer.from(body.replace(/-/g, "+").replace(/_/g, "/"), "base64");
  return raw.subarray(raw.length - 96, raw.length - 64);
}

async function signedIn(nick, identity, keyStore = null) {
  const ui = recorder();
  const timers = [];
  const s = new ChatSession({ kdf, url: "ws://x/chat", nick, passphrase: PASS, room: "#lobby", ui, identity, keyStore,
                              WebSocketImpl: FakeSocket, now: () => Date.now(), setTimer: (f) => timers.push(f), clearTimer: () => {} });
  await s.start();
  const ws = FakeSocket.all.at(-1);
  const say = (line) => s.received(line);
  await say("HELLO chatsvc 1 test");
  await say(`CAPS join-proof streams max-line=65536 salt=${SALT}`);
  await say(`OK NICK ${nick}`);
  await say(`JOIN #lobby ${nick}`);
  await say("ENDHISTORY #lobby complete");
  return { s, ui, ws, say, timers };
}

async function from(identity, text, target, sender) {
  const c = new Cipher({ masterV1: v1, identity });
  c.useV2(v2, SALT);
  return c.encrypt(text, target, sender);
}

test("a pinned nick cannot be written under with another key, or unsigned", async () => {
  const { ui, say } = await signedIn("alice", await generateIdentity());
  await say(`@id=1 MSG bob #lobby ${await from(BOB, "hi, it is bob", "#lobby", "bob")}`);
  assert.equal(ui.texts().at(-1), "hi, it is bob");
  assert.ok(ui.texts().includes(`bob's key: ${await fingerprint(BOB.public)} (first seen, trusted from now on; /verify bob to compare safety numbers)`));
  await say(`@id=2 MSG bob #lobby ${await from(MALLORY, "send the money to me", "#lobby", "bob")}`);
  assert.equal(ui.texts().at(-1), "bob's key changed — not shown as bob; /verify bob");
  await say(`@id=3 MSG bob #lobby ${await from(null, "send it anyway", "#lobby", "bob")}`);
  assert.equal(ui.texts().at(-1), "a message under bob's name without bob's signature (they sign theirs) — not shown as bob");
  assert.ok(!ui.texts().some((t) => t.includes("money") || t.includes("anyway")));
});

test("nothing private goes to a nick whose key changed until it is verified", async () => {
  const { s, ui, ws, say } = await signedIn("alice", await generateIdentity());
  await say(`@id=1 MSG bob #lobby ${await from(BOB, "one", "#lobby", "bob")}`);
  await say(`@id=2 MSG bob #lobby ${await from(MALLORY, "two", "#lobby", "bob")}`);
  const sent = ws.sent.length;
  await s.typed("/msg bob the code is 1234");
  assert.equal(ws.sent.length, sent);
  assert.equal(ui.texts().at(-1), "not sent: bob's key changed; compare safety numbers with /verify bob first");
});

test("unsigned messages from a nick never seen signing are marked", async () => {
  const { ui, say } = await signedIn("alice", await generateIdentity());
  await say(`@id=1 MSG carol #lobby ${await from(null, "from an older client", "#lobby", "carol")}`);
  const [, entry] = ui.lines.at(-1);
  assert.equal(entry.text, "from an older client");
  assert.equal(entry.unsigned, true);
});

test("/verify shows the safety number and accepts a changed key; held messages then show", async () => {
  const me = await generateIdentity();
  const { s, ui, say } = await signedIn("alice", me);
  await say(`@id=1 MSG bob #lobby ${await from(BOB, "one", "#lobby", "bob")}`);
  await say(`@id=2 MSG bob #lobby ${await from(MALLORY, "new laptop", "#lobby", "bob")}`);
  await s.typed("/whois bob");
  assert.match(ui.texts().at(-1), /key CHANGED to /);
  await s.typed("/verify bob");
  const number = await safetyNumber(me.public, MALLORY.public);
  assert.equal(ui.texts().at(-1), `safety number with bob: ${number} — compare it with bob in person or on a call; ` +
                                  "if it is the same on both sides, type /verify bob yes");
  assert.equal(ui.lines.at(-1)[1].confirm, "bob"); // the page's "They match" button
  assert.equal(s.trust.verified("bob"), false); // seeing the number marks nothing
  await s.typed("/verify bob yes");
  assert.equal(ui.lines.at(-1)[1].text, "new laptop");
  assert.equal(ui.lines.at(-1)[1].held, true);
  await say(`@id=3 MSG bob #lobby ${await from(MALLORY, "thanks", "#lobby", "bob")}`);
  assert.equal(ui.texts().at(-1), "thanks");
});

test("a private message waits for the keys, then only the two can read it", async () => {
  const alice = await signedIn("alice", await generateIdentity());
  const bob = await signedIn("bob", BOB);
  await alice.s.typed("/msg bob the door code is 4711");
  const request = alice.ws.sent.at(-1);
  assert.match(request, /^MSG bob aes3:/);
  await bob.say(request.replace("MSG bob ", "MSG alice bob "));
  const answer = bob.ws.sent.at(-1);
  assert.match(answer, /^MSG alice aes3:/);
  await alice.say("OK MSG bob");
  await alice.say(answer.replace("MSG alice ", "MSG bob alice "));
  const secret = alice.ws.sent.at(-1);
  assert.match(secret, /^MSG bob aes3:/);
  await bob.say(secret.replace("MSG bob ", "MSG alice bob "));
  assert.equal(bob.ui.texts().at(-1), "the door code is 4711");
  assert.equal(bob.ui.lines.at(-1)[1].notPrivate, false);
  // mallory, with the passphrase and the payload the relay hands her
  const mallory = await signedIn("mallory", MALLORY);
  await mallory.say(secret.replace("MSG bob ", "MSG alice mallory "));
  assert.ok(!mallory.ui.texts().some((t) => t.includes("4711")));
});

test("an unanswered key exchange is retried, then waits for the user: never downgraded by itself (hole 2)", async () => {
  const alice = await signedIn("alice", await generateIdentity());
  await alice.s.typed("/msg dave hello");
  let sent = alice.ws.sent.length;
  await alice.say("OK MSG dave");
  for (let i = 0; i < 2; i++) {
    await alice.timers.at(-1)(); // the retry delay passed without an answer
    await alice.s.chain;
    assert.equal(alice.ws.sent.length, sent + 1); // asked again
    assert.ok(envelopePeer(alice.ws.sent.at(-1)).every((b) => b === 0));
    sent += 1;
    await alice.say("OK MSG dave");
  }
  await alice.timers.at(-1)();
  await alice.s.chain;
  assert.equal(alice.ws.sent.length, sent); // nothing weaker went out by itself
  assert.equal(alice.ui.texts().at(-1), "dave did not answer a key exchange (3 tries in 35 s): 1 private message waits; " +
                                        "/retry dave asks again, /unsafe dave sends it without forward secrecy");
  await alice.s.typed("/unsafe dave");
  assert.equal(alice.ws.sent.length, sent + 1);
  assert.equal(alice.ui.texts().at(-1), "as you asked, sent to dave keyed by the passphrase alone, which every member can read");
  await alice.say("OK MSG dave");
  await alice.s.typed("/msg dave still there?"); // the mark does not stay: it asks again
  assert.equal(alice.ws.sent.length, sent + 2);
  assert.equal(alice.ui.texts().at(-1), "hello");
});

test("a key request to a nick nobody has says so at once", async () => {
  const alice = await signedIn("alice", await generateIdentity());
  await alice.s.typed("/msg dave hello");
  await alice.say("ERROR no-such-nick no one is called dave");
  assert.equal(alice.ui.texts().at(-1), "nobody is called dave — not sent: hello");
});

test("a page that reloaded asks again, and the next private message reads", async () => {
  const alice = await signedIn("alice", await generateIdentity());
  const bobsStorage = memoryStore();
  let bob = await signedIn("bob", BOB, bobsStorage);
  const deliver = (line, to, sender) => to.say(line.replace(`MSG ${to.s.nick} `, `MSG ${sender} ${to.s.nick} `));
  await alice.s.typed("/msg bob one");
  await deliver(alice.ws.sent.at(-1), bob, "alice"); // key request
  await deliver(bob.ws.sent.at(-1), alice, "bob"); // answer
  await alice.say("OK MSG bob");
  await deliver(alice.ws.sent.at(-1), bob, "alice");
  assert.equal(bob.ui.texts().at(-1), "one");
  bob = await signedIn("bob", BOB, bobsStorage); // reloaded: same identity and pins, a new session
  await alice.s.typed("/msg bob two");
  await deliver(alice.ws.sent.at(-1), bob, "alice");
  assert.match(bob.ui.texts().at(-1), /earlier session of yours/);
  await deliver(bob.ws.sent.at(-1), alice, "bob"); // bob's page asks again...
  await deliver(alice.ws.sent.at(-1), bob, "alice"); // ...alice's answers
  await alice.s.typed("/msg bob three");
  await deliver(alice.ws.sent.at(-1), bob, "alice");
  assert.equal(bob.ui.texts().at(-1), "three");
});

test("verifying takes two steps; a wrong number marks nothing; verification follows the key (issue #23, 2-3)", async () => {
  const me = await generateIdentity();
  const { s, ui, say } = await signedIn("alice", me);
  await say(`@id=1 MSG bob #lobby ${await from(BOB, "one", "#lobby", "bob")}`);
  await s.typed("/verify bob yes");
  assert.equal(ui.texts().at(-1), "compare first: /verify bob shows the safety number to compare");
  const number = await safetyNumber(me.public, BOB.public);
  const wrong = (number[0] === "1" ? "2" : "1") + number.slice(1);
  await s.typed(`/verify bob ${wrong}`);
  assert.match(ui.texts().at(-1), /^that is not your safety number with bob — NOT verified/);
  await s.typed(`/verify bob ${number.replaceAll(" ", "-")}`);
  assert.match(ui.texts().at(-1), /^bob's key .* is now verified$/);
  assert.equal(s.trust.verified("bob"), true);
  await say("NICK bob robert");
  await say(`@id=2 MSG robert #lobby ${await from(BOB, "new name", "#lobby", "robert")}`);
  assert.match(ui.texts().at(-2), /^bob is now robert: the same key, verified \(/);
  assert.equal(ui.texts().at(-1), "new name");
  assert.equal(s.trust.verified("robert"), true);
});

test("keys first seen in history are told in one line after it (issue #23, 4)", async () => {
  const { s, ui, say } = await signedIn("alice", await generateIdentity());
  const CAROL = await generateIdentity();
  await s.typed("/join #dev");
  await say("JOIN #dev alice");
  const t = Date.now();
  await say(`@id=1;time=${t};history MSG bob #dev ${await from(BOB, "m1", "#dev", "bob")}`);
  await say(`@id=2;time=${t};history MSG carol #dev ${await from(CAROL, "m2", "#dev", "carol")}`);
  await say(`@id=3;time=${t};history MSG bob #dev ${await from(BOB, "m3", "#dev", "bob")}`);
  await say("ENDHISTORY #dev complete");
  assert.deepEqual(ui.texts().slice(-4), ["m1", "m2", "m3",
    "pinned the keys of bob, carol on first use; /verify nick to compare safety numbers"]);
  assert.ok(!ui.texts().some((t) => t.includes("first seen")));
  await say(`@id=4 MSG dave #dev ${await from(MALLORY, "live", "#dev", "dave")}`);
  assert.match(ui.texts().at(-2), /^dave's key: .* \(first seen, trusted from now on/);
});
