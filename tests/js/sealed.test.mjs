// Sealed rooms: the page's sealed.js and membership.js against
// docs/vectors/sealed.json -- the file tests/test_sealed.py loads too.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { b64url, hex, identityFromSeeds, joinProof, unhex } from "../../chatsvc/web/crypto.js";
import {
  MARKER, SealError, canonical, controlText, makeLink, openBox, parseControl, parseLink, roomMaster, sealBox, secretCheck,
  statementHash, statementVerifies, unb64,
} from "../../chatsvc/web/sealed.js";
import { Held, accept, judge } from "../../chatsvc/web/membership.js";

const V = JSON.parse(readFileSync(new URL("../../docs/vectors/sealed.json", import.meta.url), "utf-8"));
const person = (name) => {
  const p = V.people[name];
  return identityFromSeeds(unhex(p.sign_seed), unhex(p.agree_seed), unb64(p.sign), unb64(p.agree));
};
const keys = (d) => ({ sign: unb64(d.sign), agree: unb64(d.agree) });

test("derivations: room master, check, join proof", async () => {
  for (const c of V.derive) {
    const master = await roomMaster(unhex(c.secret), c.room, c.epoch);
    assert.equal(hex(master), c.master);
    assert.equal(await secretCheck(unhex(c.secret), c.room, c.epoch), c.check);
    assert.equal(await joinProof(master, c.room), c.proof);
  }
});

test("canonical bytes", () => {
  for (const c of V.canonical) assert.equal(canonical(c.value), c.bytes);
});

test("the statement verifies, a changed one does not; the control message parses", async () => {
  const s = V.statement;
  assert.ok(await statementVerifies(s.statement, s.signature));
  assert.equal(hex(await statementHash(s.statement)), s.hash);
  for (const change of [{ serial: 2 }, { epoch: 3 }, { owners: [] }, { room: "#ops2" }]) {
    assert.equal(await statementVerifies({ ...s.statement, ...change }, s.signature), false);
  }
  assert.deepEqual(parseControl(s.control)[0], s.statement);
});

test("the box opens for its member only", async () => {
  const b = V.box;
  const [alice, bob, carol] = [await person("alice"), await person("bob"), await person("carol")];
  const stmt = V.statement.statement;
  const made = await sealBox(alice, { nick: "bob", keys: bob.public }, stmt, unhex(b.secret), () => unhex(b.nonce));
  assert.equal(made, b.box);
  assert.equal(hex(await openBox(bob, alice.public.agree, stmt, b.box)), b.secret);
  assert.equal(await openBox(carol, alice.public.agree, stmt, b.box), null);
  assert.equal(await openBox(bob, alice.public.agree, { ...stmt, serial: 9 }, b.box), null);
  assert.equal(await openBox(bob, alice.public.agree, stmt, "!!"), null);
});

test("links both ways, and refusals by code", () => {
  const v = V.link;
  const link = { room: v.link.room, epoch: v.link.epoch, secret: unhex(v.link.secret), owner: unb64(v.link.owner),
                 ownerAgree: unb64(v.link.agree), chat: v.link.chat };
  assert.equal(makeLink(link), v.chat);
  assert.equal(makeLink(link, "https://chat.example.org"), v.page);
  for (const text of [v.chat, v.page]) {
    const parsed = parseLink(text);
    assert.equal(parsed.room, link.room);
    assert.equal(hex(parsed.secret), v.link.secret);
    assert.equal(b64url(parsed.owner), v.link.owner);
    assert.equal(b64url(parsed.ownerAgree), v.link.agree);
    assert.equal(parsed.chat, link.chat);
  }
  for (const c of v.refused) {
    assert.throws(() => parseLink(c.text), (e) => e instanceof SealError && e.code === c.reason, c.text);
  }
});

function held(h) {
  if (!h) return null;
  const secrets = Object.fromEntries(Object.entries(h.secrets).map(([e, s]) => [Number(e), unb64(s)]));
  return new Held({ room: h.room, epoch: h.epoch, secrets, statement: h.statement, signature: h.signature,
                    linkOwner: h.link_owner ? unb64(h.link_owner) : null, listed: h.listed });
}

for (const c of V.judge) {
  test(`judge: ${c.name}`, async () => {
    const v = await judge(held(c.held), c.statement, c.signature, c.secret ? unb64(c.secret) : null,
                          keys(c.carrier), c.where, keys(c.me));
    assert.deepEqual(v, c.expect);
  });
}

test("malformed control messages are refused by code", () => {
  for (const text of ["", MARKER, MARKER + "[]", MARKER + '{"statement":1,"sig":""}', MARKER + "{".repeat(5000),
                      MARKER + "[".repeat(50000), MARKER + "x".repeat(70000)]) {
    assert.throws(() => parseControl(text), (e) => e instanceof SealError && e.code === "malformed");
  }
});

test("a statement whose owner is not a member is malformed", () => {
  const s = V.statement;
  const alone = { ...s.statement, members: s.statement.members.filter((m) => !s.statement.owners.includes(m.sign)) };
  assert.throws(() => parseControl(controlText(alone, s.signature)), (e) => e instanceof SealError && e.code === "malformed");
});

test("accept follows the verdict", async () => {
  const c = V.judge.find((x) => x.expect.kind === "invited");
  const [alice, bob] = [await person("alice"), await person("bob")];
  const secret = unb64(c.secret);
  const v = await judge(null, c.statement, c.signature, secret, alice.public, "private", bob.public);
  const h = accept(null, v, c.statement, c.signature, secret, bob.public);
  assert.equal(h.epoch, 1);
  assert.equal(hex(h.secret), hex(secret));
  assert.equal(h.listed, true);
});

test("a same-epoch statement's changes, in words (as sealing.py)", async () => {
  const { changes } = await import("../../chatsvc/web/sealing.js");
  const before = V.judge.find((c) => c.name === "an owner adds a member (same epoch)");
  assert.deepEqual(changes(before.held.statement, before.statement), ["added dave to"]);
  const op = { ...before.statement, owners: [...before.statement.owners, V.people.dave.sign].sort() };
  assert.deepEqual(changes(before.statement, op), ["made dave an owner of"]);
  assert.deepEqual(changes(null, op), []);
});

test("what a client sends is at most MAX_SENT_CONTROL_CHARS (as sealed.py)", async () => {
  const { fits, MAX_SENT_CONTROL_CHARS } = await import("../../chatsvc/web/sealed.js");
  const text = MARKER + "x".repeat(MAX_SENT_CONTROL_CHARS - MARKER.length);
  assert.ok(fits(text));
  assert.equal(fits(text + "x"), false);
});
