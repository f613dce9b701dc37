// Protocol v1 lines (docs/protocol.md), as the page reads and writes them.
// No DOM, no network: tests/js/proto.test.mjs runs it under Node.

// Commands whose last argument is the rest of the line, and how many plain
// arguments come before it.
const TRAILING = { HELLO: 2, ERROR: 1, MSG: 2, PART: 2, QUIT: 1 };

/** "@a=1;b KEY x y rest of line" -> {tags, command, args}; null for an empty line. */
export function parseLine(line) {
  let rest = line.replace(/\r$/, "");
  const tags = {};
  if (rest.startsWith("@")) {
    const space = rest.indexOf(" ");
    const block = space < 0 ? rest.slice(1) : rest.slice(1, space);
    rest = space < 0 ? "" : rest.slice(space + 1);
    for (const item of block.split(";")) {
      if (!item) continue;
      const eq = item.indexOf("=");
      tags[eq < 0 ? item : item.slice(0, eq)] = eq < 0 ? "" : item.slice(eq + 1);
    }
  }
  rest = rest.replace(/^ +/, "");
  if (!rest) return null;
  const firstSpace = rest.indexOf(" ");
  const command = (firstSpace < 0 ? rest : rest.slice(0, firstSpace)).toUpperCase();
  rest = firstSpace < 0 ? "" : rest.slice(firstSpace + 1);
  const args = [];
  const before = TRAILING[command];
  while (rest) {
    rest = rest.replace(/^ +/, "");
    if (!rest) break;
    if (before !== undefined && args.length === before) {
      args.push(rest);
      break;
    }
    const space = rest.indexOf(" ");
    args.push(space < 0 ? rest : rest.slice(0, space));
    rest = space < 0 ? "" : rest.slice(space + 1);
  }
  return { tags, command, args };
}

/** A line to send; the last argument may hold spaces (MSG payloads, reasons). */
export function formatLine(...parts) {
  const tags = typeof parts[0] === "object" && parts[0] !== null ? parts.shift() : null;
  const [command, ...args] = parts;
  const head = tags ? "@" + Object.entries(tags).map(([k, v]) => `${k}=${v}`).join(";") + " " : "";
  return head + [command, ...args].join(" ");
}

// --- names (docs/protocol.md, Names) -------------------------------------------------------

const NAME_CHAR = /^[\p{L}\p{N}_.-]$/u;
// Characters that render as nothing (Default_Ignorable_Code_Point, roughly).
const INVISIBLE = /[\u00AD\u034F\u061C\u115F\u1160\u17B4\u17B5\u180B-\u180F\u200B-\u200F\u202A-\u202E\u2060-\u206F\u3164\uFE00-\uFE0F\uFEFF\uFFA0\u{1BCA0}-\u{1BCA3}\u{1D173}-\u{1D17A}\u{E0000}-\u{E0FFF}]/u;

export function isNick(text) {
  const chars = Array.from(text || "");
  return chars.length >= 1 && chars.length <= 32 && !"-.".includes(chars[0])
    && chars.every((c) => NAME_CHAR.test(c) && !INVISIBLE.test(c));
}

export function isRoom(text) {
  return typeof text === "string" && text.startsWith("#") && Array.from(text).length <= 65 && isNick(text.slice(1));
}

/** Why a nick is refused, for the user (or null when it is fine). */
export function nickProblem(text) {
  const chars = Array.from(text || "");
  if (!chars.length) return "a nick cannot be empty";
  if (chars.length > 32) return "a nick is at most 32 characters";
  if ("-.".includes(chars[0])) return "a nick cannot start with - or .";
  const bad = chars.find((c) => !NAME_CHAR.test(c) || INVISIBLE.test(c));
  if (bad !== undefined) return bad === " " ? "a nick cannot contain spaces" : `a nick cannot contain ${JSON.stringify(bad)}`;
  return null;
}

export function isDecimal(text) {
  return typeof text === "string" && /^[0-9]{1,20}$/.test(text);
}
