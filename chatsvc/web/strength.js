// How guessable a passphrase is, for the join form's meter: the rules the
// terminal client's estimate (zxcvbn) scores by, written again for the page
// -- the passphrase split into the cheapest sequence of dictionary words
// (ranked lists, any case, l33t, reversed), keyboard runs, sequences,
// repeats, years and brute force. Pure: the lists are handed in (the relay
// serves them, strength-words.json, from the same package the terminal
// client ranks by). Both clients give the same verdicts for the cases in
// docs/vectors/strength.json.

export const REFUSE_BELOW_BITS = 40; // as chatsvc/client/passphrases.py
export const WARN_BELOW_BITS = 64;
const MAX_CHARS = 72; // longer text is estimated on its start (it only grows with more)
const MIN_SINGLE = 10; // guesses at least, for a one-character part ...
const MIN_MULTI = 50; // ... and a longer one that is not the whole passphrase
const GROWING = 10000; // each extra part costs at least this factor (zxcvbn's D)
const REFERENCE_YEAR = 2017; // the year zxcvbn's year distances are counted from
const KEYBOARD_STARTS = 94; // keys a keyboard run may start on ...
const KEYBOARD_DEGREE = 4.6; // ... and the keys next to each, on average
const ROWS = ["`1234567890-=", "qwertyuiop[]\\", "asdfghjkl;'", "zxcvbnm,./", "1234567890"];
const LEET = { "4": "a", "@": "a", "8": "b", "(": "c", "{": "c", "[": "c", "<": "c", "3": "e", "6": "g", "9": "g",
               "1": "il", "!": "i", "|": "il", "0": "o", "$": "s", "5": "s", "+": "t", "7": "lt", "%": "x", "2": "z" };

/** The lists as served ({name: "word word ..."}, most common first) to one ranking: word -> best rank. */
export function rankWords(lists) {
  const ranks = new Map();
  for (const text of Object.values(lists || {})) {
    text.split(" ").forEach((word, i) => {
      if (word && !(ranks.get(word) <= i + 1)) ranks.set(word, i + 1);
    });
  }
  return ranks;
}

/** log2 of the guesses needed; ranks: from rankWords (an empty Map: characters only). */
export function strengthBits(passphrase, ranks) {
  const text = [...passphrase].slice(0, MAX_CHARS).join("");
  const n = text.length;
  if (!n) return 0;
  const parts = partsOf(text, ranks);
  // best[k][l]: log2 of the smallest product of l parts covering text[0, k)
  const best = Array.from({ length: n + 1 }, () => new Map());
  best[0].set(0, 0);
  for (let k = 1; k <= n; k++) {
    for (let i = 0; i < k; i++) {
      const cost = Math.log2(Math.max(partGuesses(text.slice(i, k), parts.get(`${i} ${k}`), k - i === n), 1));
      for (const [l, before] of best[i]) {
        const total = before + cost;
        if (!(best[k].get(l + 1) <= total)) best[k].set(l + 1, total);
      }
    }
  }
  let bits = Infinity;
  for (const [l, product] of best[n]) {
    // l! x product + D^(l-1), in logs
    const log = Math.log2(factorial(l)) + product;
    bits = Math.min(bits, Math.log2(2 ** Math.min(log, 1000) + GROWING ** (l - 1)));
  }
  return bits;
}

/** "refuse", "warn" or "ok", by the terminal client's thresholds. */
export function verdict(bits) {
  return bits < REFUSE_BELOW_BITS ? "refuse" : bits < WARN_BELOW_BITS ? "warn" : "ok";
}

function factorial(l) {
  let f = 1;
  for (let i = 2; i <= l; i++) f *= i;
  return f;
}

/** Guesses for one part: the best pattern found for it, else brute force. */
function partGuesses(token, found, whole) {
  const floor = whole ? 1 : token.length === 1 ? MIN_SINGLE : MIN_MULTI;
  const brute = Math.max(10 ** token.length, token.length === 1 ? MIN_SINGLE + 1 : MIN_MULTI + 1);
  return Math.max(Math.min(brute, found ?? Infinity), floor);
}

/** Every pattern match, by "start end": the fewest guesses it costs. */
function partsOf(text, ranks) {
  const found = new Map();
  const offer = (i, j, guesses) => {
    const id = `${i} ${j}`;
    if (!(found.get(id) <= guesses)) found.set(id, guesses);
  };
  dictionaryMatches(text, ranks, offer);
  runMatches(text, ranks, offer);
  return found;
}

function dictionaryMatches(text, ranks, offer) {
  const lower = text.toLowerCase();
  for (let i = 0; i < text.length; i++) {
    for (let j = i + 1; j <= Math.min(text.length, i + 40); j++) {
      const token = text.slice(i, j);
      const plain = lower.slice(i, j);
      const reversed = [...plain].reverse().join("");
      const caps = upperVariations(token);
      for (const [word, leets] of unleet(plain)) {
        const rank = ranks.get(word);
        if (rank) offer(i, j, rank * caps * leetVariations(plain, word, leets));
      }
      const back = ranks.get(reversed);
      if (back && reversed !== plain) offer(i, j, back * caps * 2);
    }
  }
}

/** The token with l33t characters read back as letters: [word, substitutions] (the token itself first). */
function unleet(token) {
  let options = [["", 0]];
  for (const ch of token) {
    const letters = LEET[ch] ? [...LEET[ch]] : [];
    const next = options.map(([w, n]) => [w + ch, n]);
    for (const letter of letters) for (const [w, n] of options) next.push([w + letter, n + 1]);
    options = next.slice(0, 64); // a handful of ambiguous characters at most
  }
  return options;
}

function choose(n, k) {
  let r = 1;
  for (let i = 1; i <= k; i++) r = (r * (n - k + i)) / i;
  return r;
}

function upperVariations(token) {
  const upper = [...token].filter((c) => c !== c.toLowerCase()).length;
  const lower = [...token].filter((c) => c !== c.toUpperCase()).length;
  if (!upper) return 1;
  const first = token[0] !== token[0].toLowerCase() && upper === 1;
  const last = token.at(-1) !== token.at(-1).toLowerCase() && upper === 1;
  if (first || last || !lower) return 2;
  let sum = 0;
  for (let i = 1; i <= Math.min(upper, lower); i++) sum += choose(upper + lower, i);
  return sum;
}

function leetVariations(token, word, substitutions) {
  if (!substitutions) return 1;
  let variations = 1;
  for (const letter of new Set([...word].filter((c, i) => c !== token[i]))) {
    const subbed = [...word].filter((c, i) => c === letter && token[i] !== c).length;
    const unsubbed = [...token].filter((c) => c === letter).length;
    if (!unsubbed) {
      variations *= 2;
      continue;
    }
    let sum = 0;
    for (let i = 1; i <= Math.min(subbed, unsubbed); i++) sum += choose(subbed + unsubbed, i);
    variations *= sum;
  }
  return variations;
}

/** Sequences (abc, 975), repeats (aaaa, abab), keyboard rows (qwerty, zxcvbn) and years. */
function runMatches(text, ranks, offer) {
  const lower = text.toLowerCase();
  for (let i = 0; i < text.length; i++) {
    for (let j = i + 2; j <= text.length; j++) {
      const token = text.slice(i, j);
      const seq = sequenceGuesses(token);
      if (seq) offer(i, j, seq);
      const rep = repeatGuesses(token, ranks);
      if (rep) offer(i, j, rep);
      if (j - i >= 3 && ROWS.some((row) => row.includes(lower.slice(i, j)) || row.includes([...lower.slice(i, j)].reverse().join("")))) {
        offer(i, j, (j - i - 1) * KEYBOARD_STARTS * KEYBOARD_DEGREE * upperVariations(token));
      }
      if (j - i === 4 && /^(19\d\d|20[01]\d)$/.test(token)) offer(i, j, Math.max(Math.abs(Number(token) - REFERENCE_YEAR), 20));
      else if (j - i === 4 && /^\d[1-9][1-9]\d$|^[1-9][1-9]\d\d$|^\d\d[1-9][1-9]$/.test(token)) offer(i, j, 365 * 20); // d m yy
      if (j - i === 8 && isDate(token)) offer(i, j, 365 * Math.max(Math.abs(yearOf(token) - REFERENCE_YEAR), 20));
    }
  }
}

function sequenceGuesses(token) {
  const codes = [...token].map((c) => c.codePointAt(0));
  const delta = codes[1] - codes[0];
  if (!delta || Math.abs(delta) > 5 || codes.some((c, i) => i && c - codes[i - 1] !== delta)) return 0;
  if (token.length < 3 && Math.abs(delta) !== 1) return 0;
  const first = token[0];
  let base = "aAzZ019".includes(first) ? 4 : /[0-9]/.test(first) ? 10 : 26;
  if (delta < 0) base *= 2;
  return base * token.length;
}

const unitBits = new WeakMap(); // ranks -> what a repeated unit costs, remembered between calls

/** A unit said again and again: what the unit costs, times how often (the shortest unit). */
function repeatGuesses(token, ranks) {
  for (let size = 1; size <= token.length / 2; size++) {
    if (token.length % size) continue;
    const unit = token.slice(0, size);
    if (unit.repeat(token.length / size) === token) {
      if (!unitBits.has(ranks)) unitBits.set(ranks, new Map());
      const known = unitBits.get(ranks);
      if (!known.has(unit)) known.set(unit, size === 1 ? Math.log2(MIN_SINGLE + 1) : strengthBits(unit, ranks));
      if (known.size > 1000) known.clear();
      const once = 2 ** known.get(unit);
      return once * (token.length / size);
    }
  }
  return 0;
}

function yearOf(digits) {
  const first = Number(digits.slice(0, 4));
  return first >= 1900 && first < 2050 ? first : Number(digits.slice(4));
}

function isDate(token) {
  if (!/^\d{8}$/.test(token)) return false;
  const year = yearOf(token);
  const rest = year === Number(token.slice(0, 4)) ? token.slice(4) : token.slice(0, 4);
  const [a, b] = [Number(rest.slice(0, 2)), Number(rest.slice(2))];
  return year >= 1900 && year < 2050 && ((a >= 1 && a <= 12 && b >= 1 && b <= 31) || (b >= 1 && b <= 12 && a >= 1 && a <= 31));
}
