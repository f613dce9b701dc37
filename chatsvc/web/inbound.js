// The inbound policy: what the page believes of a line the relay passed
// on, and whether it may answer (docs/trust.md). Pure functions of the line
// and a snapshot of local state: no I/O, no crypto, no clock. Every outcome
// is a decision with a reason code; the session turns codes into words.
// The twin of chatsvc/client/inbound.py: the same functions, names and
// stages, and both pass docs/vectors/inbound.json.
//
// 1. placement: before decrypting, is this line for us, here, now?
// 2. (the cipher opens it, or says why not, with a reason code)
// 3. unreadable: it did not open: tell, group, or (rarely) answer?
// 4. attribution: it opened: whose is it, by the keys it was signed with?
// 5. interpret: what kind of text it is, and what to do with it.

import { casefold } from "./casefold.js";

export const MAX_NOTE = 80;
export const ACTION_MARKER = "\x1fchatsvc-me:";
export const AWAY_MARKER = "\x1fchatsvc-away:";
export const TOPIC_MARKER = "\x1fchatsvc-topic:";
export const KEYREQ_MARKER = "\x1fchatsvc-keyreq:";
export const KEY_MARKER = "\x1fchatsvc-key:";
export const FILE_MARKER = "\x1fchatsvc-file:";
export const SEALED_MARKER = "\x1fchatsvc-seal"; // every sealed-room message (a statement, or a link joiner's hello)
const SESSION_ERRORS = new Set(["wrong-peer", "unknown-session"]);
const isDecimal = (text) => /^[0-9]{1,20}$/.test(text);

/** A decision: {action, reason?, history?, record_id?, pin?, mark?, like?, was?, reply?, value?, action_text?}. */
function decision(action, reason = "", extra = {}) {
  const out = { action };
  if (reason) out.reason = reason;
  for (const [name, value] of Object.entries(extra)) if (value !== "" && value !== false && value !== null && value !== undefined) out[name] = value;
  return out;
}

/**
 * Stage 1. view: {me, wanted, rooms: Set of room keys, historyOpen: Set,
 * historyMode: {room key: "earlier"|"missed"}, lastId: {room key: n}}.
 */
export function placement(sender, target, tags, view) {
  const me = casefold(view.me || "");
  if (!target.startsWith("#")) {
    // Addressed to us, and never history (the relay keeps no private messages).
    if (casefold(target) !== me) return decision("refuse", "misdirected");
    if ("history" in tags) return decision("refuse", "history-private");
    return decision("open");
  }
  const room = casefold(target);
  if (!view.rooms.has(room)) return decision("refuse", "not-in-room");
  // History only inside a reply we asked for: the tag alone is the relay's say-so.
  const history = "history" in tags;
  if (history && !view.historyOpen.has(room)) return decision("refuse", "history-unasked");
  if (!history && casefold(sender) === me) return decision("drop", "own-echo");
  const id = tags.id || "";
  const record = isDecimal(id) ? Number(id) : null;
  if (record !== null && record <= (view.lastId[room] || 0)) return decision("drop", "duplicate");
  if (history && view.historyMode[room] === "missed" && [me, casefold(view.wanted || "")].includes(casefold(sender))) {
    return decision("drop", "own-missed", { history: true, record_id: record });
  }
  return decision("open", "", { history, record_id: record });
}

/**
 * Stage 3: a message that did not open. signer: how the signature that did
 * verify relates to the sender's pinned keys ("pinned", "other", "none").
 * Answered only when it verified under the key already pinned for its
 * sender, private and live, keyed for a session we cannot match.
 */
export function unreadable(error, signer, isPrivate, history, askedBefore) {
  if (history) return decision("group", error);
  const answer = isPrivate && SESSION_ERRORS.has(error) && signer === "pinned" && !askedBefore;
  return decision("refuse", error, { reply: answer ? "keyreq" : null });
}

/**
 * Stage 4: whose message is this? pins: {pinned: Map(nick key -> keys),
 * skeleton(name), bySkeleton: Map(skeleton -> [nick keys]), same(a, b)}.
 * own: this page's identity keys (null: checks nothing); selves: our nicks.
 */
export function attribution(sender, signer, own, selves, pins) {
  if (!own) return decision("show");
  const same = pins.same || ((a, b) => a === b);
  const k = casefold(sender);
  const selfKeys = [...new Set(selves.filter(Boolean).map(casefold))].sort();
  if (selfKeys.includes(k)) {
    if (signer && same(signer, own)) return decision("show", "own");
    return decision("refuse", signer ? "own-nick" : "own-nick-unsigned");
  }
  const pinned = pins.pinned.get(k);
  const like = lookalike(k, signer, own, selfKeys, pins, same);
  if (!signer) {
    if (pinned) return decision("refuse", "unsigned-pinned");
    return decision("show", "unsigned", { mark: "unsigned", like });
  }
  if (pinned) return same(pinned, signer) ? decision("show", "pinned") : decision("hold", "key-changed");
  const was = pinnedUnder(signer, pins, same);
  // keys pinned under another nick: the same person, renamed (pinned, and verified if they were)
  if (was !== null) return decision("show", "renamed", { pin: true, was });
  if (like !== null) return decision("show", "lookalike", { mark: "lookalike", like });
  return decision("show", "first-seen", { pin: true });
}

/** The first nick (in sorted order) these keys are pinned under. */
function pinnedUnder(signer, pins, same) {
  return [...pins.pinned.keys()].sort().find((nick) => same(pins.pinned.get(nick), signer)) ?? null;
}

function lookalike(k, signer, own, selfKeys, pins, same) {
  const shape = pins.skeleton(k);
  for (const other of selfKeys) {
    if (other !== k && pins.skeleton(other) === shape && !(signer && same(signer, own))) return other;
  }
  for (const other of pins.bySkeleton.get(shape) || []) {
    const theirs = pins.pinned.get(other);
    if (other !== k && !(signer && theirs && same(theirs, signer))) return other;
  }
  return null;
}

/** Stage 5: what an opened, attributed text is, and what to do with it. */
export function interpret(text, { isPrivate, history, signed, trusted, ignored, own }) {
  if (text.startsWith(KEYREQ_MARKER) || text.startsWith(KEY_MARKER)) {
    if (!isPrivate || history || !signed) return decision("drop", "keys-misplaced");
    const kind = text.startsWith(KEYREQ_MARKER) ? "keyreq" : "key";
    return decision("keys", kind, { reply: kind === "keyreq" && trusted ? "key" : null, value: text.slice(text.indexOf(":") + 1) });
  }
  if (text.startsWith(SEALED_MARKER)) return signed ? decision("sealed") : decision("drop", "sealed-unsigned"); // judged by its keys
  if (ignored && !own) return decision("drop", "ignored");
  if (text.startsWith(FILE_MARKER)) return history || own ? decision("drop", "file-old") : decision("file");
  if (text.startsWith(AWAY_MARKER)) {
    if (!isPrivate || history) return decision("drop", "away-misplaced");
    const note = Array.from(text.slice(AWAY_MARKER.length).replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, "")).slice(0, MAX_NOTE).join("");
    return decision("away", note ? "away" : "back", { value: note || null });
  }
  if (text.startsWith(TOPIC_MARKER)) return decision("drop", "topic-as-message");
  if (text.startsWith(ACTION_MARKER)) return decision("show", "action", { value: text.slice(ACTION_MARKER.length), action_text: true });
  if (text.startsWith("\x1f")) return decision("drop", "unknown-kind");
  return decision("show", "text", { value: text });
}

/** How a decrypted text is shown: {text, action}, or null for what is not shown as a line. */
export function present(text) {
  if (text.startsWith(ACTION_MARKER)) return { text: text.slice(ACTION_MARKER.length), action: true };
  if (text.startsWith("\x1f")) return null; // files, away notes, a newer client's kinds
  return { text, action: false };
}
