// Sealed rooms, the formats -- the twin of chatsvc/client/sealed.py: a
// room's secret per epoch and what is derived from it, the signed
// membership statement, the boxes that hand the secret to each member, the
// control message, invitation links.  Pure (no I/O); docs/encryption.md,
// "Sealed rooms", specifies every byte and docs/vectors/sealed.json holds
// the cases both clients check.
import {
  b64url, compareCodePoints, concat, hkdf, joinProof, sha256, sharedSecret, unb64url, verifySignature,
} from "./crypto.js";

/** A sealed room's join proof, from its epoch's room master (as with the passphrase's). */
export const joinProofOf = (master, room) => joinProof(master, room);
import { casefold } from "./casefold.js";

export const MARKER = "\x1fchatsvc-seal:";
export const HELLO = "\x1fchatsvc-seal-hello";
export const VERSION = 1;
const MASTER_INFO = "chatsvc/sealed/v1/master ";
const CHECK_INFO = "chatsvc/sealed/v1/check ";
const BOX_INFO = "chatsvc/sealed/v1/box ";
const SIG_LABEL = "chatsvc/sealed/v1/statement";
const LINK_KEY = "join=";
const SECRET_SIZE = 32;
const MAX_CONTROL_CHARS = 60000;
// ... and a client sends at most this much (once encrypted it stays within the relay's 64 KiB line):
// about 150 members with their boxes
export const MAX_SENT_CONTROL_CHARS = 45000;

/** Whether a control message may be sent (a re-key that cannot go must not be half done). */
export function fits(text) {
  return text.length <= MAX_SENT_CONTROL_CHARS;
}
const utf8 = new TextEncoder();

export class SealError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code; // decisions read this, never the message
  }
}

export function unb64(text, size = null) {
  let data;
  try {
    data = typeof text === "string" && text === "" ? new Uint8Array(0) : unb64url(text);
  } catch (e) {
    throw new SealError("not base64url", "malformed");
  }
  if (size !== null && data.length !== size) throw new SealError(`${data.length} bytes where ${size} belong`, "malformed");
  return data;
}

/** What replaces the passphrase's master key for this room in this epoch. */
export function roomMaster(secret, room, epoch) {
  return hkdf(secret, `${MASTER_INFO}${casefold(room)} ${epoch}`);
}

export async function secretCheck(secret, room, epoch) {
  return b64url(await hkdf(secret, `${CHECK_INFO}${casefold(room)} ${epoch}`, 128));
}

function quote(text) {
  return JSON.stringify(text).replace(/[\u0080-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

/** JSON with keys sorted by code point, no spaces, ASCII only: what is signed and hashed. */
export function canonical(value) {
  if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value).sort(compareCodePoints);
    return "{" + keys.map((k) => quote(k) + ":" + canonical(value[k])).join(",") + "}";
  }
  if (typeof value === "string") return quote(value);
  if (Number.isInteger(value)) return String(value);
  throw new SealError("only integers, strings, lists and objects", "malformed");
}

export function statementHash(statement) {
  return sha256(utf8.encode(canonical(statement)));
}

export function isOwner(statement, sign) {
  return statement.owners.includes(b64url(sign));
}

/** Members as {nick, keys: {sign, agree}}. */
export function membersOf(statement) {
  return statement.members.map((m) => ({ nick: m.nick, keys: { sign: unb64(m.sign, 32), agree: unb64(m.agree, 32) } }));
}

const FIELDS = { v: "int", room: "string", epoch: "int", serial: "int", members: "list", owners: "list", check: "string", by: "string" };

function kindOf(value) {
  if (Array.isArray(value)) return "list";
  if (Number.isInteger(value)) return "int";
  return typeof value;
}

/** The shape every statement must have, or SealError("malformed"). */
export function checkStatement(statement) {
  const ok = statement && kindOf(statement) === "object"
    && Object.keys(statement).sort().join() === Object.keys(FIELDS).sort().join()
    && Object.entries(FIELDS).every(([k, kind]) => kindOf(statement[k]) === kind);
  if (!ok || statement.v !== VERSION || statement.epoch < 1 || statement.serial < 1) {
    throw new SealError("a statement of another shape", "malformed");
  }
  for (const m of statement.members) {
    if (kindOf(m) !== "object" || Object.keys(m).sort().join() !== "agree,nick,sign" || typeof m.nick !== "string") {
      throw new SealError("a member entry of another shape", "malformed");
    }
    unb64(m.sign, 32);
    unb64(m.agree, 32);
  }
  for (const o of statement.owners) unb64(o, 32);
  unb64(statement.by, 32);
  unb64(statement.check, 16);
  const signs = new Set(statement.members.map((m) => m.sign));
  if (!statement.owners.every((o) => signs.has(o))) throw new SealError("an owner who is not a member", "malformed");
  return statement;
}

export async function makeStatement(room, epoch, serial, members, owners, secret, by) {
  const byKey = (a, b) => compareCodePoints(String.fromCharCode(...a.keys.sign), String.fromCharCode(...b.keys.sign));
  return {
    v: VERSION, room: casefold(room), epoch, serial,
    members: [...members].sort(byKey).map((m) => ({ nick: m.nick, sign: b64url(m.keys.sign), agree: b64url(m.keys.agree) })),
    owners: owners.map(b64url).sort(compareCodePoints),
    check: await secretCheck(secret, room, epoch),
    by: b64url(by),
  };
}

export async function signStatement(identity, statement) {
  const data = concat(utf8.encode(SIG_LABEL), utf8.encode(canonical(statement)));
  return b64url(new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, identity.signKey, data)));
}

/** Signed by the key in its "by" field (whether that key may sign is membership.judge's). */
export async function statementVerifies(statement, signature) {
  let by, sig;
  try {
    by = unb64(statement.by, 32);
    sig = unb64(signature, 64);
  } catch (e) {
    return false;
  }
  return verifySignature(by, sig, concat(utf8.encode(SIG_LABEL), utf8.encode(canonical(statement))));
}

async function boxKey(shared, statement, memberSign) {
  const raw = await hkdf(shared, `${BOX_INFO}${statement.room} ${statement.epoch} ${memberSign}`);
  return crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
}

export async function sealBox(identity, member, statement, secret, random = (n) => crypto.getRandomValues(new Uint8Array(n))) {
  const nonce = random(12);
  const key = await boxKey(await sharedSecret(identity, member.keys.agree), statement, b64url(member.keys.sign));
  const sealed = await crypto.subtle.encrypt({ name: "AES-GCM", iv: nonce, additionalData: await statementHash(statement) }, key, secret);
  return b64url(concat(nonce, new Uint8Array(sealed)));
}

/** The secret in our box, or null. */
export async function openBox(identity, signerAgree, statement, box) {
  try {
    const data = unb64(box);
    if (data.length <= 28) return null;
    const key = await boxKey(await sharedSecret(identity, signerAgree), statement, b64url(identity.public.sign));
    const plain = new Uint8Array(await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: data.slice(0, 12), additionalData: await statementHash(statement) }, key, data.slice(12)));
    return plain.length === SECRET_SIZE ? plain : null;
  } catch (e) {
    return null;
  }
}

export function controlText(statement, signature, boxes = null) {
  const body = { statement, sig: signature };
  if (boxes && Object.keys(boxes).length) body.boxes = boxes;
  return MARKER + canonical(body);
}

/** [statement, signature, boxes]; SealError("malformed") otherwise. */
export function parseControl(text) {
  if (!text.startsWith(MARKER) || text.length > MAX_CONTROL_CHARS) throw new SealError("not a sealed-room message", "malformed");
  let body;
  try {
    body = JSON.parse(text.slice(MARKER.length));
  } catch (e) {
    throw new SealError("not JSON", "malformed");
  }
  const keys = body && kindOf(body) === "object" ? Object.keys(body) : [];
  const boxes = keys.includes("boxes") ? body.boxes : {};
  if (!keys.includes("statement") || !keys.includes("sig") || keys.some((k) => !["statement", "sig", "boxes"].includes(k))
      || typeof body.sig !== "string" || kindOf(boxes) !== "object" || Object.values(boxes).some((v) => typeof v !== "string")) {
    throw new SealError("a control message of another shape", "malformed");
  }
  return [checkStatement(body.statement), body.sig, boxes];
}

/** chatsvc://host:port/#join=..., or the page's address with the same fragment. */
export function makeLink(link, page = null) {
  const body = { v: VERSION, room: link.room, epoch: link.epoch, secret: b64url(link.secret), owner: b64url(link.owner),
                 agree: b64url(link.ownerAgree), chat: link.chat };
  const fragment = LINK_KEY + b64url(utf8.encode(canonical(body)));
  return page ? `${page.replace(/\/+$/, "")}/#${fragment}` : `chatsvc://${link.chat}/#${fragment}`;
}

/** A link (or its fragment alone) -> {room, epoch, secret, owner, ownerAgree, chat}; SealError otherwise. */
export function parseLink(text) {
  const at = text.trim().indexOf("#");
  const fragment = at < 0 ? "" : text.trim().slice(at + 1);
  if (!fragment.startsWith(LINK_KEY)) throw new SealError("not an invitation link (it has no #join=... part)", "not-a-link");
  let body;
  try {
    body = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(unb64(fragment.slice(LINK_KEY.length))));
  } catch (e) {
    throw new SealError("the link's #join part is damaged (cut short or mistyped?): ask for it again", "malformed");
  }
  const kinds = { v: "int", room: "string", epoch: "int", secret: "string", owner: "string", agree: "string", chat: "string" };
  const ok = body && kindOf(body) === "object" && Object.keys(body).sort().join() === Object.keys(kinds).sort().join()
    && Object.entries(kinds).every(([k, kind]) => kindOf(body[k]) === kind);
  if (!ok || body.v !== VERSION || body.epoch < 1 || !body.room.startsWith("#")) {
    throw new SealError("the link's #join part is damaged (cut short or mistyped?): ask for it again", "malformed");
  }
  return { room: body.room, epoch: body.epoch, secret: unb64(body.secret, SECRET_SIZE), owner: unb64(body.owner, 32),
           ownerAgree: unb64(body.agree, 32), chat: body.chat };
}
