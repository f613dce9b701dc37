// Files in the page, over bulk streams (docs/protocol.md, File transfer and
// Bulk streams; docs/encryption.md, Files over streams): the same offers,
// accepts, frames and acknowledgements as chatsvc/client/transfers.py and
// stream.py, so a browser and a terminal exchange files both ways.
//
// A page holds a file in memory (WebCrypto has no streaming SHA-256), so it
// sends and takes files up to MAX_FILE; the terminal client has no such
// bound. A cut stream is not resumed here: the transfer fails, saying so.

import { b64url, frameAad, hex, sealFrame } from "./crypto.js";

export const MARKER = "\x1fchatsvc-file:";
export const FRAME_SIZE = 1024 * 1024;
export const CHUNK_SIZE = 32 * 1024; // the in-band chunk size offers announce
export const MAX_FILE = 256 * 1024 * 1024;
/** Files up to this size are taken without a click, as the terminal client's --auto-accept-mb default. */
export const AUTO_ACCEPT = 10 * 1024 * 1024;
const AUTO_PER_SENDER = 3; // ... at most this many at once from one sender,
const AUTO_AT_ONCE = 8; // ... and in all (the terminal client's MAX_INCOMING_PER_SENDER, MAX_INCOMING)
export const SLICE = 64 * 1024; // bytes per WebSocket message on a stream
const BUFFERED_HIGH = 1024 * 1024; // wait while the socket holds more than this
const OFFER_LIFETIME_MS = 10 * 60 * 1000;
const NONCE = 12;
const TAG = 16;

export const IMAGE_TYPES = { PNG: "image/png", JPEG: "image/jpeg", GIF: "image/gif", WebP: "image/webp" };

/** PNG, JPEG, GIF or WebP by their first bytes (never SVG: it can carry script). */
export function sniffImage(head) {
  const starts = (...bytes) => bytes.every((b, i) => head[i] === b);
  if (starts(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return "PNG";
  if (starts(0xff, 0xd8, 0xff)) return "JPEG";
  if (starts(0x47, 0x49, 0x46, 0x38)) return "GIF";
  if (starts(0x52, 0x49, 0x46, 0x46) && head[8] === 0x57 && head[9] === 0x45 && head[10] === 0x42 && head[11] === 0x50) return "WebP";
  return null;
}

/** A name safe to offer as a download: no folders, no control characters, not hidden. */
export function safeName(name) {
  let clean = String(name ?? "").normalize("NFC").split(/[\\/]/).pop()
    .replace(/[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069]/g, "")
    .replace(/^[.\s]+/, "").trim();
  if (Array.from(clean).length > 100) clean = Array.from(clean).slice(0, 100).join("");
  return clean || "file";
}

export function humanSize(size) {
  if (size < 1024) return `${size} bytes`;
  const units = ["KiB", "MiB", "GiB"];
  let value = size;
  let unit = "";
  for (const u of units) {
    value /= 1024;
    unit = u;
    if (value < 1024) break;
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${unit}`;
}

export function encode(kind, fields) {
  return MARKER + JSON.stringify({ t: kind, ...fields });
}

export function decode(text) {
  if (!text.startsWith(MARKER)) return null;
  let fields;
  try {
    fields = JSON.parse(text.slice(MARKER.length));
  } catch (e) {
    throw new Error("damaged file message");
  }
  if (!fields || typeof fields !== "object" || typeof fields.t !== "string" || !/^[0-9a-f]{16}$/.test(String(fields.id))) {
    throw new Error("damaged file message");
  }
  return fields;
}

function randomToken() {
  return b64url(crypto.getRandomValues(new Uint8Array(16)));
}

async function sha256Hex(bytes) {
  return hex(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
}

/**
 * One end of a bulk stream over its own WebSocket: skips HELLO, says
 * STREAM, then hands binary bytes to onBytes.  A refusal (ERROR …) or a
 * close before the end rejects `ended`.
 */
class StreamSocket {
  constructor(url, token, role, WebSocketImpl, first = null) {
    this.buffered = [];
    this.waiters = [];
    this.ws = new WebSocketImpl(url);
    this.ws.binaryType = "arraybuffer";
    this.closed = new Promise((resolve) => (this.closedResolve = resolve));
    this.ws.onmessage = (event) => {
      if (typeof event.data === "string") {
        if (event.data.startsWith("HELLO ")) {
          this.ws.send(`STREAM ${token} ${role}`);
          if (first) this.ws.send(first);
        }
        else if (event.data.startsWith("ERROR ")) this.error = "the relay refused the stream: " + event.data.slice(6);
        return;
      }
      this.onBytes(new Uint8Array(event.data));
    };
    this.ws.onclose = () => this.closedResolve();
    this.ws.onerror = () => {};
    this.onBytes = () => {};
  }

  send(bytes) {
    this.ws.send(bytes);
  }

  /** Resolves once the socket holds little enough to send more. */
  async drained(limit = BUFFERED_HIGH) {
    while (this.ws.readyState === 1 && this.ws.bufferedAmount > limit) await new Promise((r) => setTimeout(r, 10));
  }

  close() {
    this.ws.close();
  }
}

/**
 * The page's file transfers.  host: the session (sendControl, notice,
 * problem, cipher, nick, url, WebSocketImpl); ui: offer(), progress(),
 * received(), transferEnded().
 */
export class Transfers {
  constructor(host, ui) {
    this.host = host;
    this.ui = ui;
    this.offered = new Map(); // id -> {bytes, name, size, target, sha256, type, when}
    this.incoming = new Map(); // id -> {sender, target, name, size, sha256, type, state}
    this.sockets = new Map(); // transfer key (id, or id + receiver) -> its stream, while it runs
    this.stopped = new Set(); // transfer keys the user cancelled
  }

  /** The user's Cancel: stop receiving (key: the id) or sending to one receiver (key: id + receiver). */
  async cancel(key) {
    const stream = this.sockets.get(key);
    if (!stream || this.stopped.has(key)) return;
    this.stopped.add(key);
    const incoming = this.incoming.get(key);
    const [id, peer] = incoming ? [key, incoming.sender] : [key.slice(0, 16), key.slice(16)];
    stream.close();
    await this.host.sendControl(peer, encode("cancel", { id }));
    const name = incoming ? incoming.name : this.offered.get(id)?.name ?? "the file";
    this.ui.transferEnded(key, incoming ? `stopped receiving ${name} from ${peer}` : `stopped sending ${name} to ${peer}`, false);
  }

  // --- sending --------------------------------------------------------------------------

  /** Offer a File (or {name, bytes}) to a room or a person. */
  async offer(file, target) {
    if (!this.host.cipher.masters.aes2) return this.host.problem(null, "this relay has no streams (an older relay): the page cannot send files there");
    if (file.size > MAX_FILE) return this.host.problem(null, `${safeName(file.name)} is ${humanSize(file.size)}; the page sends files up to ${humanSize(MAX_FILE)} (the terminal client has no limit)`);
    // (a Blob has a bytes() method in newer browsers: ask for the buffer)
    const bytes = typeof Blob !== "undefined" && file instanceof Blob ? new Uint8Array(await file.arrayBuffer()) : file.bytes;
    const id = hex(crypto.getRandomValues(new Uint8Array(8)));
    const entry = {
      bytes, name: safeName(file.name), size: bytes.length, target, sha256: await sha256Hex(bytes),
      type: sniffImage(bytes.subarray(0, 16)) || "file", when: this.host.now(),
    };
    this.offered.set(id, entry);
    for (const [old, e] of this.offered) if (this.host.now() - e.when > OFFER_LIFETIME_MS) this.offered.delete(old);
    await this.host.sendControl(target, encode("offer", {
      id, name: entry.name, size: entry.size, sha256: entry.sha256, type: entry.type,
      chunks: Math.max(1, Math.ceil(entry.size / CHUNK_SIZE)), stream: 1,
    }));
    this.ui.offered(target, { id, name: entry.name, size: entry.size, type: entry.type });
  }

  async sendOver(id, entry, receiver, token) {
    const key = await this.host.cipher.fileKey(entry.target, this.host.nick, id, entry.target);
    const aesKey = key;
    const stream = new StreamSocket(this.host.url, token, "send", this.host.WebSocketImpl);
    this.sockets.set(id + receiver, stream);
    stream.closed.then(() => this.sockets.delete(id + receiver));
    const frames = Math.max(1, Math.ceil(entry.size / FRAME_SIZE));
    let position = new Uint8Array(0);
    const start = await new Promise((resolve, reject) => {
      stream.onBytes = (bytes) => {
        position = new Uint8Array([...position, ...bytes]);
        if (position.length >= 8) resolve(Number(new DataView(position.buffer).getBigUint64(0)));
      };
      stream.closed.then(() => reject(new Error(stream.error || "the stream closed before the receiver asked")));
    });
    if (start > frames) throw new Error("the receiver asked for a frame past the end");
    for (let index = start; index < frames; index++) {
      const data = entry.bytes.subarray(index * FRAME_SIZE, Math.min(entry.size, (index + 1) * FRAME_SIZE));
      const frame = await sealFrame(aesKey, id, token, index, index === frames - 1, data,
                                    crypto.getRandomValues(new Uint8Array(NONCE)));
      for (let at = 0; at < frame.length; at += SLICE) {
        await stream.drained();
        if (stream.ws.readyState !== 1) throw new Error("the stream was cut");
        stream.send(frame.subarray(at, at + SLICE));
      }
      this.ui.progress(id + receiver, `sending ${entry.name} to ${receiver}`, Math.min(entry.size, (index + 1) * FRAME_SIZE), entry.size);
    }
    await stream.drained(0);
    stream.close();
  }

  // --- messages from peers ---------------------------------------------------------------------

  async handle(sender, target, fields) {
    const handler = this["on_" + fields.t];
    if (!handler) return; // a newer client's kind
    try {
      await handler.call(this, sender, target, fields);
    } catch (e) {
      this.host.problem(null, `file transfer with ${sender} stopped: ${e.message}`);
    }
  }

  async on_accept(sender, target, fields) {
    const entry = this.offered.get(fields.id);
    if (!entry) return;
    if (typeof fields.stream !== "string" || !/^[A-Za-z0-9_-]{22,64}$/.test(fields.stream)) {
      this.host.problem(null, `${sender}'s client takes files only in the chat itself, which this page does not send; ${sender} can use a newer client`);
      await this.host.sendControl(sender, encode("cancel", { id: fields.id }));
      return;
    }
    // Not awaited: the session handles its next lines meanwhile.
    this.sendOver(fields.id, entry, sender, fields.stream).catch((e) => {
      if (this.stopped.has(fields.id + sender)) return; // cancelled: said so already
      this.ui.transferEnded(fields.id + sender, `sending ${entry.name} to ${sender} failed: ${e.message}`, true);
    });
  }

  on_reject(sender, target, fields) {
    const entry = this.offered.get(fields.id);
    if (entry) this.host.notice(null, `${sender} declined ${entry.name}`);
  }

  on_ack(sender, target, fields) {
    const entry = this.offered.get(fields.id);
    if (entry && fields.i === -1) this.ui.transferEnded(fields.id + sender, `${sender} has ${entry.name} ✓`, false);
  }

  on_cancel(sender, target, fields) {
    const entry = this.offered.get(fields.id);
    if (entry) this.ui.transferEnded(fields.id + sender, `${sender} stopped ${entry.name}`, true);
    const incoming = this.incoming.get(fields.id);
    if (incoming && incoming.sender === sender) {
      this.incoming.delete(fields.id);
      this.ui.transferEnded(fields.id, `${sender} stopped sending ${incoming.name}`, true);
    }
  }

  on_offer(sender, target, fields) {
    const size = Number(fields.size);
    if (this.incoming.has(fields.id)) return; // offered again (the sender reconnected)
    if (!Number.isSafeInteger(size) || size < 0 || !/^[0-9a-f]{64}$/.test(String(fields.sha256))) {
      throw new Error("damaged file offer");
    }
    const offer = {
      id: fields.id, sender, target, name: safeName(fields.name), size, sha256: String(fields.sha256),
      type: fields.type in IMAGE_TYPES ? fields.type : "file", stream: fields.stream === 1, state: "offered",
    };
    this.incoming.set(offer.id, offer);
    const conv = target.startsWith("#") ? target : sender;
    const acceptable = size <= MAX_FILE && offer.stream && Boolean(this.host.cipher.masters.aes2);
    // taken without a click, as the terminal client does -- within the same bounds on what runs at once
    const running = [...this.incoming.values()].filter((o) => o.state === "receiving");
    const auto = acceptable && size <= AUTO_ACCEPT && running.length < AUTO_AT_ONCE &&
                 running.filter((o) => o.sender === sender).length < AUTO_PER_SENDER;
    this.ui.offer(conv, offer, acceptable, auto);
    if (auto) this.accept(offer.id).catch((e) => this.ui.transferEnded(offer.id, `receiving ${offer.name} failed: ${e.message}`, true));
  }

  // --- receiving ---------------------------------------------------------------------------------

  async reject(id) {
    const offer = this.incoming.get(id);
    if (!offer || offer.state !== "offered") return;
    this.incoming.delete(id);
    await this.host.sendControl(offer.sender, encode("reject", { id }));
    this.ui.transferEnded(id, `declined ${offer.name}`, false);
  }

  async accept(id) {
    const offer = this.incoming.get(id);
    if (!offer || offer.state !== "offered") return;
    offer.state = "receiving";
    const token = randomToken();
    const key = await this.host.cipher.fileKey(offer.target, offer.sender, id, offer.sender);
    const aes = await crypto.subtle.importKey("raw", key, "AES-GCM", false, ["decrypt"]);
    // The first bytes say where we stand: frame 0 (the page does not resume).
    const stream = new StreamSocket(this.host.url, token, "recv", this.host.WebSocketImpl, new Uint8Array(8));
    this.sockets.set(id, stream);
    const receiving = this.receiveFrames(stream, aes, offer, id, token);
    await this.host.sendControl(offer.sender, encode("accept", { id, stream: token }));
    const { parts, received, failed } = await receiving;
    stream.close();
    this.sockets.delete(id);
    this.incoming.delete(id);
    if (this.stopped.has(id)) return; // cancelled: said so already
    await this.finishReceiving(offer, id, parts, received, failed);
  }

  /** The frames of one offer from its stream: {parts, received, failed (null: all came)}. */
  receiveFrames(stream, aes, offer, id, token) {
    const frames = Math.max(1, Math.ceil(offer.size / FRAME_SIZE));
    const pieces = new Pieces();
    const result = { parts: [], received: 0, failed: null };
    let index = 0;
    let chain = Promise.resolve();
    return new Promise((resolve) => {
      const readFrames = async () => {
        while (!result.failed && index < frames && pieces.size >= 4) {
          const length = pieces.peekLength();
          if (length < NONCE + TAG || length > NONCE + FRAME_SIZE + TAG) throw new Error("a frame of impossible length");
          if (pieces.size < 4 + length) break;
          pieces.take(4);
          const body = pieces.take(length);
          let plain;
          try {
            plain = new Uint8Array(await crypto.subtle.decrypt(
              { name: "AES-GCM", iv: body.subarray(0, NONCE), additionalData: frameAad(id, token, index, index === frames - 1), tagLength: 128 },
              aes, body.subarray(NONCE)));
          } catch (e) {
            throw new Error(`frame ${index} does not authenticate (altered, reordered, cut or spliced)`);
          }
          result.received += plain.length;
          if (result.received > offer.size) throw new Error("more data than announced");
          result.parts.push(plain);
          index += 1;
          this.ui.progress(id, `receiving ${offer.name} from ${offer.sender}`, result.received, offer.size);
          if (index === frames) resolve(result);
        }
      };
      stream.onBytes = (bytes) => {
        if (result.failed || index >= frames) return;
        pieces.push(bytes);
        chain = chain.then(readFrames).catch((e) => {
          result.failed = e.message;
          resolve(result);
        });
      };
      stream.closed.then(() => chain.then(() => {
        if (index < frames && !result.failed) result.failed = stream.error || "the stream was cut";
        resolve(result);
      }));
    });
  }

  async finishReceiving(offer, id, parts, received, failed) {
    if (!failed && received !== offer.size) failed = "the file is shorter than announced";
    const blob = new Blob(parts, { type: IMAGE_TYPES[offer.type] || "application/octet-stream" });
    if (!failed && (await sha256Hex(new Uint8Array(await blob.arrayBuffer()))) !== offer.sha256) failed = "the file does not match its checksum";
    if (failed) {
      await this.host.sendControl(offer.sender, encode("cancel", { id }));
      this.ui.transferEnded(id, `receiving ${offer.name} from ${offer.sender} failed: ${failed}`, true);
      return;
    }
    await this.host.sendControl(offer.sender, encode("ack", { id, i: -1, stream: 1 }));
    const head = new Uint8Array(await blob.slice(0, 16).arrayBuffer());
    const image = offer.type !== "file" && sniffImage(head) === offer.type;
    this.ui.received(id, { name: offer.name, size: offer.size, url: URL.createObjectURL(blob), image });
  }
}

/**
 * Bytes as they come from a stream, in WebSocket-message pieces (64 KiB or
 * so), taken out in whole frames (1 MiB): pieces wait in a list and are
 * joined once a whole frame is there, so each byte is copied once.
 */
class Pieces {
  constructor() {
    this.pending = [];
    this.size = 0;
  }

  push(bytes) {
    this.pending.push(bytes);
    this.size += bytes.length;
  }

  take(n) {
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const piece = this.pending[0];
      const used = Math.min(piece.length, n - at);
      out.set(piece.subarray(0, used), at);
      at += used;
      if (used === piece.length) this.pending.shift();
      else this.pending[0] = piece.subarray(used);
    }
    this.size -= n;
    return out;
  }

  /** The next frame's length (its first 4 bytes), left in place. */
  peekLength() {
    if (this.pending[0].length < 4) {
      const head = this.take(4);
      this.pending.unshift(head);
      this.size += 4;
    }
    return new DataView(this.pending[0].buffer, this.pending[0].byteOffset).getUint32(0);
  }
}
