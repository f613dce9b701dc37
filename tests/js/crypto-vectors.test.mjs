// docs/vectors/crypto.json -- the byte-exact vectors of docs/encryption.md --
// against the page's crypto module; tests/test_crypto_vectors.py runs the
// same file against the terminal client's.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  Cipher, DecryptError, associatedData, contextKey, contextLabel, deriveMasterV2, fileKey, fingerprint, hex, identityFromSeeds,
  joinProof, safetyNumber, sealFrame, sharedSecret, unb64url, unhex, SCHEMES,
} from "../../chatsvc/web/crypto.js";

const V = JSON.parse(readFileSync(new URL("../../docs/vectors/crypto.json", import.meta.url), "utf-8"));
const V1 = unhex(V.master_aes1);
const V2 = unhex(V.master_aes2);
const M = V.message;
const fixedRandom = () => {
  const outputs = [unhex(M.sender_id), unhex(M.nonce)];
  return () => outputs.shift();
};
const who = (name) => identityFromSeeds(unhex(V.aes3[name].sign_seed), unhex(V.aes3[name].agree_seed),
                                        unhex(V.aes3[name].sign), unhex(V.aes3[name].agree));
const ALICE = await who("alice");
const BOB = await who("bob");

function cipher(identity = null, peers = {}, v2 = true) {
  const c = new Cipher({ masterV1: V1, now: () => M.timestamp_ms, random: fixedRandom(), identity });
  if (v2) c.useV2(V2, V.salt);
  c.peerAgree = (nick) => peers[nick.toLowerCase()] || null;
  return c;
}

test("the aes2 master key and NFC", async () => {
  assert.equal(hex(await deriveMasterV2(V.passphrase, V.salt)), V.master_aes2);
  assert.equal(hex(await deriveMasterV2(V.nfc.composed, V.salt)), hex(await deriveMasterV2(V.nfc.decomposed, V.salt)));
});

test("aes1", async () => {
  for (const kind of ["room", "private"]) {
    const c = V.aes1[kind];
    assert.equal(contextLabel(c.target, c.sender), c.label);
    assert.equal(hex(await contextKey(V1, c.label)), c.context_key);
    assert.equal(await cipher(null, {}, false).encrypt(c.text, c.target, c.sender), c.payload);
  }
  const r = V.aes1.room;
  assert.equal(hex(associatedData(r.label, r.sender, unhex(r.header), SCHEMES.aes1)), r.aad);
});

test("aes2", async () => {
  assert.equal(await joinProof(V2, V.aes2.join_proof.room), V.aes2.join_proof.proof);
  const r = V.aes2.room;
  assert.equal(await cipher().encrypt(r.text, r.target, r.sender), r.payload);
});

test("aes3", async () => {
  const a3 = V.aes3;
  for (const [name, ident] of [["alice", ALICE], ["bob", BOB]]) assert.equal(await fingerprint(ident.public), a3[name].fingerprint);
  assert.equal(await safetyNumber(ALICE.public, BOB.public), a3.safety_number);
  assert.equal(hex(await sharedSecret(ALICE, BOB.public.agree)), a3.shared_secret);
  assert.equal(await cipher(ALICE).encrypt(a3.room.text, a3.room.target, a3.room.sender), a3.room.payload);
  const dm = a3.private;
  assert.equal(await cipher(ALICE, { bob: BOB.public.agree }).encrypt(dm.text, dm.target, dm.sender), dm.payload);
  const opened = await cipher(BOB).open(dm.payload, dm.target, dm.sender, true);
  assert.equal(opened.text, dm.text);
  assert.equal(opened.private, true);
  const env = unb64url(a3.room.payload.slice(5));
  const s = a3.room.split;
  assert.deepEqual([env.subarray(0, 37), env.subarray(37, env.length - 160), env.subarray(env.length - 160, env.length - 128),
                    env.subarray(env.length - 128, env.length - 96), env.subarray(env.length - 96, env.length - 64),
                    env.subarray(env.length - 64)].map(hex), [s.header, s.sealed, s.sign, s.agree, s.peer, s.signature]);
  const f = a3.private_file;
  assert.equal(hex(await cipher(ALICE, { bob: BOB.public.agree }).fileKey(f.target, f.sender, f.transfer_id, "bob")), f.key);
});

test("case folding", async () => {
  for (const c of V.case_folding) {
    const label = contextLabel(c.target, c.sender);
    assert.equal(label, c.label);
    if (c.label_hex) assert.equal(hex(new TextEncoder().encode(label)), c.label_hex);
    if (c.context_key_aes2) assert.equal(hex(await contextKey(V2, label, SCHEMES.aes2)), c.context_key_aes2);
    if (c.join_proof) assert.equal(await joinProof(V2, c.target), c.join_proof);
  }
});

test("file frame", async () => {
  const f = V.file_frame;
  const key = await fileKey(V2, contextLabel(f.room, "x"), f.transfer_id);
  assert.equal(hex(key), f.key);
  const frame = await sealFrame(key, f.transfer_id, f.token, f.index, f.last, new TextEncoder().encode(f.data), unhex(f.nonce));
  assert.equal(hex(frame), f.frame);
});

for (const c of V.errors) {
  test(`refused with its reason code: ${c.name}`, async () => {
    const reader = new Cipher({ masterV1: V1, now: () => M.timestamp_ms + 1000, identity: c.reader === "alice" ? ALICE : null });
    reader.useV2(V2, V.salt);
    await assert.rejects(reader.open(c.payload, c.target, c.sender, true), (e) => e instanceof DecryptError && e.code === c.code);
  });
}
