// TypeScript declarations for volley.js, the Volley client (docs/browser-client.md).
// One file for the three ways to load it: `import { Client } from "volley-client"`,
// `require("volley-client")`, and the global `Volley` of a <script> tag.
// Checked by `tsc` on test/typed.ts (framework/tests/js_client.rs).

export as namespace Volley;

/** The protocol version this client speaks. */
export declare const version: 1;

/** `"auto"`: WebSocket, falling back to long-polling; the others force one. */
export type TransportOption = "auto" | "websocket" | "polling";
/** The transport a connection runs on. */
export type TransportKind = "websocket" | "polling";

/** Reconnection back-off: delay = min(initial × factor^(attempt-1), max), ± jitter. */
export interface BackoffOptions {
  /** Delay before the first reconnection attempt, ms. Default 1000. */
  initial?: number;
  /** Cap of any delay (after jitter), ms. Default 5000. */
  max?: number;
  /** Growth per attempt. Default 2. */
  factor?: number;
  /** Random spread, ± this fraction of the delay. Default 0.5. */
  jitter?: number;
  /** Give up after this many attempts (state `closed`). Default Infinity. */
  maxAttempts?: number;
}

/**
 * A class with the browser's WebSocket API (binaryType "arraybuffer", onopen/onmessage/
 * onclose/onerror, send, close): the global `WebSocket`, or the `ws` package's.
 */
export type WebSocketClass = new (url: string) => object;

/** `new Client(url, options)`: every option and its default. */
export interface ClientOptions {
  /** Default `"auto"`. */
  transport?: TransportOption;
  /** With `"auto"`, how long the WebSocket attempt may take before falling back, ms. Default 5000. */
  upgradeTimeout?: number;
  backoff?: BackoffOptions;
  /** Reliable frames kept until the server confirms them; past it `emit` throws `send buffer full`. Default 1024. */
  sendBuffer?: number;
  /** Largest frame accepted from the server, bytes (announced to it). Default 16 MiB. */
  maxFrameSize?: number;
  /** The WebSocket class to use (for example `require("ws")` in Node 20). Default: the global `WebSocket`. */
  WebSocket?: WebSocketClass;
}

/** Values of `client.state` and of `StateInfo.state`. */
export type ConnectionState =
  | "idle"
  | "connecting"
  | "fell-back"
  | "connected"
  | "reconnecting"
  | "session-lost"
  | "closed";

/** What `onState` listeners get on every change; the extra fields depend on `state`. */
export interface StateInfo {
  state: ConnectionState;
  transport: TransportKind;
  /** The session id, once the server opened the session. */
  sid: SessionId | null;
  /** `connected`: true on the first connection after a lost session or a failed resume. */
  fresh?: boolean;
  /** `connected`: true when a reconnection resumed the same session (nothing lost). */
  resumed?: boolean;
  /** `connected` after a resume: frames the server replayed. */
  replayed?: number;
  /** `connected` after a resume: frames this client sent again. */
  resent?: number;
  /** `reconnecting`: the attempt number, from 1. */
  attempt?: number;
  /** `reconnecting`: ms until that attempt. */
  delay?: number;
  /** `fell-back`, `reconnecting`, `session-lost`, `closed`: why. */
  reason?: string;
  /** `session-lost`: unconfirmed frames dropped with the old session. */
  dropped?: number;
  /** The server refused a request (unknown event, bad payload): its reason ... */
  error?: string;
  /** ... and the namespace it came from. */
  ns?: string;
}

/** A session id: a number, or a BigInt above 2^53 (never produced by the server in practice). */
export type SessionId = number | bigint;

/** Answers the server's `emit_with_ack` question; any JSON value. */
export type AckFunction = (answer?: unknown) => void;

/** The third argument of an event handler. */
export interface EventInfo {
  /** True for a latest-wins (volatile) frame, never replayed. */
  volatile: boolean;
}

/**
 * A joined namespace (`await client.join("/game")`). Payloads are JSON: `data` is any
 * JSON value, typed by the caller (`on<State>("state", ...)`).
 */
export interface NamespaceSocket {
  readonly client: Client;
  /** The namespace, for example `"/game"`. */
  readonly name: string;
  /** The auth payload given to `join`, sent again when a lost session is replaced. */
  readonly auth: unknown;
  /** Why the server removed the client from this namespace; null while joined. */
  readonly disconnectReason: string | null;
  /** Calls `fn(data, ack, info)` for event `name` (one handler per name); `ack` is set when the server asked for an answer. */
  on<T = any>(name: string, fn: (data: T, ack: AckFunction | null, info: EventInfo) => void): this;
  /** Calls `fn(name, data, ack)` for every event without its own handler. */
  onAny(fn: (name: string, data: any, ack: AckFunction | null) => void): this;
  /** Calls `fn(reason)` when the server removes the client from this namespace; the session goes on. */
  onDisconnect(fn: (reason: string) => void): this;
  /** Sends a reliable event (exactly once, in order). Throws `send buffer full` or `client closed`. */
  emit(name: string, data?: unknown): void;
  /**
   * Sends an event and resolves with the server's answer. Rejects with `ack timed out`
   * after `timeoutMs` (default 5000), `send buffer full`, `client closed`,
   * `session lost` or `session closed: <reason>`.
   */
  emitWithAck<T = any>(name: string, data?: unknown, timeoutMs?: number): Promise<T>;
  /** Leaves this namespace; the others stay. */
  leave(): void;
}

/** A Volley client: one session, over WebSocket or long-polling, surviving reconnections. */
export declare class Client {
  /**
   * @param url the endpoint: a path (`"/volley"`, same origin; browsers only) or a full
   *   `ws://` / `wss://` URL. Throws when the URL is relative and there is no page.
   */
  constructor(url?: string, options?: ClientOptions);
  readonly url: string;
  /** The current connection state. */
  readonly state: ConnectionState;
  /** The transport in use (or tried next). */
  readonly kind: TransportKind;
  /** The session id, or null before the session opens. */
  readonly sessionId: SessionId | null;
  /** Subscribes to connection changes. */
  onState(fn: (info: StateInfo) => void): this;
  /** Opens the session; resolves when the server has opened it, rejects with why it could not connect. */
  connect(): Promise<this>;
  /** Joins a namespace with an auth payload for its middleware; rejects with the server's reason (for example `admin token required`). */
  join(ns: string, auth?: unknown): Promise<NamespaceSocket>;
  /** Ends the session for good (state `closed`); pending acks reject. */
  close(): void;
}

/** Frames of protocol v1 as plain objects (docs/protocol.md), for tools and tests. */
export type Frame =
  | { type: "hello"; version: number; max_frame_size?: number | null }
  | {
      type: "open";
      version: number;
      sid: SessionId;
      token: Uint8Array;
      ping_interval_ms: number;
      ping_timeout_ms: number;
      max_frame_size: number;
    }
  | { type: "ping" }
  | { type: "pong" | "received"; last_seq: number | bigint }
  | { type: "connect"; ns: string; auth: Uint8Array }
  | { type: "connected"; ns: string }
  | { type: "connect-error" | "error"; ns: string; reason: string }
  | { type: "disconnect"; ns: string; reason?: string | null }
  | { type: "event"; ns: string; name: string; payload: Uint8Array; ack?: number | bigint | null }
  | { type: "ack"; ns: string; id: number | bigint; payload: Uint8Array }
  | { type: "volatile"; ns: string; name: string; payload: Uint8Array }
  | { type: "close" | "resume-failed"; reason: string }
  | {
      type: "resume";
      sid: SessionId;
      token: Uint8Array;
      last_seq: number | bigint;
      max_frame_size?: number | null;
    }
  | { type: "resumed"; last_seq: number | bigint; replay: number | bigint };

/** Encodes a frame to its bytes. Throws on an unknown type or an out-of-range integer. */
export declare function encode(frame: Frame): Uint8Array;
/** Decodes one frame. Throws `malformed frame: ...` or `unknown frame tag` on bad input. */
export declare function decode(bytes: Uint8Array): Frame;
/** A long-polling body: each frame prefixed by its length. */
export declare function encodeBatch(frames: Uint8Array[]): Uint8Array;
/** Splits a long-polling body into frames. */
export declare function splitBatch(bytes: Uint8Array): Uint8Array[];
