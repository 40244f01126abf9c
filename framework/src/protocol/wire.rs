//! Frames as they leave the server: encoded once, framed once.
//!
//! A server→client WebSocket frame is unmasked, so its header and payload are the same
//! bytes for every recipient. A [`WireFrame`] holds the complete WebSocket binary
//! message (header, then the encoded [`Frame`]) in one buffer, built once per
//! broadcast; every recipient gets a clone (a reference count, no copy). The WebSocket
//! transport writes [`WireFrame::message`] as it is; the long-polling transport and the
//! outbox take [`WireFrame::payload`], a view into the same buffer.

use std::sync::{Arc, OnceLock};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::codec::{self, EventKind};
use super::socketio::SharedEvent;
use super::ws_header::{header, MAX_HEADER};
use super::{decode, encode, Frame};

/// One encoded frame, ready for either transport, and for either protocol: its
/// Socket.IO form is built on first use and shared by every clone, so a broadcast is
/// encoded once per protocol, whatever the mix of its recipients.
#[derive(Clone, Debug)]
pub struct WireFrame {
    /// The WebSocket header followed by the payload.
    message: Bytes,
    /// Length of the header at the front of `message` (2, 4 or 10 bytes).
    header: usize,
    /// The Socket.IO form, once a Socket.IO recipient asked for it (`None` inside:
    /// the frame has no shared form).
    socketio: Arc<OnceLock<Option<SharedEvent>>>,
}

impl PartialEq for WireFrame {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message && self.header == other.header
    }
}

impl Eq for WireFrame {}

impl WireFrame {
    /// Frames an encoded payload (one copy, made once for all its recipients).
    pub fn new(payload: &[u8]) -> Self {
        let (head, header) = header(payload.len());
        let mut message = BytesMut::with_capacity(header + payload.len());
        message.extend_from_slice(&head[..header]);
        message.extend_from_slice(payload);
        WireFrame::framed(message, header)
    }

    /// An event frame (see [`codec::encode_event`]), encoded straight into its
    /// WebSocket message: one buffer, sized once, no copy. The broadcast path: a
    /// namespace's emits, a game room's states.
    ///
    /// ```
    /// use volley::protocol::{decode, EventKind, Frame, WireFrame};
    ///
    /// let frame = WireFrame::event(EventKind::Volatile, "/game", "state", br#"{"t":1}"#);
    /// assert_eq!(frame.message()[0], 0x82); // one whole binary WebSocket message
    /// match decode(&frame.payload()).unwrap() {
    ///     Frame::Volatile { ns, name, payload } => {
    ///         assert_eq!((ns.as_str(), name.as_str()), ("/game", "state"));
    ///         assert_eq!(payload.as_slice(), br#"{"t":1}"#);
    ///     }
    ///     other => panic!("not a volatile event: {other:?}"),
    /// }
    /// ```
    pub fn event(kind: EventKind, ns: &str, name: &str, payload: &[u8]) -> Self {
        let bound = codec::event_size_bound(ns, name, payload);
        let mut message = BytesMut::with_capacity(MAX_HEADER + bound);
        // Room for the longest header, filled in once the length is known.
        message.put_bytes(0, MAX_HEADER);
        codec::encode_event_into(kind, ns, name, payload, &mut (&mut message).writer());
        let (head, header) = header(message.len() - MAX_HEADER);
        let start = MAX_HEADER - header;
        message[start..MAX_HEADER].copy_from_slice(&head[..header]);
        message.advance(start);
        WireFrame::framed(message, header)
    }

    fn framed(message: BytesMut, header: usize) -> Self {
        WireFrame {
            message: message.freeze(),
            header,
            socketio: Arc::default(),
        }
    }

    /// The frame as a Socket.IO event (see [`SharedEvent::of`]), decoded and written on
    /// the first call, by whichever recipient's thread comes first; every other
    /// recipient of the same frame gets the same one.
    pub fn socketio(&self) -> Option<&SharedEvent> {
        self.socketio
            .get_or_init(|| {
                let frame = decode(&self.payload()).ok()?;
                SharedEvent::of(&frame)
            })
            .as_ref()
    }

    /// The same frame in bytes of its own (one allocation and copy), for a thread
    /// that hands it to many recipients: their clones and drops then count on a
    /// reference count that only this thread touches, instead of one that every
    /// thread delivering the broadcast writes (a cache line passed between cores
    /// on each delivery). A Socket.IO form already built comes along.
    pub fn own_copy(&self) -> Self {
        let socketio = OnceLock::new();
        if let Some(form) = self.socketio.get() {
            let _ = socketio.set(form.clone());
        }
        WireFrame {
            message: Bytes::copy_from_slice(&self.message),
            header: self.header,
            socketio: Arc::new(socketio),
        }
    }

    /// Encodes and frames `frame`.
    pub fn encode(frame: &Frame) -> Self {
        WireFrame::new(&encode(frame))
    }

    /// The complete WebSocket binary message: what a WebSocket connection writes.
    pub fn message(&self) -> &Bytes {
        &self.message
    }

    /// The encoded frame alone (a view into the same buffer).
    pub fn payload(&self) -> Bytes {
        self.message.slice(self.header..)
    }

    /// The size of the encoded frame (without the WebSocket header): what the
    /// client's frame-size limit is compared with.
    pub fn len(&self) -> usize {
        self.message.len() - self.header
    }

    /// Whether the encoded frame is empty (never, for a real frame).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use crate::protocol::{encode_event, EventKind};

    #[test]
    fn an_event_framed_in_place_is_the_event_framed_after() {
        // Across the three header sizes: 7-bit, 16-bit and 64-bit lengths.
        for size in [0, 90, 125, 126, 200, 65_535, 65_536, 70_000] {
            let payload = vec![b'x'; size];
            for kind in [EventKind::Reliable, EventKind::Volatile] {
                let framed = WireFrame::event(kind, "/game", "state", &payload);
                let after = WireFrame::new(&encode_event(kind, "/game", "state", &payload));
                assert_eq!(framed, after, "{size} bytes, {kind:?}");
                assert_eq!(framed.payload(), after.payload());
            }
        }
    }

    use super::*;

    #[test]
    fn frames_each_length_form() {
        for (len, header) in [(0, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
            let payload = vec![7u8; len];
            let wire = WireFrame::new(&payload);
            assert_eq!(wire.len(), len);
            assert_eq!(wire.payload(), payload);
            assert_eq!(wire.message().len(), header + len);
            assert_eq!(wire.message()[0], 0x82);
        }
        assert_eq!(
            &WireFrame::new(&[1; 126]).message()[..4],
            &[0x82, 126, 0, 126]
        );
        let long = WireFrame::new(&[1; 65_536]);
        assert_eq!(&long.message()[1..10], &[127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn an_own_copy_is_the_same_frame_in_other_bytes() {
        let frame = WireFrame::encode(&Frame::Event {
            ns: "/".into(),
            name: "tick".into(),
            payload: serde_bytes::ByteBuf::from(b"1".to_vec()),
            ack: None,
        });
        let built = frame.socketio().cloned();
        let copy = frame.own_copy();
        assert_eq!(copy, frame);
        assert_eq!(copy.payload(), frame.payload());
        assert_ne!(copy.message().as_ptr(), frame.message().as_ptr());
        assert_eq!(copy.socketio().cloned(), built);
    }

    #[test]
    fn the_socketio_form_is_built_once_for_every_clone() {
        let frame = WireFrame::encode(&Frame::Event {
            ns: "/".into(),
            name: "tick".into(),
            payload: serde_bytes::ByteBuf::from(b"1".to_vec()),
            ack: None,
        });
        let clone = frame.clone();
        let first = frame.socketio().expect("an event has one");
        assert_eq!(first.head, "42[\"tick\",1");
        assert!(std::ptr::eq(first, clone.socketio().expect("the same")));
        assert_eq!(WireFrame::encode(&Frame::Ping).socketio(), None);
    }
}
