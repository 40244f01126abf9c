//! The chat's wire, the same on every server `loadtest compare` runs: its namespace
//! and room, the protocol a client speaks, the message the server sends for each
//! `say`, and the text that carries each message's number and send time. The test
//! server (`loadtest serve`), the run's plan and the chat scenario all use it.

use serde::{Deserialize, Serialize};

/// The chat's namespace on every server.
pub const CHAT_NAMESPACE: &str = "/chat";
/// The one room of the run.
pub const CHAT_ROOM: &str = "lobby";

/// Which protocol a chat connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    #[default]
    Volley,
    /// Socket.IO over a WebSocket from the start (`transports: ["websocket"]`).
    SocketIo,
    /// Socket.IO opened with long polling and upgraded to a WebSocket, as
    /// socket.io-client does by default.
    SocketIoUpgrade,
}

impl Dialect {
    /// For a Socket.IO dialect, whether its clients open with long polling and
    /// upgrade; `None` for Volley's protocol.
    pub fn socketio(self) -> Option<bool> {
        match self {
            Dialect::Volley => None,
            Dialect::SocketIo => Some(false),
            Dialect::SocketIoUpgrade => Some(true),
        }
    }
}

/// What the server sends for each `say`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatMessage {
    pub from: String,
    pub text: String,
}

/// The text of message `seq` sent at `sent_us`: `"<seq> <sent_us> xxx…"`, padded
/// to `size` bytes (longer if the numbers alone are).
pub fn text(seq: u64, sent_us: u64, size: usize) -> String {
    let mut text = format!("{seq} {sent_us} ");
    let pad = size.saturating_sub(text.len());
    text.extend(std::iter::repeat_n('x', pad));
    text
}

/// The number and send time in a message's text.
pub fn read_text(text: &str) -> Option<(u64, u64)> {
    let mut parts = text.split(' ');
    let seq = parts.next()?.parse().ok()?;
    let sent_us = parts.next()?.parse().ok()?;
    Some((seq, sent_us))
}
