// A colour per nick: stable (the same nick, any case, always gets the same
// one), spread over NICK_COLOURS classes that style.css defines readable on
// both themes. A pure function of the case-folded nick.

import { casefold } from "./casefold.js";

export const NICK_COLOURS = 8;

/** 0 .. NICK_COLOURS-1, from FNV-1a over the case-folded nick's code points. */
export function nickColour(nick) {
  let hash = 0x811c9dc5;
  for (const ch of casefold(nick)) {
    hash ^= ch.codePointAt(0);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % NICK_COLOURS;
}
