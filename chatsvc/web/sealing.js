// Sealed rooms in the page's session -- the twin of
// chatsvc/client/sealing.py: /seal, /members, /invite, /invite-link,
// /remove, /rekey, /op; statements that arrive (decided by membership.js);
// moving to a new epoch's room. The keyring lives in the keyStore
// (localStorage) under "chatsvc-sealed". docs/encryption.md, Sealed rooms.

import { casefold } from "./casefold.js";
import { b64url, fingerprint, sameKeys } from "./crypto.js";
import * as membership from "./membership.js";
import * as sealed from "./sealed.js";

const STORE_KEY = "chatsvc-sealed";
const MAX_EARLIER = 3; // on a first join, the history of at most this many earlier epochs is read
const SECRET_SIZE = 32;

export const REFUSED = {
  "bad-signature": "its signature does not verify",
  "not-owner": "it was not signed and sent by an owner of the room",
  "wrong-room": "it names another room",
  "unasked": "it is for a sealed room you are not in",
  "stale": "it is older than what you hold (replayed?)",
  "bad-secret": "the room's key in it is not the one its owner signed",
  "not-member": "it does not list you as a member",
  "malformed": "it is damaged",
};

/** The sealed rooms held, kept in a localStorage-like store (the same shape as the terminal's sealed.json). */
export class Keyring {
  constructor(store = null) {
    this.store = store;
    this.held = new Map(); // room key -> Held
    this.names = new Map();
    this.removed = new Set();
    let data = {};
    try {
      data = JSON.parse((store && store.getItem(STORE_KEY)) || "{}");
    } catch (e) {
      data = {};
    }
    for (const [k, e] of Object.entries(data)) {
      const secrets = Object.fromEntries(Object.entries(e.secrets).map(([n, s]) => [Number(n), sealed.unb64(s, 32)]));
      this.held.set(k, new membership.Held({ room: e.room, epoch: e.epoch, secrets, statement: e.statement, signature: e.signature,
                                             linkOwner: e.link_owner ? sealed.unb64(e.link_owner, 32) : null, listed: e.listed }));
      this.names.set(k, e.name);
      if (e.removed) this.removed.add(k);
    }
  }

  get(room) {
    const k = casefold(room);
    return this.removed.has(k) ? null : this.held.get(k) || null;
  }

  rooms() {
    return [...this.held.keys()].filter((k) => !this.removed.has(k)).map((k) => this.names.get(k));
  }

  put(name, held) {
    const k = casefold(name);
    this.held.set(k, held);
    if (!this.names.has(k)) this.names.set(k, name);
    this.removed.delete(k);
    this.save();
  }

  remove(name) {
    this.removed.add(casefold(name));
    this.save();
  }

  save() {
    if (!this.store) return;
    const data = {};
    for (const [k, h] of this.held) {
      data[k] = { name: this.names.get(k), room: h.room, epoch: h.epoch,
                  secrets: Object.fromEntries(Object.entries(h.secrets).map(([n, s]) => [n, b64url(s)])),
                  statement: h.statement, signature: h.signature, link_owner: h.linkOwner ? b64url(h.linkOwner) : null,
                  listed: h.listed, removed: this.removed.has(k) };
    }
    this.store.setItem(STORE_KEY, JSON.stringify(data));
  }
}

/** An invitation link's room, kept (unless a newer epoch of it is held): its owner the one signer trusted. */
export function takeLink(link, store) {
  const keyring = new Keyring(store);
  const held = keyring.get(link.room);
  if (held && held.epoch >= link.epoch) return;
  keyring.put(link.room, new membership.Held({ room: casefold(link.room), epoch: link.epoch, secrets: { [link.epoch]: link.secret },
                                               linkOwner: link.owner }));
}

/** What a same-epoch statement changed, in words: "added dave to", "made carol an owner of" (as sealing.py). */
export function changes(before, after) {
  if (!before) return [];
  const had = new Set(before.members.map((m) => m.sign));
  const told = after.members.filter((m) => !had.has(m.sign)).map((m) => `added ${m.nick} to`);
  const nicks = new Map(after.members.map((m) => [m.sign, m.nick]));
  return told.concat(after.owners.filter((o) => !before.owners.includes(o)).map((o) => `made ${nicks.get(o) || "?"} an owner of`));
}

/** The new secret, boxed for each member (one whose key cannot take a box is left out, and said so). */
async function boxesFor(session, room, members, statement, secret) {
  const boxes = {};
  for (const m of members) {
    try {
      boxes[b64url(m.keys.sign)] = await sealed.sealBox(session.identity, m, statement, secret);
    } catch (e) { // a key that is no X25519 point: nothing can be sealed to it
      session.problem(casefold(room), `${m.nick}'s key cannot receive the new key of ${room}: they will be left out`);
    }
  }
  return boxes;
}

export class Sealing {
  constructor(session, keyring) {
    this.session = session;
    this.keyring = keyring;
    this.helloSent = new Set();
    this.masters = new Map(); // "room key epoch" -> room master (derived once)
    this.viewed = new Set(); // rooms whose earlier epochs' history was asked for this page load
    this.viewing = new Map(); // room key -> earlier epochs still to read, the first now
  }

  get me() {
    return this.session.identity ? this.session.identity.public : null;
  }

  /** What the cipher asks: the sealed room's master for its current epoch, or null. */
  async roomMaster(room) {
    const held = this.keyring.get(room);
    if (!held) return null;
    const epoch = (this.viewing.get(casefold(room)) || [held.epoch])[0];
    return this.masterOf(held, room, epoch);
  }

  async masterOf(held, room, epoch) {
    const id = `${casefold(room)} ${epoch}`;
    if (!this.masters.has(id)) this.masters.set(id, await sealed.roomMaster(held.secrets[epoch], room, epoch));
    return this.masters.get(id);
  }

  /**
   * The first join of a sealed room on a fresh load: first the history of its earlier epochs, each
   * joined under its own proof and left once its history is in, then the current one (as epochs.py).
   * True: started (the current JOIN waits).
   */
  async earlier(room) {
    const s = this.session;
    const k = casefold(room);
    const held = this.keyring.get(room);
    if (!held || this.viewed.has(k)) return false;
    this.viewed.add(k);
    const earlier = Object.keys(held.secrets).map(Number).filter((e) => e < held.epoch).sort((a, b) => a - b).slice(-MAX_EARLIER);
    if (!earlier.length || s.delivery.seenIn(room)) return false;
    this.viewing.set(k, earlier);
    await this.view(room, earlier[0]);
    return true;
  }

  async view(room, epoch) {
    const s = this.session;
    const held = this.keyring.get(room);
    s.presence.moving.add(casefold(room));
    s.send("JOIN", room, await sealed.joinProofOf(await this.masterOf(held, room, epoch), room));
    s.send("HISTORY", room, ...s.delivery.historyRequest(room));
  }

  /** An earlier epoch's history is in: leave it, and read the next (or join the current). */
  async historyEnd(room, more) {
    const s = this.session;
    const k = casefold(room);
    const viewing = this.viewing.get(k);
    if (!viewing || more) return;
    s.send("PART", room, "read an earlier epoch");
    s.delivery.forgetRoom(room); // the next epoch is another room to the relay
    viewing.shift(); // (what still comes from the room left is no longer read)
    if (viewing.length) return this.view(room, viewing[0]);
    this.viewing.delete(k);
    await s.registration.join(room);
  }

  /** /part of a sealed room: not rejoined, and /join finds the ordinary room again (its keys stay). */
  left(room) {
    if (!this.keyring.get(room)) return;
    this.keyring.remove(room);
    this.session.notice(casefold(room), `${room} is no longer one of your sealed rooms; its owners can invite you again`);
  }

  isSealed(room) {
    return Boolean(this.keyring.get(room));
  }

  /** In by link alone: only the sealed rooms held (true: told why not). */
  refuses(what) {
    if (!this.session.cipher || !this.session.cipher.linkOnly || this.isSealed(what)) return false;
    const why = what === "private" ? "private messages need it" : `${what} is not a sealed room you hold`;
    this.session.problem(this.session.current, `you came in by invitation link, without the server's passphrase: ${why}`);
    return true;
  }

  async joined(room) {
    const held = this.keyring.get(room);
    if (held && !held.listed && !this.helloSent.has(casefold(room))) {
      this.helloSent.add(casefold(room));
      await this.session.sendControl(room, sealed.HELLO);
    }
  }

  // --- commands -------------------------------------------------------------------------

  usable(room, owner, what) {
    const s = this.session;
    if (!room || !room.startsWith("#")) return s.problem(s.current, `${what} is for sealed rooms: switch to one or name it`), null;
    const held = this.keyring.get(room);
    if (!held) return s.problem(s.current, `${room} is not a sealed room you are in (/seal ${room} makes it one)`), null;
    if (owner && this.me && !held.owners().some((o) => b64url(o) === b64url(this.me.sign))) {
      const owners = this.ownerNicks(held).join(", ") || "none known";
      return s.problem(casefold(room), `only owners of ${room} can ${what.slice(1)} (${owners})`), null;
    }
    return held;
  }

  ownerNicks(held) {
    if (!held.statement) return [];
    return held.statement.members.filter((m) => held.statement.owners.includes(m.sign)).map((m) => m.nick);
  }

  async seal(room) {
    const s = this.session;
    if (!this.me || s.cipher.scheme !== "aes3") return s.problem(s.current, "sealed rooms need identity keys and a relay that announces a salt (aes3)");
    const conv = room && s.conversations.get(casefold(room));
    if (!conv || !conv.joined) return s.problem(s.current, "join the room first, then /seal it");
    if (this.keyring.get(room)) return s.problem(casefold(room), `${room} is sealed already; /members lists who is in it`);
    const secret = crypto.getRandomValues(new Uint8Array(SECRET_SIZE));
    const statement = await sealed.makeStatement(room, 1, 1, [{ nick: s.nick, keys: this.me }], [this.me.sign], secret, this.me.sign);
    const held = new membership.Held({ room: statement.room, epoch: 1, secrets: { 1: secret }, statement,
                                       signature: await sealed.signStatement(s.identity, statement), listed: true });
    this.keyring.put(conv.name, held);
    s.notice(casefold(room), `${conv.name} is sealed: a new key only its members have; you own it. /invite nick or /invite-link to let people in`);
    await this.move(conv.name);
  }

  async members(room) {
    const held = this.usable(room, false, "/members");
    if (!held) return;
    const s = this.session;
    const k = casefold(room);
    if (!held.statement) return s.notice(k, `${room}: no member list yet (joined by link; an owner's client sends it)`);
    for (const m of sealed.membersOf(held.statement)) {
      const tags = [];
      if (held.statement.owners.includes(b64url(m.keys.sign))) tags.push("owner");
      if (sameKeys(m.keys, this.me)) tags.push("you");
      s.notice(k, `  ${m.nick}  ${await fingerprint(m.keys)}${tags.length ? " (" + tags.join(", ") + ")" : ""}`);
    }
    const count = held.statement.members.length;
    s.notice(k, `${room}: ${count} member${count === 1 ? "" : "s"}, epoch ${held.epoch}`);
  }

  async next(held, epoch, secret, members, owners = null) {
    const s = this.session;
    owners = (owners || held.statement.owners.map((o) => sealed.unb64(o))).filter((o) => members.some((m) => b64url(m.keys.sign) === b64url(o)));
    const statement = await sealed.makeStatement(held.room, epoch, held.serial + 1, members, owners, secret, this.me.sign);
    const signature = await sealed.signStatement(s.identity, statement);
    if (epoch === held.epoch) {
      held.statement = statement;
      held.signature = signature;
      this.keyring.put(this.keyring.names.get(casefold(held.room)) || held.room, held);
    }
    return [statement, signature];
  }

  async invite(nick, room) {
    const s = this.session;
    const held = this.usable(room, true, "/invite");
    if (!held) return;
    const keys = s.trust.known.trustedKeys ? s.trust.known.trustedKeys(casefold(nick)) : null;
    if (!keys) return s.problem(casefold(room), `no key known for ${nick} yet: they must have written where you read (or use /invite-link)`);
    const members = sealed.membersOf(held.statement);
    if (members.some((m) => sameKeys(m.keys, keys))) return s.problem(casefold(room), `${nick} is a member of ${room} already`);
    const [statement, signature] = await this.next(held, held.epoch, held.secret, [...members, { nick, keys }]);
    const box = await sealed.sealBox(s.identity, { nick, keys }, statement, held.secret);
    await s.sendControl(nick, sealed.controlText(statement, signature, { [b64url(keys.sign)]: box }));
    await s.sendControl(room, sealed.controlText(statement, signature));
    s.notice(casefold(room), `invited ${nick} to ${room} (${await fingerprint(keys)})`);
  }

  async inviteLink(room, page) {
    const held = this.usable(room, true, "/invite-link");
    if (!held) return null;
    const link = sealed.makeLink({ room, epoch: held.epoch, secret: held.secret, owner: this.me.sign, ownerAgree: this.me.agree,
                                   chat: new URL(page).host }, page);
    this.session.notice(casefold(room), `whoever has this link can join ${room} (no passphrase needed) until /rekey ${room}; share it privately:`);
    this.session.notice(casefold(room), link);
    return link;
  }

  async rekey(room, remove = null) {
    const s = this.session;
    const held = this.usable(room, true, remove ? "/remove" : "/rekey");
    if (!held || !held.statement) return;
    const members = sealed.membersOf(held.statement);
    const kept = members.filter((m) => !remove || casefold(m.nick) !== casefold(remove));
    if (remove && kept.length === members.length) return s.problem(casefold(room), `${remove} is not a member of ${room} (/members lists them)`);
    if (remove && !kept.some((m) => sameKeys(m.keys, this.me))) return s.problem(casefold(room), "to leave a sealed room you own, /part it (or /op someone first)");
    const secret = crypto.getRandomValues(new Uint8Array(SECRET_SIZE));
    const [statement, signature] = await this.next(held, held.epoch + 1, secret, kept);
    const boxes = await boxesFor(s, room, kept.filter((k) => !sameKeys(k.keys, this.me)), statement, secret);
    const text = sealed.controlText(statement, signature, boxes);
    if (!sealed.fits(text)) return s.problem(casefold(room), `${room} has too many members for one re-key (${kept.length}; about 150 fit): nothing changed`);
    await s.sendControl(room, text); // in the old epoch: all see it
    await this.take(room, held, statement, signature, secret);
    s.notice(casefold(room), `${remove ? `removed ${remove} from` : "re-keyed"} ${room}: epoch ${held.epoch}, a new key for its ${kept.length} members; earlier links no longer work`);
  }

  async op(nick, room) {
    const held = this.usable(room, true, "/op");
    if (!held) return;
    const members = sealed.membersOf(held.statement);
    const member = members.find((m) => casefold(m.nick) === casefold(nick));
    if (!member) return this.session.problem(casefold(room), `${nick} is not a member of ${room}; /invite them first`);
    const owners = [...held.statement.owners.map((o) => sealed.unb64(o)), member.keys.sign];
    const [statement, signature] = await this.next(held, held.epoch, held.secret, members, owners);
    await this.session.sendControl(room, sealed.controlText(statement, signature));
    this.session.notice(casefold(room), `${nick} is an owner of ${room} now`);
  }

  // --- what arrives ---------------------------------------------------------------------

  async control(from, target, text, signer, history) {
    if (!signer || !this.me) return;
    if (text === sealed.HELLO) return this.hello(from, target, signer);
    const s = this.session;
    const isPrivate = !target.startsWith("#");
    let statement, signature, boxes;
    try {
      [statement, signature, boxes] = sealed.parseControl(text);
    } catch (e) {
      return s.problem(null, `refused a sealed-room message from ${from}: ${REFUSED[e.code] || e.code}`);
    }
    const name = isPrivate ? statement.room : target;
    const held = this.keyring.get(name);
    const mine = boxes[b64url(this.me.sign)];
    const secret = mine ? await sealed.openBox(s.identity, signer.agree, statement, mine) : null;
    const verdict = await membership.judge(held, statement, signature, secret, signer, isPrivate ? "private" : casefold(target), this.me);
    if (history && verdict.reason === "stale") return; // a room's history holds its earlier statements
    await this.carryOut(verdict, from, name, held, statement, signature, secret);
  }

  async carryOut(verdict, from, name, held, statement, signature, secret) {
    const s = this.session;
    const k = casefold(name);
    if (verdict.kind === membership.REFUSED) {
      s.problem(k, `refused a change to ${name} from ${from}: ${REFUSED[verdict.reason] || verdict.reason}`);
    } else if (verdict.kind === membership.REMOVED) {
      this.keyring.remove(name);
      s.problem(k, `${from} removed you from ${name}: nothing said there from now on is for you`);
      s.send("PART", name, "removed");
    } else if (verdict.kind === membership.INVITED) {
      const conv = s.conversations.get(k);
      const shown = conv ? conv.name : name;
      this.keyring.put(shown, membership.accept(null, verdict, statement, signature, secret, this.me));
      const owner = sealed.membersOf(statement).find((m) => b64url(m.keys.sign) === statement.by);
      s.notice(k, `${from} invited you to the sealed room ${shown} (owner key ${await fingerprint(owner.keys)}); joining`);
      await this.move(shown);
    } else if (verdict.kind === membership.REKEYED) {
      await this.take(name, held, statement, signature, secret);
      s.notice(k, `${from} re-keyed ${name} (epoch ${statement.epoch}); moved with it`);
    } else if (verdict.kind === membership.UPDATED) {
      const before = held.statement;
      this.keyring.put(name, membership.accept(held, verdict, statement, signature, secret, this.me));
      for (const change of changes(before, statement)) s.notice(k, `${from} ${change} ${name}`);
    }
  }

  async hello(from, room, signer) {
    const held = this.keyring.get(room);
    if (!held || !held.statement || held.statement.by !== b64url(this.me.sign)) return;
    const members = sealed.membersOf(held.statement);
    if (members.some((m) => sameKeys(m.keys, signer))) return;
    const [statement, signature] = await this.next(held, held.epoch, held.secret, [...members, { nick: from, keys: signer }]);
    await this.session.sendControl(room, sealed.controlText(statement, signature));
    this.session.notice(casefold(room), `${from} joined ${room} by link (${await fingerprint(signer)}); listed as a member`);
  }

  // --- epochs ----------------------------------------------------------------------------

  async take(name, held, statement, signature, secret) {
    this.keyring.put(name, membership.accept(held, { kind: membership.REKEYED, reason: "ok" }, statement, signature, secret, this.me));
    await this.move(name);
  }

  /** Leave the room of this name (if in it), then join it under the key now held. */
  async move(name) {
    const s = this.session;
    const k = casefold(name);
    const conv = s.conversations.get(k);
    if (conv && conv.joined) {
      s.presence.moving.add(k);
      s.send("PART", conv.name, "moved to a sealed room's new key");
    } else {
      s.delivery.forgetRoom(name);
    }
    if (!s.current || s.current === k) s.presence.switchTo = k;
    this.viewed.add(k); // (what was said in the earlier epoch was seen live)
    await s.registration.join(name);
  }

  parted(room) {
    this.session.delivery.forgetRoom(room);
  }
}
