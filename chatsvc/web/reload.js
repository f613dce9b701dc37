// A reload loses nothing: what the page keeps in the tab's session storage
// (nick, rooms, message ids, unacknowledged and recent messages as
// ciphertext -- never plaintext or keys), read back on load and shown again
// decrypted afresh. The terminal client has no reload; its replay state is
// on disk (replay.py).

import { casefold } from "./casefold.js";
import { present } from "./inbound.js";

const key = (name) => casefold(name);

export class Reload {
  constructor(session) {
    this.session = session;
    this.restored = null;
    this.shown = false;
  }

  save() {
    const s = this.session;
    s.replay.save();
    if (!s.store || s.quitting) return;
    try {
      s.store.setItem("chatsvc.session", JSON.stringify({
        v: 1, nick: s.nick || s.wantedNick, rooms: s.conversations.kept(), current: s.current, ...s.delivery.snapshot(),
      }));
    } catch (e) {
      // storage full: a reload then shows less; nothing else depends on it
    }
  }

  restore() {
    const s = this.session;
    let saved;
    try {
      saved = JSON.parse((s.store && s.store.getItem("chatsvc.session")) || "null");
    } catch (e) {
      saved = null;
    }
    if (!saved || saved.v !== 1 || key(saved.nick || "") !== key(s.wantedNick)) return;
    this.restored = saved;
    s.delivery.restore(saved);
    for (const name of saved.rooms || []) {
      // (quietly: the view is not listening yet)
      s.conversations.map.set(key(name), { name, room: name.startsWith("#"), joined: name.startsWith("#"),
                                           members: new Map(), unread: 0, mentions: 0 });
    }
    s.conversations.current = saved.current ?? null;
  }

  /** After a reload: show again what was shown (decrypted afresh, never stored in clear), once. */
  async replayTranscript() {
    const s = this.session;
    if (!this.restored || this.shown) return;
    this.shown = true;
    for (const [conv, entries] of Object.entries(s.delivery.transcript)) {
      for (const [from, target, payload, , own] of entries) {
        const opened = await s.open(payload, target, from, true);
        const shown = opened.error ? null : present(opened.text);
        if (shown) s.ui.line(conv, { kind: "msg", own: Boolean(own), from, text: shown.text, action: shown.action, time: opened.sentMs });
      }
    }
    for (const [cid, entry] of s.delivery.unacked) {
      const opened = await s.open(entry.payload, entry.room, entry.nick, true);
      const shown = opened.error ? null : present(opened.text);
      if (shown) s.ui.line(key(entry.room), { kind: "msg", own: true, from: entry.nick, text: shown.text, action: shown.action,
                                              time: opened.sentMs, cid, pending: true });
    }
    if (s.current) s.ui.current(s.current);
    s.ui.changed();
  }
}
