// What the live scripts (live.cjs, package.mjs, fallback.cjs) share: the server's URL and transport
// from the command line, a fast back-off, bounded waits and one printed line per step.
"use strict";

const [url, transport] = process.argv.slice(2);
const WAIT_MS = 10000;

exports.url = url;
exports.transport = transport;
exports.backoff = { initial: 10, max: 50 };
exports.WAIT_MS = WAIT_MS;

/** `promise`, or a rejection naming `what` after WAIT_MS: a hung step fails, never hangs. */
exports.within = function within(promise, what) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error("timed out: " + what)), WAIT_MS);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
};

/** Prints `ok what`, or throws `failed: what`. */
exports.expect = function expect(ok, what) {
  if (!ok) throw new Error("failed: " + what);
  console.log("ok " + what);
};

/** Resolves with the first state change of `client` that `fn` accepts. */
exports.state = function state(client, fn, what) {
  return exports.within(new Promise((resolve) => client.onState((s) => { if (fn(s)) resolve(s); })), what);
};
