// A typed use of the whole public API, checked by `tsc -p test` (never run): the
// declarations must accept what the docs show and refuse what the client refuses.
import { Client, decode, encode, encodeBatch, splitBatch, version } from "volley-client";
import type { ClientOptions, ConnectionState, Frame, NamespaceSocket, StateInfo } from "volley-client";

interface Board {
  players: { name: string; x: number; y: number }[];
}

async function play(): Promise<void> {
  const options: ClientOptions = {
    transport: "auto",
    upgradeTimeout: 2000,
    backoff: { initial: 100, max: 2000, factor: 2, jitter: 0.5, maxAttempts: 10 },
    sendBuffer: 256,
    maxFrameSize: 1 << 20,
    WebSocket, // the browser's; in Node 20: require("ws")
  };
  const client = new Client("wss://game.example/volley", options);
  client.onState((s: StateInfo) => {
    const state: ConnectionState = s.state;
    if (s.state === "reconnecting") console.log(state, s.attempt, s.delay, s.reason);
    if (s.state === "connected" && s.resumed) console.log("replayed", s.replayed, "resent", s.resent);
    if (s.error !== undefined) console.warn(s.ns, s.error);
  });
  const connected: Client = await client.connect();
  const sid = connected.sessionId;
  if (sid !== null) console.log("session", sid.toString(), client.kind, client.state);

  const game: NamespaceSocket = await client.join("/game", { name: "ann" });
  game
    .on<Board>("state", (board, _ack, info) => {
      const first: string | undefined = board.players[0]?.name;
      console.log(first, info.volatile);
    })
    .on<string>("question", (text, ack) => ack?.("answer to " + text))
    .onAny((name, data, ack) => console.log(name, data, ack === null))
    .onDisconnect((reason: string) => console.log("left /game:", reason, game.disconnectReason));
  game.emit("input", { dx: 1, dy: 0 });
  const seat = await game.emitWithAck<{ room: string }>("join_game", { type: "arena" }, 8000);
  const room: string = seat.room;
  console.log(room, game.name);
  game.leave();
  client.close();

  // The codec, for tools and tests.
  const hello: Frame = { type: "hello", version, max_frame_size: null };
  const frame = decode(splitBatch(encodeBatch([encode(hello)]))[0]);
  if (frame.type === "event") console.log(frame.name, frame.payload.length, frame.ack);

  // @ts-expect-error: not a transport
  new Client("/volley", { transport: "tcp" });
  // @ts-expect-error: emitWithAck's timeout is a number of ms
  await game.emitWithAck("x", null, "5s");
  // @ts-expect-error: an event frame needs a name and a payload
  encode({ type: "event", ns: "/" });
  // @ts-expect-error: the state is read-only
  client.state = "closed";
}

void play();
