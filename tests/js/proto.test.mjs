import { test } from "node:test";
import assert from "node:assert/strict";
import { formatLine, isNick, isRoom, nickProblem, parseLine } from "../../chatsvc/web/proto.js";

test("server lines parse as docs/protocol.md says", () => {
  assert.deepEqual(parseLine("@id=5;history MSG alice #a aes2:x y"),
    { tags: { id: "5", history: "" }, command: "MSG", args: ["alice", "#a", "aes2:x y"] });
  assert.deepEqual(parseLine("ERROR nick-taken that nick is taken"),
    { tags: {}, command: "ERROR", args: ["nick-taken", "that nick is taken"] });
  assert.deepEqual(parseLine("HELLO chatsvc 1 chatsvc/0.1 relay; bodies"),
    { tags: {}, command: "HELLO", args: ["chatsvc", "1", "chatsvc/0.1 relay; bodies"] });
  assert.deepEqual(parseLine("NAMES #a  bob   carol"), { tags: {}, command: "NAMES", args: ["#a", "bob", "carol"] });
  assert.deepEqual(parseLine("PART #a bob"), { tags: {}, command: "PART", args: ["#a", "bob"] });
  assert.deepEqual(parseLine("QUIT bob gone for lunch"), { tags: {}, command: "QUIT", args: ["bob", "gone for lunch"] });
  assert.equal(parseLine("   "), null);
  assert.equal(parseLine("@only=tags"), null);
});

test("lines out", () => {
  assert.equal(formatLine({ cid: "x-1" }, "MSG", "#a", "aes2:zz"), "@cid=x-1 MSG #a aes2:zz");
  assert.equal(formatLine("QUIT", "see you"), "QUIT see you");
  assert.equal(formatLine("CAPS"), "CAPS");
});

test("names", () => {
  for (const good of ["alice", "Bob_2", "José", "李雷", "a.b-c"]) assert.ok(isNick(good), good);
  for (const bad of ["", "-x", ".x", "a b", "a\u200bb", "\u3164", "x".repeat(33), "<b>"]) assert.ok(!isNick(bad), bad);
  assert.ok(isRoom("#équipe-1") && !isRoom("lobby") && !isRoom("#"));
  assert.equal(nickProblem("bad nick"), "a nick cannot contain spaces");
  assert.equal(nickProblem("-x"), "a nick cannot start with - or .");
});
