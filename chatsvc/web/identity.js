// Per-user keys in the page (docs/encryption.md, aes3): this browser's
// identity, kept in IndexedDB as non-extractable WebCrypto keys (the page
// can sign and agree with them, never read them out), and the keys pinned
// for others (trust on first use), kept in local storage. As identity.py
// in the terminal client.

import { b64url, generateIdentity, identityFromPairs, unb64url } from "./crypto.js";

const DB = "chatsvc";
const STORE = "identity";

function request(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

/** This browser profile's identity for this site: made once, kept in IndexedDB. */
export async function loadOrCreateIdentity(indexedDB = globalThis.indexedDB) {
  if (!indexedDB) return { identity: await generateIdentity(), made: true, kept: false };
  const open = indexedDB.open(DB, 1);
  open.onupgradeneeded = () => open.result.createObjectStore(STORE);
  const db = await request(open);
  try {
    const found = await request(db.transaction(STORE).objectStore(STORE).get("me"));
    if (found) return { identity: await identityFromPairs(found.sign, found.agree), made: false, kept: true };
    const identity = await generateIdentity();
    // CryptoKeys are stored as they are (structured clone): the private
    // halves stay non-extractable.
    await request(db.transaction(STORE, "readwrite").objectStore(STORE).put(identity.pairs, "me"));
    return { identity, made: true, kept: true };
  } finally {
    db.close();
  }
}

export const NEW = "new";
export const PINNED = "pinned";
export const VERIFIED = "verified";
export const CHANGED = "changed";

const same = (a, b) => b64url(a.sign) === b64url(b.sign) && b64url(a.agree) === b64url(b.agree);

/** Nick key -> pinned keys and whether verified; in a localStorage-like store. */
export class KnownKeys {
  constructor(storage = null, key = "chatsvc.known_keys") {
    this.storage = storage;
    this.key = key;
    this.pinned = new Map(); // nick key -> {keys: {sign, agree}, verified}
    this.pending = new Map(); // nick key -> keys seen that are not the pinned ones
    try {
      const saved = storage ? JSON.parse(storage.getItem(key) || "{}") : {};
      for (const [nick, entry] of Object.entries(saved)) {
        this.pinned.set(nick, { keys: { sign: unb64url(entry.sign), agree: unb64url(entry.agree) }, verified: Boolean(entry.verified) });
      }
    } catch (e) {
      this.pinned.clear(); // damaged: start again (the page says nothing it cannot back)
    }
  }

  check(nick, keys) {
    const known = this.pinned.get(nick);
    if (!known) {
      this.pinned.set(nick, { keys, verified: false });
      this.save();
      return NEW;
    }
    if (same(known.keys, keys)) return known.verified ? VERIFIED : PINNED;
    this.pending.set(nick, keys);
    return CHANGED;
  }

  keysOf(nick) {
    const known = this.pinned.get(nick);
    return known ? known.keys : null;
  }

  isVerified(nick) {
    return Boolean(this.pinned.get(nick)?.verified);
  }

  accept(nick, keys) {
    this.pinned.set(nick, { keys, verified: true });
    this.pending.delete(nick);
    this.save();
  }

  save() {
    if (!this.storage) return;
    const out = {};
    for (const [nick, { keys, verified }] of this.pinned) out[nick] = { sign: b64url(keys.sign), agree: b64url(keys.agree), verified };
    try {
      this.storage.setItem(this.key, JSON.stringify(out));
    } catch (e) {
      // storage full or refused: the pins last this session
    }
  }
}
