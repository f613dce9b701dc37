// The page's chat session: protocol lines in, events for the view out.
// The twin of chatsvc/client/session.py and delivery.py: the same checks on
// every message (the relay is not trusted), the same catch-up and resend.
// No DOM here (app.js draws); tests/js/session.test.mjs drives it with a
// fake socket under Node.

import { casefold } from "./casefold.js";
import {
  Cipher, DecryptError, b64url, deriveMasterV1, deriveMasterV2, fingerprint, generateSessionKey, safetyNumber, sameKeys,
  unb64url,
} from "./crypto.js";
import { CHANGED, KnownKeys, NEW, loadOrCreateIdentity } from "./identity.js";
import { formatLine, isDecimal, isNick, isRoom, nickProblem, parseLine } from "./proto.js";
import { ReplayGuard } from "./replay.js";
import { MARKER as FILE_MARKER, Transfers, decode as decodeFile } from "./files.js";

export const key = (name) => casefold(name);
/** Messages shown from a room's history the first time it is joined. */
export const JOIN_HISTORY = 50;
/** Ciphertext lines kept per conversation so a reload can show them again. */
export const TRANSCRIPT = 300;
export const HELLO_TIMEOUT_MS = 10000;
const RETRY_MS = [1000, 2000, 4000, 8000, 15000, 30000];
const MAX_REASON = 80;
// Inside the encrypted text, as the terminal client writes them (docs/protocol.md,
// Actions, away notes and topics): "/me waves", an automatic private "away" answer, a topic.
export const ACTION_MARKER = "\x1fchatsvc-me:";
export const AWAY_MARKER = "\x1fchatsvc-away:";
export const TOPIC_MARKER = "\x1fchatsvc-topic:";
// Per-user keys (aes3): "send me your keys" and the answer, both signed.
export const KEYREQ_MARKER = "\x1fchatsvc-keyreq:";
export const KEY_MARKER = "\x1fchatsvc-key:";
export const KEY_WAIT_MS = 5000;
const HELD_PER_NICK = 20;

/** How a decrypted text is shown: {text, action}, or null for what is not shown as a line. */
export function present(text) {
  if (text.startsWith(ACTION_MARKER)) return { text: text.slice(ACTION_MARKER.length), action: true };
  if (text.startsWith("\x1f")) return null; // files, away notes, a newer client's kinds
  return { text, action: false };
}

export const HELP = [
  "text — send to the current room or conversation",
  "/join #room — join a room and make it current",
  "/part [#room] [reason] — leave a room (default: the current one)",
  "/msg nick text — private message, encrypted like room messages",
  "/me action — an action: /me waves shows “* you waves”",
  "/query nick — open a private conversation with nick",
  "/topic [text] — show the room's topic, or set it (encrypted like messages)",
  "/names — who is in the current room",
  "/whois nick — the rooms you share with nick, their away note, their key and whether you verified it",
  "/verify nick — the safety number to compare with nick (in person, on a call); marks their key verified",
  "/away [text] — answer private messages with “away: text” (once per person); /away alone: back",
  "/ignore [nick], /unignore nick — hide everything from nick (files too)",
  "/window N — switch to the Nth conversation (Alt-1…9 too)",
  "/rooms — rooms on the server",
  "/nick newnick — change your nick",
  "/clear — empty this conversation's view",
  "/help — this list",
  "/quit [reason] — leave (the reason is not encrypted)",
  "//text — send text starting with a slash",
];

function unverified(reason) {
  const short = reason.length <= MAX_REASON ? reason : reason.slice(0, MAX_REASON) + "…";
  return ` (reason, not verified: "${short}")`;
}

function randomBase() {
  const bytes = crypto.getRandomValues(new Uint8Array(9));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_");
}

/**
 * One user's session with the relay.
 *
 * ui: {line(conv, entry), acked(cid), refused(cid), status(text), changed(), current(conv),
 *      ended(reason)}
 * store: a sessionStorage-like object: what a reload needs (nick, rooms,
 *   message ids, unacknowledged and recent ciphertext -- never plaintext
 *   or keys).
 * replayStore: a localStorage-like object for what was seen (replay.js).
 */
export class ChatSession {
  constructor({ url, nick, passphrase, room, ui, store = null, replayStore = null, keyStore = null,
                identity = undefined, WebSocketImpl = globalThis.WebSocket, now = () => Date.now(),
                setTimer = (f, ms) => setTimeout(f, ms), clearTimer = (t) => clearTimeout(t) }) {
    this.url = url;
    this.wantedNick = nick;
    this.passphrase = passphrase;
    this.firstRoom = room;
    this.ui = ui;
    this.store = store;
    this.WebSocketImpl = WebSocketImpl;
    this.now = now;
    this.setTimer = setTimer;
    this.clearTimer = clearTimer;
    this.replay = new ReplayGuard(replayStore);
    this.ws = null;
    this.nick = null; // as the relay accepted it, this connection
    this.greeted = false;
    this.ready = false;
    this.quitting = false;
    this.conversations = new Map(); // key -> {name, room, joined, members: Map key->nick, unread, mentions}
    this.current = null;
    this.lastId = {}; // room key -> highest id seen
    this.historyOpen = {}; // room key -> HISTORY replies not ended
    this.historyMode = {}; // room key -> "earlier" | "missed"
    this.unreadable = new Map(); // "room key\nsender" -> [count, reason] inside a history reply
    this.unacked = new Map(); // cid -> {room, payload, nick}
    this.privatePending = []; // [nick, text|null] awaiting OK MSG or ERROR
    this.transcript = {}; // conv key -> [[from, target, payload, id, own]]
    this.pending = []; // typed before ready
    this.cidBase = randomBase();
    this.cidNext = 1;
    this.maxLine = 65536;
    this.retries = 0;
    this.triedNicks = 0;
    this.helloTimer = null;
    this.cipher = null;
    this.salt = null;
    // Everything the session does, in and out, runs in order on this chain:
    // decryption and encryption are asynchronous, and a later line must not
    // overtake an earlier one.
    this.chain = Promise.resolve();
    this.transfers = new Transfers(this, ui);
    this.ignored = new Map(); // nick key -> nick: nothing of theirs is shown (/ignore)
    this.awayText = null; // ours: answered once to each who messages us privately (/away)
    this.awayTold = new Set();
    this.awayOf = new Map(); // nick key -> the away note they sent us
    // per-user keys (aes3): undefined = this browser's own, from IndexedDB
    this.identity = identity;
    this.known = new KnownKeys(keyStore);
    this.flagged = new Map(); // nick key -> the unaccepted keys we warned of
    this.held = new Map(); // nick key -> [[target, text]] not shown as theirs
    this.waitingKey = new Map(); // nick key -> [[nick, text, shown]] private messages waiting for keys
    this.noKey = new Set(); // nicks that did not answer a key request
    this.keysAnswered = new Set(); // "nick key session" answered (a restarted session asks again)
    this.sessions = new Map(); // nick key -> their session's X25519 key, as announced
    this.reannounced = new Set();
    this.restore();
  }

  // --- lifecycle --------------------------------------------------------------------

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
    this.cipher = new Cipher({ masterV1: await deriveMasterV1(this.passphrase), now: this.now, replay: this.replay,
                               identity: this.identity, session: this.identity ? await generateSessionKey() : null });
    this.cipher.peerAgree = (nick) => this.peerAgree(nick);
    this.cipher.peerSession = (nick) => this.sessions.get(key(nick)) || null;
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
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    ws.onmessage = (event) => {
      if (ws === this.ws) this.received(String(event.data));
    };
    ws.onclose = (event) => {
      if (ws === this.ws) this.closed(event);
    };
    ws.onerror = () => {};
    this.helloTimer = this.setTimer(() => ws.close(), HELLO_TIMEOUT_MS);
  }

  send(...parts) {
    if (this.ws && this.ws.readyState === 1) this.ws.send(formatLine(...parts));
  }

  closed(event) {
    this.clearTimer(this.helloTimer);
    const wasReady = this.ready;
    this.ws = null;
    this.nick = null;
    this.ready = false;
    this.historyOpen = {};
    for (const [nick, text] of this.privatePending) {
      if (text !== null) this.problem(key(nick), `a private message to ${nick} may not have been delivered: ${text}`);
    }
    this.privatePending = [];
    if (this.quitting) {
      this.ui.ended("you left");
      return;
    }
    if (event && event.code === 4003) this.problem(null, "the relay closed the connection: " + (event.reason || "refused"));
    if (wasReady) this.problem(null, "connection to the relay lost");
    this.scheduleRetry();
  }

  scheduleRetry() {
    const delay = RETRY_MS[Math.min(this.retries, RETRY_MS.length - 1)];
    this.retries += 1;
    this.ui.status(`offline — trying again in ${Math.round(delay / 1000)} s`);
    this.retryTimer = this.setTimer(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }

  /** The network is back (the browser says so): try now, not at the end of the backoff. */
  retryNow() {
    if (this.ws || this.quitting || this.retryTimer === null || this.retryTimer === undefined) return;
    this.clearTimer(this.retryTimer);
    this.retryTimer = null;
    this.connect();
  }

  quit(reason) {
    this.quitting = true;
    if (this.store) this.store.removeItem("chatsvc.session");
    this.replay.save();
    if (this.ws && this.ws.readyState === 1) {
      this.send("QUIT", ...(reason ? [reason] : []));
      this.ws.close();
    } else {
      this.ui.ended("you left");
    }
  }

  // --- what the relay says -------------------------------------------------------------

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
    const a = line.args;
    const handler = this["on" + line.command];
    if (!handler) {
      this.problem(null, `ignored a line the relay sent that this page does not know: ${line.command.slice(0, 20)}`);
      return;
    }
    try {
      await handler.call(this, a, line.tags);
    } catch (e) {
      this.problem(null, `ignored a malformed line from the relay (${line.command}): ${e.message}`);
    }
  }

  onNOTICE([text]) {
    // The relay telling everyone of its state (its link to other relays down, back).
    this.notice(null, "relay: " + text);
  }

  onHELLO() {
    this.clearTimer(this.helloTimer);
    this.ui.status(this.greeted ? "reconnected; signing in…" : "connected; signing in…");
    this.greeted = true;
    this.send("CAPS");
  }

  async onCAPS(tokens) {
    const values = Object.fromEntries(tokens.map((t) => [t.split("=")[0], t.slice(t.indexOf("=") + 1)]));
    if (isDecimal(values["max-line"] || "")) this.maxLine = Number(values["max-line"]);
    const salt = values.salt || "";
    if (!salt || !/^[A-Za-z0-9_-]{16,64}$/.test(salt) || !("join-proof" in values)) {
      this.noCaps();
      return;
    }
    if (this.salt !== salt) {
      this.ui.status("deriving this relay's key…");
      const master = await deriveMasterV2(this.passphrase, salt);
      this.cipher.useV2(master, salt);
      this.salt = salt;
    }
    await this.keysReady();
  }

  async noCaps() {
    this.problem(null, "this relay is older: messages use scheme aes1 (no per-relay salt; anyone " +
                       "who reaches it can fetch room history to guess the passphrase)");
    await this.keysReady();
  }

  async keysReady() {
    if (this.restored && !this.transcriptShown) {
      this.transcriptShown = true;
      await this.replayTranscript();
    }
    this.register();
  }

  register() {
    this.send("NICK", this.wantedNick);
  }

  onOK(a, tags) {
    if (a[0] === "NICK") return this.nickAccepted(a[1]);
    if (a[0] !== "MSG") return;
    const target = a[1];
    if (!target.startsWith("#")) {
      const [nick, text] = this.privatePending.shift() || [];
      if (text !== null && text !== undefined) this.own(key(nick), nick, text, null);
      return;
    }
    const cid = tags.cid;
    const entry = cid ? this.unacked.get(cid) : null;
    if (entry) {
      this.unacked.delete(cid);
      this.remember(key(target), [this.nick, target, entry.payload, a[2] || "", 1]);
      this.ui.acked(cid);
    }
    if (isDecimal(a[2] || "")) this.seeId(key(target), Number(a[2]));
    this.save();
  }

  async nickAccepted(nick) {
    if (!isNick(nick)) throw new Error("bad nick");
    if (this.nick !== null) return;
    this.nick = nick;
    this.retries = 0;
    if (key(nick) !== key(this.wantedNick)) this.notice(null, `you are ${nick} (${this.wantedNick} was taken meanwhile)`);
    this.ui.status(`signed in as ${nick}`);
    const rooms = [...this.conversations.values()].filter((c) => c.room && c.joined).map((c) => c.name);
    this.awaiting = new Set((rooms.length ? rooms : [this.firstRoom]).map(key));
    for (const room of rooms.length ? rooms : [this.firstRoom]) await this.join(room);
    this.save();
  }

  async join(room) {
    const proof = await this.cipher.joinProof(room);
    this.send("JOIN", room, ...(proof ? [proof] : []));
    const k = key(room);
    this.historyOpen[k] = (this.historyOpen[k] || 0) + 1;
    if (k in this.lastId) {
      this.historyMode[k] = "missed";
      this.send("HISTORY", room, "after", String(this.lastId[k]));
    } else {
      this.historyMode[k] = "earlier";
      this.send("HISTORY", room, "last", String(JOIN_HISTORY));
    }
  }

  onERROR(a, tags) {
    const [code, text = ""] = a;
    if (code === "unknown-command" && text.startsWith("CAPS")) return this.noCaps();
    if (code === "unknown-command" && text.startsWith("HISTORY")) return;
    const cid = tags.cid;
    if (cid && this.unacked.has(cid)) {
      const { room } = this.unacked.get(cid);
      this.unacked.delete(cid);
      this.ui.refused(cid);
      this.problem(key(room), `a message to ${room} was not delivered: ${text || code}`);
      this.save();
      return;
    }
    if (code === "no-such-nick" && !cid && this.privatePending.length) {
      const [nick, said] = this.privatePending.shift();
      if (said !== null) this.problem(key(nick), `${text || code} — not delivered: ${said}`);
      return;
    }
    if ((code === "nick-taken" || code === "nick-invalid") && this.nick === null) {
      if (code === "nick-taken" && this.conversations.size && this.triedNicks < 9) {
        // Back after a drop: the old connection may still hold the nick.
        this.triedNicks += 1;
        this.send("NICK", (this.wantedNick.slice(0, 30) + "_" + (this.triedNicks > 1 ? this.triedNicks : "")).slice(0, 32));
        return;
      }
      this.quitting = true;
      if (this.ws) this.ws.close();
      this.ui.ended(text || code);
      return;
    }
    this.problem(this.current, text || code);
  }

  async onJOIN([room, nick]) {
    if (!isRoom(room) || !isNick(nick)) throw new Error("bad name");
    const k = key(room);
    const conv = this.conversation(room);
    if (this.nick !== null && key(nick) === key(this.nick)) {
      conv.name = room;
      conv.joined = true;
      conv.members.set(key(nick), nick);
      if (this.current === null || this.switchTo === k) {
        this.switchTo = null;
        this.setCurrent(k);
      }
      if (this.awaiting) {
        this.awaiting.delete(k);
        if (!this.awaiting.size && !this.ready) await this.becomeReady();
      }
      this.save();
    } else {
      conv.members.set(key(nick), nick);
      this.notice(k, `${nick} joined ${room}`);
    }
    this.ui.changed();
  }

  onPART([room, nick, reason]) {
    if (!isRoom(room) || !isNick(nick)) throw new Error("bad name");
    const k = key(room);
    const conv = this.conversations.get(k);
    if (!conv) return;
    const why = reason ? unverified(reason) : "";
    if (this.nick !== null && key(nick) === key(this.nick)) {
      conv.joined = false;
      conv.members.clear();
      this.notice(k, `you left ${room}${why}`);
      this.save();
    } else {
      conv.members.delete(key(nick));
      this.notice(k, `${nick} left ${room}${why}`);
    }
    this.ui.changed();
  }

  onQUIT([nick, reason]) {
    if (!isNick(nick)) throw new Error("bad name");
    const why = reason ? unverified(reason) : "";
    for (const [k, conv] of this.conversations) {
      if (conv.members.delete(key(nick))) this.notice(k, `${nick} quit${why}`);
    }
    this.ui.changed();
  }

  onNICK([old, now]) {
    if (!isNick(old) || !isNick(now)) throw new Error("bad name");
    const mine = this.nick !== null && key(old) === key(this.nick);
    if (mine) {
      this.nick = now;
      this.wantedNick = now;
    }
    for (const [k, conv] of this.conversations) {
      if (conv.members.delete(key(old))) {
        conv.members.set(key(now), now);
        this.notice(k, mine ? `you are now known as ${now}` : `${old} is now known as ${now}`);
      }
    }
    if (mine) this.save();
    this.ui.changed();
  }

  onNAMES([room, ...nicks]) {
    if (!isRoom(room) || !nicks.every(isNick)) throw new Error("bad name");
    const conv = this.conversations.get(key(room));
    if (!conv) return;
    if (conv.namesDone !== false) {
      conv.members.clear();
      conv.namesDone = false;
    }
    for (const nick of nicks) conv.members.set(key(nick), nick);
  }

  onENDNAMES([room]) {
    const conv = this.conversations.get(key(room || ""));
    if (!conv) return;
    conv.namesDone = true;
    if (conv.showNames) {
      conv.showNames = false;
      this.notice(key(room), `in ${room}: ${[...conv.members.values()].join(", ")}`);
    }
    this.ui.changed();
  }

  onMEMBERS([room, count]) {
    const conv = this.conversations.get(key(room || ""));
    if (conv && isDecimal(count)) {
      conv.count = Number(count);
      this.ui.changed();
    }
  }

  onROOM([room, count]) {
    if (!isRoom(room) || !isDecimal(count)) throw new Error("bad room");
    (this.roomList ||= []).push(`${room} (${count})`);
  }

  onENDROOMS() {
    const list = this.roomList || [];
    this.roomList = [];
    this.notice(this.current, list.length ? "rooms: " + list.join(", ") : "no rooms");
  }

  onGAP([room]) {
    if (this.conversations.has(key(room || ""))) {
      this.notice(key(room), `some messages in ${room} were missed: the relay no longer has them`);
    }
  }

  onENDHISTORY([room, how]) {
    const k = key(room || "");
    if (this.historyOpen[k] > 0) this.historyOpen[k] -= 1;
    const mode = this.historyMode[k] || "earlier";
    for (const [id, [count, reason]] of this.unreadable) {
      const [rk, sender] = id.split("\n");
      if (rk !== k) continue;
      this.unreadable.delete(id);
      if (count === 1) this.problem(k, `cannot read a message from ${sender} in ${room} (${mode}): ${reason}`);
      else this.problem(k, `${count} ${mode} messages from ${sender} in ${room} could not be read` +
                           (reason.includes("does not authenticate") ? " — a different passphrase?" : `: ${reason}`));
    }
    const conv = this.conversations.get(k);
    if (how === "more" && conv && conv.joined) {
      this.historyOpen[k] = (this.historyOpen[k] || 0) + 1;
      this.send("HISTORY", conv.name, "after", String(this.lastId[k] || 0));
    }
  }

  async onTOPIC([room, setter, when, payload]) {
    const k = key(room || "");
    const conv = this.conversations.get(k);
    if (!conv || !conv.joined) return;
    const asked = this.topicAsked?.delete(k);
    if (!setter) {
      if (asked) this.notice(k, `${conv.name} has no topic; /topic text sets one`);
      return;
    }
    if (!isNick(setter) || !isDecimal(when || "") || !payload) throw new Error("bad TOPIC");
    // Kept by the relay, so old by nature: no freshness check, as for history.
    const opened = await this.open(payload, conv.name, setter, true);
    if (opened.error) return this.problem(k, `cannot read the topic of ${conv.name} set by ${setter}: ${opened.error}`);
    if (!opened.text.startsWith(TOPIC_MARKER)) return this.problem(k, `the topic of ${conv.name} is not a topic (a message passed off as one?); ignored`);
    const mark = this.nick && key(setter) === key(this.nick) ? "" : await this.trusted(setter, conv.name, k, opened);
    if (mark === null) return; // not shown as the setter's (told why)
    conv.topic = opened.text.slice(TOPIC_MARKER.length);
    this.notice(k, `topic: ${conv.topic} (set by ${setter}${mark ? " (unsigned)" : ""})`);
    this.ui.changed();
  }

  async cmd_topic(args) {
    const conv = this.conversations.get(this.current);
    if (!conv || !conv.room || !conv.joined) return this.problem(this.current, "/topic is for rooms: switch to one first");
    if (!args) {
      (this.topicAsked ||= new Set()).add(this.current);
      return this.send("TOPIC", conv.name);
    }
    const payload = await this.cipher.encrypt(TOPIC_MARKER + args, conv.name, this.nick);
    if (payload.length > 2048) return this.problem(this.current, "topic too long once encrypted (at most 2048 characters)");
    this.send("TOPIC", conv.name, payload);
  }

  onPING([token]) {
    this.send("PONG", ...(token ? [token] : []));
  }

  onPONG() {}

  async onMSG([from, target, payload], tags) {
    if (!isNick(from) || !(isNick(target) || isRoom(target)) || !payload) throw new Error("bad MSG");
    const me = key(this.nick || "");
    let history = false;
    let conv;
    if (!target.startsWith("#")) {
      // Addressed to us, and never history (the relay keeps none of these).
      if (key(target) !== me) return this.problem(null, `ignored a private message from ${from} addressed to ${target}, not you`);
      if ("history" in tags) return this.problem(null, `ignored a private message from ${from} marked as history (replayed?)`);
      conv = key(from);
    } else {
      conv = key(target);
      const room = this.conversations.get(conv);
      if (!room || !room.joined) return this.problem(null, `ignored a message from ${from} for ${target}: you are not in it`);
      // History only inside a reply we asked for: the tag alone is the relay's say-so.
      history = "history" in tags && this.historyOpen[conv] > 0;
      if ("history" in tags && !history) return this.problem(conv, `ignored a message from ${from} in ${target} marked as history, unasked`);
      if (!history && key(from) === me) return; // our own, sent back: shown when sent
      if (isDecimal(tags.id || "")) {
        if (Number(tags.id) <= (this.lastId[conv] || 0)) return; // seen (history overlapping live)
        this.seeId(conv, Number(tags.id));
      }
    }
    const opened = await this.open(payload, target, from, history);
    if (opened.error) {
      if (history) {
        const id = conv + "\n" + from;
        const entry = this.unreadable.get(id) || [0, opened.error];
        entry[0] += 1;
        this.unreadable.set(id, entry);
        return;
      }
      this.problem(conv, `cannot read a message from ${from} ${target.startsWith("#") ? "in " + target : "(private)"}: ${opened.error}`);
      if (opened.error.includes("session") && this.identity && !this.reannounced.has(key(from))) {
        // keyed to a session we had before a reload, or to theirs we have
        // not seen: exchange session keys again, so the next one reads
        this.reannounced.add(key(from));
        await this.sendPlainControl(from, KEYREQ_MARKER);
      }
      return;
    }
    const mark = key(from) !== me || opened.signer ? await this.trusted(from, target, conv, opened) : "";
    if (mark === null) return;
    if (opened.text.startsWith(KEYREQ_MARKER) || opened.text.startsWith(KEY_MARKER)) {
      // keys asked for, or given (the envelope carried them): nothing to show
      if (!target.startsWith("#") && !history && opened.signer && this.identity) {
        const encoded = opened.text.slice(opened.text.indexOf(":") + 1);
        await this.sessionAnnounced(from, encoded);
        // answered once per session of theirs (a restarted one asks again)
        if (opened.text.startsWith(KEYREQ_MARKER) && !this.keysAnswered.has(key(from) + " " + encoded)) {
          this.keysAnswered.add(key(from) + " " + encoded);
          await this.sendPlainControl(from, KEY_MARKER);
        }
      }
      return;
    }
    if (this.ignored.has(key(from)) && key(from) !== me) return; // /ignore: nothing of theirs, files included
    if (opened.text.startsWith(FILE_MARKER)) {
      let fields;
      try {
        fields = decodeFile(opened.text);
      } catch (e) {
        return this.problem(conv, `bad file message from ${from}: ${e.message}`);
      }
      // Offers in history are old news; our own come back only from history.
      if (!history && key(from) !== me) {
        this.conversation(target.startsWith("#") ? target : from, !target.startsWith("#"));
        await this.transfers.handle(from, target, fields);
      }
      return;
    }
    if (opened.text.startsWith(AWAY_MARKER)) {
      if (!history && !target.startsWith("#")) {
        const away = opened.text.slice(AWAY_MARKER.length).trim().slice(0, MAX_REASON);
        if (away) this.awayOf.set(key(from), away);
        else this.awayOf.delete(key(from));
        this.notice(conv, away ? `${from} is away: ${away}` : `${from} is back`);
      }
      return;
    }
    const shown = present(opened.text);
    if (!shown) return;
    this.conversation(target.startsWith("#") ? target : from, !target.startsWith("#"));
    this.remember(conv, [from, target, payload, tags.id || "", 0]);
    this.show(conv, { kind: "msg", from, text: shown.text, action: shown.action, time: opened.sentMs,
                      history: history ? this.historyMode[conv] : null, mention: this.mentions(shown.text),
                      unsigned: mark === "unsigned",
                      notPrivate: Boolean(this.identity && opened.signer && !target.startsWith("#") && !opened.private) });
    if (!target.startsWith("#") && this.awayText !== null && !this.awayTold.has(key(from))) {
      this.awayTold.add(key(from));
      await this.sendControl(from, AWAY_MARKER + this.awayText);
    }
    this.save();
  }

  async open(payload, target, from, history) {
    try {
      return await this.cipher.open(payload, target, from, history);
    } catch (e) {
      if (e instanceof DecryptError) return { error: e.message };
      throw e;
    }
  }

  seeId(conv, id) {
    if (id > (this.lastId[conv] || 0)) this.lastId[conv] = id;
  }

  mentions(text) {
    if (!this.nick) return false;
    const me = key(this.nick);
    return key(text).split(/[^\p{L}\p{N}_.-]+/u).includes(me);
  }

  // --- what the user does -------------------------------------------------------------

  typed(text) {
    return this.run(() => this.command(text));
  }

  async command(text) {
    if (!text.trim()) return;
    if (!this.ready && !/^\/(quit|help|clear)\b/.test(text)) {
      this.pending.push(text);
      this.notice(this.current, "not connected yet: this goes out once signed in");
      return;
    }
    if (text.startsWith("//")) return await this.say(text.slice(1));
    if (!text.startsWith("/")) return await this.say(text);
    const [command, ...rest] = text.slice(1).split(" ");
    const args = rest.join(" ").trim();
    const handler = this["cmd_" + command.toLowerCase()];
    if (!handler) return this.problem(this.current, `unknown command /${command} — /help lists them`);
    await handler.call(this, args);
  }

  async say(text) {
    const conv = this.conversations.get(this.current);
    if (!conv) return this.problem(null, "you are not in a room: /join #room first");
    text = text.replace(/^\x1f+/, "") || "?";
    if (conv.room) {
      if (!conv.joined) return this.problem(this.current, `you are not in ${conv.name}: /join ${conv.name}`);
      return await this.sendRoom(conv.name, text);
    }
    return await this.sendPrivate(conv.name, text);
  }

  async sendRoom(room, text, shown = true) {
    const payload = await this.cipher.encrypt(text, room, this.nick);
    const cid = `${this.cidBase}-${this.cidNext++}`;
    if (!this.fits(room, payload, cid)) return;
    this.unacked.set(cid, { room, payload, nick: this.nick });
    if (shown) this.own(key(room), room, text, cid);
    this.send({ cid }, "MSG", room, payload);
    this.save();
  }

  async sendPrivate(nick, text, shown = text) {
    if (this.identity && this.known.pending.has(key(nick))) {
      // someone writes under this nick with keys that are not the pinned ones
      return this.problem(key(nick), `not sent: ${nick}'s key changed; compare safety numbers with /verify ${nick} first`);
    }
    if (this.wantsKeys(nick)) return this.awaitKeys(nick, text, shown);
    const payload = await this.cipher.encrypt(text, nick, this.nick);
    if (!this.fits(nick, payload, null)) return;
    this.privatePending.push([nick, shown]);
    this.send("MSG", nick, payload);
  }

  /** A file-transfer message (files.js): encrypted like chat, never shown as text. */
  sendControl(target, text) {
    if (!this.ready) return Promise.resolve();
    if (target.startsWith("#")) return this.sendRoom(target, text, false);
    return this.sendPrivate(target, text, null);
  }

  // --- per-user keys (aes3, identity.js) ------------------------------------------------

  peerAgree(nick) {
    const k = key(nick);
    const keys = this.known.keysOf(k);
    return keys && !this.known.pending.has(k) ? keys.agree : null;
  }

  wantsKeys(nick) {
    return Boolean(this.identity) && this.cipher.scheme === "aes3" && !this.cipher.privateTo(nick) && !this.noKey.has(key(nick));
  }

  async awaitKeys(nick, text, shown) {
    const k = key(nick);
    let waiting = this.waitingKey.get(k);
    if (!waiting) {
      this.waitingKey.set(k, waiting = []);
      await this.sendPlainControl(nick, KEYREQ_MARKER);
      this.setTimer(() => this.run(() => this.keysLate(k)), KEY_WAIT_MS);
    }
    waiting.push([nick, text, shown]);
  }

  async sendPlainControl(nick, marker) {
    // signed (so it carries our identity's keys), our session's key inside;
    // never keyed to sessions (the other side cannot have ours yet)
    const payload = await this.cipher.encrypt(marker + b64url(this.cipher.session.public), nick, this.nick, false);
    this.privatePending.push([nick, null]);
    this.send("MSG", nick, payload);
  }

  async sessionAnnounced(from, encoded) {
    let session = null;
    try {
      session = encoded ? unb64url(encoded) : null;
    } catch (e) {
      session = null;
    }
    if (!session || session.length !== 32) return;
    this.sessions.set(key(from), session);
    this.reannounced.delete(key(from));
    await this.keysKnown(key(from));
  }

  async keysKnown(k, late = false) {
    if (!late && !this.sessions.has(k)) return; // their session key comes with their answer
    const waiting = this.waitingKey.get(k) || [];
    this.waitingKey.delete(k);
    for (const [nick, text, shown] of waiting) if (this.ready) await this.sendPrivate(nick, text, shown);
  }

  async keysLate(k) {
    const waiting = this.waitingKey.get(k);
    if (!waiting || !waiting.length) return;
    this.noKey.add(k);
    const nick = waiting[0][0];
    this.problem(k, this.peerAgree(nick)
      ? `${nick} did not send a session key: your private message goes keyed to your two identities, without forward secrecy`
      : `${nick} did not send their keys (an older client?): your private message goes keyed by the ` +
        "passphrase alone, which every member can read");
    await this.keysKnown(k, true);
  }

  /** null: not to be shown as from's (the user was told); else "" or "unsigned". */
  async trusted(from, target, conv, opened) {
    if (!this.identity) return "";
    const k = key(from);
    const signer = opened.signer;
    if (!signer) {
      if (this.known.keysOf(k)) {
        this.problem(conv, `a message under ${from}'s name without ${from}'s signature (they sign theirs) — not shown as ${from}`);
        return null;
      }
      return "unsigned";
    }
    if (this.nick && k === key(this.nick) && sameKeys(signer, this.identity.public)) return "";
    const verdict = this.known.check(k, signer);
    if (verdict === CHANGED) {
      if (!sameKeys(this.flagged.get(k), signer)) {
        this.flagged.set(k, signer);
        this.problem(conv, `${from}'s key changed — not shown as ${from}; /verify ${from}`);
      }
      const held = this.held.get(k) || [];
      held.push([target, opened.text]);
      this.held.set(k, held.slice(-HELD_PER_NICK));
      return null;
    }
    if (verdict === NEW) {
      this.notice(conv, `${from}'s key: ${await fingerprint(signer)} (first seen, trusted from now on; /verify ${from} to compare safety numbers)`);
    }
    return "";
  }

  async cmd_verify(args) {
    if (!isNick(args)) return this.problem(this.current, "usage: /verify nick");
    if (!this.identity) return this.problem(this.current, "this browser has no identity keys");
    const k = key(args);
    const keys = this.known.pending.get(k) || this.known.keysOf(k);
    if (!keys) return this.problem(this.current, `no keys seen from ${args} yet: they must write something first`);
    this.notice(this.current, `safety number with ${args}: ${await safetyNumber(this.identity.public, keys)} — compare it ` +
                              `with ${args} in person or on a call: it is the same on both sides`);
    const changed = this.known.pending.has(k);
    this.known.accept(k, keys);
    this.flagged.delete(k);
    this.notice(this.current, `${args}'s key ${await fingerprint(keys)} is now verified`);
    for (const [target, text] of changed ? this.held.get(k) || [] : []) {
      const conv = target.startsWith("#") ? key(target) : k;
      this.show(conv, { kind: "msg", from: args, text, action: false, time: this.now(), held: true });
    }
    this.held.delete(k);
    await this.keysKnown(k);
  }

  async keyStatus(nick) {
    if (!this.identity) return "";
    const k = key(nick);
    if (this.known.pending.has(k)) return `; key CHANGED to ${await fingerprint(this.known.pending.get(k))}, not accepted (/verify ${nick})`;
    const keys = this.known.keysOf(k);
    if (!keys) return "; no key seen (unsigned so far)";
    return `; key ${await fingerprint(keys)}, ${this.known.isVerified(k) ? "verified" : `not verified (/verify ${nick})`}`;
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

  fits(target, payload, cid) {
    const size = new TextEncoder().encode(`@cid=${cid || ""} MSG ${target} ${payload}`).length;
    if (size <= this.maxLine) return true;
    this.problem(this.current, `message too long to send (${size} bytes once encrypted; the limit is ${this.maxLine}): split it`);
    return false;
  }

  own(conv, target, text, cid) {
    this.conversation(target, !target.startsWith("#"));
    const shown = present(text) || { text, action: false };
    this.show(conv, { kind: "msg", own: true, from: this.nick, text: shown.text, action: shown.action, time: this.now(),
                      cid, pending: Boolean(cid) });
  }

  async cmd_me(args) {
    if (!args) return this.problem(this.current, "usage: /me action (e.g. /me waves)");
    const conv = this.conversations.get(this.current);
    if (!conv) return this.problem(null, "you are not in a room: /join #room first");
    if (conv.room) return await this.sendRoom(conv.name, ACTION_MARKER + args);
    return await this.sendPrivate(conv.name, ACTION_MARKER + args);
  }

  async cmd_join(args) {
    const room = args.split(" ")[0];
    const name = room.startsWith("#") ? room : "#" + room;
    if (!isRoom(name)) return this.problem(this.current, "usage: /join #room (letters, digits, _ - . after the #)");
    this.switchTo = key(name);
    this.conversation(name);
    await this.join(name);
  }

  cmd_part(args) {
    let [room, ...reason] = args.split(" ");
    if (!room.startsWith("#")) {
      reason = args ? [args] : [];
      room = this.conversations.get(this.current)?.name || "";
    }
    if (!isRoom(room)) return this.problem(this.current, "usage: /part [#room] [reason]");
    this.send("PART", room, ...(reason.join(" ").trim() ? [reason.join(" ").trim()] : []));
  }

  async cmd_msg(args) {
    const space = args.indexOf(" ");
    const nick = space < 0 ? args : args.slice(0, space);
    const text = space < 0 ? "" : args.slice(space + 1).trim();
    if (!isNick(nick) || !text) return this.problem(this.current, "usage: /msg nick text");
    // A page has room for it: the conversation opens, as a click on a name does.
    this.conversation(nick, true);
    this.setCurrent(key(nick));
    await this.sendPrivate(nick, text);
  }

  cmd_query(args) {
    const nick = args.split(" ")[0];
    if (!isNick(nick)) return this.problem(this.current, "usage: /query nick");
    this.conversation(nick, true);
    this.setCurrent(key(nick));
  }

  cmd_nick(args) {
    const problem = nickProblem(args);
    if (problem) return this.problem(this.current, `cannot use that nick: ${problem}`);
    this.send("NICK", args);
  }

  cmd_names() {
    const conv = this.conversations.get(this.current);
    if (!conv || !conv.room) return this.problem(this.current, "/names lists a room's members: switch to a room first");
    conv.showNames = true;
    this.send("NAMES", conv.name);
  }

  cmd_rooms() {
    this.roomList = [];
    this.send("ROOMS");
  }

  cmd_window(args) {
    const shown = [...this.conversations].filter(([, c]) => !c.room || c.joined);
    const n = Number(args);
    if (!/^[1-9][0-9]*$/.test(args) || n > shown.length) {
      return this.notice(this.current, "conversations: " + shown.map(([, c], i) => `${i + 1} ${c.name}`).join(", "));
    }
    this.setCurrent(shown[n - 1][0]);
  }

  async cmd_whois(args) {
    if (!isNick(args)) return this.problem(this.current, "usage: /whois nick");
    const rooms = [...this.conversations.values()].filter((c) => c.room && c.members.has(key(args))).map((c) => c.name);
    const away = this.awayOf.get(key(args));
    this.notice(this.current, `${args} is ${rooms.length ? `in ${rooms.join(", ")} with you` : "in no room you share"}` +
                (away ? `; away: ${away}` : "") + (this.ignored.has(key(args)) ? "; ignored" : "") + await this.keyStatus(args));
  }

  cmd_away(args) {
    this.awayText = args.slice(0, 80) || null;
    this.awayTold.clear();
    this.notice(this.current, args ? `away: ${args} (sent once to whoever messages you privately)` : "you are back");
  }

  cmd_ignore(args) {
    if (!args) return this.notice(this.current, this.ignored.size ? `ignoring ${[...this.ignored.values()].join(", ")}` : "ignoring nobody");
    if (!isNick(args)) return this.problem(this.current, "usage: /ignore nick");
    this.ignored.set(key(args), args);
    this.notice(this.current, `ignoring ${args} (messages and files) until /unignore ${args} or you leave`);
  }

  cmd_unignore(args) {
    if (!this.ignored.delete(key(args || ""))) return this.problem(this.current, args ? `not ignoring ${args}` : "usage: /unignore nick");
    this.notice(this.current, `no longer ignoring ${args}`);
  }

  cmd_clear() {
    if (this.current) delete this.transcript[this.current];
    this.ui.clear?.(this.current);
    this.save();
  }

  cmd_help() {
    for (const line of HELP) this.notice(this.current, line);
  }

  cmd_quit(args) {
    this.quit(args);
  }

  async becomeReady() {
    this.ready = true;
    this.triedNicks = 0;
    // What was sent but never acknowledged goes again with the same cid
    // (the relay drops any it already relayed); then what was typed meanwhile.
    for (const [cid, entry] of this.unacked) {
      const conv = this.conversations.get(key(entry.room));
      if (!conv || !conv.joined) {
        this.unacked.delete(cid);
        this.ui.refused(cid);
        continue;
      }
      if (key(entry.nick || "") === key(this.nick)) {
        this.send({ cid }, "MSG", conv.name, entry.payload);
      } else {
        await this.reencrypt(cid, entry, conv.name);
      }
    }
    const typed = this.pending;
    this.pending = [];
    for (const text of typed) await this.command(text);
    this.ui.changed();
  }

  async reencrypt(cid, entry, room) {
    // The envelope binds the sender's nick, which changed (alice_ now):
    // open our own envelope (no plaintext is kept) and seal it again.
    const opened = await this.open(entry.payload, entry.room, entry.nick, true);
    if (opened.error) {
      this.unacked.delete(cid);
      this.ui.refused(cid);
      return;
    }
    entry.payload = await this.cipher.encrypt(opened.text, room, this.nick);
    entry.nick = this.nick;
    this.send({ cid }, "MSG", room, entry.payload);
  }

  // --- conversations ---------------------------------------------------------------------

  conversation(name, privateChat = false) {
    const k = key(name);
    let conv = this.conversations.get(k);
    if (!conv) {
      conv = { name, room: name.startsWith("#"), joined: false, members: new Map(), unread: 0, mentions: 0 };
      this.conversations.set(k, conv);
      if (privateChat || this.current === null) this.ui.changed();
    }
    return conv;
  }

  setCurrent(k) {
    this.current = k;
    const conv = this.conversations.get(k);
    if (conv) conv.unread = conv.mentions = 0;
    this.ui.current(k);
    this.ui.changed();
    this.save();
  }

  show(conv, entry) {
    const c = this.conversations.get(conv);
    if (c && conv !== this.current && !entry.own && !entry.history) {
      c.unread += 1;
      if (entry.mention) c.mentions += 1;
      this.ui.changed();
    }
    this.ui.line(conv, entry);
  }

  notice(conv, text) {
    this.ui.line(conv ?? this.current, { kind: "notice", text, time: this.now() });
  }

  problem(conv, text) {
    this.ui.line(conv ?? this.current, { kind: "problem", text, time: this.now() });
  }

  // --- a reload loses nothing -----------------------------------------------------------

  remember(conv, entry) {
    const list = (this.transcript[conv] ||= []);
    list.push(entry);
    if (list.length > TRANSCRIPT) list.splice(0, list.length - TRANSCRIPT);
  }

  save() {
    this.replay.save();
    if (!this.store || this.quitting) return;
    const rooms = [...this.conversations.values()].filter((c) => !c.room || c.joined).map((c) => c.name);
    try {
      this.store.setItem("chatsvc.session", JSON.stringify({
        v: 1, nick: this.nick || this.wantedNick, rooms, current: this.current, lastId: this.lastId,
        cidBase: this.cidBase, cidNext: this.cidNext, unacked: [...this.unacked],
        transcript: this.transcript,
      }));
    } catch (e) {
      // storage full: a reload then shows less; nothing else depends on it
    }
  }

  restore() {
    let saved;
    try {
      saved = JSON.parse((this.store && this.store.getItem("chatsvc.session")) || "null");
    } catch (e) {
      saved = null;
    }
    if (!saved || saved.v !== 1 || key(saved.nick || "") !== key(this.wantedNick)) return;
    this.restored = saved;
    this.cidBase = saved.cidBase || this.cidBase;
    this.cidNext = saved.cidNext || 1;
    this.lastId = saved.lastId || {};
    this.unacked = new Map(saved.unacked || []);
    this.transcript = saved.transcript || {};
    for (const name of saved.rooms || []) {
      // (quietly: the view is not listening yet)
      this.conversations.set(key(name), { name, room: name.startsWith("#"), joined: name.startsWith("#"),
                                          members: new Map(), unread: 0, mentions: 0 });
    }
    this.current = saved.current ?? null;
  }

  /** After a reload: show again what was shown (decrypted afresh, never stored in clear). */
  async replayTranscript() {
    if (!this.restored) return;
    for (const [conv, entries] of Object.entries(this.transcript)) {
      for (const [from, target, payload, , own] of entries) {
        const opened = await this.open(payload, target, from, true);
        const shown = opened.error ? null : present(opened.text);
        if (!shown) continue;
        this.ui.line(conv, { kind: "msg", own: Boolean(own), from, text: shown.text, action: shown.action, time: opened.sentMs });
      }
    }
    for (const [cid, entry] of this.unacked) {
      const opened = await this.open(entry.payload, entry.room, entry.nick, true);
      const shown = opened.error ? null : present(opened.text);
      if (shown) this.ui.line(key(entry.room), { kind: "msg", own: true, from: entry.nick, text: shown.text, action: shown.action,
                                                 time: opened.sentMs, cid, pending: true });
    }
    if (this.current) this.ui.current(this.current);
    this.ui.changed();
  }
}
