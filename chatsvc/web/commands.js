// The page's slash commands: parsing and checking the user's words; the
// session and its parts do the sending. As chatsvc/client/commands.py.

import { casefold } from "./casefold.js";
import { ACTION_MARKER, TOPIC_MARKER } from "./inbound.js";
import { isNick, isRoom, nickProblem } from "./proto.js";

export const HELP = [
  "text — send to the current room or conversation",
  "/join #room — join a room and make it current",
  "/part [#room] [reason] — leave a room (default: the current one)",
  "/msg nick text — private message, encrypted like room messages",
  "/me action — an action: /me waves shows “* you waves”",
  "/query nick — open a private conversation with nick",
  "/topic [text] — show the room's topic, or set it (encrypted like messages)",
  "/names — who is in the current room",
  "/whois nick — the rooms you share with nick, their away note, their key and whether you verified it",
  "/verify nick — the safety number to compare with nick (in person, on a call)",
  "/verify nick yes — they match: mark nick's key verified (or type the number back; the page also has a button)",
  "/retry nick — ask nick for their keys again (after they did not answer a key exchange)",
  "/unsafe nick — send the private messages waiting for nick's keys without forward secrecy",
  "/away [text] — answer private messages with “away: text” (once per person); /away alone: back",
  "/ignore [nick], /unignore nick — hide everything from nick (files too)",
  "/window N — switch to the Nth conversation (Alt-1…9 too)",
  "/rooms — rooms on the server",
  "/nick newnick — change your nick",
  "/clear — empty this conversation's view",
  "sealed rooms (a key of their own instead of the passphrase):",
  "/seal [#room] — make the room sealed, owned by you",
  "/invite nick — give nick the key of the current sealed room (/invite-link: a link for anyone)",
  "/members — who the current sealed room's key was given to, with fingerprints",
  "/remove nick — take the room back from nick: a new key for everyone else (/rekey: the same, nobody removed)",
  "/op nick — make nick an owner too",
  "/help — this list",
  "/quit [reason] — leave (the reason is not encrypted)",
  "//text — send text starting with a slash",
];

export class Commands {
  constructor(session) {
    this.session = session;
  }

  /** A typed line starting with one slash; false if there is no such command. */
  async run(text) {
    const [command, ...rest] = text.slice(1).split(" ");
    const handler = this["cmd_" + command.toLowerCase().replace(/-/g, "_")];
    if (!handler) return this.problem(`unknown command /${command} — /help lists them`);
    await handler.call(this, rest.join(" ").trim());
  }

  /** The command names (for Tab completion), without the slash. */
  names() {
    return Object.getOwnPropertyNames(Commands.prototype).filter((n) => n.startsWith("cmd_")).map((n) => n.slice(4).replace(/_/g, "-")).sort();
  }

  get current() {
    return this.session.conversations.current;
  }

  currentConv() {
    return this.session.conversations.get(this.current);
  }

  notice(text) {
    this.session.notice(this.current, text);
  }

  problem(text) {
    this.session.problem(this.current, text);
  }

  async cmd_me(args) {
    if (!args) return this.problem("usage: /me action (e.g. /me waves)");
    await this.session.say(ACTION_MARKER + args, true);
  }

  async cmd_topic(args) {
    const s = this.session;
    const conv = this.currentConv();
    if (!conv || !conv.room || !conv.joined) return this.problem("/topic is for rooms: switch to one first");
    if (!args) {
      s.receiver.topicAsked.add(this.current);
      return s.send("TOPIC", conv.name);
    }
    const payload = await s.cipher.encrypt(TOPIC_MARKER + args, conv.name, s.nick);
    if (payload.length > 2048) return this.problem("topic too long once encrypted (at most 2048 characters)");
    s.send("TOPIC", conv.name, payload);
  }

  async cmd_join(args) {
    const room = args.split(" ")[0];
    const name = room.startsWith("#") ? room : "#" + room;
    if (!isRoom(name)) return this.problem("usage: /join #room (letters, digits, _ - . after the #)");
    if (this.session.sealing.refuses(name)) return;
    this.session.presence.switchTo = casefold(name);
    this.session.conversations.open(name);
    await this.session.registration.join(name);
  }

  cmd_part(args) {
    let [room, ...reason] = args.split(" ");
    if (!room.startsWith("#")) {
      reason = args ? [args] : [];
      room = this.currentConv()?.name || "";
    }
    if (!isRoom(room)) return this.problem("usage: /part [#room] [reason]");
    this.session.send("PART", room, ...(reason.join(" ").trim() ? [reason.join(" ").trim()] : []));
  }

  async cmd_msg(args) {
    const space = args.indexOf(" ");
    const nick = space < 0 ? args : args.slice(0, space);
    const text = space < 0 ? "" : args.slice(space + 1).trim();
    if (!isNick(nick) || !text) return this.problem("usage: /msg nick text");
    if (this.session.sealing.refuses("private")) return;
    // A page has room for it: the conversation opens, as a click on a name does.
    this.session.conversations.open(nick, true);
    this.session.setCurrent(casefold(nick));
    await this.session.sender.send(nick, text, text);
  }

  cmd_query(args) {
    const nick = args.split(" ")[0];
    if (!isNick(nick)) return this.problem("usage: /query nick");
    this.session.conversations.open(nick, true);
    this.session.setCurrent(casefold(nick));
  }

  cmd_nick(args) {
    const problem = nickProblem(args);
    if (problem) return this.problem(`cannot use that nick: ${problem}`);
    this.session.send("NICK", args);
  }

  cmd_names() {
    const conv = this.currentConv();
    if (!conv || !conv.room) return this.problem("/names lists a room's members: switch to a room first");
    conv.showNames = true;
    this.session.send("NAMES", conv.name);
  }

  cmd_rooms() {
    this.session.presence.askRooms();
  }

  cmd_window(args) {
    const shown = [...this.session.conversations.map].filter(([, c]) => !c.room || c.joined);
    const n = Number(args);
    if (!/^[1-9][0-9]*$/.test(args) || n > shown.length) {
      return this.notice("conversations: " + shown.map(([, c], i) => `${i + 1} ${c.name}`).join(", "));
    }
    this.session.setCurrent(shown[n - 1][0]);
  }

  async cmd_whois(args) {
    if (!isNick(args)) return this.problem("usage: /whois nick");
    const convs = this.session.conversations;
    const rooms = [...convs.map.values()].filter((c) => c.room && c.members.has(casefold(args))).map((c) => c.name);
    const away = convs.awayOf.get(casefold(args));
    this.notice(`${args} is ${rooms.length ? `in ${rooms.join(", ")} with you` : "in no room you share"}` +
                (away ? `; away: ${away}` : "") + (convs.isIgnored(args) ? "; ignored" : "") +
                await this.session.trust.keyStatus(args));
  }

  async cmd_verify(args) {
    const [nick, ...answer] = args.split(" ");
    if (!isNick(nick)) return this.problem("usage: /verify nick, then /verify nick yes once the numbers match");
    if (!this.session.trust.signing) return this.problem("this browser has no identity keys");
    await this.session.verify(nick, answer.join(" "));
  }

  async cmd_retry(args) {
    if (!isNick(args)) return this.problem("usage: /retry nick");
    await this.session.sender.retry(args);
  }

  async cmd_unsafe(args) {
    if (!isNick(args)) return this.problem("usage: /unsafe nick (sends what waits for nick's keys without forward secrecy)");
    await this.session.sender.force(args);
  }

  cmd_away(args) {
    this.session.setAway(args.slice(0, 80) || null);
    this.notice(args ? `away: ${args} (sent once to whoever messages you privately)` : "you are back");
  }

  cmd_ignore(args) {
    const ignored = this.session.conversations.ignored;
    if (!args) return this.notice(ignored.size ? `ignoring ${[...ignored.values()].join(", ")}` : "ignoring nobody");
    if (!isNick(args)) return this.problem("usage: /ignore nick");
    ignored.set(casefold(args), args);
    this.notice(`ignoring ${args} (messages and files) until /unignore ${args} or you leave`);
  }

  cmd_unignore(args) {
    if (!this.session.conversations.ignored.delete(casefold(args || ""))) {
      return this.problem(args ? `not ignoring ${args}` : "usage: /unignore nick");
    }
    this.notice(`no longer ignoring ${args}`);
  }

  cmd_clear() {
    const s = this.session;
    if (this.current) delete s.delivery.transcript[this.current];
    s.ui.clear?.(this.current);
    s.save();
  }

  cmd_help() {
    for (const line of HELP) this.notice(line);
  }

  cmd_quit(args) {
    this.session.quit(args);
  }

  // --- sealed rooms (sealing.js) -----------------------------------------------------------

  roomArg(args) {
    const room = args.trim();
    if (!room) return this.session.conversations.get(this.current) ? this.session.conversations.get(this.current).name : null;
    return room.startsWith("#") ? room : "#" + room;
  }

  nickAndRoom(args, usage) {
    const words = args.split(" ").filter(Boolean);
    if (words.length < 1 || words.length > 2 || !isNick(words[0])) return this.problem(`usage: ${usage}`), null;
    return [words[0], this.roomArg(words[1] || "")];
  }

  cmd_seal(args) { return this.session.sealing.seal(this.roomArg(args)); }
  cmd_members(args) { return this.session.sealing.members(this.roomArg(args)); }
  cmd_rekey(args) { return this.session.sealing.rekey(this.roomArg(args)); }
  cmd_invite_link(args) { return this.session.sealing.inviteLink(this.roomArg(args), this.session.pageAddress || "https://localhost/"); }

  cmd_invite(args) {
    const got = this.nickAndRoom(args, "/invite nick [#room] (or /invite-link [#room])");
    return got && this.session.sealing.invite(...got);
  }

  cmd_remove(args) {
    const got = this.nickAndRoom(args, "/remove nick [#room]");
    return got && this.session.sealing.rekey(got[1], got[0]);
  }

  cmd_op(args) {
    const got = this.nickAndRoom(args, "/op nick [#room]");
    return got && this.session.sealing.op(...got);
  }
}
