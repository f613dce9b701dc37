// Taking our nick back. Back after a drop (or on another relay after a
// failover) as "rita_" because the old connection, a ghost, still held
// "rita", the page asks for "rita" again the moment the relay says the ghost
// is gone (its QUIT, or a NICK away from it), and every RECLAIM_EVERY_MS
// meanwhile. A refusal while reclaiming is silent; a nick the user chose
// (/nick) becomes the one wanted. As chatsvc/client/reclaim.py.

import { casefold } from "./casefold.js";

export const RECLAIM_EVERY_MS = 30000;

export class Reclaim {
  constructor(session) {
    this.session = session;
    this.timer = null; // the next try
    this.asking = false; // a NICK for the wanted nick is on its way
  }

  missing() {
    const s = this.session;
    return Boolean(s.ws) && s.nick !== null && casefold(s.nick) !== casefold(s.wantedNick);
  }

  /** Ready, or our nick changed: under a variant, try again later. */
  consider() {
    if (!this.missing()) return this.stop();
    if (this.timer === null) this.timer = this.session.setTimer(() => this.tryNow(), RECLAIM_EVERY_MS);
  }

  /** nick quit or took another name: if it is ours, ask for it now. */
  freed(nick) {
    if (this.missing() && casefold(nick) === casefold(this.session.wantedNick)) this.tryNow();
  }

  tryNow() {
    if (this.timer !== null) this.session.clearTimer(this.timer);
    this.timer = null;
    if (this.missing() && !this.asking) {
      this.asking = true;
      this.session.send("NICK", this.session.wantedNick);
    }
  }

  /** An ERROR for a NICK: true if it answered ours (then nothing is shown). */
  refused(code) {
    if (!this.asking || (code !== "nick-taken" && code !== "nick-invalid")) return false;
    this.asking = false;
    this.consider();
    return true;
  }

  /** Our nick changed (the relay's NICK line). */
  answered() {
    this.asking = false;
    this.consider();
  }

  /** Disconnected, quitting, or nothing to reclaim. */
  stop() {
    this.asking = false;
    if (this.timer !== null) this.session.clearTimer(this.timer);
    this.timer = null;
  }
}
