// The page's view parts with no DOM: links found in messages (only http and
// https, never javascript: or data:) and the colour of a nick.
import { test } from "node:test";
import assert from "node:assert/strict";
import { linkify } from "../../chatsvc/web/links.js";
import { NICK_COLOURS, nickColour } from "../../chatsvc/web/nickcolour.js";

test("http and https addresses become links; the rest stays text", () => {
  assert.deepEqual(linkify("see https://example.org/a?b=1 now"), [
    { text: "see " }, { text: "https://example.org/a?b=1", url: "https://example.org/a?b=1" }, { text: " now" }]);
  assert.deepEqual(linkify("plain text"), [{ text: "plain text" }]);
  for (const hostile of ["javascript:alert(1)", "data:text/html,<b>x</b>", "JaVaScRiPt:alert(1)", "file:///etc/passwd",
                         "vbscript:x", "http:/missing-slash", "https://"]) {
    assert.ok(linkify(hostile).every((p) => !p.url), hostile);
  }
});

test("punctuation after a link is not part of it; brackets only when the link opened them", () => {
  assert.deepEqual(linkify("(at https://example.org/x).").map((p) => p.url).filter(Boolean), ["https://example.org/x"]);
  assert.deepEqual(linkify("https://en.wikipedia.org/wiki/Twisted_(software), yes").map((p) => p.url).filter(Boolean),
                   ["https://en.wikipedia.org/wiki/Twisted_(software)"]);
  assert.deepEqual(linkify("two: http://a.example, https://b.example!").filter((p) => p.url).map((p) => p.text),
                   ["http://a.example", "https://b.example"]);
});

test("a nick's colour is stable, ignores case and spreads", () => {
  assert.equal(nickColour("Alice"), nickColour("alice"));
  assert.equal(nickColour("STRASSE"), nickColour("straße"));
  const seen = new Set(["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"].map(nickColour));
  assert.ok(seen.size >= 5 && [...seen].every((n) => n >= 0 && n < NICK_COLOURS));
});
