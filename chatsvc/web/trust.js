// Who wrote it: the page's use of the inbound policy's attribution
// (docs/trust.md) with this browser's identity and pinned keys. It pins a
// first-seen key, flags a changed one and holds its messages, refuses what
// is under a pinned nick without its signature or under your own nick with
// another key, marks look-alikes, and answers /verify and /whois. The twin
// of chatsvc/client/trust.py.

import { casefold } from "./casefold.js";
import { fingerprint, safetyNumber, sameKeys } from "./crypto.js";
import { attribution } from "./inbound.js";
import { confirmation } from "./verification.js";

export const HELD_PER_NICK = 20;
/** What a refused /verify answer says (verification.js's reason codes). */
export const REFUSALS = {
  "no-keys": (who) => `no keys seen from ${who} yet: they must write something first`,
  "not-compared": (who) => `compare first: /verify ${who} shows the safety number to compare`,
  "changed-since": (who) => `${who}'s key changed since you compared: /verify ${who} shows the new number`,
  "mismatch": (who) => `that is not your safety number with ${who} — NOT verified; if you read it right, ` +
                       "someone may be between you: do not trust this key",
  "usage": (who) => `usage: /verify ${who} shows the number; /verify ${who} yes (or the number) once it matches`,
};
/** Verdicts under which the sender's keys are the ones pinned for their nick. */
export const TRUSTED = new Set(["first-seen", "pinned", "renamed"]);

export class Trust {
  /** own: this page's identity keys (null: it checks nothing); tell: {notice(conv, text, extra), problem(conv, text)}. */
  constructor(own, known, tell) {
    this.own = own;
    this.known = known;
    this.tell = tell;
    this.held = new Map(); // nick key -> [[target, text]] not shown as theirs
    this.told = new Set(); // "nick key fingerprint" look-alikes already named
    this.offered = new Map(); // nick key -> the safety number /verify showed
    this.firstSeen = new Map(); // room key -> nicks first seen in its history reply
  }

  get signing() {
    return Boolean(this.own);
  }

  /** How a verified signer relates to the keys pinned for sender: pinned, other or none. */
  relation(sender, signer) {
    if (!signer) return "none";
    return sameKeys(this.known.trustedKeys(casefold(sender)), signer) ? "pinned" : "other";
  }

  /** Decide whose message this is, act on it, and return the decision. conv: where to tell. */
  async attribute(sender, target, conv, opened, selves, fold = null) {
    const verdict = attribution(sender, opened.signer, this.own, selves, this.known.view());
    const k = casefold(sender);
    if (verdict.reason === "first-seen" && fold !== null) {
      // in a history reply: told in one line when it ends (firstSeenTold)
      this.known.pin(k, opened.signer);
      const names = this.firstSeen.get(casefold(fold)) || [];
      this.firstSeen.set(casefold(fold), [...names, sender]);
      return verdict;
    }
    if (verdict.reason === "renamed") {
      const verified = this.known.isVerified(verdict.was);
      this.known.pin(k, opened.signer, verified);
      this.tell.notice(conv, `${verdict.was} is now ${sender}: the same key${verified ? ", verified" : ""} (${await fingerprint(opened.signer)})`);
    } else if (verdict.pin) {
      this.known.pin(k, opened.signer);
      this.tell.notice(conv, `${sender}'s key: ${await fingerprint(opened.signer)} (first seen, trusted from now on; ` +
                             `/verify ${sender} to compare safety numbers)`);
    } else if (verdict.reason === "key-changed") {
      if (this.known.flag(k, opened.signer)) this.tell.problem(conv, `${sender}'s key changed — not shown as ${sender}; /verify ${sender}`);
      const held = this.held.get(k) || [];
      held.push([target, opened.text]);
      this.held.set(k, held.slice(-HELD_PER_NICK));
    } else if (verdict.reason === "unsigned-pinned") {
      this.tell.problem(conv, `a message under ${sender}'s name without ${sender}'s signature (they sign theirs) — not shown as ${sender}`);
    } else if (verdict.reason === "own-nick" || verdict.reason === "own-nick-unsigned") {
      const how = verdict.reason === "own-nick" ? "signed with another key" : "without your signature";
      this.tell.problem(conv, `a message under your nick ${sender} ${how} — not shown as yours (someone used your nick while you were away?)`);
    } else if (verdict.like) {
      const id = k + " " + (opened.signer ? await fingerprint(opened.signer) : "");
      if (!this.told.has(id)) {
        this.told.add(id);
        this.tell.problem(conv, `${sender} is not ${verdict.like}: a look-alike name with ${opened.signer ? "another key" : "no signature"}`);
      }
    }
    return verdict;
  }

  /** A history reply ended: the keys pinned on first use in it, in one line. */
  firstSeenTold(room) {
    const k = casefold(room);
    const names = this.firstSeen.get(k) || [];
    this.firstSeen.delete(k);
    if (names.length) this.tell.notice(k, firstSeenLine(names));
  }

  peerAgree(nick) {
    const keys = this.known.trustedKeys(casefold(nick));
    return keys ? keys.agree : null;
  }

  inDoubt(nick) {
    return this.known.pending.has(casefold(nick));
  }

  /**
   * /verify, in two steps: without an answer the safety number and how to
   * confirm; with "yes" (after seeing it) or the number typed back, the keys
   * marked verified. Returns the held messages now accepted.
   */
  async verify(conv, nick, answer = "") {
    const k = casefold(nick);
    const keys = this.known.pending.get(k) || this.known.keysOf(k);
    const number = keys ? await safetyNumber(this.own, keys) : null;
    const decision = confirmation(answer, this.offered.get(k) ?? null, number);
    if (decision.action === "show") {
      this.offered.set(k, number);
      this.tell.notice(conv, `safety number with ${nick}: ${number} — compare it with ${nick} in person or on a ` +
                             `call; if it is the same on both sides, type /verify ${nick} yes`, { confirm: nick });
      return [];
    }
    if (decision.action === "refuse") {
      this.tell.problem(conv, REFUSALS[decision.reason](nick));
      return [];
    }
    this.offered.delete(k);
    const changed = this.known.pending.has(k);
    this.known.accept(k, keys);
    this.tell.notice(conv, `${nick}'s key ${await fingerprint(keys)} is now verified`);
    const held = this.held.get(k) || [];
    this.held.delete(k);
    return changed ? held : [];
  }

  /** The keys pinned for nick are verified (and no other keys are in doubt). */
  verified(nick) {
    const k = casefold(nick);
    return !this.known.pending.has(k) && this.known.isVerified(k);
  }

  async keyStatus(nick) {
    if (!this.own) return "";
    const k = casefold(nick);
    if (this.known.pending.has(k)) return `; key CHANGED to ${await fingerprint(this.known.pending.get(k))}, not accepted (/verify ${nick})`;
    const keys = this.known.keysOf(k);
    if (!keys) return "; no key seen (unsigned so far)";
    return `; key ${await fingerprint(keys)}, ${this.known.isVerified(k) ? "verified" : `not verified (/verify ${nick})`}`;
  }
}

/** One line for the keys pinned on first use in a history reply. */
export function firstSeenLine(names) {
  if (names.length === 1) return `pinned the key of ${names[0]} on first use; /verify ${names[0]} to compare safety numbers`;
  return `pinned the keys of ${names.join(", ")} on first use; /verify nick to compare safety numbers`;
}
