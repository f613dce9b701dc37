// The connection's life, from the page's side: the greeting, capabilities
// and the key for this relay's salt, registering a nick (and a variant while
// reconnecting), joining with proofs and asking for history, the relay's
// errors, a close and the retries after it, and what goes out again once
// back in every room. As chatsvc/client/registration.py.

import { casefold } from "./casefold.js";
import { isDecimal, isNick } from "./proto.js";

export const HELLO_TIMEOUT_MS = 10000;
const RETRY_MS = [1000, 2000, 4000, 8000, 15000, 30000];

export class Registration {
  constructor(session) {
    this.session = session;
    this.greeted = false;
    this.retries = 0;
    this.triedNicks = 0;
    this.helloTimer = null;
    this.retryTimer = null;
  }

  HELLO() {
    const s = this.session;
    s.clearTimer(this.helloTimer);
    s.ui.status(this.greeted ? "reconnected; signing in…" : "connected; signing in…");
    this.greeted = true;
    s.send("CAPS");
  }

  async CAPS(tokens) {
    const s = this.session;
    const values = Object.fromEntries(tokens.map((t) => [t.split("=")[0], t.slice(t.indexOf("=") + 1)]));
    if (isDecimal(values["max-line"] || "")) s.maxLine = Number(values["max-line"]);
    const salt = values.salt || "";
    if (!salt || !/^[A-Za-z0-9_-]{16,64}$/.test(salt) || !("join-proof" in values)) return this.noCaps();
    if (s.cipher.salt !== salt) {
      s.ui.status("deriving this relay's key…");
      s.cipher.useV2(s.passphrase === null ? null : await s.kdf.v2(s.passphrase, salt), salt);
    }
    await this.keysReady();
  }

  async noCaps() {
    this.session.problem(null, "this relay is older: messages use scheme aes1 (no per-relay salt; anyone " +
                               "who reaches it can fetch room history to guess the passphrase)");
    await this.keysReady();
  }

  async keysReady() {
    await this.session.reload.replayTranscript();
    this.session.send("NICK", this.session.wantedNick);
  }

  async nickAccepted(nick) {
    const s = this.session;
    if (!isNick(nick)) throw new Error("bad nick");
    if (s.nick !== null) return;
    s.nick = nick;
    this.retries = 0;
    if (casefold(nick) !== casefold(s.wantedNick)) s.notice(null, `you are ${nick} (${s.wantedNick} was taken meanwhile)`);
    s.ui.status(`signed in as ${nick}`);
    const rooms = s.conversations.joinedRooms();
    let joining = rooms.length ? rooms : [s.firstRoom, ...s.sealing.keyring.rooms().filter((r) => casefold(r) !== casefold(s.firstRoom))];
    if (s.cipher.linkOnly) joining = joining.filter((r) => s.sealing.isSealed(r)); // no passphrase: sealed rooms only
    if (!joining.length) {
      s.problem(null, "without the server's passphrase only sealed rooms can be entered, and this browser holds none");
      return this.becomeReady();
    }
    s.presence.awaiting = new Set(joining.map(casefold));
    for (const room of joining) await this.join(room);
    s.save();
  }

  async join(room) {
    const s = this.session;
    if (await s.sealing.earlier(room)) return; // their history first; this JOIN follows (sealing.js)
    const proof = await s.cipher.joinProof(room);
    if (proof && !s.sealing.isSealed(room)) s.presence.willCheck(room); // a sealed room shares its name with the ordinary one
    s.send("JOIN", room, ...(proof ? [proof] : []));
    s.send("HISTORY", room, ...s.delivery.historyRequest(room));
  }

  /** A refused NICK while signing in; true if handled here. */
  nickRefused(code, text) {
    const s = this.session;
    if ((code !== "nick-taken" && code !== "nick-invalid") || s.nick !== null) return false;
    if (code === "nick-taken" && s.conversations.map.size && this.triedNicks < 9) {
      // Back after a drop: the old connection may still hold the nick.
      this.triedNicks += 1;
      s.send("NICK", (s.wantedNick.slice(0, 30) + "_" + (this.triedNicks > 1 ? this.triedNicks : "")).slice(0, 32));
      return true;
    }
    s.quitting = true;
    s.ended(text || code);
    if (s.ws) s.ws.close();
    return true;
  }

  closed(event) {
    const s = this.session;
    s.clearTimer(this.helloTimer);
    s.reclaim.stop();
    const wasReady = s.ready;
    s.ws = null;
    s.nick = null;
    s.ready = false;
    s.delivery.connectionLost();
    s.sender.connectionLost();
    if (s.quitting) return s.ended("you left");
    if (event && event.code === 4003) s.problem(null, "the relay closed the connection: " + (event.reason || "refused"));
    if (wasReady) s.problem(null, "connection to the relay lost");
    this.scheduleRetry();
  }

  scheduleRetry() {
    const s = this.session;
    const delay = RETRY_MS[Math.min(this.retries, RETRY_MS.length - 1)];
    this.retries += 1;
    s.ui.status(`offline — trying again in ${Math.round(delay / 1000)} s`);
    this.retryTimer = s.setTimer(() => {
      this.retryTimer = null;
      s.connect();
    }, delay);
  }

  /** The network is back (the browser says so): try now, not at the end of the backoff. */
  retryNow() {
    const s = this.session;
    if (s.ws || s.quitting || this.retryTimer === null) return;
    s.clearTimer(this.retryTimer);
    this.retryTimer = null;
    s.connect();
  }

  async becomeReady() {
    const s = this.session;
    s.ready = true;
    this.triedNicks = 0;
    s.reclaim.consider();
    // What was sent but never acknowledged goes again with the same cid
    // (the relay drops any it already relayed); then what was typed meanwhile.
    for (const [cid, entry] of s.delivery.unacked) {
      const conv = s.conversations.get(casefold(entry.room));
      if (!conv || !conv.joined) {
        s.delivery.unacked.delete(cid);
        s.ui.refused(cid);
      } else if (casefold(entry.nick || "") === casefold(s.nick)) {
        s.send({ cid }, "MSG", conv.name, entry.payload);
      } else {
        await this.reencrypt(cid, entry, conv.name);
      }
    }
    const typed = s.pending;
    s.pending = [];
    for (const text of typed) await s.command(text);
    s.ui.changed();
  }

  async reencrypt(cid, entry, room) {
    // The envelope binds the sender's nick, which changed (alice_ now):
    // open our own envelope (no plaintext is kept) and seal it again.
    const s = this.session;
    const opened = await s.open(entry.payload, entry.room, entry.nick, true);
    if (opened.error) {
      s.delivery.unacked.delete(cid);
      s.ui.refused(cid);
      return;
    }
    entry.payload = await s.cipher.encrypt(opened.text, room, s.nick);
    entry.nick = s.nick;
    s.send({ cid }, "MSG", room, entry.payload);
  }
}
