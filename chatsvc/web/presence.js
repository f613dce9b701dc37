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

export class Presence {
  constructor(session) {
    this.session = session;
    this.awaiting = null; // rooms to be in before ready
    this.switchTo = null; // the join that makes its room current
    this.roomList = [];
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
    if (this.mine(nick)) {
      conv.joined = false;
      conv.members.clear();
      s.notice(k, `you left ${room}${why}`);
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
    this.roomList.push(`${room} (${count})`);
  }

  ENDROOMS() {
    const list = this.roomList;
    this.roomList = [];
    this.session.notice(null, list.length ? "rooms: " + list.join(", ") : "no rooms");
  }

  GAP([room]) {
    if (this.session.conversations.get(casefold(room || ""))) {
      this.session.notice(casefold(room), `some messages in ${room} were missed: the relay no longer has them`);
    }
  }
}
