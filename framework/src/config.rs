//! Server configuration: every limit and timer, with its default, in one place.

use std::time::Duration;

/// Server settings. Start from [`Config::default`] and set fields, or use the
/// [`crate::VolleyBuilder`] methods. Every default is listed on its field.
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
    /// Origins allowed to use the long-polling endpoint from a browser page served
    /// elsewhere (CORS). `"*"` allows any. Default: none (same origin only).
    pub cors_origins: Vec<String>,
    /// Most namespaces one session may join. Default 32.
    pub max_namespaces_per_session: usize,
    /// Threads that run rooms (one arbiter each). Default: the number of cores.
    pub room_threads: usize,
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
            max_mailbox: 4096,
            resume_grace: Duration::from_secs(120),
            max_outbox_frames: 4096,
            max_outbox_bytes: 2 * 1024 * 1024,
            poll_hold: Duration::from_secs(20),
            max_poll_body: 2 * 1024 * 1024,
            max_poll_frames: 256,
            cors_origins: Vec::new(),
            max_namespaces_per_session: 32,
            room_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        }
    }
}
