// Per-user keys in the page (docs/encryption.md, aes3): this browser's
// identity, kept in IndexedDB as non-extractable WebCrypto keys (the page
// can sign and agree with them, never read them out). As identity.py in the
// terminal client; the keys pinned for others are in pins.js.

import { generateIdentity, identityFromPairs } from "./crypto.js";

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
