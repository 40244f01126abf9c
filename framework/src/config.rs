//! Server configuration: every limit and timer, with its default, in one place.

use std::net::IpAddr;
use std::time::Duration;

/// Server settings. Start from [`Config::default`] and set fields, or use the
/// [`crate::VolleyBuilder`] methods. Every default is listed on its field.
///
/// ```
/// use std::time::Duration;
/// use volley::{Config, Volley};
///
/// let config = Config {
///     handshake_timeout: Duration::from_secs(3),
///     max_namespaces_per_session: 4,
///     max_connections_per_ip: 50,
///     ..Config::default()
/// };
/// let builder = Volley::builder().config(config); // then .namespace(..) and .build()
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    /// Path of the WebSocket endpoint; long-polling is served at `<path>/poll`.
    /// Default `/volley`.
    pub path: String,
    /// How often the server pings each session. Default 25 s.
    pub ping_interval: Duration,
    /// How long a client has to answer a ping before its connection is dropped with
    /// `ping timeout` (the session detaches and may resume). Default 20 s. A dead
    /// peer is detected within `ping_interval + ping_timeout`.
    pub ping_timeout: Duration,
    /// How long a new connection may take to send its first frame. Default 10 s.
    pub handshake_timeout: Duration,
    /// Largest frame accepted from a client, in bytes; a larger one closes the
    /// connection with `frame too large`. Default 1 MiB.
    pub max_frame_size: usize,
    /// Most bytes queued for one connection that the peer has not taken yet (each
    /// frame counts 64 bytes more, for the message that carries it). Past it the
    /// session ends with `slow consumer`. Default 4 MiB.
    pub max_send_backlog: usize,
    /// How long a connection's socket may accept no bytes while bytes are queued for
    /// it. Past it the connection is dropped as a network failure would drop it: the
    /// session detaches and the client may resume. Default 30 s, well above a mobile
    /// network's hiccup. Enforced by the operating system (`TCP_USER_TIMEOUT`, Linux)
    /// on connections accepted by a server that installs [`crate::Volley::on_connect`]
    /// ([`crate::Volley::serve`] does); it also bounds how long unacknowledged bytes
    /// wait for a peer that vanished. Elsewhere the heartbeat is what drops a silent
    /// peer, after `ping_interval + ping_timeout`.
    pub write_timeout: Duration,
    /// How long an io thread gathers its clients' frames before it takes them, while
    /// its sockets are busy. Zero (the default) takes every frame as soon as it
    /// arrives: the thread sleeps when it has nothing to do and wakes for each socket
    /// that becomes readable. A window of a few milliseconds makes a busy io thread
    /// wake at most once per window for its clients and take every frame that
    /// arrived meanwhile together: fewer sleeps and wake-ups, which with many clients
    /// each sending a little (a game's inputs) is a large part of the server's CPU,
    /// at the cost of up to one window of latency for a client's frame. What the
    /// server sends does not wait: a delivery posted to the thread (a game's states,
    /// a broadcast) wakes it at once; and with game rooms the thread reads just
    /// before each instant they tick on, so their inputs lose no time. Keep it well
    /// under a game's tick period (a window of 4 ms at 30 Hz: 5–16% less server CPU
    /// for 100 rooms of 8 players in docs/benchmarks.md). An idle thread still
    /// sleeps until a socket has something. At most 50 ms: `build()` lowers a longer
    /// window to that, with a warning. Applies to Volley's own server ([`crate::Volley::http_server`],
    /// [`crate::Volley::serve`]).
    pub io_window: Duration,
    /// Most messages waiting in one actor's mailbox on the per-message path: in a
    /// session, deliveries from rooms, namespaces and handlers, and frames from its
    /// client; in a namespace, broadcasts not yet fanned out by it or its rooms. At
    /// the limit a session's deliveries end it with `slow consumer`, its client's
    /// frames end it with `too many frames waiting`, and a broadcast is refused with
    /// [`crate::EmitError::Busy`]. Default 4096. Keep it at least `max_poll_frames`:
    /// a polling batch is handed over at once.
    pub max_mailbox: usize,
    /// How long a session whose connection dropped stays resumable (namespaces, rooms,
    /// socket data and undelivered reliable frames kept). Default 2 min. Zero turns
    /// resumption off: a dropped connection ends the session at once.
    pub resume_grace: Duration,
    /// Most sessions kept resumable without a connection at once. A session whose
    /// connection drops past it makes the one detached longest end at once
    /// (`DisconnectReason::Evicted`; its client's resume then starts a fresh
    /// session), so that clients which connect and vanish, by accident or on
    /// purpose, cannot hold the server's memory for `resume_grace` without bound
    /// (each detached session keeps its namespaces, rooms and outbox: a few KiB).
    /// Default `None`: as many as `max_connections` (after `build()` fits it to the
    /// open-file limit), so that every connection cut at once can still resume.
    ///
    /// One client address (as `max_connections_per_ip` counts it) has a share of
    /// them: as many as it may hold connections. Past it, the session of that address
    /// detached longest ends instead, so that one address connecting and vanishing
    /// in a loop evicts its own sessions, not other clients'.
    pub max_detached_sessions: Option<usize>,
    /// Most unacknowledged reliable frames kept per session for replay. Past it the
    /// session ends with `outbox overflow`. Default 4096.
    pub max_outbox_frames: usize,
    /// Most bytes of unacknowledged reliable frames kept per session. Past it the
    /// session ends with `outbox overflow`. Default 2 MiB. Keep it below
    /// `max_send_backlog`: a resume replays up to this much at once.
    pub max_outbox_bytes: usize,
    /// Long-polling: how long a GET waits for frames before answering an empty
    /// batch. Keep it below `ping_interval`. Default 20 s.
    pub poll_hold: Duration,
    /// Long-polling: largest request body accepted (larger: 413), and the size a GET
    /// answer is cut at. Default 2 MiB.
    pub max_poll_body: usize,
    /// Long-polling: most frames in one batch, either way. Default 256.
    pub max_poll_frames: usize,
    /// Origins of browser pages served elsewhere that may connect, over WebSocket and
    /// long-polling (the latter with CORS headers). A request that carries an `Origin`
    /// header is refused with 403 unless the origin is the server's own (its host and
    /// port equal the `Host` header's; the scheme is not compared) or listed here
    /// exactly as the browser sends it (`https://play.example.com`). Requests without
    /// `Origin` (native clients) are not checked. `"*"` allows any. Default: none.
    pub cors_origins: Vec<String>,
    /// Most open connections (WebSocket and long-polling together). Past it a new
    /// connection is refused with 503. Default 20,000 (at about 4 KiB each when
    /// idle, some 80 MiB). `usize::MAX`: as many as the open-file limit allows.
    ///
    /// Each connection is a file descriptor: `build()` raises the process's soft
    /// open-file limit to its hard limit, and lowers this limit to what the files
    /// allow (less 256 kept for everything else) with a warning, so that the
    /// server refuses a connection with 503 rather than failing to accept it (see
    /// the guide's "Open files").
    pub max_connections: usize,
    /// Most open connections from one client address (an IPv6 client counts per /64
    /// network). Past it a new connection from that address is refused with 503.
    /// Default 1,000: far more than one player needs, enough for a large office or
    /// carrier-grade NAT behind one address, and still a twentieth of
    /// `max_connections`, so one host cannot take the server. `usize::MAX`: no limit.
    pub max_connections_per_ip: usize,
    /// How fast one client address (as `max_connections_per_ip` counts it) may open
    /// new connections, resumes and long-polling sessions included. Past it a new
    /// connection from that address is refused with 429 until its bucket refills.
    /// Default 100 a second, burst 1,000 (every connection `max_connections_per_ip`
    /// allows, opened at once after a restart). See [`ConnectRate`].
    pub connect_rate_per_ip: ConnectRate,
    /// Reverse proxies whose `X-Forwarded-For` header is believed. When a connection
    /// comes from one of these addresses, the client address counted by
    /// `max_connections_per_ip` is the last one in `X-Forwarded-For` that is not
    /// itself a trusted proxy; from any other peer the header is ignored (anyone can
    /// write it). Default: none.
    pub trusted_proxies: Vec<IpAddr>,
    /// How fast one session may send. Past it the client gets an `error` frame saying
    /// which limit, then the session ends with `rate limited`. Default 200 frames/s
    /// (burst 2,000) and 1 MiB/s (burst 2 MiB). See [`RateLimit`].
    pub rate_limit: RateLimit,
    /// Most namespaces one session may join. Default 32.
    pub max_namespaces_per_session: usize,
    /// Threads (one arbiter each) that run the sessions moved to this node from
    /// another node of its cluster, until their clients' connections attach (feature
    /// `cluster`; none are started otherwise). Default: the number of cores. Rooms
    /// are fanned out by their namespace's actor; game rooms have threads of their
    /// own (`GameRoomsBuilder::threads`).
    pub room_threads: usize,
    /// Serve Prometheus metrics, and to whom (see [`crate::MetricsRoute`]). Default:
    /// none (no metrics route).
    pub metrics: Option<crate::MetricsRoute>,
    /// The Socket.IO endpoint, for the official Socket.IO clients (see
    /// [`SocketIo`]). Default: on, at `/socket.io/`, with connection-state
    /// recovery. `None` turns it off.
    pub socketio: Option<SocketIo>,
}

/// The Socket.IO v5 endpoint (Engine.IO v4, long-polling and WebSocket): Socket.IO
/// clients join the same namespaces, rooms and game rooms as Volley's own clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketIo {
    /// Where it is served, as Socket.IO clients' `path` option names it. Default
    /// `/socket.io/` (theirs).
    pub path: String,
    /// Connection-state recovery: each event without ack carries its offset as a
    /// last argument and a reconnecting client recovers its session (every missed
    /// packet, once, in order) within `resume_grace`. Default on.
    pub recovery: bool,
}

impl Default for SocketIo {
    fn default() -> Self {
        SocketIo {
            path: "/socket.io/".to_owned(),
            recovery: true,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path: "/volley".to_owned(),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            handshake_timeout: Duration::from_secs(10),
            max_frame_size: 1024 * 1024,
            max_send_backlog: 4 * 1024 * 1024,
            write_timeout: Duration::from_secs(30),
            io_window: Duration::ZERO,
            max_mailbox: 4096,
            resume_grace: Duration::from_secs(120),
            max_detached_sessions: None,
            max_outbox_frames: 4096,
            max_outbox_bytes: 2 * 1024 * 1024,
            poll_hold: Duration::from_secs(20),
            max_poll_body: 2 * 1024 * 1024,
            max_poll_frames: 256,
            cors_origins: Vec::new(),
            max_connections: 20_000,
            max_connections_per_ip: 1_000,
            connect_rate_per_ip: ConnectRate::default(),
            trusted_proxies: Vec::new(),
            rate_limit: RateLimit::default(),
            max_namespaces_per_session: 32,
            room_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            metrics: None,
            socketio: Some(SocketIo::default()),
        }
    }
}

/// Inbound rate limit of one session: two token buckets, one counting frames and one
/// counting bytes. A bucket holds up to its burst and refills at its rate; each frame
/// from the client takes one frame token and as many byte tokens as its size. A
/// frame that finds a bucket short ends the session (`rate limited`).
///
/// The defaults are far above what a game client sends (60 inputs a second plus chat
/// and acknowledgements is under 100 frames/s) and far below what a flood costs the
/// server. A rate of zero turns that bucket off; [`RateLimit::OFF`] turns both off.
/// Keep `byte_burst` at least `max_frame_size`, or the largest frames can never pass.
///
/// ```
/// use volley::{RateLimit, Volley};
///
/// // A chat client sends little: allow 20 frames a second, 50 at once.
/// let builder = Volley::builder().rate_limit(RateLimit {
///     frames_per_sec: 20,
///     frame_burst: 50,
///     ..RateLimit::default()
/// });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Frames per second, sustained. Default 200.
    pub frames_per_sec: u32,
    /// Frames that may come at once after a quiet spell. Default 2,000: more than
    /// the Rust client's whole send buffer (1,024 frames), flushed at once after a
    /// reconnection.
    pub frame_burst: u32,
    /// Bytes per second, sustained (frame sizes as encoded). Default 1 MiB.
    pub bytes_per_sec: u64,
    /// Bytes that may come at once after a quiet spell. Default 2 MiB.
    pub byte_burst: u64,
}

impl RateLimit {
    /// No inbound rate limit.
    pub const OFF: RateLimit = RateLimit {
        frames_per_sec: 0,
        frame_burst: 0,
        bytes_per_sec: 0,
        byte_burst: 0,
    };

    /// Whether it limits nothing: a rate of 0 is no limit on frames, or on bytes.
    pub(crate) fn is_off(&self) -> bool {
        self.frames_per_sec == 0 && self.bytes_per_sec == 0
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            frames_per_sec: 200,
            frame_burst: 2_000,
            bytes_per_sec: 1024 * 1024,
            byte_burst: 2 * 1024 * 1024,
        }
    }
}

/// How fast one client address may open connections: a token bucket per address
/// that holds up to `burst` connects and refills at `per_sec`; each new connection
/// (a WebSocket upgrade, a long-polling session's first request, Socket.IO's too)
/// takes one. A connect that finds the bucket empty is refused with `429 Too Many
/// Requests` and counted as `connection_rate` in `volley_refused_total`; Volley's
/// clients take a 429 as "come back later" and retry with their back-off.
///
/// Handshakes cost the server far more than frames: a client that connects and
/// drops in a loop, within `max_connections_per_ip`, is held to `per_sec` of them.
/// [`ConnectRate::OFF`] turns it off (a load test that opens thousands of
/// connections from one machine's address).
///
/// ```
/// use volley::{ConnectRate, Volley};
///
/// // Players behind one address rarely open more than a few connections a second.
/// let builder = Volley::builder().connect_rate_per_ip(ConnectRate {
///     per_sec: 10,
///     burst: 100,
/// });
/// # drop(builder);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectRate {
    /// New connections per second, sustained. Default 100.
    pub per_sec: u32,
    /// New connections at once after a quiet spell. Default 1,000.
    pub burst: u32,
}

impl ConnectRate {
    /// No limit on how fast an address connects (only on how many connections it
    /// holds, `max_connections_per_ip`).
    pub const OFF: ConnectRate = ConnectRate {
        per_sec: 0,
        burst: 0,
    };

    /// Whether it limits nothing (a rate of 0).
    pub(crate) fn is_off(&self) -> bool {
        self.per_sec == 0
    }
}

impl Default for ConnectRate {
    fn default() -> Self {
        ConnectRate {
            per_sec: 100,
            burst: 1_000,
        }
    }
}
