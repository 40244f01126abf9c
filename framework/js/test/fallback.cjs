// volley.js falls back to long-polling only when WebSocket is refused while HTTP
// works: a plain outage keeps it on WebSocket with no "fell-back" state.
// Usage: node --experimental-websocket fallback.cjs <proxy ws url> <direct ws url>
// (run by framework/tests/core/browser_client.rs: the first URL goes through a fault
// proxy that a second client, connected directly, controls with "proxy" events).
// Prints one line per step; exits 1 on a failure.
"use strict";
const { Client } = require("../volley.js");

const { backoff, WAIT_MS, within, expect, state } = require("./steps.cjs");
const [proxied, direct] = process.argv.slice(2);

async function main() {
  const control = new Client(direct, { transport: "websocket", backoff });
  await within(control.connect(), "connect the controller");
  const proxy = await within(control.join("/"), "join the controller");
  const tell = (what) => within(proxy.emitWithAck("proxy", what, WAIT_MS), "proxy " + what);

  const client = new Client(proxied, { transport: "auto", backoff });
  const states = [];
  client.onState((s) => states.push(s.state));
  await within(client.connect(), "connect through the proxy");
  await within(client.join("/"), "join through the proxy");
  expect(client.kind === "websocket", "starts on WebSocket");

  // An outage: nothing answers, then it ends between two connection attempts.
  const failing = state(client, (s) => s.state === "reconnecting" && s.attempt >= 4, "attempts in the outage");
  await tell("outage");
  await failing;
  const back = state(client, (s) => s.state === "connected" && s.resumed, "resume after the outage");
  await tell("recover");
  await back;
  expect(!states.includes("fell-back"), "no fell-back during an outage (" + states.join(" ") + ")");
  expect(client.kind === "websocket", "resumed on WebSocket");

  // WebSocket refused while HTTP answers: now it falls back.
  const fell = state(client, (s) => s.state === "fell-back", "fell-back");
  const resumed = state(client, (s) => s.state === "connected" && s.resumed && s.transport === "polling", "resume over polling");
  await tell("block");
  await fell;
  await resumed;
  expect(client.kind === "polling", "a refused upgrade moves the session to long-polling");
  client.close();
  control.close();
}

main().then(() => { console.log("all passed"); process.exit(0); },
  (e) => { console.log("FAIL " + e.message); process.exit(1); });
