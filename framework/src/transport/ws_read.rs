//! The client's side of a native WebSocket connection: its bytes read, its frames
//! checked, unmasked and decoded into protocol frames, without an allocation or a copy
//! per frame.
//!
//! Each read lands in a buffer on the stack. A frame that arrived whole (the common
//! case: one client frame per read) is unmasked there, in place, and decoded from
//! there; only the bytes of a frame that is not complete yet (or that came after a
//! complete one in the same read) are kept, in a buffer the connection gives back as
//! soon as it is empty, so an idle connection holds none.
//!
//! Each frame header is checked as soon as it has arrived, before its payload is
//! read or kept: a header claiming more than the frame limit, setting reserved bits,
//! unmasked, fragmented, a text message or an unknown opcode stops the stream with
//! the reason the protocol gives (docs/protocol.md, section 1.1), so a header that
//! claims 2^63 bytes is answered at once, whatever follows it.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use actix_web::error::PayloadError;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::Stream;
use tokio::io::{AsyncRead, ReadBuf};

use super::admission::ConnectionSlot;
use super::ws_frames::READ_CHUNK;
use crate::protocol::{self, DecodeError, Frame};

const FIN: u8 = 0x80;
const RSV_BITS: u8 = 0b0111_0000;
const MASKED: u8 = 0x80;
/// The largest payload of a control frame (RFC 6455, 5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// One message from the client.
#[derive(Debug)]
pub(crate) enum ClientMessage {
    /// A binary message: the protocol frame it holds (or why it holds none), and its
    /// size in bytes.
    Binary(Result<Frame, DecodeError>, usize),
    /// A WebSocket ping, with its payload (at most 125 bytes) for the pong.
    Ping(Bytes),
    /// A WebSocket pong.
    Pong,
    /// The client's WebSocket close.
    Close,
}

/// Why the client's stream stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The client broke a rule; the connection closes with this reason.
    Refused(String),
    /// The connection broke (reset, or closed in the middle of a frame): not the
    /// client's fault, its session may be resumed.
    Lost(io::Error),
}

/// The client's messages, read from `io` (see the module's notes).
pub(crate) struct ClientFrames<R> {
    io: R,
    max_frame_size: u64,
    /// Received bytes not taken as a frame yet; empty, with no allocation, between
    /// frames.
    pending: BytesMut,
    eof: bool,
    stopped: bool,
    /// The connection's place under the connection limits, held as long as the
    /// stream (and so the transport actor that reads it) lives.
    _slot: Option<ConnectionSlot>,
}

impl<R> ClientFrames<R> {
    /// Reads `io`; `first` is what the HTTP layer had already read past the upgrade
    /// request.
    pub(crate) fn new(io: R, first: BytesMut, max_frame_size: usize) -> Self {
        ClientFrames {
            io,
            max_frame_size: u64::try_from(max_frame_size).unwrap_or(u64::MAX),
            // The HTTP layer's read buffer (8 KiB) is kept only while it holds bytes.
            pending: if first.is_empty() {
                BytesMut::new()
            } else {
                first
            },
            eof: false,
            stopped: false,
            _slot: None,
        }
    }

    /// Holds `slot` until the stream is dropped.
    pub(crate) fn holding(mut self, slot: ConnectionSlot) -> Self {
        self._slot = Some(slot);
        self
    }

    /// Takes a whole frame off the front of `pending`, if one is there.
    fn take_pending(&mut self) -> Result<Option<ClientMessage>, String> {
        let Some((used, message)) = take_frame(&mut self.pending, self.max_frame_size)? else {
            return Ok(None);
        };
        self.pending.advance(used);
        if self.pending.is_empty() {
            // Give the buffer back: an idle connection keeps none.
            self.pending = BytesMut::new();
        }
        Ok(Some(message))
    }

    fn stop(&mut self, error: ReadError) -> Poll<Option<Result<ClientMessage, ReadError>>> {
        self.stopped = true;
        Poll::Ready(Some(Err(error)))
    }
}

impl<R: AsyncRead + Unpin> Stream for ClientFrames<R> {
    type Item = Result<ClientMessage, ReadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.stopped {
                return Poll::Ready(None);
            }
            if !this.pending.is_empty() {
                match this.take_pending() {
                    Ok(Some(message)) => return Poll::Ready(Some(Ok(message))),
                    Ok(None) => {}
                    Err(reason) => return this.stop(ReadError::Refused(reason)),
                }
            }
            if this.eof {
                if this.pending.is_empty() {
                    this.stopped = true;
                    return Poll::Ready(None);
                }
                let cut = io::Error::new(io::ErrorKind::UnexpectedEof, "closed within a frame");
                return this.stop(ReadError::Lost(cut));
            }
            let mut space = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut buf = ReadBuf::uninit(&mut space);
            if let Err(e) = ready!(Pin::new(&mut this.io).poll_read(cx, &mut buf)) {
                return this.stop(ReadError::Lost(e));
            }
            let read = buf.filled_mut();
            if read.is_empty() {
                this.eof = true;
                continue;
            }
            crate::pacing::busy();
            if !this.pending.is_empty() {
                // The rest of a frame begun earlier (its header already checked).
                this.pending.extend_from_slice(read);
                continue;
            }
            match take_frame(read, this.max_frame_size) {
                Ok(Some((used, message))) => {
                    // Whatever came after it waits (and is checked) for the next poll.
                    if used < read.len() {
                        this.pending.extend_from_slice(&read[used..]);
                    }
                    return Poll::Ready(Some(Ok(message)));
                }
                Ok(None) => this.pending.extend_from_slice(read),
                Err(reason) => return this.stop(ReadError::Refused(reason)),
            }
        }
    }
}

/// A frame header, checked.
struct Header {
    opcode: u8,
    /// Header bytes (mask key included).
    len: usize,
    payload: u64,
    mask: [u8; 4],
}

/// Reads and checks the header at the front of `data`; `None` while it is not all
/// there. The checks that need only its first two bytes come first, so a bad header
/// is refused as soon as possible.
fn header(data: &[u8], max_frame_size: u64) -> Result<Option<Header>, String> {
    let (Some(&first), Some(&second)) = (data.first(), data.get(1)) else {
        return Ok(None);
    };
    if first & RSV_BITS != 0 {
        return Err(
            "websocket protocol error: reserved bits set (no extension was negotiated)".into(),
        );
    }
    let opcode = first & 0x0F;
    let fin = first & FIN != 0;
    match opcode {
        BINARY if fin => {}
        BINARY | CONTINUATION => return Err("fragmented messages are not supported".into()),
        TEXT => return Err("text frames are not part of the protocol; send binary frames".into()),
        CLOSE | PING | PONG if !fin => {
            return Err("websocket protocol error: a fragmented control frame".into())
        }
        CLOSE | PING | PONG => {}
        other => return Err(format!("websocket protocol error: invalid opcode {other}")),
    }
    if second & MASKED == 0 {
        return Err("websocket protocol error: an unmasked frame from the client".into());
    }
    let ext = match second & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let len = 2 + ext + 4;
    if data.len() < len {
        return Ok(None);
    }
    let payload = match ext {
        2 => u64::from(u16::from_be_bytes([data[2], data[3]])),
        8 => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&data[2..10]);
            u64::from_be_bytes(bytes)
        }
        _ => u64::from(second & 0x7F),
    };
    if payload > max_frame_size {
        return Err(format!("frame too large (limit {max_frame_size} bytes)"));
    }
    if opcode != BINARY && payload > MAX_CONTROL_PAYLOAD {
        return Err("websocket protocol error: a control frame over 125 bytes".into());
    }
    let mut mask = [0u8; 4];
    mask.copy_from_slice(&data[len - 4..len]);
    Ok(Some(Header {
        opcode,
        len,
        payload,
        mask,
    }))
}

/// Takes the frame at the front of `data` if it is all there: unmasks its payload in
/// place and decodes it. Returns the bytes it used and the message.
fn take_frame(
    data: &mut [u8],
    max_frame_size: u64,
) -> Result<Option<(usize, ClientMessage)>, String> {
    let Some(header) = header(data, max_frame_size)? else {
        return Ok(None);
    };
    // Within the limit, itself a `usize`: the conversion cannot fail.
    let size = usize::try_from(header.payload).unwrap_or(usize::MAX);
    let end = header.len.saturating_add(size);
    if data.len() < end {
        return Ok(None);
    }
    let payload = &mut data[header.len..end];
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= header.mask[i & 3];
    }
    let message = match header.opcode {
        BINARY => ClientMessage::Binary(protocol::decode(payload), size),
        PING => ClientMessage::Ping(Bytes::copy_from_slice(payload)),
        PONG => ClientMessage::Pong,
        _ => ClientMessage::Close,
    };
    Ok(Some((end, message)))
}

/// The bytes of a request body (a connection the HTTP/1 dispatcher keeps, under a
/// plain actix-web `HttpServer`), read as a socket is.
pub(crate) struct BodyBytes<S> {
    chunks: S,
    current: Bytes,
}

impl<S> BodyBytes<S> {
    pub(crate) fn new(chunks: S) -> Self {
        BodyBytes {
            chunks,
            current: Bytes::new(),
        }
    }
}

impl<S> AsyncRead for BodyBytes<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.current.is_empty() {
            match ready!(Pin::new(&mut self.chunks).poll_next(cx)) {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e.to_string()))),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = buf.remaining().min(self.current.len());
        buf.put_slice(&self.current[..n]);
        self.current.advance(n);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame header with the 8-byte length form.
    fn header_bytes(first: u8, len: u64) -> Vec<u8> {
        let mut h = vec![first, MASKED | 127];
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    /// A masked binary frame holding `payload`, with the shortest length form.
    fn binary(payload: &[u8]) -> Vec<u8> {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut f = vec![FIN | BINARY];
        match payload.len() {
            n if n < 126 => f.push(MASKED | n as u8),
            n => {
                f.push(MASKED | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        f
    }

    fn hello() -> Vec<u8> {
        protocol::encode(&Frame::Hello {
            version: protocol::PROTOCOL_VERSION,
            max_frame_size: None,
        })
        .to_vec()
    }

    /// Feeds `bytes` to a reader in pieces of `piece` bytes; every message it yields.
    fn read_all(bytes: &[u8], piece: usize, max: usize) -> Vec<Result<ClientMessage, ReadError>> {
        let pieces: Vec<Result<Bytes, PayloadError>> = bytes
            .chunks(piece)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let body = BodyBytes::new(futures_util::stream::iter(pieces));
        let frames = ClientFrames::new(body, BytesMut::new(), max);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(futures_util::StreamExt::collect(frames))
    }

    #[test]
    fn frames_are_decoded_whatever_the_reads_cut_them_into() {
        let hello = hello();
        let big = vec![7u8; 300];
        let mut bytes = binary(&hello);
        bytes.extend(binary(&big));
        bytes.extend(binary(&hello));
        for piece in [1, 2, 3, 7, 64, 4096] {
            let got = read_all(&bytes, piece, 1000);
            assert_eq!(got.len(), 3, "pieces of {piece}");
            assert!(matches!(
                got[0],
                Ok(ClientMessage::Binary(Ok(Frame::Hello { .. }), n)) if n == hello.len()
            ));
            // Not a protocol frame, but a whole message of 300 bytes.
            assert!(matches!(got[1], Ok(ClientMessage::Binary(Err(_), 300))));
            assert!(matches!(got[2], Ok(ClientMessage::Binary(Ok(_), _))));
        }
    }

    #[test]
    fn a_large_frame_is_refused_from_its_header_alone() {
        let mut at = header_bytes(FIN | BINARY, 1000);
        at.truncate(14);
        assert!(header(&at, 1000).unwrap().is_some());
        for claim in [1001, 1 << 40, 1 << 63, u64::MAX] {
            let err = header(&header_bytes(FIN | BINARY, claim), 1000)
                .err()
                .expect("refused");
            assert_eq!(err, "frame too large (limit 1000 bytes)");
        }
        // As a stream: refused, and nothing after it is read.
        let got = read_all(&header_bytes(FIN | BINARY, 10 << 20), 3, 1000);
        assert!(
            matches!(&got[..], [Err(ReadError::Refused(r))] if r.starts_with("frame too large"))
        );
    }

    #[test]
    fn reserved_bits_unmasked_text_and_fragments_are_refused() {
        for rsv in [0x40, 0x20, 0x10] {
            let err = header(&header_bytes(FIN | BINARY | rsv, 3), 1000)
                .err()
                .expect("refused");
            assert!(
                err.starts_with("websocket protocol error: reserved bits"),
                "{err}"
            );
        }
        let unmasked = [FIN | BINARY, 3, 1, 2, 3];
        let err = header(&unmasked, 1000).err().expect("refused");
        assert!(err.starts_with("websocket protocol error: "), "{err}");
        let err = header(&header_bytes(FIN | TEXT, 3), 1000)
            .err()
            .expect("refused");
        assert_eq!(
            err,
            "text frames are not part of the protocol; send binary frames"
        );
        for first in [BINARY, CONTINUATION, FIN | CONTINUATION] {
            let err = header(&header_bytes(first, 3), 1000)
                .err()
                .expect("refused");
            assert_eq!(err, "fragmented messages are not supported");
        }
        let err = header(&header_bytes(FIN | PING, 126), 1000)
            .err()
            .expect("refused");
        assert!(err.starts_with("websocket protocol error: "), "{err}");
        let err = header(&header_bytes(FIN | 0x3, 0), 1000)
            .err()
            .expect("refused");
        assert_eq!(err, "websocket protocol error: invalid opcode 3");
    }

    #[test]
    fn a_connection_cut_within_a_frame_is_lost_not_refused() {
        let frame = binary(&hello());
        let got = read_all(&frame[..frame.len() - 1], 4, 1000);
        assert!(matches!(&got[..], [Err(ReadError::Lost(_))]));
        // Cut between frames: the stream just ends.
        assert!(read_all(&frame, 4, 1000).len() == 1);
    }

    #[test]
    fn an_idle_connection_keeps_no_read_buffer() {
        // The HTTP layer's 8 KiB read buffer, empty after the upgrade request.
        let body = BodyBytes::new(futures_util::stream::empty::<Result<Bytes, PayloadError>>());
        let frames = ClientFrames::new(body, BytesMut::with_capacity(8192), 1000);
        assert_eq!(frames.pending.capacity(), 0);
        // A whole frame read alone leaves nothing kept.
        let frame = binary(&hello());
        let pieces = vec![Ok(Bytes::from(frame))];
        let body = BodyBytes::new(futures_util::stream::iter(pieces));
        let mut frames = ClientFrames::new(body, BytesMut::new(), 1000);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let first = runtime.block_on(futures_util::StreamExt::next(&mut frames));
        assert!(matches!(first, Some(Ok(ClientMessage::Binary(Ok(_), _)))));
        assert_eq!(frames.pending.capacity(), 0);
    }

    #[test]
    fn control_frames_come_through() {
        let mask = [9, 8, 7, 6];
        let mut ping = vec![FIN | PING, MASKED | 2];
        ping.extend_from_slice(&mask);
        ping.extend([b'h' ^ 9, b'i' ^ 8]);
        ping.extend([FIN | PONG, MASKED, 1, 2, 3, 4]);
        ping.extend([FIN | CLOSE, MASKED, 1, 2, 3, 4]);
        let got = read_all(&ping, 5, 1000);
        assert!(matches!(&got[0], Ok(ClientMessage::Ping(p)) if &p[..] == b"hi"));
        assert!(matches!(got[1], Ok(ClientMessage::Pong)));
        assert!(matches!(got[2], Ok(ClientMessage::Close)));
    }
}
