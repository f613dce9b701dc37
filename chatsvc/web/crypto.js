// End-to-end encryption in the page: schemes aes1, aes2 and aes3 of
// docs/encryption.md, byte for byte, with WebCrypto only (PBKDF2, HKDF,
// AES-256-GCM; Ed25519 and X25519 for aes3's per-user keys). No JavaScript crypto fallback: without crypto.subtle (an
// insecure context) the page says so and does not chat.
//
// The reference is chatsvc/client/aesgcm.py; tests/js/crypto.test.mjs checks
// this module against the published vectors under Node, and the browser
// test runs the same vectors in the page.

import { casefold } from "./casefold.js";
import { ReplayGuard, Replayed } from "./replay.js";

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

export const ITERATIONS = 600000;
export const HEADER_SIZE = 37;
export const TAG_SIZE = 16;
export const MAX_AGE_MS = 10 * 60 * 1000;

export const SCHEMES = {
  aes1: { name: "aes1", version: 1, info: "chatsvc/e2e/v1/key ", aad: "chatsvc/e2e/v1" },
  aes2: { name: "aes2", version: 2, info: "chatsvc/e2e/v2/key ", aad: "chatsvc/e2e/v2" },
  aes3: { name: "aes3", version: 3, info: "chatsvc/e2e/v3/key ", aad: "chatsvc/e2e/v3" },
};
const SIG_LABEL = "chatsvc/e2e/v3/sig";
const DM_INFO = "chatsvc/e2e/v3/dm ";
const SESSION_INFO = "chatsvc/e2e/v3/dm-session ";
const FILE_DM_INFO = "chatsvc/e2e/v3/file ";
const KEYS_SIZE = 96;
const SIG_SIZE = 64;
const V1_SALT = "chatsvc/e2e/v1/pbkdf2-salt";
const V2_SALT_PREFIX = "chatsvc/e2e/v2/salt ";
const JOIN_INFO = "chatsvc/e2e/v2/join ";
const FILE_INFO = "chatsvc/e2e/v2/file ";

/** A payload that did not open: code says why (for decisions), the message says it for people. */
export class DecryptError extends Error {
  constructor(message, code = "damaged", signer = null) {
    super(message);
    this.code = code;
    this.signer = signer; // the keys whose signature did verify before it failed (aes3)
  }
}

export function hasWebCrypto() {
  return Boolean(globalThis.crypto && globalThis.crypto.subtle && globalThis.isSecureContext !== false);
}

// --- bytes ------------------------------------------------------------------------

export function b64url(bytes) {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function unb64url(text) {
  if (!text || !/^[A-Za-z0-9_-]+$/.test(text) || text.length % 4 === 1) {
    throw new DecryptError("damaged message (not base64url)", "damaged");
  }
  const raw = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4));
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function unhex(text) {
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(i * 2, 2), 16);
  return out;
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function field(bytes) {
  return concat(new Uint8Array([bytes.length >> 8, bytes.length & 255]), bytes);
}

// Python sorts strings by code point; JavaScript's default sort compares
// UTF-16 units, which differs above U+FFFF.
export function compareCodePoints(a, b) {
  const x = Array.from(a, (c) => c.codePointAt(0));
  const y = Array.from(b, (c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

// --- keys --------------------------------------------------------------------------

async function pbkdf2(password, salt) {
  const key = await crypto.subtle.importKey("raw", password, "PBKDF2", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt, iterations: ITERATIONS }, key, 256);
  return new Uint8Array(bits);
}

export async function hkdf(master, info, size = 256) {
  const key = await crypto.subtle.importKey("raw", master, "HKDF", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: utf8.encode(info) }, key, size);
  return new Uint8Array(bits);
}

/** aes1's master key: the passphrase's UTF-8 as typed. */
export function deriveMasterV1(passphrase) {
  return pbkdf2(utf8.encode(passphrase), utf8.encode(V1_SALT));
}

/** aes2's master key: NFC passphrase, the relay's salt. */
export function deriveMasterV2(passphrase, salt) {
  return pbkdf2(utf8.encode(passphrase.normalize("NFC")), utf8.encode(V2_SALT_PREFIX + salt));
}

/** The conversation's name: room:<room> or dm:<nick> <nick>, case-folded. */
export function contextLabel(target, sender) {
  if (target.startsWith("#")) return "room:" + casefold(target);
  return "dm:" + [casefold(sender), casefold(target)].sort(compareCodePoints).join(" ");
}

export function contextKey(master, label, scheme = SCHEMES.aes1) {
  return hkdf(master, scheme.info + label);
}

export async function joinProof(masterV2, room) {
  return b64url(await hkdf(masterV2, JOIN_INFO + contextLabel(room, "")));
}

export function fileKey(masterV2, label, transferId) {
  return hkdf(masterV2, FILE_INFO + label + " " + transferId);
}

// --- per-user keys (aes3) -----------------------------------------------------------------

/** A new identity: non-extractable private keys (the public halves export). */
export async function generateIdentity() {
  const sign = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
  const agree = await crypto.subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
  return identityFromPairs(sign, agree);
}

/** An identity from stored (or test-vector) key pairs. */
export async function identityFromPairs(sign, agree) {
  return {
    signKey: sign.privateKey, agreeKey: agree.privateKey, pairs: { sign, agree },
    public: {
      sign: new Uint8Array(await crypto.subtle.exportKey("raw", sign.publicKey)),
      agree: new Uint8Array(await crypto.subtle.exportKey("raw", agree.publicKey)),
    },
  };
}

/** An identity from 32-byte private keys (the test vectors). */
export async function identityFromSeeds(signSeed, agreeSeed, publicSign, publicAgree) {
  const jwk = (crv, d, x) => ({ kty: "OKP", crv, d: b64url(d), x: b64url(x) });
  const sign = {
    privateKey: await crypto.subtle.importKey("jwk", jwk("Ed25519", signSeed, publicSign), { name: "Ed25519" }, false, ["sign"]),
    publicKey: await crypto.subtle.importKey("raw", publicSign, { name: "Ed25519" }, true, ["verify"]),
  };
  const agree = {
    privateKey: await crypto.subtle.importKey("jwk", jwk("X25519", agreeSeed, publicAgree), { name: "X25519" }, false, ["deriveBits"]),
    publicKey: await crypto.subtle.importKey("raw", publicAgree, { name: "X25519" }, true, []),
  };
  return identityFromPairs(sign, agree);
}

export async function sharedSecret(identity, theirAgree, privateKey = identity.agreeKey) {
  const pub = await crypto.subtle.importKey("raw", theirAgree, { name: "X25519" }, false, []);
  return new Uint8Array(await crypto.subtle.deriveBits({ name: "X25519", public: pub }, privateKey, 256));
}

/** This page load's session key (forward secrecy per session): never stored. */
export async function generateSessionKey() {
  const pair = await crypto.subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
  return { privateKey: pair.privateKey, public: new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey)) };
}

/** A session key from its 32 private bytes (the test vectors). */
export async function sessionKeyFromSeed(seed, publicKey) {
  const jwk = { kty: "OKP", crv: "X25519", d: b64url(seed), x: b64url(publicKey) };
  return { privateKey: await crypto.subtle.importKey("jwk", jwk, { name: "X25519" }, false, ["deriveBits"]), public: publicKey };
}

export async function sha256(...parts) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", concat(...parts)));
}

/** Eight groups of four hex digits (docs/encryption.md, aes3). */
export async function fingerprint(keys) {
  const digest = hex(await sha256(utf8.encode("chatsvc/e2e/v3/fingerprint"), keys.sign, keys.agree)).slice(0, 32);
  return digest.match(/.{4}/g).join(" ");
}

/** Six groups of five digits, the same whoever computes it. */
export async function safetyNumber(a, b) {
  const [first, second] = [concat(a.sign, a.agree), concat(b.sign, b.agree)].sort((x, y) => {
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] - y[i];
    return 0;
  });
  const digest = await sha256(utf8.encode("chatsvc/e2e/v3/safety"), first, second);
  const groups = [];
  for (let i = 0; i < 12; i += 2) groups.push(String((digest[i] << 8) | digest[i + 1]).padStart(5, "0"));
  return groups.join(" ");
}

export function sameKeys(a, b) {
  return Boolean(a && b) && hex(a.sign) === hex(b.sign) && hex(a.agree) === hex(b.agree);
}

export function associatedData(label, sender, header, scheme = SCHEMES.aes1) {
  return concat(utf8.encode(scheme.aad), field(utf8.encode(label)), field(utf8.encode(casefold(sender))), header);
}

function header(version, senderId, counter, stampMs, nonce) {
  const out = new Uint8Array(HEADER_SIZE);
  const view = new DataView(out.buffer);
  out[0] = version;
  out.set(senderId, 1);
  view.setBigUint64(9, BigInt(counter));
  view.setBigUint64(17, BigInt(stampMs));
  out.set(nonce, 25);
  return out;
}

// --- the cipher --------------------------------------------------------------------------

/**
 * One page session's cipher, as AesGcmCipher in aesgcm.py: its sender id
 * and counter, the keys per conversation, and what it has seen (replay).
 */
export class Cipher {
  constructor({ masterV1, now = () => Date.now(), random = (n) => crypto.getRandomValues(new Uint8Array(n)),
                replay = new ReplayGuard(), identity = null, session = null } = {}) {
    this.identity = identity; // with it (and the relay's salt) the page sends aes3
    this.peerAgree = (nick) => null; // nick -> the X25519 key a private message to them is keyed with
    this.session = session; // this page load's X25519 key: {privateKey, public} (set by the session)
    this.peerSession = (nick) => null; // nick -> their current session's key, as announced
    this.masters = { aes1: masterV1 };
    this.sending = SCHEMES.aes1;
    this.salt = null;
    this.now = now;
    this.random = random;
    this.senderId = random(8);
    this.counter = 0;
    this.keys = new Map(); // scheme + label (+ a sealed room's master) -> CryptoKey
    this.replay = replay;
    // room -> (a promise of) the master key of the sealed room of that name we are in, or null (sealing.js)
    this.roomMaster = async (room) => null;
    this.linkOnly = false; // in by invitation link alone, without the passphrase: only sealed rooms are readable
  }

  get scheme() {
    return this.sending.name;
  }

  useV2(masterV2, salt) {
    if (!masterV2 && this.linkOnly) { // no passphrase: sealed rooms only
      this.salt = salt;
      this.sending = SCHEMES.aes3;
      return;
    }
    // another relay (or one that forgot its salt): every key of the old master goes
    if (this.salt !== salt) for (const k of [...this.keys.keys()]) if (!k.startsWith("aes1 ")) this.keys.delete(k);
    this.masters.aes2 = masterV2;
    this.masters.aes3 = masterV2; // the same master; other keys by their HKDF info
    this.salt = salt;
    this.sending = this.identity ? SCHEMES.aes3 : SCHEMES.aes2;
  }

  privateTo(nick) {
    return this.sending === SCHEMES.aes3 && Boolean(this.peerAgree(nick)) && Boolean(this.peerSession(nick));
  }

  /** Keyed to the two identities (and, with theirSession, to the two sessions too). */
  async pairwiseKey(label, theirAgree, theirSession = null) {
    const id = "dm " + label + " " + hex(theirAgree) + " " + (theirSession ? hex(theirSession) : "");
    let key = this.keys.get(id);
    if (!key) {
      let ikm = await sharedSecret(this.identity, theirAgree);
      if (theirSession) ikm = concat(ikm, await sharedSecret(this.identity, theirSession, this.session.privateKey));
      if (!this.masters.aes3) {
        throw new DecryptError("private messages are keyed with the server's passphrase, which this page (in by " +
                               "invitation link alone) does not have", "no-key");
      }
      ikm = concat(ikm, await contextKey(this.masters.aes3, label, SCHEMES.aes3));
      const info = (theirSession ? SESSION_INFO : DM_INFO) + label;
      key = await crypto.subtle.importKey("raw", await hkdf(ikm, info), "AES-GCM", false, ["encrypt", "decrypt"]);
      if (this.keys.size >= 256) this.keys.delete(this.keys.keys().next().value);
      this.keys.set(id, key);
    }
    return key;
  }

  /** A file transfer's frame key; a private one also takes the two identities' shared secret. */
  async fileKey(target, sender, transferId, peer = null) {
    const label = contextLabel(target, sender);
    const info = FILE_INFO + label + " " + transferId;
    const their = peer && this.identity && !target.startsWith("#") ? this.peerAgree(peer) : null;
    if (their) return hkdf(concat(this.masters.aes2, await sharedSecret(this.identity, their)), FILE_DM_INFO + info);
    const master = target.startsWith("#") ? (await this.roomMaster(target)) || this.masters.aes2 : this.masters.aes2;
    return master ? hkdf(master, info) : null;
  }

  async joinProof(room) {
    const master = (await this.roomMaster(room)) || this.masters.aes2;
    return master ? joinProof(master, room) : null;
  }

  /** The master key a message in this conversation is keyed with, or DecryptError. */
  async master(scheme, target) {
    const sealed = target.startsWith("#") ? await this.roomMaster(target) : null;
    if (sealed) {
      if (scheme !== SCHEMES.aes3) {
        throw new DecryptError(`sent with ${scheme.name} in a sealed room (only signed aes3 belongs there)`, "not-authentic");
      }
      return sealed;
    }
    const master = this.masters[scheme.name];
    if (!master) {
      throw new DecryptError(this.linkOnly ? "sent with the server's passphrase, which this page (in by invitation link " +
                                             "alone) does not have" : `sent with ${scheme.name}, but this client has no ` +
                                             `${scheme.name} key for this server`, "no-key");
    }
    return master;
  }

  async aead(scheme, label, master) {
    const id = scheme.name + " " + label + " " + hex(master);
    let key = this.keys.get(id);
    if (!key) {
      const raw = await contextKey(master, label, scheme);
      key = await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
      if (this.keys.size >= 256) this.keys.delete(this.keys.keys().next().value);
      this.keys.set(id, key);
    }
    return key;
  }

  /** text for target (a room, or a nick), sent as sender (our nick) -> payload */
  async encrypt(text, target, sender, useSession = true) {
    const scheme = this.sending;
    this.counter += 1;
    const label = contextLabel(target, sender);
    const head = header(scheme.version, this.senderId, this.counter, Math.floor(this.now()), this.random(12));
    const nonce = head.subarray(25);
    let aad = associatedData(label, sender, head, scheme);
    if (scheme !== SCHEMES.aes3) {
      const sealed = new Uint8Array(await crypto.subtle.encrypt(
        { name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: 128 }, await this.aead(scheme, label, await this.master(scheme, target)),
        utf8.encode(text)));
      return scheme.name + ":" + b64url(concat(head, sealed));
    }
    const their = target.startsWith("#") ? null : this.peerAgree(target);
    const session = their && useSession && this.session ? this.peerSession(target) : null;
    // peer: whose key it is keyed for -- their session key, else their identity's
    const keys = concat(this.identity.public.sign, this.identity.public.agree, session || their || new Uint8Array(32));
    aad = concat(aad, keys);
    const key = their ? await this.pairwiseKey(label, their, session)
      : await this.aead(scheme, label, await this.master(scheme, target));
    const sealed = new Uint8Array(await crypto.subtle.encrypt(
      { name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: 128 }, key, utf8.encode(text)));
    const signature = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, this.identity.signKey,
                                                                concat(utf8.encode(SIG_LABEL), aad, sealed)));
    return scheme.name + ":" + b64url(concat(head, sealed, keys, signature));
  }

  /**
   * Decrypt and check a payload the relay says `sender` sent to `target`.
   * Returns {text, sentMs, signer, private}; throws DecryptError saying why not (with a code).
   */
  async open(payload, target, sender, history = false) {
    const { scheme, head, sealed, keys, signature } = this.split(payload);
    const view = new DataView(head.buffer, head.byteOffset);
    const label = contextLabel(target, sender);
    let aad = associatedData(label, sender, head, scheme);
    let key = null;
    let signer = null;
    if (scheme === SCHEMES.aes3) {
      signer = { sign: keys.slice(0, 32), agree: keys.slice(32, 64) };
      aad = concat(aad, keys);
      if (!(await verifySignature(signer.sign, signature, concat(utf8.encode(SIG_LABEL), aad, sealed)))) {
        throw new DecryptError("its signature does not verify (altered, or not signed by the key it carries)", "bad-signature");
      }
      key = await this.peerKey(label, target, sender, signer, keys.slice(64));
    }
    const isPrivate = Boolean(key);
    key = key || await this.aead(scheme, label, await this.master(scheme, target));
    let plain;
    try {
      plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: head.subarray(25), additionalData: aad, tagLength: 128 },
                                          key, sealed);
    } catch (e) {
      throw new DecryptError("it does not authenticate: a different passphrase, or the message " +
                             "was altered, moved to another conversation or misattributed", "not-authentic", signer);
    }
    const stampMs = Number(view.getBigUint64(17));
    this.checkWhen(sender, hex(head.slice(1, 9)), view.getBigUint64(9), stampMs, history, signer);
    try {
      return { text: strictUtf8.decode(plain), sentMs: stampMs, signer, private: isPrivate };
    } catch (e) {
      throw new DecryptError("message is not UTF-8 text", "not-utf8", signer);
    }
  }

  /** {scheme, head, sealed, keys, signature}: an envelope's parts (keys and signature empty before aes3). */
  split(payload) {
    const colon = payload.indexOf(":");
    const name = colon < 0 ? "" : payload.slice(0, colon);
    if (!name || name.length > 16) throw new DecryptError("not a chatsvc payload (no scheme tag)", "not-chatsvc");
    const scheme = SCHEMES[name];
    if (!scheme) throw new DecryptError(`sent with cipher '${name}', which this client does not know`, "unknown-scheme");
    if (!this.masters[name] && !this.linkOnly) throw new DecryptError(`sent with ${name}, but this client has no ${name} key for this server`, "no-key");
    const envelope = unb64url(payload.slice(colon + 1));
    const tail = scheme === SCHEMES.aes3 ? KEYS_SIZE + SIG_SIZE : 0;
    if (envelope.length < HEADER_SIZE + TAG_SIZE + tail) throw new DecryptError("damaged message (too short)", "damaged");
    if (envelope[0] !== scheme.version) throw new DecryptError(`envelope version ${envelope[0]} does not belong to ${name}`, "wrong-version");
    const end = envelope.length - tail;
    return { scheme, head: envelope.subarray(0, HEADER_SIZE), sealed: envelope.subarray(HEADER_SIZE, end),
             keys: envelope.slice(end, end + KEYS_SIZE), signature: envelope.slice(end + KEYS_SIZE) };
  }

  /** aes3: the pairwise key a peer field names (null: no peer, the room/passphrase key). */
  async peerKey(label, target, sender, signer, peer) {
    if (peer.every((b) => b === 0)) return null;
    if (target.startsWith("#") || !this.identity) throw new DecryptError("it is keyed for someone else's key, not yours", "wrong-peer", signer);
    if (hex(peer) === hex(this.identity.public.agree)) return this.pairwiseKey(label, signer.agree);
    if (this.session && hex(peer) === hex(this.session.public)) {
      const theirs = this.peerSession(sender);
      if (!theirs) throw new DecryptError("it is keyed for a session of theirs this client has not seen announced", "unknown-session", signer);
      return this.pairwiseKey(label, signer.agree, theirs);
    }
    throw new DecryptError("it is keyed for someone else's key, or an earlier session of yours", "wrong-peer", signer);
  }

  /** Authentic from here on: live messages must be fresh and new; history asked for is old by nature. */
  checkWhen(sender, senderIdHex, counter, stampMs, history, signer) {
    const age = this.now() - stampMs;
    if (!history && Math.abs(age) > MAX_AGE_MS) {
      throw new DecryptError(`stale message (${Math.round(Math.abs(age) / 60000)} minutes ${age > 0 ? "old" : "in the future"}); possibly replayed`, "stale", signer);
    }
    try {
      this.replay.check(casefold(sender), senderIdHex, counter, history);
    } catch (e) {
      if (e instanceof Replayed) throw new DecryptError("replayed message (already received)", "replayed", signer);
      throw e;
    }
  }
}

export async function verifySignature(publicSign, signature, data) {
  try {
    const pub = await crypto.subtle.importKey("raw", publicSign, { name: "Ed25519" }, false, ["verify"]);
    return await crypto.subtle.verify({ name: "Ed25519" }, pub, signature, data);
  } catch (e) {
    return false; // a key that is not a point
  }
}

// --- file frames (docs/encryption.md, Files over streams) -----------------------------------

export function frameAad(transferId, token, index, last) {
  const tail = new Uint8Array(9);
  new DataView(tail.buffer).setBigUint64(0, BigInt(index));
  tail[8] = last ? 1 : 0;
  return concat(utf8.encode("chatsvc/file/v2"), field(utf8.encode(transferId)), field(utf8.encode(token)), tail);
}

export async function sealFrame(rawKey, transferId, token, index, last, data, nonce) {
  const key = await crypto.subtle.importKey("raw", rawKey, "AES-GCM", false, ["encrypt"]);
  const sealed = new Uint8Array(await crypto.subtle.encrypt(
    { name: "AES-GCM", iv: nonce, additionalData: frameAad(transferId, token, index, last), tagLength: 128 }, key, data));
  const size = new Uint8Array(4);
  new DataView(size.buffer).setUint32(0, 12 + sealed.length);
  return concat(size, nonce, sealed);
}
