// The page's chat session: it only wires parts together (docs/trust.md,
// The parts): inbound.js and trust.js decide what to believe, keyexchange.js
// and sending.js what may go out, receiving.js carries out decisions on what
// came in, presence.js and conversations.js follow who is where, delivery.js
// keeps nothing lost and nothing twice, files.js moves files,
// registration.js holds the connection's life, commands.js the slash
// commands. The twin of chatsvc/client/session.py. No DOM here (app.js
// draws); tests/js drive it with a fake socket under Node.

import { casefold } from "./casefold.js";
import { Cipher, DecryptError, deriveMasterV1, deriveMasterV2, fingerprint, generateSessionKey } from "./crypto.js";
import { Commands, HELP } from "./commands.js";
import { Conversations } from "./conversations.js";
import { Delivery, JOIN_HISTORY, TRANSCRIPT } from "./delivery.js";
import { ACTION_MARKER, AWAY_MARKER, KEY_MARKER, KEYREQ_MARKER, TOPIC_MARKER, present } from "./inbound.js";
import { Events } from "./events.js";
import { Reload } from "./reload.js";
import { loadOrCreateIdentity } from "./identity.js";
import { KnownKeys } from "./pins.js";
import { Presence } from "./presence.js";
import { Reclaim } from "./reclaim.js";
import { formatLine, parseLine } from "./proto.js";
import { Receiver } from "./receiving.js";
import { HELLO_TIMEOUT_MS, Registration } from "./registration.js";
import { ReplayGuard } from "./replay.js";
import { Sender } from "./sending.js";
import { Transfers } from "./files.js";
import { Trust } from "./trust.js";
import { Keyring, Sealing } from "./sealing.js";

export { present, ACTION_MARKER, AWAY_MARKER, HELLO_TIMEOUT_MS, HELP, JOIN_HISTORY, KEY_MARKER, KEYREQ_MARKER, TOPIC_MARKER, TRANSCRIPT };
export const key = (name) => casefold(name);

/**
 * One user's session with the relay.
 *
 * ui: {line(conv, entry), acked(cid), refused(cid), status(text), changed(), current(conv), ended(reason)}
 * store: a sessionStorage-like object: what a reload needs (nick, rooms, message ids, unacknowledged and
 *   recent ciphertext -- never plaintext or keys); replayStore, keyStore: localStorage-like objects.
 * now, setTimer, clearTimer: the clock (required: retries and timeouts run on it).
 * kdf: {v1(passphrase), v2(passphrase, salt)}: the slow key derivations (tests share one result).
 */
export class ChatSession {
  constructor({ url, nick, passphrase, room, ui, store = null, replayStore = null, keyStore = null, identity = undefined,
                WebSocketImpl = globalThis.WebSocket, now, setTimer, clearTimer, kdf = { v1: deriveMasterV1, v2: deriveMasterV2 } }) {
    if (!now || !setTimer || !clearTimer) throw new TypeError("ChatSession needs a clock: now, setTimer and clearTimer");
    Object.assign(this, { url, wantedNick: nick, passphrase, firstRoom: room, ui, store, WebSocketImpl, now, setTimer, clearTimer, kdf });
    this.replay = new ReplayGuard(replayStore);
    this.ws = null;
    this.nick = null; // as the relay accepted it, this connection
    this.ready = false;
    this.quitting = false;
    this.pending = []; // typed before ready
    this.maxLine = 65536;
    this.cipher = null;
    this.awayText = null; // ours: answered once to each who messages us privately (/away)
    this.onDecision = null; // sees every decision of the inbound policy (stage, decision): tests and debugging
    // Everything the session does, in and out, runs in order on this chain:
    // decryption and encryption are asynchronous, and a later line must not overtake an earlier one.
    this.chain = Promise.resolve();
    this.identity = identity; // undefined: this browser's own, from IndexedDB
    this.trust = new Trust(null, new KnownKeys(keyStore), { notice: (c, t, extra) => this.notice(c, t, extra), problem: (c, t) => this.problem(c, t) });
    this.conversations = new Conversations(ui);
    this.delivery = new Delivery();
    this.registration = new Registration(this);
    this.presence = new Presence(this);
    this.reclaim = new Reclaim(this); // our nick back, once a ghost lets go of it
    this.receiver = new Receiver(this);
    this.sender = new Sender(this);
    this.commands = new Commands(this);
    this.transfers = new Transfers(this, ui);
    this.events = new Events(this);
    this.reload = new Reload(this);
    this.sealing = new Sealing(this, new Keyring(keyStore)); // sealed rooms: their keys, statements, epochs
    this.handlers = { JOIN: this.presence, PART: this.presence, QUIT: this.presence, NICK: this.presence, NAMES: this.presence,
                      ENDNAMES: this.presence, MEMBERS: this.presence, ROOM: this.presence, ENDROOMS: this.presence,
                      GAP: this.presence, HELLO: this.registration, CAPS: this.registration, MSG: this.receiver,
                      TOPIC: this.receiver, OK: this.events, ERROR: this.events, ENDHISTORY: this.events, NOTICE: this.events,
                      PING: this.events, PONG: this.events };
    this.reload.restore();
  }

  get current() { return this.conversations.current; }
  get greeted() { return this.registration.greeted; }
  get unacked() { return this.delivery.unacked; }

  // --- lifecycle -------------------------------------------------------------------------

  async start() {
    this.ui.status("deriving the key from your passphrase…");
    let made = false;
    if (this.identity === undefined) {
      try {
        ({ identity: this.identity, made } = await loadOrCreateIdentity());
      } catch (e) {
        this.identity = null;
        this.problem(null, `no identity keys in this browser (${e.message}): your messages go unsigned`);
      }
    }
    this.trust.own = this.identity ? this.identity.public : null;
    // without a passphrase (in by invitation link alone): a key nobody shares for everything but sealed rooms
    const masterV1 = this.passphrase === null ? crypto.getRandomValues(new Uint8Array(32)) : await this.kdf.v1(this.passphrase);
    this.cipher = new Cipher({ masterV1, now: this.now, replay: this.replay,
                               identity: this.identity, session: this.identity ? await generateSessionKey() : null });
    this.cipher.linkOnly = this.passphrase === null;
    this.cipher.roomMaster = (room) => this.sealing.roomMaster(room);
    this.cipher.peerAgree = (nick) => this.trust.peerAgree(nick);
    this.cipher.peerSession = (nick) => this.sender.sessionOf(nick);
    if (made) this.notice(null, `made your identity keys in this browser; your fingerprint: ${await fingerprint(this.identity.public)}`);
    this.connect();
  }

  connect() {
    if (this.quitting) return;
    this.ui.status(this.greeted ? "reconnecting…" : "connecting…");
    let ws;
    try {
      ws = new this.WebSocketImpl(this.url);
    } catch (e) {
      this.ui.status(`cannot open ${this.url}: ${e.message}`);
      this.registration.scheduleRetry();
      return;
    }
    this.ws = ws;
    ws.onmessage = (event) => ws === this.ws && this.received(String(event.data));
    ws.onclose = (event) => ws === this.ws && this.registration.closed(event);
    ws.onerror = () => {};
    this.registration.helloTimer = this.setTimer(() => ws.close(), HELLO_TIMEOUT_MS);
  }

  retryNow() { this.registration.retryNow(); }

  send(...parts) {
    if (this.ws && this.ws.readyState === 1) this.ws.send(formatLine(...parts));
  }

  /** The session is over, for the first reason given (a later close does not overwrite it). */
  ended(reason) {
    if (this.endedWith !== undefined) return;
    this.endedWith = reason;
    this.ui.ended(reason);
  }

  quit(reason) {
    this.quitting = true;
    if (this.store) this.store.removeItem("chatsvc.session");
    this.replay.save();
    if (this.ws && this.ws.readyState === 1) {
      this.send("QUIT", ...(reason ? [reason] : []));
      this.ws.close();
    } else {
      this.ended("you left");
    }
  }

  // --- what the relay says ---------------------------------------------------------------------

  run(step) {
    this.chain = this.chain.then(step).catch((e) => {
      console.error(e);
      this.problem(null, `internal error: ${e.message}`);
    });
    return this.chain;
  }

  received(raw) {
    return this.run(() => this.handle(raw));
  }

  async handle(raw) {
    const line = parseLine(raw);
    if (!line) return;
    const part = this.handlers[line.command];
    if (!part) return this.problem(null, `ignored a line the relay sent that this page does not know: ${line.command.slice(0, 20)}`);
    try {
      await part[line.command](line.args, line.tags);
    } catch (e) {
      this.problem(null, `ignored a malformed line from the relay (${line.command}): ${e.message}`);
    }
  }

  selves() { return [this.nick, this.wantedNick]; }

  decided(stage, decision) {
    if (this.onDecision) this.onDecision(stage, decision);
    return decision;
  }

  placementView() {
    const d = this.delivery;
    return { me: this.nick, wanted: this.wantedNick, rooms: new Set(this.conversations.joinedRooms().map(key)),
             historyOpen: d.openReplies(), historyMode: d.historyMode, lastId: d.lastId };
  }

  /** {text, sentMs, signer, private} or {error: DecryptError}. */
  async open(payload, target, from, history) {
    try {
      return await this.cipher.open(payload, target, from, history);
    } catch (e) {
      if (e instanceof DecryptError) return { error: e };
      throw e;
    }
  }

  mentions(text) {
    if (!this.nick) return false;
    return key(text).split(/[^\p{L}\p{N}_.-]+/u).includes(key(this.nick));
  }

  // --- what the user does ----------------------------------------------------------------------

  typed(text) { return this.run(() => this.command(text)); }

  async command(text) {
    if (!text.trim()) return;
    if (!this.ready && !/^\/(quit|help|clear)\b/.test(text)) {
      this.pending.push(text);
      return this.notice(this.current, "not connected yet: this goes out once signed in");
    }
    if (text.startsWith("//")) return this.say(text.slice(1));
    if (!text.startsWith("/")) return this.say(text);
    await this.commands.run(text);
  }

  /** Typed text for the current conversation; raw: it carries its own marker (/me). */
  async say(text, raw = false) {
    const conv = this.conversations.get(this.current);
    if (!conv) return this.problem(null, "you are not in a room: /join #room first");
    if (!raw) text = text.replace(/^\x1f+/, "") || "?";
    if (!conv.room) return this.sender.send(conv.name, text, text);
    if (!conv.joined) return this.problem(this.current, `you are not in ${conv.name}: /join ${conv.name}`);
    return this.sendRoom(conv.name, text);
  }

  async sendRoom(room, text, shown = true) {
    const payload = await this.cipher.encrypt(text, room, this.nick);
    if (!this.fits(room, payload, `${this.delivery.cidBase}-${this.delivery.cidNext}`)) return;
    const cid = this.delivery.track(room, payload, this.nick);
    if (shown) this.own(key(room), room, text, cid);
    this.send({ cid }, "MSG", room, payload);
    this.save();
  }

  /** A file-transfer message or an automatic note: encrypted like chat, never shown as text. */
  sendControl(target, text) {
    if (!this.ready) return Promise.resolve();
    return target.startsWith("#") ? this.sendRoom(target, text, false) : this.sender.send(target, text, null);
  }

  setAway(text) {
    this.awayText = text;
    this.receiver.awayTold.clear();
  }

  async verify(nick, answer = "") {
    for (const [target, text] of await this.trust.verify(this.current, nick, answer)) {
      this.conversations.show(target.startsWith("#") ? key(target) : key(nick), { kind: "msg", from: nick, text, action: false, time: this.now(), held: true });
    }
    this.ui.changed(); // the verified marks
  }

  /** Offer a file (a File from the picker or a drop) to the current conversation. */
  sendFile(file) {
    return this.run(async () => {
      const conv = this.conversations.get(this.current);
      if (!conv || !this.ready) return this.problem(null, "not connected: files go once signed in");
      if (conv.room && !conv.joined) return this.problem(this.current, `you are not in ${conv.name}`);
      await this.transfers.offer(file, conv.name);
    });
  }

  fits(target, payload, cid = null) {
    const size = new TextEncoder().encode(`@cid=${cid || ""} MSG ${target} ${payload}`).length;
    if (size <= this.maxLine) return true;
    this.problem(this.current, `message too long to send (${size} bytes once encrypted; the limit is ${this.maxLine}): split it`);
    return false;
  }

  own(conv, target, text, cid) {
    this.conversations.open(target, !target.startsWith("#"));
    const shown = present(text) || { text, action: false };
    this.conversations.show(conv, { kind: "msg", own: true, from: this.nick, text: shown.text, action: shown.action, time: this.now(),
                                    cid, pending: Boolean(cid) });
  }

  setCurrent(k) {
    this.conversations.setCurrent(k);
    this.save();
  }

  save() { this.reload.save(); }

  notice(conv, text, extra = {}) { this.conversations.line(conv, "notice", text, this.now(), extra); }
  problem(conv, text) { this.conversations.line(conv, "problem", text, this.now()); }
}
