// Verifying a key takes two steps (docs/trust.md, "Verifying"): "/verify
// bob" shows the safety number; "/verify bob yes" (or the number typed
// back, or the page's "They match" button) marks bob's keys verified.
// confirmation() decides what an answer means, as a pure function; the twin
// of chatsvc/client/verification.py, and both pass docs/vectors/verify.json.

const YES = new Set(["yes", "y"]);

/** A safety number as typed (spaces, dashes, dots allowed) down to its digits; "" if not one. */
export function digits(text) {
  const stripped = text.replace(/[ \-.\t]/g, "");
  return /^[0-9]+$/.test(stripped) ? stripped : "";
}

/**
 * What "/verify nick <answer>" does. offered: the number the last "/verify
 * nick" showed (null: none); current: the number of the keys seen under the
 * nick now (null: none). Returns {action: show|confirm|refuse, reason}.
 */
export function confirmation(answer, offered, current) {
  answer = answer.trim();
  if (current === null) return { action: "refuse", reason: "no-keys" };
  if (!answer) return { action: "show", reason: "compare" };
  if (YES.has(answer.toLowerCase())) {
    if (offered === null) return { action: "refuse", reason: "not-compared" };
    if (offered !== current) return { action: "refuse", reason: "changed-since" };
    return { action: "confirm", reason: "yes" };
  }
  const typed = digits(answer);
  if (!typed) return { action: "refuse", reason: "usage" };
  if (typed !== digits(current)) return { action: "refuse", reason: "mismatch" };
  return { action: "confirm", reason: "number" };
}
