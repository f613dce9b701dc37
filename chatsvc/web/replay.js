// What was seen from whom, so a relay cannot replay a message: the page's
// twin of chatsvc/client/replay.py (docs/encryption.md, Receiving, item 4).
// Kept in localStorage, so a reload is no chance for a replay either: after
// one, every counter up to the highest seen counts as seen.

export const MEMORY = 10000;
export const WINDOW = 1024n;
const FULL = (1n << WINDOW) - 1n;

export class Replayed extends Error {}

export class ReplayGuard {
  /** storage: a localStorage-like object (or null: memory only) */
  constructor(storage = null, key = "chatsvc.replay") {
    this.storage = storage;
    this.key = key;
    this.seen = new Map(); // "sender id-hex" -> {highest: BigInt, mask: BigInt}, oldest first
    this.dirty = false;
    this.load();
  }

  check(sender, senderIdHex, counter, recordOnly = false) {
    counter = BigInt(counter);
    const id = sender + " " + senderIdHex;
    const state = this.seen.get(id);
    if (!state) {
      this.seen.set(id, { highest: counter, mask: 1n });
    } else {
      if (counter > state.highest) {
        state.mask = ((state.mask << (counter - state.highest)) | 1n) & FULL;
        state.highest = counter;
      } else {
        const offset = state.highest - counter;
        if (offset >= WINDOW || (state.mask >> offset) & 1n) {
          if (!recordOnly) throw new Replayed();
        } else {
          state.mask |= 1n << offset;
        }
      }
      this.seen.delete(id); // most recent last
      this.seen.set(id, state);
    }
    while (this.seen.size > MEMORY) this.seen.delete(this.seen.keys().next().value);
    this.dirty = true;
  }

  load() {
    if (!this.storage) return;
    let entries;
    try {
      entries = JSON.parse(this.storage.getItem(this.key) || "{}").senders || [];
    } catch (e) {
      return; // unreadable: start empty; fresh messages still face the 10-minute check
    }
    for (const entry of entries.slice(-MEMORY)) {
      if (!Array.isArray(entry) || entry.length !== 3) continue;
      const [sender, idHex, highest] = entry;
      if (typeof sender !== "string" || !/^[0-9a-f]{16}$/.test(idHex) || !/^[0-9]+$/.test(String(highest))) continue;
      this.seen.set(sender + " " + idHex, { highest: BigInt(highest), mask: FULL });
    }
  }

  save() {
    if (!this.storage || !this.dirty) return;
    const senders = [];
    for (const [id, state] of this.seen) {
      const cut = id.lastIndexOf(" ");
      senders.push([id.slice(0, cut), id.slice(cut + 1), state.highest.toString()]);
    }
    try {
      this.storage.setItem(this.key, JSON.stringify({ version: 1, senders }));
      this.dirty = false;
    } catch (e) {
      // storage full or refused: keep it in memory; the next save tries again
    }
  }
}
