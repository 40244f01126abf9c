//! One frame of a Socket.IO client's WebSocket as its connection takes it (whichever
//! reads it: the WebSocket's own task, `websocket.rs`, or the connection, once it
//! carries the socket, `connection.rs`), and the two control frames the server
//! writes itself: the pong and the close.

use actix_codec::Encoder;
use actix_http::ws::{Codec, Frame, Message, ProtocolError};
use bytes::{Bytes, BytesMut};

use crate::protocol::socketio::EioPacket;
use crate::session::Shared;

/// What one frame of the client's is to its connection.
pub(super) enum Read {
    /// An Engine.IO packet, and its size as received.
    Packet(EioPacket, usize),
    /// A WebSocket ping, answered with a pong of the same bytes.
    Ping(Bytes),
    /// Nothing to do (a pong).
    Nothing,
    /// The socket's end: a close, an error (too large, malformed: counted as refused),
    /// a fragment (the clients send none), or no more frames.
    End,
}

/// Reads one frame of the client's (`None`: the socket ended).
pub(super) fn read(frame: Option<Result<Frame, ProtocolError>>, shared: &Shared) -> Read {
    let decoded = match frame {
        Some(Ok(Frame::Text(bytes))) => match std::str::from_utf8(&bytes) {
            Ok(text) => EioPacket::decode(text).map(|p| (p, bytes.len())),
            Err(_) => return Read::End,
        },
        Some(Ok(Frame::Binary(bytes))) => Ok((EioPacket::Binary(bytes.to_vec()), bytes.len())),
        Some(Ok(Frame::Ping(bytes))) => return Read::Ping(bytes),
        Some(Ok(Frame::Pong(_))) => return Read::Nothing,
        _ => return Read::End,
    };
    match decoded {
        Ok((packet, size)) => Read::Packet(packet, size),
        Err(_) => {
            shared.metrics.refused("bad_frame");
            Read::End
        }
    }
}

/// A WebSocket close without a code: a server's last message on the socket.
pub(super) const CLOSE: &[u8] = &[0x88, 0x00];

/// The pong that answers a ping of `bytes`.
pub(super) fn pong(bytes: Bytes) -> Bytes {
    let mut pong = BytesMut::new();
    // A server's control frame always encodes (small, unmasked).
    let _ = Codec::new().encode(Message::Pong(bytes), &mut pong);
    pong.freeze()
}
