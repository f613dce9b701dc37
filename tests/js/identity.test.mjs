// aes3 in the page against docs/encryption.md's vectors (the ones the
// Python client passes), and the attacks per-user keys stop.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Cipher, DecryptError, fingerprint, hex, identityFromSeeds, safetyNumber, sharedSecret, unhex, unb64url, b64url,
} from "../../chatsvc/web/crypto.js";

const V2 = unhex("7f32341638165b4d488876d3d63044123558f0abd66356c3c6dbb902bba904c8");
const SALT = "AAECAwQFBgcICQoLDA0ODw";
const STAMP = 1767225600000;
const range = (a, b) => Uint8Array.from({ length: b - a }, (_, i) => a + i);
const fixedRandom = () => {
  const outputs = [unhex("0001020304050607"), unhex("101112131415161718191a1b")];
  return (n) => outputs.shift();
};

const ALICE = await identityFromSeeds(range(0, 32), range(32, 64),
  unhex("03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"),
  unhex("358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254"));
const BOB = await identityFromSeeds(range(64, 96), range(96, 128),
  unhex("2543b92ff1095511476adc8369db6ddc933665a11978dda1404ee1066ca9559d"),
  unhex("675dd574ed7789310b3d2e7681f3790b466c773b1521fecf36577958371ea52f"));

const ROOM = "aes3:AwABAgMEBQYHAAAAAAAAAAEAAAGbdtqoABAREhMUFRYXGBkaG1Yf7rLg9c_dcbE4lS1nch0LLMhDGN5axW6yW-7kXAOhB7_zzhC-HXDd" +
  "GOdLwJln5NYwm6UNXx3chmQSVTG4NYBy1jZYgNGu6jKa35EhODhR7SGijjt16WXQ0s0WYlQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" +
  "AOeTvOetUfVik-pdLZDxzeD45qi407jcbpWedQKrnxTYsfsV5Nfl3jck6aPttdLOuyOyE2cJ8J9fC34b4RKaWw0";
const DM = "aes3:AwABAgMEBQYHAAAAAAAAAAEAAAGbdtqoABAREhMUFRYXGBkaG1fuS5oZqp_iKDt8HSHkrVrP1TfwA6EHv_POEL4dcN0Y50vAmWfk1jCb" +
  "pQ1fHdyGZBJVMbg1gHLWNliA0a7qMprfkSE4OFHtIaKOO3XpZdDSzRZiVGdd1XTtd4kxCz0udoHzeQtGbHc7FSH-zzZXeVg3HqUvMPcDb7cCmV0o" +
  "jpzV0jHhU9H79LO3G8cjNS5nHKC42nbedLRieIlVbXycuU69VndOtT6ArI-GzbYu1vJ9dPzJAg";

function cipher(identity, peers = {}, random = undefined) {
  const c = new Cipher({ masterV1: new Uint8Array(32), now: () => STAMP, random, identity });
  c.useV2(V2, SALT);
  c.peerAgree = (nick) => peers[nick.toLowerCase()] || null;
  return c;
}

test("aes3 identities, fingerprints, safety numbers, shared secret", async () => {
  assert.equal(await fingerprint(ALICE.public), "8aed a0be a029 48be c296 6852 b3d7 8537");
  assert.equal(await fingerprint(BOB.public), "dce5 1e9e 2993 4578 afec e638 e4e8 9cbb");
  assert.equal(await safetyNumber(ALICE.public, BOB.public), "46792 50910 08355 57315 35338 38505");
  assert.equal(await safetyNumber(BOB.public, ALICE.public), "46792 50910 08355 57315 35338 38505");
  assert.equal(hex(await sharedSecret(ALICE, BOB.public.agree)),
    "7c79d7b5f31b9aac367477f5f7c7a68b5c44cac28ed5c902a59ec48c02956a6a");
});

test("aes3 room and private payloads: exactly the vectors", async () => {
  assert.equal(await cipher(ALICE, {}, fixedRandom()).encrypt("Hello, 世界!", "#Lobby", "Alice"), ROOM);
  assert.equal(await cipher(ALICE, { bob: BOB.public.agree }, fixedRandom()).encrypt("psst", "bob", "Alice"), DM);
  const room = await cipher(BOB).open(ROOM, "#Lobby", "Alice", true);
  assert.equal(room.text, "Hello, 世界!");
  assert.equal(hex(room.signer.sign), hex(ALICE.public.sign));
  assert.equal(room.private, false);
  const dm = await cipher(BOB).open(DM, "bob", "Alice", true);
  assert.equal(dm.text, "psst");
  assert.equal(dm.private, true);
});

test("a third member with the passphrase cannot read a private message", async () => {
  // Any identity but bob's (here alice's own): the message is keyed for bob's X25519 key.
  await assert.rejects(cipher(ALICE).open(DM, "bob", "Alice", true), /keyed for someone else's key/);
  // ...and the passphrase alone, with no identity, does not open it either.
  await assert.rejects(cipher(null).open(DM, "bob", "Alice", true), DecryptError);
});

test("a relay that swaps the signing key cannot re-sign", async () => {
  const envelope = unb64url(ROOM.slice(5));
  envelope.set(BOB.public.sign, envelope.length - 160);
  await assert.rejects(cipher(BOB).open("aes3:" + b64url(envelope), "#Lobby", "Alice", true), /signature does not verify/);
});

test("private file frames take the shared secret", async () => {
  const a = await cipher(ALICE, { bob: BOB.public.agree }).fileKey("bob", "alice", "t1", "bob");
  const b = await cipher(BOB, { alice: ALICE.public.agree }).fileKey("bob", "alice", "t1", "alice");
  assert.equal(hex(a), hex(b));
  assert.notEqual(hex(a), hex(await cipher(null).fileKey("bob", "alice", "t1")));
});

test("aes3 private message keyed to both sessions: exactly the vector", async () => {
  const { sessionKeyFromSeed } = await import("../../chatsvc/web/crypto.js");
  const aliceSession = await sessionKeyFromSeed(range(192, 224), unhex("dc2cca31e8e43bbd91dff7e475cca3347eb478107d5bd765aba4ae4a30c35d44"));
  const bobSession = await sessionKeyFromSeed(range(224, 256), unhex("736845d54e87de09d6bb114aa7042c50a4a015bd9901d1a0026f5956533a1519"));
  const SESSION_DM = "aes3:AwABAgMEBQYHAAAAAAAAAAEAAAGbdtqoABAREhMUFRYXGBkaG8dQr3-I6YbottQGBKiDuRa8wAxgA6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1f" +
    "HdyGZBJVMbg1gHLWNliA0a7qMprfkSE4OFHtIaKOO3XpZdDSzRZiVHNoRdVOh94J1rsRSqcELFCkoBW9mQHRoAJvWVZTOhUZSKH6TQdPQfxkMr_puME_" +
    "GHXpfGi6_LlLPnm7U2FWUMcBLXRd3PINVvB01plsdJwi_0UtMb1ObvJUMOa0c_dxBw";
  const alice = cipher(ALICE, { bob: BOB.public.agree }, fixedRandom());
  alice.session = aliceSession;
  alice.peerSession = () => bobSession.public;
  assert.equal(await alice.encrypt("psst", "bob", "Alice"), SESSION_DM);
  const bob = cipher(BOB);
  bob.session = bobSession;
  bob.peerSession = () => aliceSession.public;
  assert.equal((await bob.open(SESSION_DM, "bob", "Alice", true)).text, "psst");
  // bob's session over: his identity alone (a new session) does not open it
  const later = cipher(BOB);
  later.session = await (await import("../../chatsvc/web/crypto.js")).generateSessionKey();
  later.peerSession = () => aliceSession.public;
  await assert.rejects(later.open(SESSION_DM, "bob", "Alice", true), /earlier session of yours/);
});
