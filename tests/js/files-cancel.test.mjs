// The page's file transfers without a relay: an offer up to 10 MiB is taken
// without a click (within the terminal client's bounds on what runs at
// once), a bigger one waits; Cancel stops a transfer and tells the sender.
import { test } from "node:test";
import assert from "node:assert/strict";
import { AUTO_ACCEPT, Transfers, encode } from "../../chatsvc/web/files.js";

class FakeSocket {
  static all = [];
  constructor(url) { this.url = url; this.readyState = 1; this.sent = []; FakeSocket.all.push(this); }
  send(data) { this.sent.push(data); }
  close() { this.readyState = 3; this.onclose?.({ code: 1000 }); }
}

function harness() {
  const sent = [];
  const shown = [];
  const host = {
    url: "ws://x/chat", WebSocketImpl: FakeSocket, nick: "alice", now: () => 0,
    cipher: { masters: { aes2: true }, fileKey: async () => new Uint8Array(32) },
    sendControl: async (target, text) => sent.push([target, text]),
    problem: (conv, text) => shown.push(["problem", text]), notice: (conv, text) => shown.push(["notice", text]),
  };
  const ui = {
    offer: (conv, offer, acceptable, auto) => shown.push(["offer", offer.name, acceptable, auto]),
    offered() {}, progress() {}, received() {},
    transferEnded: (id, text, failed) => shown.push(["ended", text, failed]),
  };
  return { t: new Transfers(host, ui), sent, shown };
}

const offer = (id, size) => ({ t: "offer", id, name: `${id}.bin`, size, sha256: "0".repeat(64), type: "file", stream: 1 });

test("small offers are taken without a click, big ones wait, and no sender gets more than three at once", async () => {
  const { t, shown, sent } = harness();
  await t.handle("bob", "#room", offer("0000000000000001", AUTO_ACCEPT + 1));
  assert.deepEqual(shown.at(-1), ["offer", "0000000000000001.bin", true, false]);
  for (let n = 2; n <= 5; n++) await t.handle("bob", "#room", offer(`000000000000000${n}`, 1000));
  assert.deepEqual(shown.filter((s) => s[0] === "offer" && s[3]).length, 3); // the fourth waits for a click
  assert.equal(sent.filter(([, text]) => text.includes('"accept"') || text.includes("accept")).length, 3);
});

test("Cancel stops receiving and tells the sender", async () => {
  const { t, shown, sent } = harness();
  await t.handle("bob", "#room", offer("00000000000000c1", AUTO_ACCEPT + 1));
  const accepting = t.accept("00000000000000c1");
  await new Promise((r) => setTimeout(r, 0));
  await t.cancel("00000000000000c1");
  await accepting;
  assert.deepEqual(sent.at(-1), ["bob", encode("cancel", { id: "00000000000000c1" })]);
  assert.deepEqual(shown.filter((s) => s[0] === "ended"), [["ended", "stopped receiving 00000000000000c1.bin from bob", false]]);
});
