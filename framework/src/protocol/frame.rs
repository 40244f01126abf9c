//! Protocol v1 frames.
//!
//! The order of the variants is the wire tag and the order of the fields is the wire
//! layout: never reorder, only append. `docs/protocol.md` specifies every variant byte
//! by byte.
//!
//! Reliable frames (see [`Frame::is_reliable`]) are numbered *implicitly*: the n-th
//! reliable frame a peer sends in a session has sequence number n (starting at 1).
//! Keeping the number out of the bytes is what lets a broadcast be encoded once and
//! sent byte-identical to every recipient; the sequence is re-synchronised on resume,
//! where each side states the last number it processed.
//!
//! Fields marked `#[serde(skip)]` are *optional trailing fields*, added to v1 without
//! a new version: they are the frame's last bytes when present and absent when the
//! frame ends before them. The codec writes and reads them (bincode enums have no
//! such notion); see `docs/protocol.md` section 2.7.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::copied;

/// The protocol version this crate speaks; sent in [`Frame::Hello`] and [`Open`].
pub const PROTOCOL_VERSION: u16 = 1;

/// A session's resume secret: 128 random bits, compared in constant time.
pub type ResumeToken = [u8; 16];

/// What the server tells a client when it opens a new session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Open {
    /// Protocol version the server speaks.
    pub version: u16,
    /// Session id, stable across reconnections of this session.
    pub sid: u64,
    /// Secret needed to resume the session; never log it.
    pub token: ResumeToken,
    /// The server sends [`Frame::Ping`] this often (milliseconds).
    pub ping_interval_ms: u32,
    /// The client must answer a ping within this time (milliseconds).
    pub ping_timeout_ms: u32,
    /// Largest frame, in bytes, the server accepts.
    pub max_frame_size: u32,
}

/// One protocol message. The variant index is its wire tag (first byte).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// 0, client → server: first frame of a new session. `max_frame_size` is the
    /// largest frame the client accepts (an optional trailing field, see
    /// [`codec`](super::codec)); the server never sends it a larger one.
    Hello {
        /// Protocol version the client speaks ([`PROTOCOL_VERSION`]).
        version: u16,
        /// Largest frame, in bytes, the client accepts; `None`: no limit stated.
        #[serde(skip)]
        max_frame_size: Option<u32>,
    },
    /// 1, server → client: answer to `Hello`: the session is open.
    Open(Open),
    /// 2, server → client: heartbeat; the client answers with `Pong`.
    Ping,
    /// 3, client → server: heartbeat answer, with the last reliable sequence number the
    /// client has processed (lets the server trim its outbox).
    Pong {
        /// Last reliable sequence number the client has processed (0: none yet).
        last_seq: u64,
    },
    /// 4, either way: the last reliable sequence number processed, sent between
    /// heartbeats under load so the peer can trim its buffer.
    Received {
        /// Last reliable sequence number the sender has processed.
        last_seq: u64,
    },
    /// 5, client → server (reliable): join a namespace, with an auth payload (JSON).
    Connect {
        /// Namespace to join, for example `/chat`.
        #[serde(deserialize_with = "copied::string")]
        ns: String,
        /// The auth payload, JSON; what the namespace's connect middleware reads.
        #[serde(deserialize_with = "copied::bytes")]
        auth: ByteBuf,
    },
    /// 6, server → client (reliable): the namespace accepted the client.
    Connected {
        /// Namespace joined.
        #[serde(deserialize_with = "copied::string")]
        ns: String,
    },
    /// 7, server → client (reliable): the namespace refused the client.
    ConnectError {
        /// Namespace that refused.
        #[serde(deserialize_with = "copied::string")]
        ns: String,
        /// Why, in words (the middleware's reason or one of protocol.md section 6.3).
        #[serde(deserialize_with = "copied::string")]
        reason: String,
    },
    /// 8, either way (reliable): leave a namespace / be removed from it. From the
    /// server, `reason` is the application's (an optional trailing field).
    Disconnect {
        /// Namespace left.
        #[serde(deserialize_with = "copied::string")]
        ns: String,
        /// From the server, the application's reason; `None` from a client.
        #[serde(skip)]
        reason: Option<String>,
    },
    /// 9, either way (reliable): an application event. `payload` is JSON; `ack` asks the
    /// receiver to answer with an `Ack` carrying the same id.
    Event {
        /// Namespace the event belongs to.
        #[serde(deserialize_with = "copied::string")]
        ns: String,
        /// Event name, as given to `emit` and matched by `on`.
        #[serde(deserialize_with = "copied::string")]
        name: String,
        /// The event's payload, JSON.
        #[serde(deserialize_with = "copied::bytes")]
        payload: ByteBuf,
        /// Ack id the receiver answers with, if the sender asked for an answer.
        ack: Option<u64>,
    },
    /// 10, either way (reliable): the answer to an event that asked for one.
    Ack {
        /// Namespace of the event answered.
        #[serde(deserialize_with = "copied::string")]
        ns: String,
        /// The `ack` id of the event answered.
        id: u64,
        /// The answer, JSON.
        #[serde(deserialize_with = "copied::bytes")]
        payload: ByteBuf,
    },
    /// 11, server → client: an event that is latest-wins (game state): never buffered,
    /// never replayed, not sequenced.
    Volatile {
        /// Namespace the event belongs to.
        #[serde(deserialize_with = "copied::string")]
        ns: String,
        /// Event name.
        #[serde(deserialize_with = "copied::string")]
        name: String,
        /// The event's payload, JSON.
        #[serde(deserialize_with = "copied::bytes")]
        payload: ByteBuf,
    },
    /// 12, server → client (reliable): a request was refused (for example an event to a
    /// namespace the client has not joined, or a payload of the wrong type).
    Error {
        /// Namespace of the refused request.
        #[serde(deserialize_with = "copied::string")]
        ns: String,
        /// Why it was refused, in words.
        #[serde(deserialize_with = "copied::string")]
        reason: String,
    },
    /// 13, either way: the session ends; no resume. The connection closes after it.
    Close {
        /// Why the session ends (protocol.md section 6.1).
        #[serde(deserialize_with = "copied::string")]
        reason: String,
    },
    /// 14, client → server: first frame of a reconnection that resumes a session.
    /// `max_frame_size` as in `Hello` (an optional trailing field).
    Resume {
        /// Id of the session to resume ([`Open::sid`]).
        sid: u64,
        /// Its resume secret ([`Open::token`]); never log it.
        token: ResumeToken,
        /// Last reliable sequence number the client processed from the server.
        last_seq: u64,
        /// Largest frame, in bytes, the client accepts, as in `Hello`.
        #[serde(skip)]
        max_frame_size: Option<u32>,
    },
    /// 15, server → client: the session is resumed. `last_seq` is the last reliable
    /// frame the server processed from the client: the client resends what follows.
    /// The server then replays the `replay` reliable frames the client has not
    /// processed, in order, before anything new.
    Resumed {
        /// Last reliable sequence number the server processed from the client.
        last_seq: u64,
        /// How many reliable frames the server replays next.
        replay: u64,
    },
    /// 16, server → client: the session cannot be resumed (bad token, expired). The
    /// client should start a fresh session with `Hello`.
    ResumeFailed {
        /// Why (for example an unknown session or a wrong token).
        #[serde(deserialize_with = "copied::string")]
        reason: String,
    },
}

impl Frame {
    /// Whether the frame is part of the reliable, sequenced stream of its sender: it is
    /// counted, buffered while the peer is away, and replayed on resume.
    pub fn is_reliable(&self) -> bool {
        matches!(
            self,
            Frame::Connect { .. }
                | Frame::Connected { .. }
                | Frame::ConnectError { .. }
                | Frame::Disconnect { .. }
                | Frame::Event { .. }
                | Frame::Ack { .. }
                | Frame::Error { .. }
        )
    }

    /// A short name for logs and errors (never includes payloads or secrets).
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Hello { .. } => "hello",
            Frame::Open(_) => "open",
            Frame::Ping => "ping",
            Frame::Pong { .. } => "pong",
            Frame::Received { .. } => "received",
            Frame::Connect { .. } => "connect",
            Frame::Connected { .. } => "connected",
            Frame::ConnectError { .. } => "connect-error",
            Frame::Disconnect { .. } => "disconnect",
            Frame::Event { .. } => "event",
            Frame::Ack { .. } => "ack",
            Frame::Volatile { .. } => "volatile",
            Frame::Error { .. } => "error",
            Frame::Close { .. } => "close",
            Frame::Resume { .. } => "resume",
            Frame::Resumed { .. } => "resumed",
            Frame::ResumeFailed { .. } => "resume-failed",
        }
    }
}
