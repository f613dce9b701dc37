// What goes out: messages encrypted for their conversation, private ones
// through the key exchange (docs/trust.md), and the bookkeeping of the
// relay's answers. One PeerKeys machine per person; the Sender is the
// effects they act through: key requests, retries on the session's timers,
// and what was held encrypted once the keys are known, never weaker than
// both sessions unless the user asked (/unsafe). The twin of
// chatsvc/client/sending.py.

import { casefold } from "./casefold.js";
import { b64url } from "./crypto.js";
import { KEYREQ_MARKER } from "./inbound.js";
import { PeerKeys } from "./keyexchange.js";

export class Sender {
  constructor(session) {
    this.session = session;
    this.peers = new Map(); // nick key -> PeerKeys
    this.timers = new Map(); // nick key -> armed timer
    this.privatePending = []; // [nick, shown|null, kind] awaiting OK MSG or ERROR, oldest first
  }

  peer(nick) {
    const k = casefold(nick);
    if (!this.peers.has(k)) this.peers.set(k, new PeerKeys(this.effects(nick)));
    return this.peers.get(k);
  }

  sessionOf(nick) {
    return this.peers.get(casefold(nick))?.session || null;
  }

  effects(nick) {
    const s = this.session;
    const k = casefold(nick);
    const disarm = () => {
      if (this.timers.has(k)) s.clearTimer(this.timers.get(k));
      this.timers.delete(k);
    };
    return {
      request: () => this.sendKeys(nick, KEYREQ_MARKER),
      arm: (seconds) => {
        disarm();
        this.timers.set(k, s.setTimer(() => s.run(() => this.peer(nick).timeout()), seconds * 1000));
      },
      disarm,
      deliver: (message) => this.sendNow(message, true),
      tellUnanswered: (held) => s.problem(k, `${nick} did not answer a key exchange (3 tries in 35 s): ${held} private ` +
        `message${held !== 1 ? "s wait" : " waits"}; /retry ${nick} asks again, /unsafe ${nick} sends ` +
        `${held !== 1 ? "them" : "it"} without forward secrecy`),
      deliverWeaker: (message) => this.sendNow(message, false, true),
      dropped: (messages) => {
        const texts = messages.map((m) => m.shown).filter((t) => t !== null && t !== undefined);
        if (texts.length) s.problem(k, `nobody is called ${nick} — not sent: ${texts.join("; ")}`);
      },
    };
  }

  /** A private message (shown: what to show once delivered, null: nothing), through the recipient's key exchange. */
  async send(target, text, shown = null) {
    const s = this.session;
    if (!s.trust.signing || s.cipher.scheme !== "aes3") return this.sendNow({ nick: target, text, shown }, true);
    if (s.trust.inDoubt(target)) {
      s.problem(casefold(target), `not sent: ${target}'s key changed; compare safety numbers with /verify ${target} first`);
      return false;
    }
    await this.peer(target).send({ nick: target, text, shown });
    return true;
  }

  async sendNow(message, useSession, told = false) {
    const s = this.session;
    const target = message.nick;
    if (!s.nick) {
      if (message.shown !== null) s.problem(casefold(target), `not connected — not sent to ${target}: ${message.shown}`);
      return false;
    }
    if (s.trust.signing && s.cipher.scheme === "aes3" && !told && !s.cipher.privateTo(target)) {
      if (message.shown !== null) s.problem(casefold(target), `not sent: ${target}'s keys are not known for sure — ${message.shown}`);
      return false;
    }
    const payload = await s.cipher.encrypt(message.text, target, s.nick, useSession);
    if (!s.fits(target, payload)) return false;
    if (told) {
      s.problem(casefold(target), `as you asked, sent to ${target} ` + (s.trust.peerAgree(target)
        ? "keyed to your two identities, without forward secrecy" : "keyed by the passphrase alone, which every member can read"));
    }
    this.privatePending.push([target, message.shown, "message"]);
    s.send("MSG", target, payload);
    return true;
  }

  /** A key request or answer: signed, our session's key inside; keyed to their identity if pinned. */
  async sendKeys(nick, marker) {
    const s = this.session;
    if (!s.nick) return;
    const payload = await s.cipher.encrypt(marker + b64url(s.cipher.session.public), nick, s.nick, false);
    this.privatePending.push([nick, null, "keys"]);
    s.send("MSG", nick, payload);
  }

  /** OK MSG for a private message: [nick, what to show as sent] (shown null: nothing). */
  delivered() {
    const [nick, shown] = this.privatePending.shift() || [];
    return [nick, shown ?? null];
  }

  /** ERROR no-such-nick for the oldest private message in flight. */
  async undeliverable(text) {
    const [nick, shown, kind] = this.privatePending.shift();
    if (kind === "keys") await this.peer(nick).gone(); // what waited for their keys went nowhere: say so at once
    else if (shown !== null) this.session.problem(casefold(nick), `${text} — not delivered: ${shown}`);
  }

  connectionLost() {
    for (const [nick, shown] of this.privatePending) {
      if (shown !== null) this.session.problem(casefold(nick), `a private message to ${nick} may not have been delivered: ${shown}`);
    }
    this.privatePending = [];
  }

  async retry(nick) {
    const machine = this.peer(nick);
    if (machine.state !== "unanswered") return this.session.problem(null, `no key exchange with ${nick} is waiting for you`);
    await machine.retry();
    this.session.notice(null, `asking ${nick} for their keys again`);
  }

  async force(nick) {
    const machine = this.peer(nick);
    if (!machine.held.length) return this.session.problem(null, `no private message to ${nick} is waiting`);
    await machine.force();
  }
}
