// Tab completion in the message box: commands, room names and the nicks of
// the current room, as irssi and weechat do it. A pure function of the text
// up to the cursor and the candidates; the twin of
// chatsvc/client/completion.py, and both pass docs/vectors/completion.json.

import { casefold } from "./casefold.js";

/**
 * Complete the word that ends at the cursor. Returns [text up to the cursor,
 * the candidates when there were several]; a unique match also gets its
 * separator: ": " after a nick that starts the line, else a space.
 */
export function complete(before, commands, rooms, nicks) {
  const start = before.lastIndexOf(" ") + 1;
  const word = before.slice(start);
  const head = before.slice(0, start);
  if (!word) return [before, []];
  let pool = nicks;
  if (start === 0 && word.startsWith("/")) pool = commands.map((c) => "/" + c);
  else if (word.startsWith("#")) pool = rooms;
  const folded = casefold(word);
  const matches = [...new Set(pool.filter((c) => casefold(c).startsWith(folded)))]
    .sort((a, b) => (casefold(a) < casefold(b) ? -1 : casefold(a) > casefold(b) ? 1 : 0));
  if (!matches.length) return [before, []];
  if (matches.length === 1) return [head + matches[0] + (start === 0 && pool === nicks ? ": " : " "), []];
  const common = commonPrefix(matches.map(casefold));
  // keep the spelling of the first match for the common part
  const longer = common.length > word.length ? matches[0].slice(0, common.length) : word;
  return [head + longer, matches];
}

function commonPrefix(words) {
  let prefix = words[0];
  for (const w of words.slice(1)) while (!w.startsWith(prefix)) prefix = prefix.slice(0, -1);
  return prefix;
}
