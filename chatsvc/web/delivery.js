// Nothing lost, nothing twice: the bookkeeping of the page's room messages,
// as chatsvc/client/delivery.py. Each room message sent gets a client id and
// stays unacknowledged until OK MSG (a resend carries the same id, and the
// relay drops one it already has); the last id seen per room asks for what
// was missed on rejoining and drops what is seen twice; which HISTORY
// replies are open (only lines inside a reply we asked for count as
// history); and the recent conversation kept as ciphertext for a reload.
// No I/O: the session sends what this decides.

import { casefold } from "./casefold.js";

/** Messages shown from a room's history the first time it is joined. */
export const JOIN_HISTORY = 50;
/** Ciphertext lines kept per conversation so a reload can show them again. */
export const TRANSCRIPT = 300;

function randomBase() {
  const bytes = crypto.getRandomValues(new Uint8Array(9));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_");
}

export class Delivery {
  constructor() {
    this.lastId = {}; // room key -> highest id seen
    this.historyOpen = {}; // room key -> HISTORY replies not ended
    this.historyMode = {}; // room key -> "earlier" | "missed"
    this.unacked = new Map(); // cid -> {room, payload, nick}
    this.transcript = {}; // conv key -> [[from, target, payload, id, own]]
    this.cidBase = randomBase();
    this.cidNext = 1;
  }

  /** A new client id for a room message, kept until acknowledged. */
  track(room, payload, nick) {
    const cid = `${this.cidBase}-${this.cidNext++}`;
    this.unacked.set(cid, { room, payload, nick });
    return cid;
  }

  /** OK MSG with a cid: the entry, no longer unacknowledged (null: not ours). */
  acknowledged(cid) {
    const entry = cid ? this.unacked.get(cid) : null;
    if (entry) this.unacked.delete(cid);
    return entry || null;
  }

  /** Whether any message id of this room was seen (a rejoin asks for what was missed). */
  seenIn(room) {
    return casefold(room) in this.lastId;
  }

  /** The relay's room of this name is another now (a sealed room's epoch): its ids start afresh. */
  forgetRoom(room) {
    delete this.lastId[casefold(room)];
  }

  seeId(room, id) {
    const k = casefold(room);
    if (id > (this.lastId[k] || 0)) this.lastId[k] = id;
  }

  /** What to ask on (re)joining: what was missed, or the last few. */
  historyRequest(room) {
    const k = casefold(room);
    this.historyOpen[k] = (this.historyOpen[k] || 0) + 1;
    if (k in this.lastId) {
      this.historyMode[k] = "missed";
      return ["after", String(this.lastId[k])];
    }
    this.historyMode[k] = "earlier";
    return ["last", String(JOIN_HISTORY)];
  }

  /** The reply stopped at its size limit: ask for the rest. */
  moreHistory(room) {
    const k = casefold(room);
    this.historyOpen[k] = (this.historyOpen[k] || 0) + 1;
    return ["after", String(this.lastId[k] || 0)];
  }

  historyEnded(room) {
    const k = casefold(room);
    if (this.historyOpen[k] > 0) this.historyOpen[k] -= 1;
  }

  mode(room) {
    return this.historyMode[casefold(room)] || "earlier";
  }

  openReplies() {
    return new Set(Object.entries(this.historyOpen).filter(([, n]) => n > 0).map(([k]) => k));
  }

  connectionLost() {
    this.historyOpen = {}; // no reply will end on the old connection
  }

  remember(conv, entry) {
    const list = (this.transcript[conv] ||= []);
    list.push(entry);
    if (list.length > TRANSCRIPT) list.splice(0, list.length - TRANSCRIPT);
  }

  snapshot() {
    return { lastId: this.lastId, cidBase: this.cidBase, cidNext: this.cidNext, unacked: [...this.unacked], transcript: this.transcript };
  }

  restore(saved) {
    this.cidBase = saved.cidBase || this.cidBase;
    this.cidNext = saved.cidNext || 1;
    this.lastId = saved.lastId || {};
    this.unacked = new Map(saved.unacked || []);
    this.transcript = saved.transcript || {};
  }
}
