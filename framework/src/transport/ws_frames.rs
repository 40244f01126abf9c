//! The two byte streams of an upgraded WebSocket connection, as actix-web hands them
//! over: the request body (the client's bytes, decoded here into frames with
//! actix-http's codec) and the response body (the server's bytes, drained here from
//! the connection's [`SendQueue`] as complete, already framed messages).
//!
//! Why not actix-web-actors' `WebsocketContext`: it re-frames every message it is
//! given into its own buffer, a copy per recipient of a broadcast, and its actor only
//! runs when the HTTP layer polls the response. Here the session pushes the message
//! that was framed once per broadcast, and the HTTP/1 dispatcher, which polls the
//! response body until it has nothing more to give, writes everything queued since
//! its last write in one `write()`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix::prelude::*;
use actix_codec::Decoder;
use actix_http::ws::{Codec, Frame, ProtocolError};
use actix_web::error::PayloadError;
use bytes::{Bytes, BytesMut};
use futures_util::Stream;

use crate::session::SendQueue;

/// The client's frames, decoded from the bytes of the request body.
pub(crate) struct Incoming<S> {
    bytes: S,
    codec: Codec,
    buf: BytesMut,
    eof: bool,
}

impl<S> Incoming<S> {
    pub(crate) fn new(bytes: S, max_frame_size: usize) -> Self {
        Incoming {
            bytes,
            codec: Codec::new().max_size(max_frame_size),
            buf: BytesMut::new(),
            eof: false,
        }
    }
}

impl<S> Stream for Incoming<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Frame, ProtocolError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        while !this.eof {
            match Pin::new(&mut this.bytes).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => this.buf.extend_from_slice(&chunk),
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Some(Err(ProtocolError::Io(io::Error::other(
                        e.to_string(),
                    )))))
                }
                Poll::Ready(None) => this.eof = true,
                Poll::Pending => break,
            }
        }
        match this.codec.decode(&mut this.buf) {
            Ok(Some(frame)) => Poll::Ready(Some(Ok(frame))),
            Ok(None) if this.eof => Poll::Ready(None),
            Ok(None) => Poll::Pending,
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }
}

/// The connection is gone (its response body was dropped by the HTTP layer).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ConnectionGone;

/// The response body of an upgraded connection: the messages of its [`SendQueue`],
/// as they are. Dropped by the HTTP layer when the connection ends, for whatever
/// reason; it then tells the transport, whose request stream may never end.
pub(crate) struct Outgoing {
    queue: Arc<SendQueue>,
    transport: Recipient<ConnectionGone>,
}

impl Outgoing {
    pub(crate) fn new(queue: Arc<SendQueue>, transport: Recipient<ConnectionGone>) -> Self {
        Outgoing { queue, transport }
    }
}

impl Stream for Outgoing {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.queue.poll_next(cx).map(|message| message.map(Ok))
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        self.queue.gone();
        self.transport.do_send(ConnectionGone);
    }
}
