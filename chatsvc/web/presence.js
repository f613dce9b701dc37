// Who is where, as the relay tells it: JOIN, PART, QUIT, NICK, NAMES,
// MEMBERS, ROOM and GAP lines become the conversations' members, the rooms
// we are in and one notice each. Names must pass the name rules (else the
// line is ignored with a notice); nothing here decides trust. As
// chatsvc/client/presence.py.

import { casefold } from "./casefold.js";
import { isDecimal, isNick, isRoom } from "./proto.js";

const MAX_REASON = 80;

export function unverified(reason) {
  const short = reason.length <= MAX_REASON ? reason : reason.slice(0, MAX_REASON) + "…";
  return ` (reason, not verified: "${short}")`;
}

/** What to say when `total` members of `room` are counted and `ours` share our proof. */
export function apartNotice(room, ours, total) {
  const others = total - ours;
  if (ours <= 1) {
    return `${room} has ${others} member${others !== 1 ? "s" : ""} but none share your passphrase ` +
      "— check it (they cannot read you, nor you them)";
  }
  return `${room} has ${others} more member${others !== 1 ? "s who use" : " who uses"} another passphrase ` +
    "(or an older client): they cannot read this room, nor you theirs";
}

export class Presence {
  constructor(session) {
    this.session = session;
    this.awaiting = null; // rooms to be in before ready
    this.switchTo = null; // the join that makes its room current
    this.roomList = [];
    // who asked for each ROOMS reply on its way, in order: the user (/rooms, null)
    // or a check after joining (room key -> members sharing our proof)
    this.roomsAsked = [];
    this.checkNext = new Set(); // rooms joined with a proof: check once their NAMES are in
    this.moving = new Set(); // rooms we leave to join again under another key (a sealed room's new epoch): no "you left"
  }

  /** A JOIN we send with a proof: once in, compare its members with the relay's count. */
  willCheck(room) {
    this.checkNext.add(casefold(room));
  }

  /** ROOMS, for the user (check null) or to compare a room's count with ours. */
  askRooms(check = null) {
    this.roomsAsked.push(check);
    this.session.send("ROOMS");
  }

  mine(nick) {
    const me = this.session.nick;
    return me !== null && casefold(nick) === casefold(me);
  }

  async JOIN([room, nick]) {
    if (!isRoom(room) || !isNick(nick)) throw new Error("bad name");
    const s = this.session;
    const k = casefold(room);
    const conv = s.conversations.open(room);
    conv.members.set(casefold(nick), nick);
    if (!this.mine(nick)) {
      s.notice(k, `${nick} joined ${room}`);
    } else {
      conv.name = room;
      conv.joined = true;
      if (s.conversations.current === null || this.switchTo === k) {
        this.switchTo = null;
        s.setCurrent(k);
      }
      if (this.awaiting) {
        this.awaiting.delete(k);
        if (!this.awaiting.size && !s.ready) await s.registration.becomeReady();
      }
      await s.sealing.joined(room); // (once ready: a hello goes out)
      s.save();
    }
    s.ui.changed();
  }

  PART([room, nick, reason]) {
    if (!isRoom(room) || !isNick(nick)) throw new Error("bad name");
    const s = this.session;
    const k = casefold(room);
    const conv = s.conversations.get(k);
    if (!conv) return;
    const why = reason ? unverified(reason) : "";
    if (this.mine(nick) && this.moving.has(k)) {
      this.moving.delete(k); // the JOIN under the new key follows
      conv.joined = false;
      conv.members.clear();
      s.sealing.parted(room);
    } else if (this.mine(nick)) {
      conv.joined = false;
      conv.members.clear();
      s.notice(k, `you left ${room}${why}`);
      s.sealing.left(room);
      s.save();
    } else {
      conv.members.delete(casefold(nick));
      s.notice(k, `${nick} left ${room}${why}`);
    }
    s.ui.changed();
  }

  QUIT([nick, reason]) {
    if (!isNick(nick)) throw new Error("bad name");
    const why = reason ? unverified(reason) : "";
    for (const [k, conv] of this.session.conversations.map) {
      if (conv.members.delete(casefold(nick))) this.session.notice(k, `${nick} quit${why}`);
    }
    this.session.reclaim.freed(nick);
    this.session.ui.changed();
  }

  NICK([old, now]) {
    if (!isNick(old) || !isNick(now)) throw new Error("bad name");
    const s = this.session;
    const mine = this.mine(old);
    if (mine) {
      s.nick = now;
      s.wantedNick = now;
    }
    for (const [k, conv] of s.conversations.map) {
      if (conv.members.delete(casefold(old))) {
        conv.members.set(casefold(now), now);
        s.notice(k, mine ? `you are now known as ${now}` : `${old} is now known as ${now}`);
      }
    }
    if (mine) s.save();
    if (mine) s.reclaim.answered();
    else s.reclaim.freed(old);
    s.ui.changed();
  }

  NAMES([room, ...nicks]) {
    if (!isRoom(room) || !nicks.every(isNick)) throw new Error("bad name");
    const conv = this.session.conversations.get(casefold(room));
    if (!conv) return;
    if (conv.namesDone !== false) {
      conv.members.clear();
      conv.namesDone = false;
    }
    for (const nick of nicks) conv.members.set(casefold(nick), nick);
  }

  ENDNAMES([room]) {
    const conv = this.session.conversations.get(casefold(room || ""));
    if (!conv) return;
    conv.namesDone = true;
    if (conv.showNames) {
      conv.showNames = false;
      this.session.notice(casefold(room), `in ${room}: ${[...conv.members.values()].join(", ")}`);
    }
    const k = casefold(room);
    if (this.checkNext.delete(k)) {
      // Are there members of this name we cannot reach? The relay keeps those
      // who joined with another proof (another passphrase) apart, and ROOMS
      // counts them all: what anyone on the port can ask.
      this.askRooms(new Map([[k, conv.members.size || conv.count || 0]]));
    }
    this.session.ui.changed();
  }

  MEMBERS([room, count]) {
    const conv = this.session.conversations.get(casefold(room || ""));
    if (conv && isDecimal(count)) {
      conv.count = Number(count);
      this.session.ui.changed();
    }
  }

  ROOM([room, count]) {
    if (!isRoom(room) || !isDecimal(count)) throw new Error("bad room");
    this.roomList.push([room, Number(count)]);
  }

  ENDROOMS() {
    const list = this.roomList;
    this.roomList = [];
    const check = this.roomsAsked.length ? this.roomsAsked.shift() : null;
    if (check) return this.compare(check, list);
    const shown = list.map(([room, count]) => `${room} (${count})`);
    this.session.notice(null, shown.length ? "rooms: " + shown.join(", ") : "no rooms");
  }

  compare(ours, rooms) {
    for (const [name, total] of rooms) {
      const k = casefold(name);
      if (ours.has(k) && total > ours.get(k)) this.session.problem(k, apartNotice(name, ours.get(k), total));
    }
  }

  GAP([room]) {
    if (this.session.conversations.get(casefold(room || ""))) {
      this.session.notice(casefold(room), `some messages in ${room} were missed: the relay no longer has them`);
    }
  }
}
