//! The codec: the only place that calls `bincode`.
//!
//! Frames use bincode 2's `standard` configuration: little-endian, variable-length
//! integers (a value below 251 is one byte; 251/252/253 introduce a u16/u32/u64),
//! strings and byte strings as a varint length followed by the bytes, `Option` as a
//! 0/1 byte followed by the value, and an enum as its varint variant index followed by
//! its fields in order. `docs/protocol.md` restates this so that the wire format is
//! defined by our spec and its test vectors, not by the crate.
//!
//! Optional trailing fields (the client's `max_frame_size` in `Hello` and `Resume`,
//! the reason in `Disconnect`) are outside bincode's view of the enum (they are
//! `#[serde(skip)]`): [`encode`] appends such a field after the others only when it
//! is present, written as its bare value (no option byte), and [`decode`] reads it
//! from whatever follows the frame's other fields; no bytes there means absent. So
//! a frame without the field is byte for byte what a peer that predates it sends.

use bytes::Bytes;
use serde::Serialize;
use serde_bytes::Bytes as ByteSlice;

use super::Frame;

/// Upper bound for any single decode, whatever the configured frame limit: a length
/// prefix can never make the decoder reserve more than this.
const DECODE_LIMIT: usize = 64 * 1024 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// Why bytes could not be read as a frame. The message is safe to send to the peer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The first byte is not a known frame tag.
    #[error("unknown frame tag {0}")]
    UnknownTag(u32),
    /// The bytes end before the frame does, or a field is invalid.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A whole frame was read but bytes are left over.
    #[error("malformed frame: {0} trailing bytes")]
    Trailing(usize),
    /// The frame is empty.
    #[error("malformed frame: empty")]
    Empty,
}

/// Number of variants of [`Frame`]; tags at or above it are unknown.
const FRAME_TAGS: u32 = 17;

/// Encodes one frame into its own buffer.
pub fn encode(frame: &Frame) -> Bytes {
    let mut out = encode_vec(frame);
    match trailing_of(frame) {
        Some(Trailing::U32(value)) => out.extend_from_slice(&encode_vec(value)),
        Some(Trailing::Str(value)) => out.extend_from_slice(&encode_vec(value)),
        None => {}
    }
    Bytes::from(out)
}

fn encode_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Encoding into a Vec cannot fail: our types have no fallible Serialize impls and
    // the limit applies to decoding only.
    match bincode::serde::encode_to_vec(value, bincode::config::standard()) {
        Ok(vec) => vec,
        Err(e) => unreachable!("encoding a frame into memory failed: {e}"),
    }
}

/// The value of a frame's optional trailing field, when it has one and it is set.
enum Trailing<'a> {
    U32(&'a u32),
    Str(&'a str),
}

fn trailing_of(frame: &Frame) -> Option<Trailing<'_>> {
    match frame {
        Frame::Hello { max_frame_size, .. } | Frame::Resume { max_frame_size, .. } => {
            max_frame_size.as_ref().map(Trailing::U32)
        }
        Frame::Disconnect { reason, .. } => reason.as_deref().map(Trailing::Str),
        _ => None,
    }
}

/// Reads the optional trailing field of `frame` from `rest`, the bytes after its other
/// fields. Frames without such a field leave `rest` as trailing bytes.
fn read_trailing(frame: &mut Frame, rest: &[u8]) -> Result<(), DecodeError> {
    fn value<T: serde::de::DeserializeOwned>(rest: &[u8]) -> Result<T, DecodeError> {
        match bincode::serde::decode_from_slice::<T, _>(rest, config()) {
            Ok((value, used)) if used == rest.len() => Ok(value),
            Ok((_, used)) => Err(DecodeError::Trailing(rest.len() - used)),
            Err(e) => Err(DecodeError::Malformed(e.to_string())),
        }
    }
    match frame {
        Frame::Hello { max_frame_size, .. } | Frame::Resume { max_frame_size, .. } => {
            *max_frame_size = Some(value(rest)?);
        }
        Frame::Disconnect { reason, .. } => *reason = Some(value(rest)?),
        _ => return Err(DecodeError::Trailing(rest.len())),
    }
    Ok(())
}

/// Which event frame [`encode_event`] produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// [`Frame::Event`] without ack: reliable, sequenced, replayed on resume.
    Reliable,
    /// [`Frame::Volatile`]: latest-wins, never buffered.
    Volatile,
}

/// Encodes an event frame from borrowed parts, without building an owned [`Frame`]
/// (and so without copying the payload first). This is the broadcast hot path: it runs
/// once per broadcast, and the bytes are shared by every recipient.
pub fn encode_event(kind: EventKind, ns: &str, name: &str, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(event_size_bound(ns, name, payload));
    encode_event_into(kind, ns, name, payload, &mut out);
    Bytes::from(out)
}

/// At least the size of the event frame [`encode_event`] makes of these parts: its
/// bytes, plus the tag, three lengths and the ack's option (at most 29 bytes).
pub(crate) fn event_size_bound(ns: &str, name: &str, payload: &[u8]) -> usize {
    ns.len() + name.len() + payload.len() + 32
}

/// [`encode_event`], written to `out` (sized with [`event_size_bound`], it does not
/// grow on the way).
pub(crate) fn encode_event_into(
    kind: EventKind,
    ns: &str,
    name: &str,
    payload: &[u8],
    out: &mut impl std::io::Write,
) {
    // A tuple encodes as its fields in order, which is exactly the enum layout of
    // `Frame::Event` / `Frame::Volatile` after the variant index.
    let config = bincode::config::standard();
    let written = match kind {
        EventKind::Reliable => bincode::serde::encode_into_std_write(
            (9u32, ns, name, ByteSlice::new(payload), None::<u64>),
            out,
            config,
        ),
        EventKind::Volatile => bincode::serde::encode_into_std_write(
            (11u32, ns, name, ByteSlice::new(payload)),
            out,
            config,
        ),
    };
    // Into memory: our parts have no fallible Serialize impls.
    if let Err(e) = written {
        unreachable!("encoding an event into memory failed: {e}");
    }
}

/// Decodes exactly one frame; the whole input must be consumed.
pub fn decode(bytes: &[u8]) -> Result<Frame, DecodeError> {
    let Some(&first) = bytes.first() else {
        return Err(DecodeError::Empty);
    };
    // Check the tag first so that an unknown tag gets its own clear error rather than
    // bincode's generic one.
    let tag: u32 = match bincode::decode_from_slice::<u32, _>(bytes, bincode::config::standard()) {
        Ok((tag, _)) => tag,
        Err(_) => u32::from(first),
    };
    if tag >= FRAME_TAGS {
        return Err(DecodeError::UnknownTag(tag));
    }
    match bincode::serde::decode_from_slice::<Frame, _>(bytes, config()) {
        Ok((frame, used)) if used == bytes.len() => Ok(frame),
        Ok((mut frame, used)) => {
            read_trailing(&mut frame, &bytes[used..])?;
            Ok(frame)
        }
        Err(e) => Err(DecodeError::Malformed(e.to_string())),
    }
}

/// Why an HTTP long-polling body could not be read as a batch of frames.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    /// A length prefix is cut short or runs past the end of the body.
    #[error("malformed batch: {0}")]
    Malformed(&'static str),
    /// More frames than the limit.
    #[error("too many frames in one batch (limit {0})")]
    TooMany(usize),
}

/// Encodes frames for a long-polling body: each frame prefixed by its length as a
/// varint (the same varint as everywhere else in the protocol).
pub fn encode_batch<'a>(frames: impl IntoIterator<Item = &'a Bytes>) -> Bytes {
    let mut out = Vec::new();
    for frame in frames {
        let len = frame.len() as u64;
        match bincode::encode_into_std_write(len, &mut out, bincode::config::standard()) {
            Ok(_) => out.extend_from_slice(frame),
            Err(e) => unreachable!("writing into a Vec failed: {e}"),
        }
    }
    Bytes::from(out)
}

/// Splits a long-polling body into its frames' bytes (not decoded), at most
/// `max_frames` of them. An empty body is an empty batch.
pub fn split_batch(body: &Bytes, max_frames: usize) -> Result<Vec<Bytes>, BatchError> {
    let mut frames = Vec::new();
    let mut at = 0usize;
    while at < body.len() {
        if frames.len() == max_frames {
            return Err(BatchError::TooMany(max_frames));
        }
        let (len, used): (u64, usize) =
            bincode::decode_from_slice(&body[at..], bincode::config::standard())
                .map_err(|_| BatchError::Malformed("bad length prefix"))?;
        at += used;
        // A length that does not even fit in memory certainly runs past the body: one
        // error for every length too long, whatever the platform's word size.
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > body.len() - at {
            return Err(BatchError::Malformed("frame runs past the end of the body"));
        }
        frames.push(body.slice(at..at + len));
        at += len;
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_bytes::ByteBuf;

    #[test]
    fn borrowed_event_encoding_matches_owned_frame() {
        let owned = Frame::Event {
            ns: "/chat".into(),
            name: "msg".into(),
            payload: ByteBuf::from(b"\"hi\"".to_vec()),
            ack: None,
        };
        assert_eq!(
            encode_event(EventKind::Reliable, "/chat", "msg", b"\"hi\""),
            encode(&owned)
        );
        let volatile = Frame::Volatile {
            ns: "/".into(),
            name: "state".into(),
            payload: ByteBuf::from(vec![1, 2, 3]),
        };
        assert_eq!(
            encode_event(EventKind::Volatile, "/", "state", &[1, 2, 3]),
            encode(&volatile)
        );
    }

    #[test]
    fn rejects_unknown_tag_trailing_and_truncated() {
        assert_eq!(decode(&[17]), Err(DecodeError::UnknownTag(17)));
        assert_eq!(decode(&[]), Err(DecodeError::Empty));
        assert_eq!(decode(&[2, 0]), Err(DecodeError::Trailing(1)));
        assert!(matches!(
            decode(&[9, 5, b'/']),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn batches_round_trip_and_reject_bad_bodies() {
        let frames = vec![encode(&Frame::Ping), encode(&Frame::Pong { last_seq: 300 })];
        let body = encode_batch(&frames);
        assert_eq!(&body[..], &[1, 2, 4, 3, 0xfb, 0x2c, 0x01]);
        assert_eq!(split_batch(&body, 10), Ok(frames));
        assert_eq!(split_batch(&Bytes::new(), 10), Ok(vec![]));
        assert_eq!(split_batch(&body, 1), Err(BatchError::TooMany(1)));
        assert!(matches!(
            split_batch(&Bytes::from_static(&[5, 1, 2]), 10),
            Err(BatchError::Malformed(_))
        ));
    }

    #[test]
    fn optional_trailing_fields_are_written_only_when_present() {
        let short = Frame::Hello {
            version: 1,
            max_frame_size: None,
        };
        let long = Frame::Hello {
            version: 1,
            max_frame_size: Some(300),
        };
        assert_eq!(&encode(&short)[..], &[0, 1]);
        assert_eq!(&encode(&long)[..], &[0, 1, 0xfb, 0x2c, 0x01]);
        assert_eq!(decode(&[0, 1]), Ok(short));
        assert_eq!(decode(&[0, 1, 0xfb, 0x2c, 0x01]), Ok(long));
        // A field cut short is malformed; bytes after it are trailing.
        assert!(matches!(
            decode(&[0, 1, 0xfb, 0x2c]),
            Err(DecodeError::Malformed(_))
        ));
        assert_eq!(decode(&[0, 1, 5, 0]), Err(DecodeError::Trailing(1)));
        let reason = Frame::Disconnect {
            ns: "/".into(),
            reason: Some("bye".into()),
        };
        assert_eq!(decode(&encode(&reason)), Ok(reason));
        // Frames without such a field still refuse any extra byte.
        assert_eq!(decode(&[2, 0]), Err(DecodeError::Trailing(1)));
    }

    #[test]
    fn a_length_prefix_past_any_memory_runs_past_the_end_of_the_body() {
        let body = Bytes::from_static(&[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            split_batch(&body, 10),
            Err(BatchError::Malformed("frame runs past the end of the body"))
        );
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // Event with a namespace length of u64::MAX - must fail cleanly.
        let bytes = [9u8, 253, 255, 255, 255, 255, 255, 255, 255, 255];
        assert!(matches!(decode(&bytes), Err(DecodeError::Malformed(_))));
    }
}
