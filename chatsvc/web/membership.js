// Sealed rooms, the policy -- the twin of chatsvc/client/membership.py:
// what a client believes of a statement that arrives.  Pure; the cases are
// docs/vectors/sealed.json, which both clients' tests load.
import { b64url } from "./crypto.js";
import { isOwner, secretCheck, statementHash, statementVerifies, unb64 } from "./sealed.js";

export const INVITED = "invited";
export const UPDATED = "updated";
export const REKEYED = "rekeyed";
export const REMOVED = "removed";
export const DUPLICATE = "duplicate";
export const REFUSED = "refused";

/** What a client holds for one sealed room. */
export class Held {
  constructor({ room, epoch, secrets = {}, statement = null, signature = null, linkOwner = null, listed = false }) {
    Object.assign(this, { room, epoch, secrets, statement, signature, linkOwner, listed });
  }

  get serial() {
    return this.statement ? this.statement.serial : 0;
  }

  get secret() {
    return this.secrets[this.epoch];
  }

  owners() {
    if (this.statement) return this.statement.owners.map((o) => unb64(o));
    return this.linkOwner ? [this.linkOwner] : [];
  }
}

const verdict = (kind, reason) => ({ kind, reason });

function listed(statement, me) {
  return statement.members.some((m) => m.sign === b64url(me.sign) && m.agree === b64url(me.agree));
}

async function sameStatement(a, b) {
  return Boolean(a && b) && b64url(await statementHash(a)) === b64url(await statementHash(b));
}

async function checks(statement, secret) {
  return Boolean(secret) && statement.check === await secretCheck(secret, statement.room, statement.epoch);
}

/**
 * where: "private" (an invitation sent to us) or the case-folded room it was
 * posted in; secret: what our box opened to (null: none); carrier: the keys
 * that signed the aes3 message carrying it.
 */
export async function judge(held, statement, signature, secret, carrier, where, me) {
  if (!await statementVerifies(statement, signature)) return verdict(REFUSED, "bad-signature");
  if (!isOwner(statement, carrier.sign) || b64url(carrier.sign) !== statement.by) return verdict(REFUSED, "not-owner");
  if (where !== "private" && where !== statement.room) return verdict(REFUSED, "wrong-room");
  if (!held) return invitation(statement, secret, where, me);
  if (!held.owners().some((o) => b64url(o) === b64url(carrier.sign))) return verdict(REFUSED, "not-owner");
  if (statement.epoch < held.epoch || statement.serial < held.serial) return verdict(REFUSED, "stale");
  if (statement.serial === held.serial) {
    return await sameStatement(statement, held.statement) ? verdict(DUPLICATE, "ok") : verdict(REFUSED, "stale");
  }
  const inIt = listed(statement, me);
  if (statement.epoch === held.epoch) {
    if (statement.check !== await secretCheck(held.secret, held.room, held.epoch)) return verdict(REFUSED, "bad-secret");
    return held.listed && !inIt ? verdict(REMOVED, "removed") : verdict(UPDATED, "ok");
  }
  if (!inIt) return verdict(REMOVED, "removed");
  return await checks(statement, secret) ? verdict(REKEYED, "ok") : verdict(REFUSED, "bad-secret");
}

async function invitation(statement, secret, where, me) {
  if (where !== "private") return verdict(REFUSED, "unasked");
  if (!listed(statement, me)) return verdict(REFUSED, "not-member");
  return await checks(statement, secret) ? verdict(INVITED, "ok") : verdict(REFUSED, "bad-secret");
}

/** What is held after an accepted verdict. */
export function accept(held, v, statement, signature, secret, me) {
  if (v.kind === INVITED) {
    held = new Held({ room: statement.room, epoch: statement.epoch, secrets: { [statement.epoch]: secret } });
  } else if (v.kind === REKEYED) {
    held.secrets[statement.epoch] = secret;
    held.epoch = statement.epoch;
  } else if (v.kind !== UPDATED) {
    return held;
  }
  held.statement = statement;
  held.signature = signature;
  held.listed = held.listed || listed(statement, me);
  return held;
}
