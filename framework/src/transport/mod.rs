//! Transports: how frames get between a client and its [`crate::session::Session`].
//!
//! A transport decodes the client's bytes into frames, rejects what the protocol does
//! not allow (with a `Close` frame that says why), and writes the encoded bytes the
//! session hands it. It knows nothing of namespaces or rooms.

pub(crate) mod admission;
pub(crate) mod connection;
mod opening;
pub(crate) mod polling;
pub(crate) mod socketio;
pub(crate) mod upgrade;
pub(crate) mod websocket;
mod ws_frames;
mod ws_read;
