// Runs volley.js against a real Volley server: server → client acks across a
// resume, the reason of a server-side disconnect, and the client's frame limit.
// Usage: node --experimental-websocket live.cjs ws://host:port/volley websocket|polling
// (run by framework/tests/core/browser_client.rs, which starts the server and the
// namespace these steps talk to). Prints one line per step; exits 1 on a failure.
"use strict";
const { Client } = require("../volley.js");

const { url, transport, backoff, WAIT_MS, within, expect, state } = require("./steps.cjs");

async function main() {
  const client = new Client(url, { transport, backoff, maxFrameSize: 4096 });
  const states = [];
  client.onState((s) => states.push(s.state));
  await within(client.connect(), "connect");
  const ns = await within(client.join("/"), "join");

  // The server drops the connection, then asks a question: it waits in the outbox,
  // is replayed after the resume, and our answer completes the server's ack.
  ns.on("question", (data, ack) => ack("js on " + transport));
  const resumed = state(client, (s) => s.state === "connected" && s.resumed, "resume");
  const outcome = await within(ns.emitWithAck("ask_after_drop", null, WAIT_MS), "ask_after_drop");
  const resume = await resumed;
  expect(outcome === "answer: js on " + transport, "server -> client ack across a resume (" + outcome + ")");
  expect(resume.replayed >= 1, "the question was replayed (" + resume.replayed + ")");

  // Too large for this client: the server refuses it at the sender.
  const refused = await within(ns.emitWithAck("send_big", 10000, WAIT_MS), "send_big");
  expect(typeof refused === "string" && refused.includes("larger than the client accepts (4096 bytes)"),
    "an emit over the announced limit fails on the server (" + refused + ")");

  // Socket::disconnect(reason) reaches the client.
  const left = within(new Promise((resolve) => ns.onDisconnect(resolve)), "disconnect");
  ns.emit("leave_me", "too many messages");
  expect((await left) === "too many messages", "the disconnect callback gets the reason");
  expect(ns.disconnectReason === "too many messages", "socket.disconnectReason is set");
  expect(client.state === "connected", "the session goes on");
  client.close();

  // A frame over the limit that arrives anyway (the server honours no limit below
  // 1024 bytes) ends the session with a reason instead of reconnecting.
  const tiny = new Client(url, { transport, backoff, maxFrameSize: 100 });
  const tinyStates = [];
  tiny.onState((s) => tinyStates.push(s.state));
  await within(tiny.connect(), "connect tiny");
  const tinyNs = await within(tiny.join("/"), "join tiny");
  const closed = state(tiny, (s) => s.state === "closed", "tiny closes");
  tinyNs.emit("send_big", 600);
  const end = await closed;
  expect(end.reason.includes("larger than this client accepts"), "a frame over the limit ends the session (" + end.reason + ")");
  expect(!tinyStates.includes("reconnecting"), "no reconnection loop");
}

main().then(() => { console.log("all passed"); process.exit(0); },
  (e) => { console.log("FAIL " + e.message); process.exit(1); });
