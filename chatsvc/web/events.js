// What the relay says that is neither presence nor a message: its notices,
// PING, and the answers to what we sent (OK, ERROR, ENDHISTORY), each to the
// part that deals with it. As chatsvc/client/events.py.

import { casefold } from "./casefold.js";

const key = (name) => casefold(name);

export class Events {
  constructor(session) {
    this.session = session;
  }

  NOTICE([text]) {
    this.session.notice(null, "relay: " + text); // the relay's own state (its link to other relays down, back)
  }

  PING([token]) {
    this.session.send("PONG", ...(token ? [token] : []));
  }

  PONG() {}

  async OK([what, target, id], tags) {
    const s = this.session;
    if (what === "NICK") return s.registration.nickAccepted(target);
    if (what !== "MSG") return;
    if (!target.startsWith("#")) {
      const [nick, shown] = s.sender.delivered();
      if (shown !== null) s.own(key(nick), nick, shown, null);
      return;
    }
    const entry = s.delivery.acknowledged(tags.cid);
    if (entry) {
      s.delivery.remember(key(target), [s.nick, target, entry.payload, id || "", 1]);
      s.ui.acked(tags.cid);
    }
    if (/^[0-9]{1,20}$/.test(id || "")) s.delivery.seeId(target, Number(id));
    s.save();
  }

  async ERROR([code, text = ""], tags) {
    const s = this.session;
    if (code === "unknown-command" && text.startsWith("CAPS")) return s.registration.noCaps();
    if (code === "unknown-command" && text.startsWith("HISTORY")) return;
    const entry = tags.cid ? s.delivery.unacked.get(tags.cid) : null;
    if (entry) {
      s.delivery.unacked.delete(tags.cid);
      s.ui.refused(tags.cid);
      s.problem(key(entry.room), `a message to ${entry.room} was not delivered: ${text || code}`);
      return s.save();
    }
    if (code === "no-such-nick" && !tags.cid && s.sender.privatePending.length) return s.sender.undeliverable(text || code);
    if (s.reclaim.refused(code)) return; // our nick is still held: asked again later, nothing to show
    if (s.registration.nickRefused(code, text)) return;
    s.problem(s.current, text || code);
  }

  ENDHISTORY([room, how]) {
    const s = this.session;
    const k = key(room || "");
    s.delivery.historyEnded(room || "");
    s.receiver.historyEnded(room || "", s.delivery.mode(room || ""));
    const conv = s.conversations.get(k);
    if (how === "more" && conv && conv.joined) s.send("HISTORY", conv.name, ...s.delivery.moreHistory(conv.name));
    return s.sealing.historyEnd(room || "", how === "more");
  }
}
