// The page's view: the join form, conversations, the message log. It draws
// what session.js decides and feeds it what the user types. Every name and
// message goes into the page as text (textContent), never as HTML.

import { complete } from "./completion.js";
import { fingerprint, hasWebCrypto } from "./crypto.js";
import { AUTO_ACCEPT, humanSize } from "./files.js";
import { linkify } from "./links.js";
import { nickColour } from "./nickcolour.js";
import { ChatSession, key } from "./session.js";
import { Keyring, takeLink } from "./sealing.js";
import { parseLink } from "./sealed.js";

const $ = (id) => document.getElementById(id);
const MAX_SHOWN = 1000; // lines kept per conversation in the page
const REMEMBER = "chatsvc.remember";

const logs = new Map(); // conversation key -> [li]
let session = null;
let current = null;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function clock(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
}

function day(ms) {
  return new Date(ms).toLocaleDateString([], { weekday: "long", day: "numeric", month: "long" });
}

/** Message text, its http(s) addresses as links (built as elements, never from HTML). */
function withLinks(text) {
  const span = el("span", "text");
  for (const part of linkify(text)) {
    if (!part.url) {
      span.append(part.text);
      continue;
    }
    const a = el("a", null, part.text);
    a.href = part.url;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    span.append(a);
  }
  return span;
}

/** The second step of /verify, for those who compared the numbers by eye. */
function matchButton(nick) {
  const button = el("button", "confirm", "They match");
  button.type = "button";
  button.setAttribute("aria-label", `They match: mark ${nick}'s key verified`);
  button.addEventListener("click", () => {
    button.disabled = true;
    session?.typed(`/verify ${nick} yes`);
  });
  return button;
}

// --- what the session tells the view -------------------------------------------------------

const view = {
  line(conv, entry) {
    if (conv === null || conv === undefined) conv = current ?? "";
    const list = logs.get(conv) || [];
    logs.set(conv, list);
    const li = el("li", entry.kind + (entry.own ? " own" : "") + (entry.pending ? " pending" : "") +
                        (entry.mention ? " mention" : "") + (entry.history ? " history" : ""));
    if (entry.cid) li.dataset.cid = entry.cid;
    const when = el("time", null, clock(entry.time));
    when.dateTime = new Date(entry.time).toISOString();
    when.title = day(entry.time);
    li.append(when);
    if (entry.kind === "msg" && entry.action) {
      li.classList.add("action");
      li.append(el("span", "text", `* ${entry.from} ${entry.text}`));
      if (entry.pending) li.append(el("span", "mark sending", "sending…"));
    } else if (entry.kind === "msg") {
      li.append(el("span", `from nick-${nickColour(entry.from)}`, entry.from));
      if (entry.like) li.append(el("span", "mark lookalike", `(not ${entry.like}: a look-alike)`));
      li.append(withLinks(entry.text));
      if (entry.unsigned) li.append(el("span", "mark unsigned", "(unsigned)"));
      if (entry.notPrivate) li.append(el("span", "mark", "(not private: keyed by the passphrase alone)"));
      if (entry.held) li.append(el("span", "mark", "(held until /verify)"));
      if (entry.history) li.append(el("span", "mark", `(${entry.history})`));
      if (entry.pending) li.append(el("span", "mark sending", "sending…"));
    } else {
      li.append(el("span", "text", entry.text));
      if (entry.confirm) li.append(matchButton(entry.confirm));
    }
    list.push(li);
    if (list.length > MAX_SHOWN) list.splice(0, list.length - MAX_SHOWN).forEach((n) => n.remove());
    if (conv === current) {
      const box = $("logbox"); // (the scrolling part, around the list)
      const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
      $("log").append(li);
      if (atBottom || entry.own) li.scrollIntoView({ block: "end" });
    }
    if (entry.mention && document.hidden) notify(conv, entry);
  },
  acked(cid) {
    for (const li of document.querySelectorAll(`li[data-cid="${CSS.escape(cid)}"]`)) {
      li.classList.remove("pending");
      li.querySelector(".sending")?.remove();
    }
    for (const list of logs.values()) {
      for (const li of list) {
        if (li.dataset.cid === cid) {
          li.classList.remove("pending");
          li.querySelector(".sending")?.remove();
        }
      }
    }
  },
  refused(cid) {
    for (const list of logs.values()) {
      for (const li of list) {
        if (li.dataset.cid === cid) {
          li.classList.replace("pending", "failed");
          const mark = li.querySelector(".sending");
          if (mark) mark.textContent = "not delivered";
        }
      }
    }
  },
  status(text) {
    $("status").textContent = text;
  },
  current(conv) {
    current = conv;
    if (logs.has("") && conv !== "") {
      // what was said before any conversation existed (connecting, errors)
      logs.set(conv, [...logs.get(""), ...(logs.get(conv) || [])]);
      logs.delete("");
    }
    const log = $("log");
    log.replaceChildren(...(logs.get(conv) || []));
    log.lastElementChild?.scrollIntoView({ block: "end" });
    const c = session.conversations.get(conv);
    drawTitle();
    $("message").placeholder = c ? `Message ${c.name} — /help for commands` : "Message";
    closeMenu();
  },
  changed() {
    if (!session) return;
    drawTitle();
    drawConversations();
    drawMembers();
  },
  clear(conv) {
    logs.set(conv, []);
    if (conv === current) $("log").replaceChildren();
  },
  // --- files (files.js) ---
  offer(conv, offer, acceptable, auto) {
    const li = fileEntry(conv, offer.id, `${offer.sender} offers ${offer.name} (${describe(offer)})`);
    const actions = el("span", "actions");
    if (auto) {
      actions.append(el("span", "mark", `(taken: files up to ${humanSize(AUTO_ACCEPT)} come without a click)`));
    } else if (acceptable) {
      const yes = el("button", null, "Accept");
      const no = el("button", null, "Decline");
      yes.type = no.type = "button";
      yes.setAttribute("aria-label", `Accept ${offer.name}`);
      no.setAttribute("aria-label", `Decline ${offer.name}`);
      yes.addEventListener("click", () => {
        actions.remove();
        session.transfers.accept(offer.id);
      });
      no.addEventListener("click", () => {
        actions.remove();
        session.transfers.reject(offer.id);
      });
      actions.append(yes, no);
    } else {
      actions.append(el("span", "mark", "too large for the page, or this relay has no streams: take it with the terminal client"));
    }
    li.append(actions);
  },
  offered(target, info) {
    fileEntry(session.conversations.has(current) ? current : "", info.id, `you offered ${info.name} (${describe(info)}) to ${target}`);
  },
  progress(id, what, done, total) {
    const li = transfers.get(id) || fileEntry(current, id, what);
    let bar = li.querySelector("progress");
    if (!bar) {
      bar = el("progress");
      bar.max = 1;
      li.append(bar);
    }
    bar.value = total ? done / total : 1;
    bar.setAttribute("aria-label", what);
    bar.title = `${what}: ${Math.floor(100 * bar.value)}%`;
    showRate(li, id, done, total);
  },
  received(id, file) {
    const li = transfers.get(id) || fileEntry(current, id, file.name);
    li.querySelector("progress")?.remove();
    li.querySelector(".rate")?.remove();
    li.querySelector(".cancel")?.remove();
    const link = el("a", "download");
    link.href = file.url;
    link.download = file.name;
    link.textContent = `${file.name} (${humanSize(file.size)})`;
    if (file.image) li.append(thumbnail(file)); // shown only now that the whole file checked out
    li.append(link);
  },
  transferEnded(id, text, failed) {
    const li = transfers.get(id) || fileEntry(current, id, "");
    li.querySelector("progress")?.remove();
    li.querySelector(".actions")?.remove();
    li.querySelector(".rate")?.remove();
    li.querySelector(".cancel")?.remove();
    li.append(el("span", failed ? "mark failed-note" : "mark", text));
  },

  ended(reason) {
    $("chat").hidden = true;
    $("welcome").hidden = false;
    $("join").hidden = false;
    $("join-error").textContent = reason;
    $("passphrase").value = "";
    session = null;
    logs.clear();
    document.title = "chatsvc";
  },
};

const transfers = new Map(); // transfer id (or id + receiver) -> its log entry
const began = new Map(); // transfer id -> [when, bytes] its progress started

/** "42%, 1.2 MiB/s, 3 s left" beside a transfer's bar, and its Cancel button. */
function showRate(li, id, done, total) {
  if (!began.has(id)) began.set(id, [Date.now(), done]);
  const [when, from] = began.get(id);
  const seconds = (Date.now() - when) / 1000;
  let text = `${total ? Math.floor((100 * done) / total) : 100}%`;
  if (seconds >= 0.5 && done > from) {
    const rate = (done - from) / seconds;
    const left = (total - done) / rate;
    text += `, ${humanSize(Math.round(rate))}/s, ${left < 120 ? `${Math.round(left)} s` : `${Math.round(left / 60)} min`} left`;
  }
  let rate = li.querySelector(".rate");
  if (!rate) {
    rate = el("span", "mark rate");
    const cancel = el("button", "cancel", "Cancel");
    cancel.type = "button";
    cancel.setAttribute("aria-label", `Cancel ${li.querySelector(".text")?.textContent || "this transfer"}`);
    cancel.addEventListener("click", () => {
      cancel.disabled = true;
      session?.transfers.cancel(id);
    });
    li.append(rate, cancel);
  }
  rate.textContent = text;
}

/** A verified image: a thumbnail that opens it full size. */
function thumbnail(file) {
  const open = el("button", "thumb-button");
  open.type = "button";
  open.setAttribute("aria-label", `Show ${file.name} full size`);
  const img = el("img", "thumb");
  img.src = file.url;
  img.alt = file.name;
  open.append(img);
  open.addEventListener("click", () => {
    const full = $("viewer-image");
    full.src = file.url;
    full.alt = file.name;
    $("viewer-name").textContent = file.name;
    $("viewer").showModal();
  });
  return open;
}

function describe(info) {
  return info.type && info.type !== "file" ? `${info.type} image, ${humanSize(info.size)}` : humanSize(info.size);
}

function fileEntry(conv, id, text) {
  let li = transfers.get(id);
  if (li) return li;
  view.line(conv, { kind: "file", text, time: Date.now() });
  li = (logs.get(conv ?? current ?? "") || []).at(-1);
  transfers.set(id, li);
  return li;
}

/** The mark of a verified key, where people look: members, the private chat's header. */
function verifiedMark(nick) {
  const mark = el("span", "verified", "verified");
  mark.title = `you compared safety numbers with ${nick} (/verify)`;
  return mark;
}

function drawTitle() {
  const c = session && session.conversations.get(current);
  $("title").textContent = c ? c.name : "";
  if (c && !c.room && session.trust.verified(c.name)) $("title").append(" ", verifiedMark(c.name));
  $("topic").textContent = c && c.topic ? c.topic : "";
}

function drawConversations() {
  const items = [];
  const privates = [];
  let unreadTotal = 0;
  let mentionTotal = 0;
  let index = 0;
  for (const [k, conv] of session.conversations) {
    if (conv.room && !conv.joined) continue;
    index += 1;
    const li = el("li");
    const button = el("button", conv.room ? "room" : "person");
    button.type = "button";
    button.append(el("span", "name", conv.name));
    if (conv.unread) {
      const badge = el("span", "badge" + (conv.mentions ? " mention" : ""), conv.mentions ? `${conv.unread}!` : String(conv.unread));
      badge.setAttribute("aria-label", `${conv.unread} unread${conv.mentions ? `, ${conv.mentions} mentioning you` : ""}`);
      button.append(badge);
      unreadTotal += conv.unread;
      mentionTotal += conv.mentions;
    }
    if (!conv.room) button.setAttribute("aria-label", `private conversation with ${conv.name}`);
    if (k === current) button.setAttribute("aria-current", "page");
    if (index <= 9) button.title = `Alt+${index}`;
    button.addEventListener("click", () => session.setCurrent(k));
    li.append(button);
    (conv.room ? items : privates).push(li);
  }
  $("conversations").replaceChildren(...items);
  $("privates").replaceChildren(...privates);
  $("privates-title").hidden = !privates.length;
  document.title = unreadTotal ? `(${unreadTotal}) chatsvc` : "chatsvc";
  drawMenuButton(unreadTotal, mentionTotal);
}

/** The phone's "Rooms" button: what is waiting behind it. */
function drawMenuButton(unread, mentions) {
  const menu = $("menu");
  menu.replaceChildren("Rooms");
  menu.removeAttribute("aria-label");
  if (!unread) return;
  const badge = el("span", "badge" + (mentions ? " mention" : ""), mentions ? `${unread}!` : String(unread));
  menu.append(badge);
  menu.setAttribute("aria-label", `Rooms: ${unread} unread${mentions ? `, ${mentions} mentioning you` : ""}`);
}

function drawMembers() {
  const conv = session && session.conversations.get(current);
  const ul = $("members");
  if (!conv || !conv.room) {
    ul.replaceChildren();
    $("people").hidden = true;
    return;
  }
  $("people").hidden = false;
  const nicks = [...conv.members.values()].sort((a, b) => a.localeCompare(b));
  ul.replaceChildren(...nicks.map((nick) => {
    const li = el("li");
    const button = el("button", "person");
    button.append(el("span", "name", nick));
    if (session.trust.verified(nick)) button.append(verifiedMark(nick));
    button.type = "button";
    button.title = `private conversation with ${nick}`;
    button.addEventListener("click", () => session.typed(`/query ${nick}`));
    li.append(button);
    return li;
  }));
  if (conv.count && conv.count > nicks.length) ul.append(el("li", "count", `${conv.count} members`));
}

function notify(conv, entry) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  const where = session.conversations.get(conv);
  const n = new Notification(`${entry.from} in ${where ? where.name : "chatsvc"}`, { body: entry.text, tag: conv });
  n.onclick = () => {
    window.focus();
    session.setCurrent(conv);
  };
}

function closeMenu() {
  document.body.classList.remove("menu-open");
  $("menu").setAttribute("aria-expanded", "false");
}

// --- what the user does ---------------------------------------------------------------------

function socketUrl() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/chat`;
}

function join(nick, passphrase, room) {
  $("welcome").hidden = true;
  $("chat").hidden = false;
  session = new ChatSession({
    url: socketUrl(), nick, passphrase, room, ui: view,
    store: window.sessionStorage, replayStore: window.localStorage, keyStore: window.localStorage,
    now: () => Date.now(), setTimer: (f, ms) => setTimeout(f, ms), clearTimer: (t) => clearTimeout(t),
  });
  session.pageAddress = location.origin + location.pathname; // what /invite-link puts before #join=
  window.chatsvcSession = session; // for the browser tests and the curious
  session.start();
  $("message").focus();
}

function readJson(storage, name) {
  try {
    return JSON.parse(storage.getItem(name) || "null");
  } catch (e) {
    return null;
  }
}

let strength = null; // {bits, verdict} of what the passphrase box holds, once the meter has looked
let meter = null; // the meter's module and the ranked word lists, loaded on first use

/** The passphrase meter: the terminal client's rules (strength.js) over the lists the relay serves. */
async function measure() {
  const passphrase = $("passphrase").value;
  if (!meter) {
    const module = await import("./strength.js");
    const lists = await fetch("strength-words.json").then((r) => (r.ok ? r.json() : {})).catch(() => ({}));
    meter = { module, ranks: module.rankWords(lists) };
  }
  if ($("passphrase").value !== passphrase) return; // typed on meanwhile: the next call measures
  const bits = meter.module.strengthBits(passphrase, meter.ranks);
  strength = { bits, verdict: meter.module.verdict(bits) };
  $("strength-meter").value = Math.min(100, bits);
  const about = `about ${Math.round(bits)} bits`;
  $("strength-note").textContent = !passphrase ? "" : strength.verdict === "refuse"
    ? `${about}: too easy to guess — use several uncommon words (python -m chatsvc.client --new-passphrase makes one)`
    : strength.verdict === "warn" ? `${about}: fair; 64 or more keeps it safe against offline guessing` : `${about}: strong`;
}

/** Too easy to guess (under 40 bits, as the terminal client): refused unless the user says to use it anyway. */
function weakRefused() {
  if (!$("passphrase").value && !$("passphrase").required) return false; // sealed rooms only: no passphrase at all
  if (!strength || strength.verdict !== "refuse" || $("allow-weak").checked) return false;
  $("join-error").textContent = `This passphrase is too easy to guess (about ${Math.round(strength.bits)} bits; 40 ` +
    "are needed): whoever sees the traffic can try guesses offline. Choose a longer one, or tick “Use it anyway” " +
    "if the room already uses it.";
  $("allow-weak-label").hidden = false;
  return true;
}

let invitation = null; // an invitation link's #join=… part, once read

/**
 * An invitation link (https://…/#join=…): the page shows its room and the owner's fingerprint
 * before joining, asks no passphrase, and takes the secret out of the address bar at once.
 * Someone holding sealed rooms already may also leave the passphrase empty.
 */
async function showInvitation() {
  if (location.hash.startsWith("#join=")) {
    try {
      invitation = parseLink(location.hash);
    } catch (e) {
      $("join-error").textContent = `This invitation link cannot be used: ${e.message}.`;
    }
    history.replaceState(null, "", location.pathname + location.search);
  }
  const held = new Keyring(localStorage).rooms();
  if (!invitation && !held.length) return;
  $("passphrase").required = false;
  const note = $("invitation");
  note.hidden = false;
  if (!invitation) {
    note.textContent = `Leave the passphrase empty to enter only your sealed rooms (${held.join(", ")}).`;
    return;
  }
  $("room").value = invitation.room;
  $("room").readOnly = true;
  const owner = await fingerprint({ sign: invitation.owner, agree: invitation.ownerAgree });
  note.textContent = `An invitation to the sealed room ${invitation.room}, from the owner whose key is ${owner} ` +
    "(compare it with theirs). No passphrase needed: leave it empty.";
}

/** The join form: filled from a reload or "remember on this device"; joining on submit. */
function setUpJoin() {
  let pending = null;
  $("passphrase").addEventListener("input", () => {
    strength = null;
    clearTimeout(pending);
    pending = setTimeout(() => measure().catch(() => {}), 150);
  });
  const form = $("join");
  form.hidden = false;
  showInvitation().catch(() => {});
  const saved = readJson(sessionStorage, "chatsvc.session");
  if (saved && saved.nick) $("nick").value = saved.nick;
  // a reload: say why the passphrase is asked again (unless it was remembered)
  $("reload-note").hidden = !(saved && saved.nick) || Boolean(readJson(localStorage, REMEMBER));
  if (saved && saved.rooms && saved.rooms.find((r) => r.startsWith("#"))) $("room").value = saved.rooms.find((r) => r.startsWith("#"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!strength) await measure().catch(() => {});
    if (weakRefused()) return;
    const nick = $("nick").value.trim();
    const passphrase = $("passphrase").value || null; // none: only the sealed rooms held (an invitation's)
    let room = $("room").value.trim() || "#lobby";
    if (!room.startsWith("#")) room = "#" + room;
    if (invitation) takeLink(invitation, localStorage);
    if ($("remember").checked) {
      localStorage.setItem(REMEMBER, JSON.stringify({ nick, passphrase, room }));
    } else {
      localStorage.removeItem(REMEMBER);
    }
    $("join-error").textContent = "";
    join(nick, passphrase, room);
  });
}

/** Tab in the message box completes a nick, command or room; with nothing to complete it moves on. */
function tabComplete(event) {
  const box = $("message");
  if (event.key !== "Tab" || event.shiftKey || event.altKey || event.ctrlKey || event.metaKey || !session) return;
  if (box.selectionStart !== box.selectionEnd) return;
  const before = box.value.slice(0, box.selectionStart);
  if (!before || before.endsWith(" ")) return; // nothing to complete: Tab moves focus, as everywhere
  event.preventDefault();
  const conv = session.conversations.get(current);
  const rooms = [...session.conversations].filter(([, c]) => c.room && c.joined).map(([, c]) => c.name);
  const nicks = conv && conv.room ? [...conv.members.values()] : conv ? [conv.name] : [];
  const [text, candidates] = complete(before, session.commands.names(), rooms, nicks);
  box.value = text + box.value.slice(box.selectionStart);
  box.setSelectionRange(text.length, text.length);
  if (candidates.length) view.line(current, { kind: "notice", text: candidates.join("  "), time: Date.now() });
}

/** The message box, files (the picker, drag and drop), leaving. */
function setUpChat() {
  $("message").addEventListener("keydown", tabComplete);
  $("viewer-close").addEventListener("click", () => $("viewer").close());
  $("say").addEventListener("submit", (event) => {
    event.preventDefault();
    const box = $("message");
    if (box.value && session) session.typed(box.value);
    box.value = "";
  });
  $("attach").addEventListener("change", () => {
    for (const file of $("attach").files) session && session.sendFile(file);
    $("attach").value = "";
  });
  const main = $("main");
  main.addEventListener("dragover", (event) => {
    if (!session || !event.dataTransfer.types.includes("Files")) return;
    event.preventDefault();
    main.classList.add("dropping");
  });
  main.addEventListener("dragleave", () => main.classList.remove("dropping"));
  main.addEventListener("drop", (event) => {
    main.classList.remove("dropping");
    if (!session || !event.dataTransfer.files.length) return;
    event.preventDefault();
    for (const file of event.dataTransfer.files) session.sendFile(file);
  });
  $("leave").addEventListener("click", () => {
    localStorage.removeItem(REMEMBER);
    if (session) session.typed("/quit");
  });
}

/** Notifications, the phone's menu, Alt-1..9, coming back to the tab. */
function setUpControls() {
  $("notify").addEventListener("click", async () => {
    if (!("Notification" in window)) return view.line(current, { kind: "problem", text: "this browser has no notifications", time: Date.now() });
    const answer = await Notification.requestPermission();
    $("notify").textContent = answer === "granted" ? "Notifying" : "Notify me";
  });
  $("menu").addEventListener("click", () => {
    const open = document.body.classList.toggle("menu-open");
    $("menu").setAttribute("aria-expanded", String(open));
  });
  addEventListener("keydown", (event) => {
    // Alt-1..9 switch conversations, as in irssi and weechat.
    if (!session || !event.altKey || !/^[1-9]$/.test(event.key)) return;
    const shown = [...session.conversations].filter(([, c]) => !c.room || c.joined);
    const target = shown[Number(event.key) - 1];
    if (target) {
      event.preventDefault();
      session.setCurrent(target[0]);
      $("message").focus();
    }
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && session && current) session.setCurrent(current);
  });
}

function setUp() {
  if (!hasWebCrypto()) {
    $("insecure-host").textContent = location.host;
    $("insecure").hidden = false;
    $("welcome").hidden = true;
    return;
  }
  setUpJoin();
  setUpChat();
  setUpControls();
  const remembered = readJson(localStorage, REMEMBER);
  if (remembered && remembered.nick && remembered.passphrase) {
    $("nick").value = remembered.nick;
    $("room").value = remembered.room || $("room").value;
    $("remember").checked = true;
    join(remembered.nick, remembered.passphrase, remembered.room || "#lobby");
    return;
  }
  ($("nick").value ? $("passphrase") : $("nick")).focus();
}

// What was seen is written every 2 s and when the page goes away (a replay
// after a crash or reload is refused only if it was written down).
addEventListener("pagehide", () => session && session.save());
addEventListener("online", () => session && session.retryNow());
setInterval(() => session && session.replay.save(), 2000);

setUp();
