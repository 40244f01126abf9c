/*!
 * volley.js — the Volley browser client. One file, no build step, no dependencies.
 *
 * Speaks protocol v1 (docs/protocol.md): WebSocket with automatic fallback to HTTP
 * long-polling, heartbeat answers, automatic reconnection with exponential back-off
 * and jitter, a bounded send buffer, session resume with replay (reliable events
 * exactly once, in order), namespaces, events and acks.
 *
 *   const client = new Volley.Client("/volley", { transport: "auto" });
 *   client.onState((s) => console.log(s.state, s));
 *   await client.connect();
 *   const game = await client.join("/game", { name: "ann" });
 *   game.on("state", (state) => draw(state));
 *   game.emit("input", { dx: 1, dy: 0 });
 *   const answer = await game.emitWithAck("join_game", { type: "arena" }, 5000);
 *
 * Loads three ways, no build step (framework/js/package.json): a <script> tag sets the
 * global `Volley`; CommonJS (`require("volley-client")`, volley.cjs) gets the same object
 * as module.exports; ES modules import it through volley.mjs. Types: volley.d.ts.
 * Outside a browser, pass a full ws:// URL; WebSocket is the global one (Node 22+, or
 * 20 with --experimental-websocket) or `options.WebSocket` (e.g. the `ws` package).
 */
(function (global) {
  "use strict";

  // ---- Encoding: bincode 2 "standard" (see docs/protocol.md, section 2) ----------

  const TAGS = [
    "hello", "open", "ping", "pong", "received", "connect", "connected",
    "connect-error", "disconnect", "event", "ack", "volatile", "error", "close",
    "resume", "resumed", "resume-failed",
  ];
  const TAG = Object.fromEntries(TAGS.map((t, i) => [t, i]));
  const RELIABLE = new Set(["connect", "connected", "connect-error", "disconnect", "event", "ack", "error"]);
  const utf8 = new TextEncoder();
  const fromUtf8 = new TextDecoder("utf-8", { fatal: true });

  class Writer {
    constructor() { this.buf = new Uint8Array(64); this.len = 0; }
    reserve(n) {
      if (this.len + n <= this.buf.length) return;
      let size = this.buf.length * 2;
      while (size < this.len + n) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.buf.subarray(0, this.len));
      this.buf = next;
    }
    byte(b) { this.reserve(1); this.buf[this.len++] = b; }
    raw(bytes) { this.reserve(bytes.length); this.buf.set(bytes, this.len); this.len += bytes.length; }
    le(value, width) {
      // value < 2^53; written little-endian over `width` bytes.
      let v = value;
      for (let i = 0; i < width; i++) { this.byte(v % 256); v = Math.floor(v / 256); }
    }
    varint(n) {
      if (typeof n === "bigint") {
        if (n < 0n || n >= 1n << 64n) throw new Error("varint out of range: " + n);
        if (n <= BigInt(Number.MAX_SAFE_INTEGER)) return this.varint(Number(n));
        this.byte(253);
        for (let i = 0n; i < 8n; i++) this.byte(Number((n >> (8n * i)) & 0xffn));
        return;
      }
      if (!Number.isSafeInteger(n) || n < 0) throw new Error("varint out of range: " + n);
      if (n < 251) this.byte(n);
      else if (n < 0x10000) { this.byte(251); this.le(n, 2); }
      else if (n < 0x100000000) { this.byte(252); this.le(n, 4); }
      else { this.byte(253); this.le(n, 8); }
    }
    bytes(b) { this.varint(b.length); this.raw(b); }
    str(s) { this.bytes(utf8.encode(s)); }
    done() { return this.buf.slice(0, this.len); }
  }

  class Reader {
    constructor(bytes) { this.b = bytes; this.at = 0; }
    need(n) { if (this.at + n > this.b.length) throw new Error("malformed frame: truncated"); }
    byte() { this.need(1); return this.b[this.at++]; }
    le(width) {
      this.need(width);
      let v = 0;
      for (let i = width - 1; i >= 0; i--) v = v * 256 + this.b[this.at + i];
      this.at += width;
      return v;
    }
    /** An unsigned varint of a field at most `bits` wide (16, 32 or 64). Values
     *  above 2^53 come back as BigInt. */
    varint(bits = 64) {
      const b = this.byte();
      if (b < 251) return b;
      if (b === 251 && bits >= 16) return this.le(2);
      if (b === 252 && bits >= 32) return this.le(4);
      if (b === 253 && bits >= 64) {
        const lo = this.le(4), hi = this.le(4);
        return hi < 0x200000 ? hi * 0x100000000 + lo : (BigInt(hi) << 32n) | BigInt(lo);
      }
      throw new Error("malformed frame: varint marker " + b + " too wide for a u" + bits);
    }
    bytes() { const n = this.varint(); this.need(n); const out = this.b.slice(this.at, this.at + n); this.at += n; return out; }
    str() { return fromUtf8.decode(this.bytes()); }
    token() { this.need(16); const t = this.b.slice(this.at, this.at + 16); this.at += 16; return t; }
    option(read) { const flag = this.byte(); if (flag === 0) return null; if (flag === 1) return read(); throw new Error("malformed frame: bad option"); }
  }

  /** Encodes a frame object ({ type: "event", ns, name, payload, ack }) to bytes. */
  function encode(f) {
    const w = new Writer();
    const tag = TAG[f.type];
    if (tag === undefined) throw new Error("unknown frame type " + f.type);
    w.varint(tag);
    switch (f.type) {
      // max_frame_size (hello, resume) and reason (disconnect) are optional trailing
      // fields (docs/protocol.md 2.7): written only when set.
      case "hello": w.varint(f.version); if (f.max_frame_size != null) w.varint(f.max_frame_size); break;
      case "open": w.varint(f.version); w.varint(f.sid); w.raw(f.token); w.varint(f.ping_interval_ms);
        w.varint(f.ping_timeout_ms); w.varint(f.max_frame_size); break;
      case "resumed": w.varint(f.last_seq); w.varint(f.replay); break;
      case "ping": break;
      case "pong": case "received": w.varint(f.last_seq); break;
      case "connect": w.str(f.ns); w.bytes(f.auth); break;
      case "connected": w.str(f.ns); break;
      case "disconnect": w.str(f.ns); if (f.reason != null) w.str(f.reason); break;
      case "connect-error": case "error": w.str(f.ns); w.str(f.reason); break;
      case "event": w.str(f.ns); w.str(f.name); w.bytes(f.payload);
        if (f.ack == null) w.byte(0); else { w.byte(1); w.varint(f.ack); } break;
      case "ack": w.str(f.ns); w.varint(f.id); w.bytes(f.payload); break;
      case "volatile": w.str(f.ns); w.str(f.name); w.bytes(f.payload); break;
      case "close": case "resume-failed": w.str(f.reason); break;
      case "resume": w.varint(f.sid); w.raw(f.token); w.varint(f.last_seq);
        if (f.max_frame_size != null) w.varint(f.max_frame_size); break;
      default: throw new Error("cannot encode " + f.type);
    }
    return w.done();
  }

  /** Decodes one frame; throws on malformed input. */
  function decode(bytes) {
    const r = new Reader(bytes);
    const type = TAGS[r.varint(32)];
    if (!type) throw new Error("unknown frame tag");
    const f = { type };
    // An optional trailing field is present when bytes follow the other fields.
    const more = () => r.at < bytes.length;
    switch (type) {
      case "hello": f.version = r.varint(16); f.max_frame_size = more() ? r.varint(32) : null; break;
      case "open": f.version = r.varint(16); f.sid = r.varint(); f.token = r.token();
        f.ping_interval_ms = r.varint(32); f.ping_timeout_ms = r.varint(32); f.max_frame_size = r.varint(32); break;
      case "ping": break;
      case "pong": case "received": f.last_seq = r.varint(); break;
      case "connect": f.ns = r.str(); f.auth = r.bytes(); break;
      case "connected": f.ns = r.str(); break;
      case "disconnect": f.ns = r.str(); f.reason = more() ? r.str() : null; break;
      case "connect-error": case "error": f.ns = r.str(); f.reason = r.str(); break;
      case "event": f.ns = r.str(); f.name = r.str(); f.payload = r.bytes(); f.ack = r.option(() => r.varint()); break;
      case "ack": f.ns = r.str(); f.id = r.varint(); f.payload = r.bytes(); break;
      case "volatile": f.ns = r.str(); f.name = r.str(); f.payload = r.bytes(); break;
      case "close": case "resume-failed": f.reason = r.str(); break;
      case "resume": f.sid = r.varint(); f.token = r.token(); f.last_seq = r.varint();
        f.max_frame_size = more() ? r.varint(32) : null; break;
      case "resumed": f.last_seq = r.varint(); f.replay = r.varint(); break;
    }
    if (r.at !== bytes.length) throw new Error("malformed frame: trailing bytes");
    return f;
  }

  /** Long-polling bodies: each frame prefixed by its length as a varint. */
  function encodeBatch(frames) {
    const w = new Writer();
    for (const f of frames) w.bytes(f);
    return w.done();
  }
  function splitBatch(bytes) {
    const r = new Reader(bytes);
    const out = [];
    while (r.at < bytes.length) out.push(r.bytes());
    return out;
  }

  const json = (value) => utf8.encode(JSON.stringify(value === undefined ? null : value));
  const parse = (bytes) => (bytes.length ? JSON.parse(fromUtf8.decode(bytes)) : null);

  // ---- Transports: { send(bytes), close(), onframe(bytes), onlost(reason) } --------

  function websocketUrl(path) {
    if (/^wss?:\/\//.test(path)) return path;
    const loc = global.location;
    return (loc.protocol === "https:" ? "wss://" : "ws://") + loc.host + path;
  }
  function httpUrl(path) {
    if (/^wss?:\/\//.test(path)) return path.replace(/^ws/, "http");
    return path;
  }

  const NO_WEBSOCKET = "no WebSocket here: pass options.WebSocket (e.g. the ws package), " +
    "run Node 22+ (or 20 with --experimental-websocket), or use transport \"polling\"";

  class WebSocketTransport {
    constructor(url, first, handlers, options) {
      this.kind = "websocket";
      this.h = handlers;
      this.closed = false;
      const WebSocketClass = options.WebSocket || global.WebSocket;
      // Lost right after the caller has its handle: "auto" then falls back to polling.
      if (!WebSocketClass) return void Promise.resolve().then(() => this.lost(NO_WEBSOCKET));
      const ws = (this.ws = new WebSocketClass(websocketUrl(url)));
      ws.binaryType = "arraybuffer";
      ws.onopen = () => ws.send(first);
      ws.onmessage = (m) => { if (!this.closed && m.data instanceof ArrayBuffer) this.h.onframe(new Uint8Array(m.data)); };
      ws.onclose = (e) => this.lost(e.reason ? "transport closed: " + e.reason : "transport closed");
      ws.onerror = () => this.lost("transport error");
    }
    lost(reason) { if (!this.closed) { this.closed = true; this.h.onlost(reason); } }
    send(bytes) { if (!this.closed && this.ws && this.ws.readyState === 1) this.ws.send(bytes); }
    close() { this.closed = true; try { if (this.ws) this.ws.close(1000); } catch (_) { /* already closed */ } }
  }

  class PollingTransport {
    constructor(url, first, handlers) {
      this.kind = "polling";
      this.h = handlers;
      this.closed = false;
      this.base = httpUrl(url).replace(/\/$/, "") + "/poll";
      this.queue = [];
      this.posting = false;
      // Ends the requests in flight on close(): a held poll would otherwise stay open
      // (and keep a Node process alive) until the server answers it.
      this.abort = new AbortController();
      this.open(first);
    }
    async open(first) {
      try {
        const res = await fetch(this.base, { method: "POST", body: encodeBatch([first]), cache: "no-store", signal: this.abort.signal });
        const text = await res.text();
        if (!res.ok) return this.lost("polling refused (" + res.status + "): " + text);
        this.endpoint = this.base + "?pid=" + encodeURIComponent(text);
        this.poll();
        this.flush();
      } catch (e) { this.lost("transport error: " + e.message); }
    }
    async poll() {
      while (!this.closed) {
        try {
          const res = await fetch(this.endpoint, { cache: "no-store", signal: this.abort.signal });
          if (!res.ok) return this.lost("polling refused (" + res.status + "): " + (await res.text()));
          const body = new Uint8Array(await res.arrayBuffer());
          for (const f of splitBatch(body)) { if (this.closed) return; this.h.onframe(f); }
        } catch (e) { return this.lost("transport error: " + e.message); }
      }
    }
    send(bytes) { if (!this.closed) { this.queue.push(bytes); this.flush(); } }
    async flush() {
      if (this.posting || !this.endpoint || this.closed || !this.queue.length) return;
      this.posting = true;
      const batch = this.queue.splice(0, 256);
      try {
        const res = await fetch(this.endpoint, { method: "POST", body: encodeBatch(batch), cache: "no-store", signal: this.abort.signal });
        if (!res.ok) return this.lost("polling refused (" + res.status + "): " + (await res.text()));
      } catch (e) { return this.lost("transport error: " + e.message); }
      finally { this.posting = false; }
      this.flush();
    }
    lost(reason) { if (!this.closed) { this.closed = true; this.h.onlost(reason); } }
    close() { this.closed = true; this.abort.abort(); }
  }

  // ---- Namespaces --------------------------------------------------------------

  class NamespaceSocket {
    constructor(client, ns, auth) {
      this.client = client;
      this.name = ns;
      this.auth = auth;
      this.handlers = new Map();
      this.any = [];
      this.leaveHandlers = [];
      /** Why the server removed the client from this namespace; null while joined. */
      this.disconnectReason = null;
    }
    /** Calls `fn(data, ack)` for event `name`; `ack` is set when the server asked for an answer. */
    on(name, fn) { this.handlers.set(name, fn); return this; }
    /** Calls `fn(name, data)` for every event without its own handler. */
    onAny(fn) { this.any.push(fn); return this; }
    /** Calls `fn(reason)` when the server removes the client from this namespace
     *  (`Socket::disconnect(reason)` on the server); the session goes on. */
    onDisconnect(fn) { this.leaveHandlers.push(fn); return this; }
    removed(reason) {
      this.disconnectReason = reason;
      this.leaveHandlers.forEach((fn) => { try { fn(reason); } catch (e) { console.error(e); } });
    }
    /** Sends a reliable event. Throws when the send buffer is full. */
    emit(name, data) { this.client.sendReliable({ type: "event", ns: this.name, name, payload: json(data), ack: null }); }
    /** Sends an event and resolves with the server's answer, or rejects after `timeoutMs`. */
    emitWithAck(name, data, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const id = this.client.nextAck++;
        const timer = setTimeout(() => { this.client.acks.delete(id); reject(new Error("ack timed out")); }, timeoutMs);
        this.client.acks.set(id, { resolve, reject, timer });
        try { this.client.sendReliable({ type: "event", ns: this.name, name, payload: json(data), ack: id }); }
        catch (e) { clearTimeout(timer); this.client.acks.delete(id); reject(e); }
      });
    }
    /** Leaves this namespace; the others stay. */
    leave() { this.client.namespaces.delete(this.name); this.client.sendReliable({ type: "disconnect", ns: this.name }); }
    dispatch(name, payload, ackId, volatile) {
      let data;
      try { data = parse(payload); } catch (e) { return console.warn("volley: bad payload for", name, e); }
      const ack = ackId == null ? null : (answer) =>
        this.client.sendReliable({ type: "ack", ns: this.name, id: ackId, payload: json(answer) });
      const fn = this.handlers.get(name);
      if (fn) fn(data, ack, { volatile });
      else this.any.forEach((f) => f(name, data, ack));
    }
  }

  // ---- The client ----------------------------------------------------------------

  const RECEIVED_EVERY = 64;
  const RECEIVED_AFTER_MS = 1000;

  class Client {
    /**
     * @param {string} url WebSocket URL or path of the Volley endpoint (default "/volley").
     * @param {object} options transport ("auto" | "websocket" | "polling"), upgradeTimeout (5000 ms),
     *   backoff { initial: 1000, max: 5000, factor: 2, jitter: 0.5, maxAttempts: Infinity },
     *   sendBuffer (1024 unconfirmed reliable frames), maxFrameSize (16 MiB: the largest
     *   frame accepted from the server; announced to it, which never sends more),
     *   WebSocket (the WebSocket class to use; default: the global one).
     */
    constructor(url = "/volley", options = {}) {
      if (!global.location && !/^wss?:\/\//.test(url)) {
        throw new Error("volley: " + JSON.stringify(url) + " is relative and there is no page here: pass a full ws:// or wss:// URL");
      }
      this.url = url;
      this.options = Object.assign({ transport: "auto", upgradeTimeout: 5000, sendBuffer: 1024, maxFrameSize: 16 * 1024 * 1024 }, options);
      this.backoff = Object.assign({ initial: 1000, max: 5000, factor: 2, jitter: 0.5, maxAttempts: Infinity }, options.backoff || {});
      this.kind = this.options.transport === "polling" ? "polling" : "websocket";
      this.namespaces = new Map();
      this.pending = new Map(); // joins waiting for an answer
      this.acks = new Map();
      this.nextAck = 1;
      this.listeners = [];
      this.resetSession();
      this.state = "idle";
    }

    resetSession() {
      this.session = null; // the Open frame
      this.recvSeq = 0;
      this.reportedSeq = 0;
      this.outbox = []; // reliable frames not yet confirmed by the server
      this.outboxAcked = 0; // sequence number of the frame before outbox[0]
    }

    /** Subscribes to connection changes: { state, transport, attempt, delay, reason, ... }. */
    onState(fn) { this.listeners.push(fn); return this; }
    setState(state, extra = {}) {
      this.state = state;
      const info = Object.assign({ state, transport: this.kind, sid: this.session && this.session.sid }, extra);
      this.listeners.forEach((fn) => { try { fn(info); } catch (e) { console.error(e); } });
    }
    get sessionId() { return this.session ? this.session.sid : null; }

    /** Opens the session. Resolves when the server has opened it. */
    connect() {
      return new Promise((resolve, reject) => {
        this.opened = { resolve, reject };
        this.setState("connecting");
        const hello = this.hello();
        if (this.options.transport === "auto") {
          this.attempt("websocket", hello, this.options.upgradeTimeout, (reason) => {
            // "fell-back" once long-polling works: if nothing answers, it is an outage.
            this.attempt("polling", hello, 10000, (why) => { this.opened = null; reject(new Error(why)); },
              () => this.setState("fell-back", { reason }));
          });
        } else {
          this.attempt(this.kind, hello, 10000, (why) => { this.opened = null; reject(new Error(why)); });
        }
      });
    }

    /** `hello`, announcing the largest frame this client accepts. */
    hello() { return encode({ type: "hello", version: 1, max_frame_size: this.options.maxFrameSize }); }

    /** Starts a transport with `first`; `failed(reason)` if it does not answer in time,
     *  `answered()` (optional) when its first frame arrives. */
    attempt(kind, first, timeoutMs, failed, answered) {
      let settled = false;
      const fail = (reason) => { if (!settled) { settled = true; clearTimeout(timer); t.close(); failed(reason); } };
      const Transport = kind === "polling" ? PollingTransport : WebSocketTransport;
      const t = new Transport(this.url, first, {
        onframe: (bytes) => {
          if (bytes.length > this.options.maxFrameSize) {
            // A resume would be sent the same frame again: end the session instead.
            const reason = "the server sent a frame larger than this client accepts (maxFrameSize " + this.options.maxFrameSize + " bytes)";
            if (!settled) return fail(reason);
            if (this.transport === t) { this.write({ type: "close", reason }); this.finish(reason); }
            return;
          }
          let f;
          try { f = decode(bytes); } catch (e) { return fail("server sent a bad frame: " + e.message); }
          if (!settled) {
            settled = true;
            clearTimeout(timer);
            this.kind = kind;
            this.transport = t;
            if (answered) answered();
          }
          if (this.transport === t) this.onFrame(f);
        },
        onlost: (reason) => { if (!settled) fail(reason); else if (this.transport === t) this.lost(reason); },
      }, this.options);
      const timer = setTimeout(() => fail("no answer within " + timeoutMs + " ms"), timeoutMs);
    }

    write(frame) { if (this.transport) this.transport.send(encode(frame)); }

    /** Numbers, keeps and (when connected) sends a reliable frame. */
    sendReliable(frame) {
      if (this.state === "closed") throw new Error("client closed");
      if (this.outbox.length >= this.options.sendBuffer) throw new Error("send buffer full");
      const bytes = encode(frame);
      this.outbox.push(bytes);
      if (this.transport && this.state !== "reconnecting") this.transport.send(bytes);
    }

    /** Joins a namespace; resolves with its socket, rejects with the server's reason. */
    join(ns, auth = null) {
      const socket = this.namespaces.get(ns) || new NamespaceSocket(this, ns, auth);
      return new Promise((resolve, reject) => {
        this.pending.set(ns, { socket, resolve, reject });
        this.sendReliable({ type: "connect", ns, auth: json(auth) });
      });
    }

    onFrame(f) {
      if (RELIABLE.has(f.type)) {
        this.recvSeq++;
        if (this.recvSeq - this.reportedSeq >= RECEIVED_EVERY) this.report();
        else if (!this.reportTimer) this.reportTimer = setTimeout(() => this.report(), RECEIVED_AFTER_MS);
      }
      switch (f.type) {
        case "open": return this.opened_(f);
        case "resumed": return this.resumed(f);
        case "resume-failed":
          // The old session is gone: open a fresh one on this connection.
          this.lostReason = f.reason;
          return this.transport.send(this.hello());
        case "ping":
          this.armSilence();
          this.reportedSeq = this.recvSeq;
          return this.write({ type: "pong", last_seq: this.recvSeq });
        case "received": return this.confirm(f.last_seq);
        case "connected": {
          const p = this.pending.get(f.ns);
          if (p) { this.pending.delete(f.ns); this.namespaces.set(f.ns, p.socket); if (p.resolve) p.resolve(p.socket); }
          return;
        }
        case "connect-error": {
          const p = this.pending.get(f.ns);
          if (p) { this.pending.delete(f.ns); if (p.reject) p.reject(new Error(f.reason)); }
          return;
        }
        case "disconnect": {
          const ns = this.namespaces.get(f.ns);
          this.namespaces.delete(f.ns);
          if (ns) ns.removed(f.reason == null ? "disconnected by the server" : f.reason);
          return;
        }
        case "event": case "volatile": {
          const ns = this.namespaces.get(f.ns);
          if (ns) ns.dispatch(f.name, f.payload, f.type === "event" ? f.ack : null, f.type === "volatile");
          return;
        }
        case "ack": {
          const a = this.acks.get(f.id);
          if (a) { this.acks.delete(f.id); clearTimeout(a.timer); try { a.resolve(parse(f.payload)); } catch (e) { a.reject(e); } }
          return;
        }
        case "error":
          console.warn("volley: server refused a request in", f.ns + ":", f.reason);
          this.setState(this.state, { error: f.reason, ns: f.ns });
          return;
        case "close": return this.finish(f.reason);
      }
    }

    opened_(f) {
      const fresh = this.session !== null || this.lostReason !== undefined;
      const lostReason = this.lostReason;
      this.lostReason = undefined;
      if (this.session) {
        // A resume failed and this is a fresh session: rejoin, report the loss.
        const dropped = this.outbox.length;
        this.acks.forEach((a) => { clearTimeout(a.timer); a.reject(new Error("session lost")); });
        this.acks.clear();
        this.resetSession();
        this.session = f;
        this.setState("session-lost", { reason: lostReason, dropped });
        for (const [ns, socket] of this.namespaces) this.pending.set(ns, { socket });
        this.namespaces.clear();
        for (const [ns, p] of this.pending) this.sendReliable({ type: "connect", ns, auth: json(p.socket.auth) });
      } else {
        this.session = f;
      }
      this.armSilence();
      this.setState("connected", { fresh });
      this.attempts = 0;
      if (this.opened) { this.opened.resolve(this); this.opened = null; }
    }

    resumed(f) {
      this.confirm(f.last_seq);
      this.reportedSeq = this.recvSeq;
      this.outbox.forEach((bytes) => this.transport.send(bytes));
      this.armSilence();
      this.attempts = 0;
      this.setState("connected", { resumed: true, replayed: f.replay, resent: this.outbox.length });
    }

    confirm(lastSeq) {
      const n = lastSeq - this.outboxAcked;
      if (n > 0) { this.outbox.splice(0, n); this.outboxAcked = lastSeq; }
    }

    report() {
      clearTimeout(this.reportTimer);
      this.reportTimer = null;
      if (this.recvSeq !== this.reportedSeq && this.state === "connected") {
        this.reportedSeq = this.recvSeq;
        this.write({ type: "received", last_seq: this.recvSeq });
      }
    }

    armSilence() {
      clearTimeout(this.silence);
      if (!this.session) return;
      const ms = this.session.ping_interval_ms + this.session.ping_timeout_ms;
      const t = this.transport;
      this.silence = setTimeout(() => { if (this.transport === t) { t.close(); this.lost("ping timeout"); } }, ms);
    }

    /** The connection dropped: try again with back-off and resume. */
    lost(reason) {
      if (this.state === "closed") return;
      clearTimeout(this.silence);
      this.transport = null;
      this.attempts = (this.attempts || 0) + 1;
      if (this.attempts > this.backoff.maxAttempts) return this.finish("reconnection failed after " + (this.attempts - 1) + " attempts");
      const base = Math.min(this.backoff.initial * Math.pow(this.backoff.factor, this.attempts - 1), this.backoff.max);
      const spread = (Math.random() * 2 - 1) * this.backoff.jitter;
      const delay = Math.min(base * (1 + spread), this.backoff.max);
      this.setState("reconnecting", { attempt: this.attempts, delay, reason });
      this.retry = setTimeout(() => this.reopen(), delay);
    }

    reopen() {
      if (this.state === "closed") return;
      const s = this.session;
      const first = encode({ type: "resume", sid: s.sid, token: s.token, last_seq: this.recvSeq, max_frame_size: this.options.maxFrameSize });
      const kind = this.kind;
      this.attempt(kind, first, 10000, (reason) => {
        if (this.options.transport === "auto" && kind === "websocket") this.fallBack(first, reason);
        else this.lost(reason);
      });
    }

    /** A WebSocket reconnection failed. The browser does not say whether the upgrade was
     *  refused or nothing answered, so: if HTTP does not answer either, it is an outage and
     *  the next attempt is WebSocket again; if it does, WebSocket is tried once more (the
     *  outage may have just ended), and only if that fails too does long-polling carry the
     *  session ("fell-back" once it works). */
    fallBack(first, reason) {
      const probe = httpUrl(this.url).replace(/\/$/, "") + "/poll"; // answers 400 without a pid
      fetch(probe, { cache: "no-store" }).then(() => {
        if (this.state === "closed") return;
        this.attempt("websocket", first, this.options.upgradeTimeout, (again) => {
          this.attempt("polling", first, 10000, (why) => this.lost(why), () => this.setState("fell-back", { reason: again }));
        });
      }, () => this.lost(reason));
    }

    finish(reason) {
      clearTimeout(this.silence);
      clearTimeout(this.retry);
      clearTimeout(this.reportTimer);
      if (this.transport) this.transport.close();
      this.transport = null;
      this.acks.forEach((a) => { clearTimeout(a.timer); a.reject(new Error("session closed: " + reason)); });
      this.acks.clear();
      this.setState("closed", { reason });
    }

    /** Ends the session for good. */
    close() {
      if (this.transport) this.write({ type: "close", reason: "client left" });
      this.finish("client closed");
    }
  }

  const Volley = { Client, encode, decode, encodeBatch, splitBatch, version: 1 };
  // CommonJS (Node's require, bundlers) gets the module; a <script> tag or an ES module
  // import of this file (volley.mjs) gets the global.
  if (typeof module === "object" && module && module.exports) module.exports = Volley;
  else global.Volley = Volley;
})(typeof window !== "undefined" ? window : globalThis);
