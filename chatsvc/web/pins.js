// The keys pinned for others (docs/trust.md), kept in local storage: the
// first keys seen under a nick are pinned (trust on first use); later keys
// under that nick are not that person until the user compares safety
// numbers and runs /verify. Indexed by skeleton, so a new key under a nick
// that only looks like a pinned one is flagged. As pins.py in the terminal
// client, same shape.

import { b64url, sameKeys, unb64url } from "./crypto.js";
import { skeleton } from "./skeleton.js";

export const NEW = "new";
export const PINNED = "pinned";
export const VERIFIED = "verified";
export const CHANGED = "changed";

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

  /** What the inbound policy's attribution reads (a snapshot). */
  view() {
    const bySkeleton = new Map();
    for (const nick of [...this.pinned.keys()].sort()) bySkeleton.set(skeleton(nick), [...(bySkeleton.get(skeleton(nick)) || []), nick]);
    const pinned = new Map([...this.pinned].map(([nick, { keys }]) => [nick, keys]));
    return { pinned, skeleton, bySkeleton, same: sameKeys };
  }

  /** First seen (or known under another nick): trusted from now on under this nick. */
  pin(nick, keys, verified = false) {
    this.pinned.set(nick, { keys, verified });
    this.save();
  }

  /** Other keys under a pinned nick, kept until /verify; true if these are new. */
  flag(nick, keys) {
    const fresh = !sameKeys(this.pending.get(nick), keys);
    this.pending.set(nick, keys);
    return fresh;
  }

  check(nick, keys) {
    const known = this.pinned.get(nick);
    if (!known) {
      this.pin(nick, keys);
      return NEW;
    }
    if (sameKeys(known.keys, keys)) return known.verified ? VERIFIED : PINNED;
    this.pending.set(nick, keys);
    return CHANGED;
  }

  keysOf(nick) {
    const known = this.pinned.get(nick);
    return known ? known.keys : null;
  }

  /** The pinned keys, unless other keys under the nick are in doubt. */
  trustedKeys(nick) {
    return this.pending.has(nick) ? null : this.keysOf(nick);
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
