// The page's crypto module against docs/encryption.md's test vectors
// (run: node --test tests/js). The same vectors the Python client passes.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Cipher, DecryptError, contextKey, contextLabel, deriveMasterV1, deriveMasterV2, fileKey, hex, joinProof,
  sealFrame, unhex, associatedData, SCHEMES, compareCodePoints,
} from "../../chatsvc/web/crypto.js";
import { ReplayGuard } from "../../chatsvc/web/replay.js";

const PASSPHRASE = "correct horse battery staple";
const SALT = "AAECAwQFBgcICQoLDA0ODw";
const STAMP = 1767225600000;
const fixedRandom = () => {
  const outputs = [unhex("0001020304050607"), unhex("101112131415161718191a1b")];
  return (n) => outputs.shift();
};

const v1 = await deriveMasterV1(PASSPHRASE);
const v2 = await deriveMasterV2(PASSPHRASE, SALT);

test("master keys", () => {
  assert.equal(hex(v1), "61f5a255fb11606b51dd53a2724510694574fd13b54dfd869f79e99d038b2e2f");
  assert.equal(hex(v2), "7f32341638165b4d488876d3d63044123558f0abd66356c3c6dbb902bba904c8");
});

test("context labels and keys", async () => {
  assert.equal(contextLabel("#Lobby", "Alice"), "room:#lobby");
  assert.equal(contextLabel("bob", "Alice"), "dm:alice bob");
  assert.equal(hex(await contextKey(v1, "room:#lobby")), "ea97d4a34f985bf60633c037a892812a34e4d13829a42803c9d852a1f79709da");
  assert.equal(hex(await contextKey(v1, "dm:alice bob")), "5168571b52ab506cd2175ccf0df12c93f3ad0975e4bdb524f8b9125080420bb9");
});

test("associated data", () => {
  const head = unhex("01000102030405060700000000000000010000019b76daa800101112131415161718191a1b");
  assert.equal(hex(associatedData("room:#lobby", "Alice", head, SCHEMES.aes1)),
    "636861747376632f6532652f7631000b726f6f6d3a236c6f6262790005616c696365" +
    "01000102030405060700000000000000010000019b76daa800101112131415161718191a1b");
});

test("aes1 room and private payloads", async () => {
  let c = new Cipher({ masterV1: v1, now: () => STAMP, random: fixedRandom() });
  assert.equal(await c.encrypt("Hello, 世界!", "#Lobby", "Alice"),
    "aes1:AQABAgMEBQYHAAAAAAAAAAEAAAGbdtqoABAREhMUFRYXGBkaGwCGrM6vtQ06esURUzy6hv9B20D2T0d9m_tjc2ef_g");
  c = new Cipher({ masterV1: v1, now: () => STAMP, random: fixedRandom() });
  assert.equal(await c.encrypt("psst", "bob", "Alice"),
    "aes1:AQABAgMEBQYHAAAAAAAAAAEAAAGbdtqoABAREhMUFRYXGBkaG_GxKwtysfJTRocqDzD1aHNapu7M");
});

test("aes2 payload, join proof, NFC", async () => {
  const c = new Cipher({ masterV1: v1, now: () => STAMP, random: fixedRandom() });
  c.useV2(v2, SALT);
  assert.equal(await c.encrypt("Hello, 世界!", "#Lobby", "Alice"),
    "aes2:AgABAgMEBQYHAAAAAAAAAAEAAAGbdtqoABAREhMUFRYXGBkaG6Aj84_2r7haQ5OT6be9hW0ueHabY1RXhWftvWr3-Q");
  assert.equal(await joinProof(v2, "#Lobby"), "OD7trhWlSg2EvqrbNMWSofcWx9YJLbjC8gKfDXSQjPM");
  assert.equal(hex(await deriveMasterV2("cafe\u0301", SALT)), hex(await deriveMasterV2("caf\u00e9", SALT)));
});

test("file frame", async () => {
  const key = await fileKey(v2, "room:#lobby", "0123456789abcdef");
  assert.equal(hex(key), "3272c290c4d4bf7605ce63dda68707ade81c5f5db6194e806db9a2f89596a4f0");
  const frame = await sealFrame(key, "0123456789abcdef", "A".repeat(22), 0, true,
    new TextEncoder().encode("Hello, file!"), unhex("000102030405060708090a0b"));
  assert.equal(hex(frame), "00000028000102030405060708090a0be3fe77847d2a4e8ea5d78e8e382a759fc8c68e930e50b62e988d6f13");
});

test("open: the vector reads back; moved, misattributed, replayed, stale are refused", async () => {
  const payload = "aes1:AQABAgMEBQYHAAAAAAAAAAEAAAGbdtqoABAREhMUFRYXGBkaGwCGrM6vtQ06esURUzy6hv9B20D2T0d9m_tjc2ef_g";
  const reader = () => new Cipher({ masterV1: v1, now: () => STAMP + 1000 });
  assert.deepEqual(await reader().open(payload, "#lobby", "alice"), { text: "Hello, 世界!", sentMs: STAMP, signer: null, private: false });
  await assert.rejects(reader().open(payload, "#other", "alice"), DecryptError);
  await assert.rejects(reader().open(payload, "#lobby", "mallory"), DecryptError);
  const once = reader();
  await once.open(payload, "#lobby", "alice");
  await assert.rejects(once.open(payload, "#lobby", "alice"), /replayed/);
  await once.open(payload, "#lobby", "alice", true); // history may repeat what was seen
  const late = new Cipher({ masterV1: v1, now: () => STAMP + 11 * 60 * 1000 });
  await assert.rejects(late.open(payload, "#lobby", "alice"), /stale/);
  assert.equal((await late.open(payload, "#lobby", "alice", true)).text, "Hello, 世界!");
  await assert.rejects(reader().open("aes9:xx", "#lobby", "alice"), /does not know/);
  await assert.rejects(reader().open("aes1:!!", "#lobby", "alice"), /base64url/);
  await assert.rejects(reader().open("aes2:AAAA", "#lobby", "alice"), /no aes2 key/);
});

test("replay state survives a reload: everything up to the highest counts as seen", () => {
  const store = new Map();
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v) };
  const a = new ReplayGuard(storage);
  a.check("alice", "0001020304050607", 5n);
  a.save();
  const b = new ReplayGuard(storage);
  assert.throws(() => b.check("alice", "0001020304050607", 3n));
  b.check("alice", "0001020304050607", 6n);
  storage.setItem("chatsvc.replay", "{not json");
  new ReplayGuard(storage); // unreadable: starts empty, no throw
});

test("names sort by code point, as Python does", () => {
  assert.ok(compareCodePoints("\u{1F600}", "\uFF21") > 0); // UTF-16 order says otherwise
  assert.equal(contextLabel("\uFF21", "\u{1F600}"), "dm:\uff41 \u{1F600}");
});

test("names fold as Python's casefold before they enter keys (docs/encryption.md, Case folding)", async () => {
  assert.equal(contextLabel("#Straße", "x"), "room:#strasse");
  assert.equal(hex(await contextKey(v2, "room:#strasse", SCHEMES.aes2)), "b4e757e5dbc7c145f8804b6a981afe37190b49d8d6f1f7042f985004caa1b99a");
  assert.equal(await joinProof(v2, "#Straße"), "RAAov6IqvOj1KEiDHlsQZ0swyakNATa2gKCOgbif5I4");
  assert.equal(contextLabel("#ΌΣΟΣ", "x"), "room:#όσοσ");
  assert.equal(await joinProof(v2, "#ΌΣΟΣ"), "OWy8v-hM0Zuz_AXfE0kJb1goL9y3hLI-UEYO4Pa3zLk");
  const label = contextLabel("İlkay", "ẞen");
  assert.equal(hex(new TextEncoder().encode(label)), "646d3a69cc876c6b6179207373656e");
  assert.equal(hex(await contextKey(v2, label, SCHEMES.aes2)), "eed91a56af6f42a1f819137582b6b2df7b014e2d3d608d430124acdf0c0fc9b3");
});
