// The official Socket.IO client (socket.io-client 4.8, pinned in package.json) against
// a real Volley server, driven by framework/tests/core/socketio.rs:
//   node client.mjs <scenario> <http://host:port> [args...]
// Exits 0 when the scenario holds; any failure throws (exit 1) with what went wrong.
import { io } from "socket.io-client";
import assert from "node:assert/strict";

const [scenario, base, ...args] = process.argv.slice(2);
const WAIT = 10_000;

/** Resolves with the first `event` of `emitter`, or fails after WAIT. */
function once(emitter, event) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${event}' within ${WAIT} ms`)), WAIT);
    emitter.once(event, (...values) => {
      clearTimeout(timer);
      resolve(values);
    });
  });
}

/** A socket on namespace `ns` with the given client options. */
function connect(ns, options = {}) {
  return io(base + ns, { reconnectionDelay: 50, reconnectionDelayMax: 200, ...options });
}

async function connected(socket) {
  if (!socket.connected) await once(socket, "connect");
  return socket;
}

/** Emits with an ack and a timeout, as an application would. */
function call(socket, event, ...values) {
  return socket.timeout(WAIT).emitWithAck(event, ...values);
}

const scenarios = {
  // Events and acks both ways over the given transports ("polling", "websocket",
  // or "upgrade": polling first, then the probe and the move to WebSocket).
  async basics(mode) {
    const transports = mode === "upgrade" ? ["polling", "websocket"] : [mode];
    const socket = await connected(connect("/chat", { transports }));
    if (mode === "upgrade") {
      const engine = socket.io.engine;
      if (engine.transport.name !== "websocket") await once(engine, "upgrade");
      assert.equal(engine.transport.name, "websocket");
    } else {
      assert.equal(socket.io.engine.transport.name, mode);
    }
    assert.deepEqual(await call(socket, "echo", { hello: "world", n: [1, 2] }), { hello: "world", n: [1, 2] });
    // A server that never answers: the client's ack times out.
    await assert.rejects(socket.timeout(200).emitWithAck("ignore", 1), /timed out/);
    // A server → client event.
    const shouted = once(socket, "shout");
    socket.emit("shout", "hey");
    assert.equal((await shouted)[0], "hey");
    // A server → client ack: the server asks, we answer, it reports the outcome.
    socket.on("question", (text, ...rest) => rest.at(-1)("sio"));
    assert.equal(await call(socket, "ask", 5000), "answer: sio");
    // Several arguments reach the handler as one array.
    assert.deepEqual(await call(socket, "echo", 1, "two"), [1, "two"]);
    // Binary attachments: a Buffer reaches the handler as bytes.
    assert.deepEqual(await call(socket, "bytes", Buffer.from([1, 2, 250])), [1, 2, 250]);
    // Removed by the server: no automatic reconnection.
    const gone = once(socket, "disconnect");
    socket.emit("kick_me");
    assert.equal((await gone)[0], "io server disconnect");
    assert.equal(socket.active, false);
  },

  // A namespace with an authorize middleware: the right token gets in, a wrong one
  // gets connect_error with the middleware's reason.
  async auth() {
    const good = await connected(connect("/admin", { auth: { token: "s3cret", name: "ada" } }));
    assert.equal(await call(good, "whoami", null), "ada");
    const bad = connect("/admin", { auth: { token: "nope", name: "eve" }, forceNew: true });
    const [error] = await once(bad, "connect_error");
    assert.equal(error.message, "invalid admin token");
    bad.close();
    good.disconnect();
  },

  // Rooms with a native client: we join the room, say something to it (the native
  // client sees it), and hear what the native client says back.
  async room(room) {
    const socket = await connected(connect("/chat"));
    assert.equal(await call(socket, "join", room), room);
    const heard = new Promise((resolve) => socket.on("said", (text) => text === "from-native" && resolve()));
    assert.equal(await call(socket, "to_room", room, "from-sio"), true);
    await Promise.race([heard, once(socket, "never")]);
    socket.disconnect();
  },

  // A game room through the standard events, as native players use it: join a team,
  // get the state as it ticks, and see our inputs applied.
  async game() {
    const socket = await connected(connect("/game"));
    const joined = await call(socket, "join_game", { type: "teams", options: { team: "red" } });
    assert.ok(joined.Ok, `joined: ${JSON.stringify(joined)}`);
    const me = String(parseInt(socket.id, 16));
    const state = async (ok) => {
      for (;;) {
        const [s] = await once(socket, "state");
        if (ok(s)) return s;
      }
    };
    const first = await state((s) => s.members.length === 2);
    assert.equal(first.team, "red");
    for (let i = 0; i < 3; i++) socket.emit("input", 1);
    await state((s) => s.applied[me] === 3);
    socket.disconnect();
  },

  // Orb Arena, the demo game (game-demo/tests/browser.rs starts it): sit down as the
  // page does, see our cell in the state, steer it and see it move.
  async demo() {
    const socket = await connected(connect("/game", { transports: ["websocket"] }));
    const name = "sio-player";
    const joined = await call(socket, "join_game", { type: "arena", options: { name } });
    assert.ok(joined.Ok, `joined: ${JSON.stringify(joined)}`);
    const mine = async (ok) => {
      for (;;) {
        const [view] = await once(socket, "state");
        const cell = view.cells.find((c) => c.name === name);
        if (cell && ok(cell)) return cell;
      }
    };
    const start = await mine(() => true);
    socket.emit("input", { dx: 1, dy: 0 });
    await mine((cell) => cell.x > start.x + 1);
    socket.disconnect();
  },

  // Connection-state recovery: `before` events, the server drops the connection, `after`
  // more events while we are away; we recover and get each event exactly once, in order.
  // `burst` names the server's event that does it ("burst_drain": the node drains, and
  // the session moves to another node).
  async recovery(before, after, mode, burst = "burst") {
    before = Number(before);
    after = Number(after);
    const socket = await connected(connect("/chat", { transports: [mode] }));
    const seen = [];
    socket.on("n", (n, offset) => {
      assert.equal(typeof offset, "string", "each event carries its offset");
      seen.push(n);
    });
    const reconnected = once(socket, "connect");
    const [reason] = await Promise.all([once(socket, "disconnect"), call(socket, burst, before, after)]);
    assert.equal(reason[0], "transport close");
    await reconnected;
    assert.equal(socket.recovered, true, "the session was recovered");
    // A fence: its answer comes after every replayed event.
    assert.deepEqual(await call(socket, "echo", "fence"), "fence");
    assert.deepEqual(seen, Array.from({ length: before + after }, (_, i) => i + 1));
    socket.disconnect();
  },

  // Heartbeat: a client that stops answering pings is dropped after pingTimeout and
  // recovers once it answers again.
  async heartbeat() {
    const socket = await connected(connect("/chat", { transports: ["websocket"] }));
    const engine = socket.io.engine;
    const sendPacket = engine._sendPacket.bind(engine);
    engine._sendPacket = (type, ...rest) => type !== "pong" && sendPacket(type, ...rest);
    const [reason] = await once(socket, "disconnect");
    assert.equal(reason, "transport close");
    await once(socket, "connect");
    assert.equal(socket.recovered, true);
    assert.equal(await call(socket, "echo", 7), 7);
    socket.disconnect();
  },
};

const run = scenarios[scenario];
if (!run) throw new Error(`unknown scenario ${scenario}`);
await run(...args);
console.log(`socket.io-client ${scenario} ${args.join(" ")}: ok`);
process.exit(0);
