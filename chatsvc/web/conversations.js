// The page's conversations: rooms and private chats, which one is current,
// unread and mention counts; every line for the view goes through here.
// As the roster and the current room of chatsvc/client/session.py. No DOM.

import { casefold } from "./casefold.js";

export class Conversations {
  constructor(ui) {
    this.ui = ui;
    this.map = new Map(); // key -> {name, room, joined, members: Map key->nick, unread, mentions, topic?, count?}
    this.current = null;
    this.ignored = new Map(); // nick key -> nick: nothing of theirs is shown (/ignore)
    this.awayOf = new Map(); // nick key -> the away note they sent us
  }

  get(k) {
    return this.map.get(k);
  }

  has(k) {
    return this.map.has(k);
  }

  get size() {
    return this.map.size;
  }

  [Symbol.iterator]() {
    return this.map[Symbol.iterator]();
  }

  /** The conversation called name, made (and the view told) if new. */
  open(name, privateChat = false) {
    const k = casefold(name);
    let conv = this.map.get(k);
    if (!conv) {
      conv = { name, room: name.startsWith("#"), joined: false, members: new Map(), unread: 0, mentions: 0 };
      this.map.set(k, conv);
      if (privateChat || this.current === null) this.ui.changed();
    }
    return conv;
  }

  /** Rooms joined and private chats open: what a reload or a reconnect comes back to. */
  kept() {
    return [...this.map.values()].filter((c) => !c.room || c.joined).map((c) => c.name);
  }

  joinedRooms() {
    return [...this.map.values()].filter((c) => c.room && c.joined).map((c) => c.name);
  }

  setCurrent(k) {
    this.current = k;
    const conv = this.map.get(k);
    if (conv) conv.unread = conv.mentions = 0;
    this.ui.current(k);
    this.ui.changed();
  }

  show(conv, entry) {
    const c = this.map.get(conv);
    if (c && conv !== this.current && !entry.own && !entry.history) {
      c.unread += 1;
      if (entry.mention) c.mentions += 1;
      this.ui.changed();
    }
    this.ui.line(conv, entry);
  }

  line(conv, kind, text, time, extra = {}) {
    this.ui.line(conv ?? this.current, { ...extra, kind, text, time });
  }

  /** An away note (null: back). */
  setAway(nick, note) {
    if (note) this.awayOf.set(casefold(nick), note);
    else this.awayOf.delete(casefold(nick));
  }

  isIgnored(nick) {
    return this.ignored.has(casefold(nick));
  }
}
