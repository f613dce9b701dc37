// Links in messages: http(s) addresses become links; nothing else does
// (javascript:, data: and every other scheme stay text). A pure function:
// the view builds <a> elements from its parts, never HTML from the text.

const CANDIDATE = /\bhttps?:\/\/[^\s<>"'`]+/gi;
const TRAILING = /[.,;:!?'"]+$/;

/** The text in parts: {text} for plain text, {text, url} for a link. */
export function linkify(text) {
  const parts = [];
  let at = 0;
  for (const match of text.matchAll(CANDIDATE)) {
    let found = match[0].replace(TRAILING, "");
    // a closing bracket belongs to the link only if the link opened one
    while (/[)\]]$/.test(found) && count(found, found.endsWith(")") ? "(" : "[") < count(found, found.at(-1))) {
      found = found.slice(0, -1).replace(TRAILING, "");
    }
    const url = safeUrl(found);
    if (!url) continue;
    if (match.index > at) parts.push({ text: text.slice(at, match.index) });
    parts.push({ text: found, url });
    at = match.index + found.length;
  }
  if (at < text.length) parts.push({ text: text.slice(at) });
  return parts;
}

function count(text, ch) {
  return text.split(ch).length - 1;
}

/** The address as the browser would follow it, if it is http(s) with a host; else null. */
export function safeUrl(candidate) {
  try {
    const url = new URL(candidate);
    if ((url.protocol !== "http:" && url.protocol !== "https:") || !url.hostname) return null;
    return url.href;
  } catch (e) {
    return null;
  }
}
