//! Errors and end-of-session reasons of the public API.

use std::fmt;

/// Why a session or a socket ended. Its `Display` form is the reason string the client
/// receives in its `Close` frame and that disconnect handlers see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client left the namespace (`Disconnect` frame) or closed the session.
    ClientLeft,
    /// The connection closed without a goodbye.
    TransportClosed,
    /// The client did not answer a ping within the timeout.
    PingTimeout,
    /// The client did not read fast enough; the send backlog passed its limit.
    SlowConsumer,
    /// The client sent something the protocol does not allow.
    Protocol(String),
    /// The server (application code) ended the socket or session.
    Kicked(String),
    /// More reliable frames waited for the client than the outbox holds.
    OutboxOverflow,
    /// The client sent faster than [`crate::RateLimit`] allows.
    RateLimited,
    /// The connection dropped (for the reason inside) and the client did not resume
    /// within the grace window.
    Expired(Box<DisconnectReason>),
    /// The connection dropped (for the reason inside) and the session waited to
    /// resume, but more sessions waited than [`crate::Config::max_detached_sessions`]
    /// allows and it had waited longest: it ended before its grace window did.
    Evicted(Box<DisconnectReason>),
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::ClientLeft => f.write_str("client left"),
            DisconnectReason::TransportClosed => f.write_str("transport closed"),
            DisconnectReason::PingTimeout => f.write_str("ping timeout"),
            DisconnectReason::SlowConsumer => f.write_str("slow consumer"),
            DisconnectReason::Protocol(why) => write!(f, "protocol error: {why}"),
            DisconnectReason::Kicked(why) => write!(f, "kicked: {why}"),
            DisconnectReason::OutboxOverflow => f.write_str("outbox overflow"),
            DisconnectReason::RateLimited => f.write_str("rate limited"),
            DisconnectReason::Expired(cause) => write!(f, "session expired ({cause})"),
            DisconnectReason::Evicted(cause) => write!(
                f,
                "session evicted ({cause}): too many sessions waiting to resume"
            ),
        }
    }
}

/// Why an acknowledgement did not arrive.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AckError {
    /// The peer did not answer within the timeout.
    #[error("ack timed out")]
    Timeout,
    /// The session ended before the answer came.
    #[error("session ended before the ack arrived")]
    Disconnected,
    /// The client's send buffer is full (it emits faster than the link carries, or
    /// has been disconnected for long): the event was not sent.
    #[error("send buffer full")]
    SendBufferFull,
    /// The answer did not decode as the expected type.
    #[error("ack payload did not decode: {0}")]
    Decode(String),
    /// The event is larger than the client accepts (the limit it announced when it
    /// connected): it was not sent. Send less, or in pieces.
    #[error("event of {size} bytes is larger than the client accepts ({limit} bytes); not sent")]
    TooLarge {
        /// The encoded frame's size in bytes.
        size: usize,
        /// The client's limit in bytes.
        limit: usize,
    },
}

/// Why an emit could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// The payload could not be serialized to JSON.
    #[error("payload did not serialize: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The frame is larger than the client accepts (the limit it announced when it
    /// connected): it was not sent. Send less, or in pieces.
    #[error("frame of {size} bytes is larger than the client accepts ({limit} bytes); not sent")]
    TooLarge {
        /// The encoded frame's size in bytes.
        size: usize,
        /// The client's limit in bytes.
        limit: usize,
    },
    /// The namespace has `Config::max_mailbox` broadcasts waiting to be fanned out:
    /// the server is behind, and this broadcast was not sent. Send less often, or
    /// retry later.
    #[error("namespace busy: {0} broadcasts waiting to be fanned out")]
    Busy(usize),
}
