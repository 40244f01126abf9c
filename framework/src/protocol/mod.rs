//! The wire protocol: what travels between a client and the server.
//!
//! [`Frame`] is the one message type of protocol v1; [`codec`] turns frames into bytes
//! and back; [`WireFrame`] is a frame as the server sends it, encoded and framed once
//! for all its recipients. Nothing here knows about actors or sockets, so a client in
//! another language can be written from `docs/protocol.md` and checked against the
//! same test vectors that `tests/protocol_vectors/` decodes.

pub mod codec;
mod copied;
mod frame;
pub mod socketio;
mod wire;
mod ws_header;

pub use codec::{
    decode, encode, encode_batch, encode_event, split_batch, BatchError, DecodeError, EventKind,
};
pub use frame::{Frame, Open, ResumeToken, PROTOCOL_VERSION};
pub use wire::WireFrame;
pub(crate) use ws_header::text_header;
