// The page's passphrase meter against the shared cases (docs/vectors/strength.json):
// the same verdicts as the terminal client's zxcvbn, over the lists the relay
// serves (asked of the relay's own code, as the page asks the relay).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { rankWords, strengthBits, verdict } from "../../chatsvc/web/strength.js";

const repo = fileURLToPath(new URL("../..", import.meta.url));
const CASES = JSON.parse(readFileSync(new URL("../../docs/vectors/strength.json", import.meta.url), "utf-8"));
const python = process.env.CHATSVC_PYTHON || "python3";
const lists = JSON.parse(execFileSync(python, ["-c", "import sys; from chatsvc.webpage import strength_words; "
  + "sys.stdout.write(strength_words().decode())"], { cwd: repo, maxBuffer: 1 << 24 }).toString());
const ranks = rankWords(lists);

for (const c of CASES.cases) {
  test(`strength: ${c.passphrase}`, () => {
    assert.equal(verdict(strengthBits(c.passphrase, ranks)), c.verdict);
  });
}

test("without the lists the meter still counts characters, and never says more than with them", () => {
  const none = new Map();
  for (const c of CASES.cases) assert.ok(strengthBits(c.passphrase, none) >= strengthBits(c.passphrase, ranks) - 1e-9);
  assert.equal(verdict(strengthBits("", ranks)), "refuse");
});
