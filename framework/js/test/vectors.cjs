// Checks volley.js against the hex test vectors of docs/protocol.md: every valid
// vector decodes and re-encodes byte-exact; every invalid one is refused.
// Usage: node vectors.cjs path/to/protocol.md   (run by framework/tests/js_client.rs)
"use strict";
const fs = require("fs");
const { decode, encode, splitBatch, encodeBatch } = require("../volley.js");

const doc = fs.readFileSync(process.argv[2], "utf8");
function block(tag) {
  const m = doc.match(new RegExp("```" + tag + "\\n([\\s\\S]*?)```"));
  if (!m) return [];
  return m[1].split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#")).map((l) => {
    const at = l.indexOf(":");
    const hex = l.slice(at + 1).replace(/\s+/g, "");
    return [l.slice(0, at).trim(), Uint8Array.from(Buffer.from(hex, "hex"))];
  });
}
const hex = (b) => Buffer.from(b).toString("hex");
let passed = 0, failed = 0;
function check(name, ok, detail) {
  if (ok) passed++; else { failed++; console.log("FAIL " + name + ": " + detail); }
}

const valid = block("vectors");
if (!valid.length) { console.log("no vectors found"); process.exit(1); }
for (const [name, bytes] of valid) {
  try {
    const again = encode(decode(bytes));
    check(name, hex(again) === hex(bytes), hex(again) + " != " + hex(bytes));
  } catch (e) { check(name, false, e.message); }
}
for (const [name, bytes] of block("invalid-vectors")) {
  let threw = false;
  try { decode(bytes); } catch (_) { threw = true; }
  // An unknown tag or malformed frame must not decode.
  check("invalid " + name, threw, "decoded without error");
}
for (const [name, bytes] of block("batch-vectors")) {
  try {
    const frames = splitBatch(bytes);
    frames.forEach((f) => decode(f));
    check("batch " + name, hex(encodeBatch(frames)) === hex(bytes), "re-encoded differently");
  } catch (e) { check("batch " + name, false, e.message); }
}
console.log(passed + " passed, " + failed + " failed");
process.exit(failed ? 1 : 0);
