//! What each vector of `docs/protocol.md` must decode to (or how it must be refused),
//! written out frame by frame.

use super::*;

/// `Hello` from a client that does not announce a frame limit (the short form).
pub fn hello() -> Frame {
    Frame::Hello {
        version: 1,
        max_frame_size: None,
    }
}

pub fn resume(max_frame_size: Option<u32>) -> Frame {
    Frame::Resume {
        sid: SID,
        token: TOKEN,
        last_seq: 42,
        max_frame_size,
    }
}

pub fn event(ns: &str, name: &str, payload: &[u8], ack: Option<u64>) -> Frame {
    Frame::Event {
        ns: ns.into(),
        name: name.into(),
        payload: bytes(payload),
        ack,
    }
}

/// What each vector of the ```vectors block decodes to.
pub fn valid() -> BTreeMap<&'static str, Frame> {
    let long_payload = format!("\"{}\"", "a".repeat(249));
    BTreeMap::from([
        ("hello", hello()),
        (
            "hello-max-frame-size",
            Frame::Hello {
                version: 1,
                max_frame_size: Some(16 * 1024 * 1024),
            },
        ),
        (
            "open",
            Frame::Open(Open {
                version: 1,
                sid: SID,
                token: TOKEN,
                ping_interval_ms: 25_000,
                ping_timeout_ms: 20_000,
                max_frame_size: 1_048_576,
            }),
        ),
        (
            "open-edges",
            Frame::Open(Open {
                version: 1,
                sid: 250,
                token: [0xfd; 16],
                ping_interval_ms: 251,
                ping_timeout_ms: 65_535,
                max_frame_size: u32::MAX,
            }),
        ),
        ("ping", Frame::Ping),
        ("pong-zero", Frame::Pong { last_seq: 0 }),
        ("pong-250", Frame::Pong { last_seq: 250 }),
        ("pong-251", Frame::Pong { last_seq: 251 }),
        ("pong-u64-max", Frame::Pong { last_seq: u64::MAX }),
        ("received-65535", Frame::Received { last_seq: 65_535 }),
        ("received-65536", Frame::Received { last_seq: 65_536 }),
        (
            "received-u32-max",
            Frame::Received {
                last_seq: u64::from(u32::MAX),
            },
        ),
        ("received-2pow32", Frame::Received { last_seq: 1 << 32 }),
        (
            "connect-root-no-auth",
            Frame::Connect {
                ns: "/".into(),
                auth: bytes(b""),
            },
        ),
        (
            "connect-admin-auth",
            Frame::Connect {
                ns: "/admin".into(),
                auth: bytes(b"\"s3cret\""),
            },
        ),
        ("connected", Frame::Connected { ns: "/chat".into() }),
        (
            "connect-error",
            Frame::ConnectError {
                ns: "/admin".into(),
                reason: "admin token required".into(),
            },
        ),
        (
            "disconnect",
            Frame::Disconnect {
                ns: "/game".into(),
                reason: None,
            },
        ),
        (
            "disconnect-with-reason",
            Frame::Disconnect {
                ns: "/game".into(),
                reason: Some("too many messages".into()),
            },
        ),
        (
            "disconnect-empty-reason",
            Frame::Disconnect {
                ns: "/".into(),
                reason: Some("".into()),
            },
        ),
        ("event-no-ack", event("/chat", "msg", b"\"hi\"", None)),
        ("event-ack-0", event("/", "ping", b"41", Some(0))),
        ("event-ack-1", event("/", "ping", b"41", Some(1))),
        ("event-ack-251", event("/", "ping", b"41", Some(251))),
        ("event-ack-65536", event("/", "ping", b"41", Some(65_536))),
        ("event-ack-2pow32", event("/", "ping", b"41", Some(1 << 32))),
        ("event-all-empty", event("", "", b"", None)),
        (
            "event-utf8",
            event("/chat", "café", "\"日本\"".as_bytes(), None),
        ),
        (
            "ack",
            Frame::Ack {
                ns: "/".into(),
                id: 1,
                payload: bytes(b"42"),
            },
        ),
        (
            "ack-id-300-empty-payload",
            Frame::Ack {
                ns: "/".into(),
                id: 300,
                payload: bytes(b""),
            },
        ),
        (
            "volatile",
            Frame::Volatile {
                ns: "/game".into(),
                name: "state".into(),
                payload: bytes(b"{\"x\":1}"),
            },
        ),
        (
            "volatile-long-payload",
            Frame::Volatile {
                ns: "/".into(),
                name: "s".into(),
                payload: bytes(long_payload.as_bytes()),
            },
        ),
        (
            "error",
            Frame::Error {
                ns: "/".into(),
                reason: "unknown event 'nope'".into(),
            },
        ),
        (
            "close",
            Frame::Close {
                reason: "ping timeout".into(),
            },
        ),
        ("close-empty-reason", Frame::Close { reason: "".into() }),
        ("resume", resume(None)),
        ("resume-max-frame-size", resume(Some(1_048_576))),
        (
            "resumed",
            Frame::Resumed {
                last_seq: 300,
                replay: 2,
            },
        ),
        (
            "resume-failed",
            Frame::ResumeFailed {
                reason: "unknown session".into(),
            },
        ),
    ])
}

/// What each vector of the ```lenient-vectors block decodes to, and the canonical bytes
/// of that frame.
pub fn lenient() -> BTreeMap<&'static str, (Frame, &'static [u8])> {
    BTreeMap::from([
        ("hello-version-3-byte-form", (hello(), &[0x00, 0x01][..])),
        ("ping-tag-3-byte-form", (Frame::Ping, &[0x02][..])),
        (
            "pong-seq-5-byte-form",
            (Frame::Pong { last_seq: 5 }, &[0x03, 0x05][..]),
        ),
        (
            "received-seq-9-byte-form",
            (Frame::Received { last_seq: 42 }, &[0x04, 0x2a][..]),
        ),
        (
            "connect-length-3-byte-form",
            (
                Frame::Connect {
                    ns: "/".into(),
                    auth: bytes(b""),
                },
                &[0x05, 0x01, 0x2f, 0x00][..],
            ),
        ),
    ])
}

/// How an invalid vector must be refused.
pub enum Refusal {
    /// Exactly this error, whose message is the close reason the doc states.
    Exactly(DecodeError, &'static str),
    /// A malformed frame; the detail after `malformed frame: ` is the decoder's.
    Malformed,
}

/// The expected refusal of each vector of the ```invalid-vectors block.
pub fn invalid() -> BTreeMap<&'static str, Refusal> {
    use Refusal::{Exactly, Malformed};
    BTreeMap::from([
        (
            "empty",
            Exactly(DecodeError::Empty, "malformed frame: empty"),
        ),
        (
            "unknown-tag-17",
            Exactly(DecodeError::UnknownTag(17), "unknown frame tag 17"),
        ),
        (
            "unknown-tag-255",
            Exactly(DecodeError::UnknownTag(255), "unknown frame tag 255"),
        ),
        (
            "unknown-tag-300",
            Exactly(DecodeError::UnknownTag(300), "unknown frame tag 300"),
        ),
        (
            "trailing-byte",
            Exactly(
                DecodeError::Trailing(1),
                "malformed frame: 1 trailing bytes",
            ),
        ),
        ("truncated-string", Malformed),
        ("truncated-token", Malformed),
        ("invalid-utf8", Malformed),
        ("option-byte-2", Malformed),
        ("u16-field-with-u32-marker", Malformed),
        ("length-marker-fe", Malformed),
        ("huge-length", Malformed),
        ("hello-max-frame-size-cut", Malformed),
        (
            "disconnect-reason-then-more",
            Exactly(
                DecodeError::Trailing(1),
                "malformed frame: 1 trailing bytes",
            ),
        ),
    ])
}
