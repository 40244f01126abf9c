//! The WebSocket edge: a guard on the raw bytes of a connection, in front of the
//! WebSocket decoder.
//!
//! The decoder (actix-http's) checks a frame's size only once the whole frame has
//! arrived, so a header claiming 10 MiB made the server buffer 10 MiB before refusing
//! it, and a header claiming 2^63 − 1 bytes was waited for forever. It also reports
//! reserved bits as an I/O error, indistinguishable from a lost connection. The
//! [`FrameGuard`] reads each frame header as the bytes pass through (it never buffers a
//! payload, it only counts it) and stops the stream at the first header that breaks a
//! rule, leaving the reason in a [`Violation`] cell for the transport to close with.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::error::PayloadError;
use bytes::Bytes;
use futures_util::Stream;

/// Where the guard leaves the reason it stopped a connection; the transport reads it
/// when the decoder reports the stream's error.
pub(crate) type Violation = Rc<Cell<Option<String>>>;

/// The longest WebSocket frame header: 2 bytes, an 8-byte length, a 4-byte mask.
const MAX_HEADER: usize = 14;
const RSV_BITS: u8 = 0b0111_0000;

/// Follows the frame headers of a client's byte stream and refuses, as soon as its
/// header is read, a frame that is larger than the limit or sets reserved bits.
pub(crate) struct FrameGuard<S> {
    inner: S,
    max_frame_size: u64,
    /// Bytes of the header being read (a header may straddle chunks).
    header: [u8; MAX_HEADER],
    have: usize,
    /// Payload bytes of the current frame still to pass through.
    payload_left: u64,
    violation: Violation,
    stopped: bool,
}

impl<S> FrameGuard<S> {
    pub(crate) fn new(inner: S, max_frame_size: usize, violation: Violation) -> Self {
        FrameGuard {
            inner,
            max_frame_size: u64::try_from(max_frame_size).unwrap_or(u64::MAX),
            header: [0; MAX_HEADER],
            have: 0,
            payload_left: 0,
            violation,
            stopped: false,
        }
    }

    /// Follows `chunk` through frame boundaries; the reason of the first rule broken.
    fn inspect(&mut self, mut chunk: &[u8]) -> Result<(), String> {
        while !chunk.is_empty() {
            if self.payload_left > 0 {
                let n = usize::try_from(self.payload_left)
                    .map_or(chunk.len(), |left| left.min(chunk.len()));
                chunk = &chunk[n..];
                self.payload_left -= n as u64;
                continue;
            }
            // Read header bytes until the header is complete.
            let need = header_len(&self.header[..self.have]).unwrap_or(2);
            let take = (need - self.have).min(chunk.len());
            self.header[self.have..self.have + take].copy_from_slice(&chunk[..take]);
            self.have += take;
            chunk = &chunk[take..];
            if self.have < need || header_len(&self.header[..self.have]) != Some(self.have) {
                continue;
            }
            let header = &self.header[..self.have];
            if header[0] & RSV_BITS != 0 {
                return Err(
                    "websocket protocol error: reserved bits set (no extension was negotiated)"
                        .to_owned(),
                );
            }
            let length = payload_len(header);
            if length > self.max_frame_size {
                return Err(format!(
                    "frame too large (limit {} bytes)",
                    self.max_frame_size
                ));
            }
            self.payload_left = length;
            self.have = 0;
        }
        Ok(())
    }
}

/// The full length of a header that starts with `bytes` (at least 2 of them), or
/// `None` while fewer than 2 bytes are known.
fn header_len(bytes: &[u8]) -> Option<usize> {
    let second = *bytes.get(1)?;
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    let ext = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    Some(2 + ext + mask)
}

/// The payload length of a complete header.
fn payload_len(header: &[u8]) -> u64 {
    match header[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
        127 => {
            let mut len = [0u8; 8];
            len.copy_from_slice(&header[2..10]);
            u64::from_be_bytes(len)
        }
        len => u64::from(len),
    }
}

impl<S> Stream for FrameGuard<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.stopped {
            return Poll::Ready(None);
        }
        let item = match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => chunk,
            other => return other,
        };
        match self.inspect(&item) {
            Ok(()) => Poll::Ready(Some(Ok(item))),
            Err(reason) => {
                // The chunk is dropped: nothing after a broken rule is decoded.
                self.stopped = true;
                let error = io::Error::new(io::ErrorKind::InvalidData, reason.clone());
                self.violation.set(Some(reason));
                Poll::Ready(Some(Err(PayloadError::Io(error))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(max: usize) -> FrameGuard<futures_util::stream::Empty<Result<Bytes, PayloadError>>> {
        FrameGuard::new(futures_util::stream::empty(), max, Violation::default())
    }

    /// A masked client frame header with the 8-byte length form.
    fn header(first: u8, len: u64) -> Vec<u8> {
        let mut h = vec![first, 0x80 | 127];
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    #[test]
    fn follows_frames_across_chunk_boundaries() {
        let mut g = guard(1000);
        // The three length forms: 8 bytes, 2 bytes (300), and 7 bits (5).
        let mut bytes = header(0x82, 2);
        bytes.extend([9, 9]);
        bytes.extend([0x82, 0x80 | 126, 1, 44, 1, 2, 3, 4]);
        bytes.extend(vec![7u8; 300]);
        bytes.extend([0x82, 0x80 | 5, 1, 2, 3, 4]);
        bytes.extend([1, 2, 3, 4, 5]);
        // One byte at a time: headers and payloads split everywhere.
        for b in &bytes {
            g.inspect(std::slice::from_ref(b)).unwrap();
        }
        assert_eq!((g.have, g.payload_left), (0, 0));
        // All at once.
        let mut g = guard(1000);
        g.inspect(&bytes).unwrap();
        assert_eq!((g.have, g.payload_left), (0, 0));
    }

    #[test]
    fn refuses_a_large_frame_from_its_header_alone() {
        let mut g = guard(1000);
        assert_eq!(g.inspect(&header(0x82, 1000)), Ok(()));
        let mut g = guard(1000);
        let err = g.inspect(&header(0x82, 1001)).unwrap_err();
        assert_eq!(err, "frame too large (limit 1000 bytes)");
        let mut g = guard(1000);
        assert!(g.inspect(&header(0x82, u64::MAX)).is_err());
        assert!(guard(1000).inspect(&header(0x82, 1 << 63)).is_err());
    }

    #[test]
    fn refuses_reserved_bits() {
        for rsv in [0x40, 0x20, 0x10] {
            let err = guard(1000).inspect(&header(0x82 | rsv, 3)).unwrap_err();
            assert!(
                err.starts_with("websocket protocol error: reserved bits"),
                "{err}"
            );
        }
    }
}
