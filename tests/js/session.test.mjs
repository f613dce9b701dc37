// The page's session against a fake socket: what a hostile relay tries is
// refused as in the terminal client; nothing is lost or doubled over a drop.
import { kdf } from "./kdf.mjs";
import { test } from "node:test";
import assert from "node:assert/strict";
import { ChatSession } from "../../chatsvc/web/session.js";
import { Cipher, deriveMasterV1, deriveMasterV2 } from "../../chatsvc/web/crypto.js";

const PASS = "correct horse battery staple";
const SALT = "AAECAwQFBgcICQoLDA0ODw";
const v1 = await kdf.v1(PASS);
const v2 = await kdf.v2(PASS, SALT);

class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = 1;
    this.sent = [];
    FakeSocket.all.push(this);
  }
  send(line) { this.sent.push(line); }
  close() { this.readyState = 3; this.onclose?.({ code: 1000 }); }
}

function recorder() {
  const lines = [];
  return {
    lines,
    texts: () => lines.map(([, e]) => e.text),
    line: (conv, entry) => lines.push([conv, entry]),
    acked() {}, refused() {}, status() {}, changed() {}, current() {}, ended() {}, clear() {},
  };
}

async function signedIn(nick = "alice", store = null) {
  FakeSocket.all = [];
  const ui = recorder();
  const s = new ChatSession({ kdf, url: "ws://x/chat", nick, passphrase: PASS, room: "#lobby", ui, store,
                              WebSocketImpl: FakeSocket, now: () => Date.now(), setTimer: () => 0, clearTimer: () => {} });
  await s.start();
  const ws = FakeSocket.all.at(-1);
  const say = (line) => s.received(line);
  await say("HELLO chatsvc 1 test");
  assert.deepEqual(ws.sent, ["CAPS"]);
  await say(`CAPS join-proof streams max-line=65536 salt=${SALT}`);
  assert.equal(ws.sent.at(-1), `NICK ${nick}`);
  await say(`OK NICK ${nick}`);
  // the join proof of docs/encryption.md's vector (#Lobby folds to #lobby)
  assert.equal(ws.sent.at(-2), "JOIN #lobby OD7trhWlSg2EvqrbNMWSofcWx9YJLbjC8gKfDXSQjPM");
  assert.equal(ws.sent.at(-1), "HISTORY #lobby last 50");
  await say(`JOIN #lobby ${nick}`);
  await say("ENDHISTORY #lobby complete");
  return { s, ui, ws, say };
}

async function sealed(text, target, sender, { now = Date.now(), senderId } = {}) {
  const c = new Cipher({ masterV1: v1, now: () => now });
  c.useV2(v2, SALT);
  return c.encrypt(text, target, sender);
}

test("a room message from another member is shown; own and misdirected ones are not", async () => {
  const { ui, say } = await signedIn();
  await say(`@id=10 MSG bob #lobby ${await sealed("hi alice", "#lobby", "bob")}`);
  assert.equal(ui.lines.at(-1)[1].text, "hi alice");
  const before = ui.lines.length;
  await say(`@id=11 MSG alice #lobby ${await sealed("echo", "#lobby", "alice")}`); // our own, reflected
  assert.equal(ui.lines.length, before);
  await say(`@id=12 MSG bob #elsewhere ${await sealed("x", "#elsewhere", "bob")}`);
  assert.match(ui.texts().at(-1), /you are not in it/);
  await say(`MSG bob carol ${await sealed("x", "carol", "bob")}`);
  assert.match(ui.texts().at(-1), /addressed to carol, not you/);
  await say(`@id=13;history MSG bob #lobby ${await sealed("old", "#lobby", "bob")}`);
  assert.match(ui.texts().at(-1), /marked as history, unasked/);
});

test("moved, misattributed and replayed messages are refused", async () => {
  const { ui, say } = await signedIn();
  const payload = await sealed("secret", "#other", "bob");
  await say(`@id=20 MSG bob #lobby ${payload}`);
  assert.match(ui.texts().at(-1), /cannot read a message from bob in #lobby: it does not authenticate/);
  const good = await sealed("once", "#lobby", "bob");
  await say(`@id=21 MSG mallory #lobby ${good}`);
  assert.match(ui.texts().at(-1), /from mallory .*does not authenticate/);
  await say(`@id=22 MSG bob #lobby ${good}`);
  assert.equal(ui.texts().at(-1), "once");
  await say(`@id=23 MSG bob #lobby ${good}`); // same envelope, new id
  assert.match(ui.texts().at(-1), /replayed/);
  const stale = await sealed("late", "#lobby", "bob", { now: Date.now() - 11 * 60 * 1000 });
  await say(`@id=24 MSG bob #lobby ${stale}`);
  assert.match(ui.texts().at(-1), /stale/);
});

test("unreadable history is one grouped notice, marked as history", async () => {
  const { s, ui, ws, say } = await signedIn();
  ws.sent.length = 0;
  s.delivery.lastId = {};
  await s.registration.join("#lobby");
  const other = new Cipher({ masterV1: await deriveMasterV1("another passphrase entirely") });
  for (let i = 0; i < 12; i++) {
    await say(`@id=${100 + i};time=1;history MSG bob #lobby ${await other.encrypt("x", "#lobby", "bob")}`);
  }
  await say("ENDHISTORY #lobby complete");
  assert.equal(ui.texts().at(-1), "12 earlier messages from bob in #lobby could not be read — a different passphrase?");
});

test("over a drop: catch up after the last id, resend the unacknowledged with the same cid", async () => {
  const { s, ws, say } = await signedIn();
  await say(`@id=30 MSG bob #lobby ${await sealed("before", "#lobby", "bob")}`);
  await s.typed("first");
  const sentFirst = ws.sent.at(-1);
  assert.match(sentFirst, /^@cid=\S+-1 MSG #lobby aes3:/);
  await say(`@cid=${sentFirst.slice(5).split(" ")[0]} OK MSG #lobby 31`);
  await s.typed("second, never acknowledged");
  const sentSecond = ws.sent.at(-1);
  ws.close(); // the page redials on a timer; here, at once
  s.connect();
  const ws2 = FakeSocket.all.at(-1);
  await s.received("HELLO chatsvc 1 test");
  await s.received(`CAPS join-proof streams salt=${SALT}`);
  await s.received("OK NICK alice");
  assert.equal(ws2.sent.at(-1), "HISTORY #lobby after 31");
  await s.received("JOIN #lobby alice");
  assert.equal(ws2.sent.at(-1), sentSecond); // the same cid, the same envelope
});

test("a reload shows the recent conversation again from ciphertext, and asks only for what is new", async () => {
  const store = new Map();
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v), removeItem: (k) => store.delete(k) };
  const first = await signedIn("alice", storage);
  await first.say(`@id=40 MSG bob #lobby ${await sealed("kept across reload", "#lobby", "bob")}`);
  assert.ok(!store.get("chatsvc.session").includes("kept across reload")); // never plaintext

  const ui = recorder();
  const s = new ChatSession({ kdf, url: "ws://x/chat", nick: "alice", passphrase: PASS, room: "#lobby", ui, store: storage,
                              WebSocketImpl: FakeSocket, now: () => Date.now(), setTimer: () => 0, clearTimer: () => {} });
  await s.start();
  const ws = FakeSocket.all.at(-1);
  await s.received("HELLO chatsvc 1 test");
  await s.received(`CAPS join-proof streams salt=${SALT}`);
  assert.deepEqual(ui.texts().filter((t) => t === "kept across reload").length, 1);
  await s.received("OK NICK alice");
  assert.equal(ws.sent.at(-1), "HISTORY #lobby after 40");
});

test("actions and away notes from the terminal client are shown as such", async () => {
  const { ui, say, s, ws } = await signedIn();
  await say(`@id=50 MSG bob #lobby ${await sealed("\x1fchatsvc-me:waves", "#lobby", "bob")}`);
  assert.deepEqual([ui.lines.at(-1)[1].text, ui.lines.at(-1)[1].action], ["waves", true]);
  await say(`MSG bob alice ${await sealed("\x1fchatsvc-away:at lunch", "alice", "bob")}`);
  assert.equal(ui.texts().at(-1), "bob is away: at lunch");
  await s.typed("/me nods");
  assert.match(ws.sent.at(-1), /^@cid=\S+ MSG #lobby aes3:/);
  assert.deepEqual([ui.lines.at(-1)[1].text, ui.lines.at(-1)[1].action, ui.lines.at(-1)[1].own], ["nods", true, true]);
});

test("a topic is read like a message, and a message passed off as a topic is refused", async () => {
  const { s, ui, say, ws } = await signedIn();
  await say(`TOPIC #lobby bob 1 ${await sealed("\x1fchatsvc-topic:ship it", "#lobby", "bob")}`);
  assert.equal(ui.texts().at(-1), "topic: ship it (set by bob (unsigned))");
  assert.equal(s.conversations.get("#lobby").topic, "ship it");
  await say(`TOPIC #lobby bob 1 ${await sealed("just a message", "#lobby", "bob")}`);
  assert.match(ui.texts().at(-1), /is not a topic/);
  await s.typed("/topic new one");
  assert.match(ws.sent.at(-1), /^TOPIC #lobby aes3:/);
});

test("ignore, away and whois in the page, as in the terminal client", async () => {
  const { s, ui, say, ws } = await signedIn();
  await say("JOIN #lobby bob");
  await s.typed("/ignore bob");
  const before = ui.lines.length;
  await say(`@id=60 MSG bob #lobby ${await sealed("not shown", "#lobby", "bob")}`);
  assert.equal(ui.lines.length, before);
  await s.typed("/unignore bob");
  await s.typed("/away lunch");
  await say(`MSG bob alice ${await sealed("there?", "alice", "bob")}`);
  // the away note waits for bob's keys: a key request goes first (bob signs nothing yet)
  assert.match(ws.sent.at(-1), /^MSG bob aes3:/);
  const sent = ws.sent.length;
  await say(`MSG bob alice ${await sealed("still?", "alice", "bob")}`);
  assert.equal(ws.sent.length, sent);
  await s.typed("/whois bob");
  assert.equal(ui.texts().at(-1), "bob is in #lobby with you; no key seen (unsigned so far)");
});

test("back online, the page redials at once instead of waiting out its backoff", async () => {
  const { s, ws } = await signedIn();
  const timers = [];
  s.setTimer = (f, ms) => { timers.push(ms); return timers.length; };
  s.registration.retries = 5;
  ws.close();
  assert.deepEqual(timers, [30000]);
  const before = FakeSocket.all.length;
  s.retryNow();
  assert.equal(FakeSocket.all.length, before + 1);
  s.retryNow(); // connected (or connecting): nothing more
  assert.equal(FakeSocket.all.length, before + 1);
});

test("a file over the page's limit is refused with a reason, nothing sent", async () => {
  const { s, ui, ws } = await signedIn();
  const sent = ws.sent.length;
  await s.transfers.offer({ name: "huge.iso", size: 300 * 1024 * 1024, bytes: null }, "#lobby");
  assert.match(ui.texts().at(-1), /huge\.iso is 300 MiB; the page sends files up to 256 MiB/);
  assert.equal(ws.sent.length, sent);
});

test("alone in a room others share: the page says to check the passphrase (issue #23, 1)", async () => {
  const { ui, ws, say } = await signedIn();
  await say("NAMES #lobby alice");
  await say("ENDNAMES #lobby");
  assert.equal(ws.sent.at(-1), "ROOMS"); // asked once, after our own join
  await say("ROOM #other 2");
  await say("ROOM #lobby 5");
  await say("ENDROOMS");
  assert.equal(ui.texts().at(-1),
    "#lobby has 4 members but none share your passphrase — check it (they cannot read you, nor you them)");
  assert.ok(!ui.texts().some((t) => t.startsWith("rooms:"))); // the check is not a listing
  await say("NAMES #lobby alice bob"); // a later listing (/names) is not checked again
  await say("ENDNAMES #lobby");
  assert.equal(ws.sent.filter((l) => l === "ROOMS").length, 1);
});

test("a room split by passphrase is told; the user's /rooms is a listing", async () => {
  const { s, ui, say } = await signedIn();
  await say("NAMES #lobby alice bob");
  await say("ENDNAMES #lobby");
  await s.typed("/rooms");
  await say("ROOM #lobby 3");
  await say("ENDROOMS");
  await say("ROOM #lobby 3");
  await say("ENDROOMS");
  assert.deepEqual(ui.texts().slice(-2), [
    "#lobby has 1 more member who uses another passphrase (or an older client): they cannot read this room, nor you theirs",
    "rooms: #lobby (3)",
  ]);
});

test("back as a variant, the page takes its nick back once the ghost quits, or asks again quietly (issue #23, 11)", async () => {
  const { s, ui, ws, say } = await signedIn();
  const timers = [];
  s.setTimer = (f) => { timers.push(f); return timers.length; };
  ws.close();
  s.connect();
  const ws2 = FakeSocket.all.at(-1);
  await s.received("HELLO chatsvc 1 test");
  await s.received(`CAPS join-proof streams salt=${SALT}`);
  await s.received("ERROR nick-taken alice is already in use");
  assert.equal(ws2.sent.at(-1), "NICK alice_");
  await s.received("OK NICK alice_");
  await s.received("JOIN #lobby alice_");
  await s.received("ENDHISTORY #lobby complete");
  const before = ws2.sent.filter((l) => l === "NICK alice").length; // (the first NICK, at sign-in)
  const asked = () => ws2.sent.filter((l) => l === "NICK alice").length - before;
  timers.at(-1)(); // the periodic try
  assert.equal(asked(), 1);
  const shown = ui.texts().length;
  await s.received("ERROR nick-taken alice is already in use");
  assert.equal(ui.texts().length, shown); // nothing shown for our own quiet try
  await say("QUIT alice connection lost"); // the ghost is gone
  assert.equal(asked(), 2);
  await s.received("OK NICK alice");
  await s.received("NICK alice_ alice");
  assert.equal(s.nick, "alice");
});
