// The volley-client package as a Node app loads it, against a real Volley server:
// through its ES module entry (`import ... from "volley-client"`), through CommonJS
// (`require("volley-client")`), with the `ws` package as WebSocket, and without any
// WebSocket (falls back to polling). Each connects, joins namespaces (one with auth),
// emits with acks both ways, receives an event, and closes; the script then ends by
// itself (nothing left holding Node open). Also loads volley.mjs the way a browser does.
// Usage: node [--experimental-websocket] package.mjs ws://host:port/volley websocket|polling
// (run by framework/tests/core/js_package.rs, which starts the server: "/chat" has the
// tests' usual handlers, "/admin" wants the token "s3cret").
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { isDeepStrictEqual } from "node:util";
import * as esm from "volley-client";
import { backoff, expect, transport, url, within } from "./steps.cjs";

const require = createRequire(import.meta.url);
const cjs = require("volley-client");

/** The message `promise` rejects with; fails when it resolves. */
async function rejection(promise, what) {
  try {
    await within(promise, what);
  } catch (e) {
    return e.message;
  }
  throw new Error("failed: " + what + " resolved");
}

/** Connect, join, acks both ways, an event, auth, an ack timeout, close. */
async function session(Client, how, options = {}) {
  const client = new Client(url, { transport, backoff, ...options });
  const states = [];
  client.onState((s) => states.push(s));
  expect((await within(client.connect(), "connect")) === client, how + ": connect resolves with the client");
  const chat = await within(client.join("/chat"), "join /chat");
  expect(chat.name === "/chat", how + ": joined /chat");

  const sent = { text: "héllo", n: 42, list: [1, null, true] };
  const echoed = await within(chat.emitWithAck("echo", sent), "echo");
  expect(isDeepStrictEqual(echoed, sent), how + ": emitWithAck gets the answer (" + JSON.stringify(echoed) + ")");

  const shout = within(new Promise((resolve) => chat.on("shout", resolve)), "shout");
  chat.emit("shout", "hi from " + how);
  expect((await shout) === "hi from " + how, how + ": an event from the server arrives");

  chat.on("question", (_, ack) => ack(how));
  const outcome = await within(chat.emitWithAck("ask", 5000), "ask");
  expect(outcome === "answer: " + how, how + ": the server's question is answered (" + outcome + ")");

  const refused = await rejection(client.join("/admin", { token: "wrong", name: how }), "bad token");
  expect(refused === "invalid admin token", how + ": a refused join rejects with the reason");
  const admin = await within(client.join("/admin", { token: "s3cret", name: how }), "join /admin");
  expect((await within(admin.emitWithAck("whoami"), "whoami")) === how, how + ": a join with auth");

  const late = await rejection(chat.emitWithAck("ignore", null, 100), "ignore");
  expect(late === "ack timed out", how + ": an unanswered ack times out");

  client.close();
  expect(client.state === "closed", how + ": closed");
  return states;
}

/** volley.mjs as a browser runs it: volley.js is then an ES module too, not CommonJS. */
async function asBrowserModule() {
  const dir = mkdtempSync(join(tmpdir(), "volley-esm-"));
  try {
    const js = fileURLToPath(new URL("..", import.meta.url));
    for (const file of ["volley.js", "volley.mjs"]) copyFileSync(join(js, file), join(dir, file));
    writeFileSync(join(dir, "package.json"), '{ "type": "module" }');
    const loaded = await import(pathToFileURL(join(dir, "volley.mjs")).href);
    expect(typeof loaded.Client === "function" && loaded.Client === globalThis.Volley.Client,
      "volley.mjs over an ES-module volley.js exports the global's API");
  } finally {
    delete globalThis.Volley;
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main() {
  expect(esm.Client === cjs.Client && esm.version === 1, "import and require give the same client");
  expect(globalThis.Volley === undefined, "require and import set no global");
  await asBrowserModule();

  await session(esm.Client, "esm");
  await session(cjs.Client, "cjs");

  if (transport === "websocket") {
    let ws = null;
    try {
      ws = require("ws");
    } catch (e) {
      if (process.env.VOLLEY_REQUIRE_NODE) throw new Error("the ws package is missing: npm ci in framework/js");
      console.log("SKIPPED: the ws package is not installed (npm ci in framework/js)");
    }
    if (ws) {
      const global = globalThis.WebSocket;
      delete globalThis.WebSocket; // the option must be what carries the connection
      try {
        const states = await session(cjs.Client, "ws-package", { WebSocket: ws });
        expect(states.every((s) => s.transport === "websocket"), "ws-package: on WebSocket throughout");
      } finally {
        if (global) globalThis.WebSocket = global;
      }
    }

    // No WebSocket at all (Node 20 without the flag): "auto" says why and uses polling.
    const global = globalThis.WebSocket;
    delete globalThis.WebSocket;
    try {
      const states = await session(cjs.Client, "no-websocket", { transport: "auto" });
      const fell = states.find((s) => s.state === "fell-back");
      expect(fell && fell.reason.startsWith("no WebSocket here"), "no-websocket: fell back, saying why");
      expect(states.some((s) => s.state === "connected" && s.transport === "polling"), "no-websocket: on polling");
    } finally {
      if (global) globalThis.WebSocket = global;
    }
  }

  const relative = (() => { try { new cjs.Client("/volley"); } catch (e) { return e.message; } })();
  expect(/relative.*ws:\/\//.test(relative || ""), "a relative URL outside a page is refused, saying why");
}

// No process.exit on success: Node ends by itself only if every client let go of its
// timers and requests.
main().then(() => console.log("all passed"),
  (e) => { console.log("FAIL " + e.message); process.exit(1); });
