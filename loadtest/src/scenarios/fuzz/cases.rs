//! The hostile connections of `fuzz`: what each one sends, and the answer the spec
//! (`docs/protocol.md` §5.1 and §6.1) says it must get, worked out with the codec.

use rand::rngs::StdRng;
use rand::Rng;
use serde_bytes::ByteBuf;
use volley::protocol::{decode, encode, DecodeError, Frame, Open};

use crate::rawws::{self, FrameHead};

/// The close a case must get: the `Close` frame's reason and the WebSocket status.
#[derive(Debug, Clone, PartialEq)]
pub struct Expect {
    pub reason: Reason,
    pub status: u16,
}

/// A close reason as the spec gives it: fixed, or a fixed start and diagnostic
/// text after it (`malformed frame: …`).
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    Exact(String),
    Prefix(&'static str),
}

impl Reason {
    pub(super) fn matches(&self, reason: &str) -> bool {
        match self {
            Reason::Exact(exact) => reason == exact,
            Reason::Prefix(prefix) => reason.starts_with(prefix),
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Exact(exact) => write!(f, "'{exact}'"),
            Reason::Prefix(prefix) => write!(f, "'{prefix}…'"),
        }
    }
}

pub(super) fn policy(reason: Reason) -> Expect {
    Expect {
        reason,
        status: 1008,
    }
}

/// What the server does with one protocol frame from a client.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Fate {
    /// It closes the connection, as expected.
    Refused(Expect),
    /// The session (or the opening) goes on; a `Close` from the client then ends
    /// it with this answer.
    GoesOn(Expect),
}

/// The close a decode error gets (§6.1).
pub(super) fn decode_error(e: &DecodeError) -> Expect {
    policy(match e {
        DecodeError::Malformed(_) => Reason::Prefix("malformed frame: "),
        other => Reason::Exact(other.to_string()),
    })
}

/// What the first message of a connection gets (§5.1).
pub(super) fn first_frame_fate(bytes: &[u8]) -> Fate {
    let frame = match decode(bytes) {
        Ok(frame) => frame,
        Err(e) => return Fate::Refused(decode_error(&e)),
    };
    match frame {
        Frame::Hello { version: 1, .. } => Fate::GoesOn(client_left()),
        Frame::Hello { version, .. } => Fate::Refused(policy(Reason::Exact(format!(
            "unsupported protocol version {version}; this server speaks 1"
        )))),
        // An unknown session: `ResumeFailed`, and the connection waits for `Hello`.
        Frame::Resume { .. } => Fate::GoesOn(policy(Reason::Exact(
            "expected 'hello' as the first frame, got 'close'".into(),
        ))),
        other => Fate::Refused(policy(Reason::Exact(format!(
            "expected 'hello' as the first frame, got '{}'",
            other.kind()
        )))),
    }
}

/// What a message gets inside a fresh session, which has sent no reliable frame
/// yet (§5, §6.1).
pub(super) fn in_session_fate(bytes: &[u8]) -> Fate {
    let frame = match decode(bytes) {
        Ok(frame) => frame,
        Err(e) => return Fate::Refused(decode_error(&e)),
    };
    let session_ends = |reason| {
        Fate::Refused(Expect {
            reason,
            status: 1000,
        })
    };
    match frame {
        Frame::Close { .. } => Fate::Refused(client_left()),
        Frame::Pong { last_seq } | Frame::Received { last_seq } if last_seq > 0 => {
            session_ends(Reason::Prefix("protocol error: acknowledged frame "))
        }
        Frame::Pong { .. }
        | Frame::Received { .. }
        | Frame::Connect { .. }
        | Frame::Disconnect { .. }
        | Frame::Event { .. }
        | Frame::Ack { .. } => Fate::GoesOn(client_left()),
        server_only => session_ends(Reason::Exact(format!(
            "protocol error: unexpected '{}' frame from a client",
            server_only.kind()
        ))),
    }
}

pub(super) fn client_left() -> Expect {
    Expect {
        reason: Reason::Exact("client left".into()),
        status: 1000,
    }
}

/// One hostile connection: what to write, and the answer it must get.
#[derive(Debug, Clone)]
pub(super) struct Case {
    pub kind: &'static str,
    /// The offending protocol frame or WebSocket frame, for the report.
    pub input: Vec<u8>,
    pub bytes: Vec<u8>,
    pub expect: Expect,
}

/// The case kinds, in the report's order.
pub(super) const KINDS: [&str; 9] = [
    "mutated first frame",
    "mutated frame in a session",
    "server-only frame in a session",
    "random bytes",
    "text message",
    "fragmented message",
    "unmasked frame",
    "reserved bits",
    "huge length in the header",
];

/// A valid frame of every kind, to mutate.
pub(super) fn seed_frames() -> Vec<Frame> {
    let token = [7u8; 16];
    let text = |s: &str| s.to_owned();
    let blob = |b: &[u8]| ByteBuf::from(b.to_vec());
    vec![
        Frame::Hello {
            version: 1,
            max_frame_size: None,
        },
        Frame::Hello {
            version: 1,
            max_frame_size: Some(1 << 24),
        },
        Frame::Open(Open {
            version: 1,
            sid: 1 << 32 | 1,
            token,
            ping_interval_ms: 25_000,
            ping_timeout_ms: 20_000,
            max_frame_size: 1 << 20,
        }),
        Frame::Ping,
        Frame::Pong { last_seq: 0 },
        Frame::Received { last_seq: 300 },
        Frame::Connect {
            ns: text("/lt"),
            auth: blob(b"{}"),
        },
        Frame::Connected { ns: text("/lt") },
        Frame::ConnectError {
            ns: text("/admin"),
            reason: text("no"),
        },
        Frame::Disconnect {
            ns: text("/lt"),
            reason: None,
        },
        Frame::Disconnect {
            ns: text("/lt"),
            reason: Some(text("kicked")),
        },
        Frame::Event {
            ns: text("/lt"),
            name: text("echo"),
            payload: blob(b"41"),
            ack: Some(1),
        },
        Frame::Ack {
            ns: text("/"),
            id: 300,
            payload: blob(b"42"),
        },
        Frame::Volatile {
            ns: text("/game"),
            name: text("state"),
            payload: blob(br#"{"x":1}"#),
        },
        Frame::Error {
            ns: text("/"),
            reason: text("unknown event"),
        },
        Frame::Close {
            reason: text("bye"),
        },
        Frame::Resume {
            sid: 1 << 32 | 1,
            token,
            last_seq: 42,
            max_frame_size: Some(1 << 24),
        },
        Frame::Resumed {
            last_seq: 300,
            replay: 2,
        },
        Frame::ResumeFailed {
            reason: text("unknown session"),
        },
    ]
}

/// A few random damages: bit flips, truncations, huge varint lengths spliced in,
/// a wrong tag, bytes appended.
pub(super) fn damage(rng: &mut StdRng, mut bytes: Vec<u8>) -> Vec<u8> {
    const HUGE: [&[u8]; 3] = [
        &[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[0xfc, 0xff, 0xff, 0xff, 0x7f],
        &[0xfb, 0xff, 0xff],
    ];
    for _ in 0..rng.gen_range(1..=3) {
        let len = bytes.len();
        match rng.gen_range(0..5) {
            0 if len > 0 => bytes[rng.gen_range(0..len)] ^= 1 << rng.gen_range(0..8),
            1 => bytes.truncate(rng.gen_range(0..=len)),
            2 => {
                let at = rng.gen_range(0..=len);
                let huge = HUGE[rng.gen_range(0..HUGE.len())];
                bytes.splice(at..(at + huge.len()).min(len), huge.iter().copied());
            }
            3 if len > 0 => bytes[0] = rng.gen(),
            _ => bytes.extend((0..rng.gen_range(1..6)).map(|_| rng.gen::<u8>())),
        }
    }
    bytes
}

/// Case number `n` of a run: its kind comes round in turn, its bytes from `rng`.
pub(super) fn case(n: usize, rng: &mut StdRng) -> Case {
    let kind = KINDS[n % KINDS.len()];
    let seeds = seed_frames();
    let hello = rawws::binary(&encode(&Frame::Hello {
        version: 1,
        max_frame_size: None,
    }));
    let goodbye = rawws::binary(&encode(&Frame::Close {
        reason: "fuzz case over".into(),
    }));
    // A protocol frame: first of the connection, or after `Hello`.
    let protocol_case = |input: Vec<u8>, in_session: bool| {
        let fate = if in_session {
            in_session_fate(&input)
        } else {
            first_frame_fate(&input)
        };
        let mut bytes = if in_session {
            hello.clone()
        } else {
            Vec::new()
        };
        bytes.extend(rawws::binary(&input));
        let expect = match fate {
            Fate::Refused(expect) => expect,
            Fate::GoesOn(expect) => {
                bytes.extend_from_slice(&goodbye);
                expect
            }
        };
        Case {
            kind,
            input,
            bytes,
            expect,
        }
    };
    let ws_case = |head: FrameHead, payload: &[u8], expect: Expect| {
        let bytes = rawws::frame(head, payload);
        Case {
            kind,
            input: bytes[..bytes.len().min(16)].to_vec(),
            bytes,
            expect,
        }
    };
    let seed = encode(&seeds[rng.gen_range(0..seeds.len())]).to_vec();
    let hello_bytes = encode(&Frame::Hello {
        version: 1,
        max_frame_size: None,
    })
    .to_vec();
    match n % KINDS.len() {
        0 => protocol_case(damage(rng, seed), false),
        1 => protocol_case(damage(rng, seed), true),
        2 => {
            let server_only: Vec<&Frame> = seeds
                .iter()
                .filter(|f| match in_session_fate(&encode(f)) {
                    Fate::Refused(Expect {
                        reason: Reason::Exact(reason),
                        ..
                    }) => reason.contains("unexpected"),
                    _ => false,
                })
                .collect();
            let frame = server_only[rng.gen_range(0..server_only.len())];
            protocol_case(encode(frame).to_vec(), true)
        }
        3 => {
            let random: Vec<u8> = (0..rng.gen_range(0..40)).map(|_| rng.gen()).collect();
            protocol_case(random, rng.gen())
        }
        4 => ws_case(
            FrameHead::new(rawws::TEXT),
            b"hello",
            policy(Reason::Exact(
                "text frames are not part of the protocol; send binary frames".into(),
            )),
        ),
        5 => ws_case(
            FrameHead {
                fin: false,
                ..FrameHead::new(rawws::BINARY)
            },
            &hello_bytes,
            policy(Reason::Exact(
                "fragmented messages are not supported".into(),
            )),
        ),
        6 => ws_case(
            FrameHead {
                masked: false,
                ..FrameHead::new(rawws::BINARY)
            },
            &hello_bytes,
            policy(Reason::Prefix("websocket protocol error: ")),
        ),
        7 => ws_case(
            FrameHead {
                rsv: rng.gen_range(1..8u8) << 4,
                ..FrameHead::new(rawws::BINARY)
            },
            &hello_bytes,
            policy(Reason::Prefix("websocket protocol error: ")),
        ),
        _ => {
            // The header alone: the server must answer without waiting for a
            // payload that never comes.
            let claims = [64 << 20, 10 << 30, 1 << 40, i64::MAX as u64];
            let claimed = claims[rng.gen_range(0..claims.len())];
            ws_case(
                FrameHead {
                    claimed_len: Some(claimed),
                    ..FrameHead::new(rawws::BINARY)
                },
                &[],
                policy(Reason::Prefix("frame too large (limit ")),
            )
        }
    }
}
