// What comes in: a relayed message through the stages of the inbound policy
// (docs/trust.md): placement, opening, attribution, interpretation, and what
// each decision means for the user. The decisions are made by inbound.js
// and trust.js; this only carries them out. The twin of
// chatsvc/client/receiving.py.

import { casefold } from "./casefold.js";
import { DecryptError, unb64url } from "./crypto.js";
import { decode as decodeFile } from "./files.js";
import { AWAY_MARKER, KEY_MARKER, KEYREQ_MARKER, TOPIC_MARKER, interpret, placement, unreadable } from "./inbound.js";
import { isDecimal, isNick, isRoom } from "./proto.js";
import { TRUSTED } from "./trust.js";

const REFUSED = {
  "misdirected": (from, target) => `ignored a private message from ${from} addressed to ${target}, not you`,
  "history-private": (from) => `ignored a private message from ${from} marked as history (replayed?)`,
  "not-in-room": (from, target) => `ignored a message from ${from} for ${target}: you are not in it`,
  "history-unasked": (from, target) => `ignored a message from ${from} in ${target} marked as history, unasked`,
};

export class Receiver {
  constructor(session) {
    this.session = session;
    this.unreadable = new Map(); // "room key\nsender" -> [count, reason, code] inside a history reply
    this.askedAgain = new Set(); // senders we sent a fresh key request after a failure
    this.awayTold = new Set(); // who got our away note
    this.topicAsked = new Set();
  }

  async MSG([from, target, payload], tags) {
    if (!isNick(from) || !(isNick(target) || isRoom(target)) || !payload) throw new Error("bad MSG");
    const s = this.session;
    const isPrivate = !target.startsWith("#");
    const conv = isPrivate ? casefold(from) : casefold(target);
    const place = s.decided("placement", placement(from, target, tags, s.placementView()));
    if (place.record_id !== undefined) s.delivery.seeId(target, place.record_id);
    if (place.action === "refuse") return s.problem(isPrivate || place.reason === "not-in-room" ? null : conv, REFUSED[place.reason](from, target));
    if (place.action !== "open") return;
    const history = Boolean(place.history);
    const opened = await s.open(payload, target, from, history);
    if (opened.error) return this.failed(from, target, conv, history, opened.error);
    const fold = history ? target : null; // first sightings in history: one line at its end
    const verdict = s.decided("attribution", await s.trust.attribute(from, target, conv, opened, s.selves(), fold));
    if (verdict.action !== "show") return;
    const what = s.decided("interpret", interpret(opened.text, {
      isPrivate, history, signed: Boolean(opened.signer), trusted: TRUSTED.has(verdict.reason),
      ignored: s.conversations.isIgnored(from), own: verdict.reason === "own" }));
    if (what.action === "keys") return this.keys(from, what);
    if (what.action === "sealed") return s.sealing.control(from, target, opened.text, opened.signer, history);
    if (what.action === "file") return this.file(from, target, conv, opened.text);
    if (what.action === "away") {
      s.conversations.setAway(from, what.value || null);
      return s.notice(conv, what.value ? `${from} is away: ${what.value}` : `${from} is back`);
    }
    if (what.action !== "show") return;
    s.conversations.open(isPrivate ? from : target, isPrivate);
    s.delivery.remember(conv, [from, target, payload, tags.id || "", 0]);
    s.conversations.show(conv, { kind: "msg", from, text: what.value, action: Boolean(what.action_text), time: opened.sentMs,
                                 history: history ? s.delivery.mode(target) : null, mention: s.mentions(what.value),
                                 unsigned: verdict.mark === "unsigned", like: verdict.like || null,
                                 notPrivate: Boolean(s.trust.signing && opened.signer && isPrivate && !opened.private) });
    if (isPrivate && s.awayText !== null && !this.awayTold.has(casefold(from))) {
      this.awayTold.add(casefold(from));
      await s.sendControl(from, AWAY_MARKER + s.awayText);
    }
    s.save();
  }

  async failed(from, target, conv, history, error) {
    const s = this.session;
    const isPrivate = !target.startsWith("#");
    const decision = s.decided("unreadable", unreadable(error.code, s.trust.relation(from, error.signer), isPrivate, history,
                                                        this.askedAgain.has(casefold(from))));
    if (decision.action === "group") {
      const id = conv + "\n" + from;
      const entry = this.unreadable.get(id) || [0, error.message, error.code];
      entry[0] += 1;
      this.unreadable.set(id, entry);
      return;
    }
    // (in the conversation with them if there is one, else where the user is looking)
    s.problem(s.conversations.has(conv) ? conv : null, `cannot read a message from ${from} ${isPrivate ? "(private)" : "in " + target}: ${error.message}`);
    if (decision.reply === "keyreq") {
      // keyed to a session we had before a reload, or to theirs we have not
      // seen: ask again, keyed to the identity pinned for them
      this.askedAgain.add(casefold(from));
      await s.sender.sendKeys(from, KEYREQ_MARKER);
    }
  }

  async keys(from, what) {
    const s = this.session;
    let session = null;
    try {
      session = what.value ? unb64url(what.value) : null;
    } catch (e) {
      if (!(e instanceof DecryptError)) throw e;
    }
    if (!session || session.length !== 32) return; // malformed: nothing learnt, nothing answered
    this.askedAgain.delete(casefold(from));
    // every request is answered (a retry means the answer was lost), keyed to their pinned keys
    if (what.reply === "key") await s.sender.sendKeys(from, KEY_MARKER);
    await s.sender.peer(from).answer(session);
  }

  async file(from, target, conv, text) {
    let fields;
    try {
      fields = decodeFile(text);
    } catch (e) {
      return this.session.problem(conv, `bad file message from ${from}: ${e.message}`);
    }
    // An offer opens its conversation; the answers to ours (accept, ack,
    // cancel) are private lines from each receiver and open none.
    if (fields.t === "offer") this.session.conversations.open(target.startsWith("#") ? target : from, !target.startsWith("#"));
    await this.session.transfers.handle(from, target, fields);
  }

  /** The end of a HISTORY reply: what could not be read, told once per sender. */
  historyEnded(room, mode) {
    const k = casefold(room);
    this.session.trust.firstSeenTold(room);
    for (const [id, [count, reason, code]] of this.unreadable) {
      const [rk, sender] = id.split("\n");
      if (rk !== k) continue;
      this.unreadable.delete(id);
      if (count === 1) this.session.problem(k, `cannot read a message from ${sender} in ${room} (${mode}): ${reason}`);
      else this.session.problem(k, `${count} ${mode} messages from ${sender} in ${room} could not be read` +
                                   (code === "not-authentic" ? " — a different passphrase?" : `: ${reason}`));
    }
  }

  /** A TOPIC line: kept by the relay, so old by nature: no freshness check, as for history. */
  async TOPIC([room, setter, when, payload]) {
    const s = this.session;
    const k = casefold(room || "");
    const conv = s.conversations.get(k);
    if (!conv || !conv.joined) return;
    const asked = this.topicAsked.delete(k);
    if (!setter) {
      if (asked) s.notice(k, `${conv.name} has no topic; /topic text sets one`);
      return;
    }
    if (!isNick(setter) || !isDecimal(when || "") || !payload) throw new Error("bad TOPIC");
    const opened = await s.open(payload, conv.name, setter, true);
    if (opened.error) return s.problem(k, `cannot read the topic of ${conv.name} set by ${setter}: ${opened.error.message}`);
    if (!opened.text.startsWith(TOPIC_MARKER)) return s.problem(k, `the topic of ${conv.name} is not a topic (a message passed off as one?); ignored`);
    // the same check as messages, your own nick included (docs/trust.md)
    const verdict = s.decided("attribution", await s.trust.attribute(setter, conv.name, k, opened, s.selves()));
    if (verdict.action !== "show") return;
    conv.topic = opened.text.slice(TOPIC_MARKER.length);
    const mark = verdict.like ? ` (not ${verdict.like}: a look-alike)` : verdict.mark === "unsigned" ? " (unsigned)" : "";
    s.notice(k, `topic: ${conv.topic} (set by ${setter}${mark})`);
    s.ui.changed();
  }
}
