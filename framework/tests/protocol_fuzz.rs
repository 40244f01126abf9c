//! Fuzzing the codec and the long-polling batch splitter on stable Rust, with
//! `proptest`: every frame variant round-trips, and arbitrary or mutated bytes never
//! make `decode` or `split_batch` panic, fail only with the errors the spec lists
//! (`docs/protocol.md` §6.1 and §8.7), and decode only to frames whose encoding
//! decodes back to them.
//!
//! Mutations start from the test vectors of `docs/protocol.md` (the blocks that
//! `tests/protocol_vectors/` checks): bit flips, truncations, huge varint lengths
//! spliced in, wrong tags, bytes appended.
//!
//! `cargo test` runs a bounded number of cases per property (a few seconds in a debug
//! build). A long run sets `PROPTEST_CASES`, for example
//! `PROPTEST_CASES=1000000 cargo test --release -p volley --test protocol_fuzz`
//! (`docs/guide.md`, "Testing").

use bytes::Bytes;
use proptest::prelude::*;
use serde_bytes::ByteBuf;
use volley::protocol::{
    decode, encode, encode_batch, encode_event, split_batch, BatchError, DecodeError, EventKind,
    Frame, Open,
};

const DOC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");

/// Frame tags of protocol v1 are 0..=16.
const FRAME_TAGS: u32 = 17;

/// Cases per property unless `PROPTEST_CASES` says otherwise.
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

/// The bytes of every `name: hex` vector in the doc's fenced vector blocks: the frame
/// blocks (valid, lenient, invalid), or with `batch` the long-polling body blocks.
fn doc_vectors(batch: bool) -> Vec<Vec<u8>> {
    let doc = std::fs::read_to_string(DOC_PATH).expect("docs/protocol.md");
    let mut out = Vec::new();
    let mut inside = false;
    for line in doc.lines() {
        let line = line.trim();
        if let Some(tag) = line.strip_prefix("```") {
            inside = tag.ends_with("vectors") && tag.contains("batch") == batch;
            continue;
        }
        let Some((_, hex)) = line.split_once(':') else {
            continue;
        };
        if !inside {
            continue;
        }
        let parsed: Result<Vec<u8>, _> = hex
            .split_whitespace()
            .map(|pair| u8::from_str_radix(pair, 16))
            .collect();
        out.push(parsed.expect("vector hex"));
    }
    assert!(out.len() > 5, "vectors found in {DOC_PATH}: {}", out.len());
    out
}

fn text() -> impl Strategy<Value = String> {
    // Mostly short strings, some past 250 bytes (a 3-byte length prefix).
    prop_oneof![
        4 => ".{0,12}",
        1 => ".{240,300}",
    ]
}

fn blob() -> impl Strategy<Value = ByteBuf> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..16),
        1 => proptest::collection::vec(any::<u8>(), 250..400),
    ]
    .prop_map(ByteBuf::from)
}

/// Integers spread over every varint width (1, 3, 5 and 9 bytes) and their edges.
fn varint() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..=260u64,
        prop::sample::select(vec![
            250,
            251,
            65_535,
            65_536,
            u64::from(u32::MAX),
            1 << 32,
            u64::MAX
        ]),
        any::<u64>(),
    ]
}

/// Any frame of protocol v1, every variant.
fn frame() -> impl Strategy<Value = Frame> {
    let open = (
        any::<u16>(),
        varint(),
        any::<[u8; 16]>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(version, sid, token, ping, timeout, max)| {
            Frame::Open(Open {
                version,
                sid,
                token,
                ping_interval_ms: ping,
                ping_timeout_ms: timeout,
                max_frame_size: max,
            })
        });
    prop_oneof![
        (any::<u16>(), proptest::option::of(any::<u32>())).prop_map(|(version, max_frame_size)| {
            Frame::Hello {
                version,
                max_frame_size,
            }
        }),
        open,
        Just(Frame::Ping),
        varint().prop_map(|last_seq| Frame::Pong { last_seq }),
        varint().prop_map(|last_seq| Frame::Received { last_seq }),
        (text(), blob()).prop_map(|(ns, auth)| Frame::Connect { ns, auth }),
        text().prop_map(|ns| Frame::Connected { ns }),
        (text(), text()).prop_map(|(ns, reason)| Frame::ConnectError { ns, reason }),
        (text(), proptest::option::of(text()))
            .prop_map(|(ns, reason)| Frame::Disconnect { ns, reason }),
        (text(), text(), blob(), proptest::option::of(varint())).prop_map(
            |(ns, name, payload, ack)| Frame::Event {
                ns,
                name,
                payload,
                ack
            }
        ),
        (text(), varint(), blob()).prop_map(|(ns, id, payload)| Frame::Ack { ns, id, payload }),
        (text(), text(), blob()).prop_map(|(ns, name, payload)| Frame::Volatile {
            ns,
            name,
            payload
        }),
        (text(), text()).prop_map(|(ns, reason)| Frame::Error { ns, reason }),
        text().prop_map(|reason| Frame::Close { reason }),
        (
            varint(),
            any::<[u8; 16]>(),
            varint(),
            proptest::option::of(any::<u32>())
        )
            .prop_map(|(sid, token, last_seq, max_frame_size)| Frame::Resume {
                sid,
                token,
                last_seq,
                max_frame_size,
            }),
        (varint(), varint()).prop_map(|(last_seq, replay)| Frame::Resumed { last_seq, replay }),
        text().prop_map(|reason| Frame::ResumeFailed { reason }),
    ]
}

/// A varint length that no message can hold: 2^64 − 1, 2^32 − 1 or 65 535.
fn huge_varint() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![
        vec![0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        vec![0xfd, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00],
        vec![0xfc, 0xff, 0xff, 0xff, 0xff],
        vec![0xfb, 0xff, 0xff],
    ])
}

/// One way to damage a message.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flip bit `bit` of the byte at `at` (both taken modulo the length).
    FlipBit { at: usize, bit: u8 },
    /// Keep the first `keep` bytes (modulo the length).
    Truncate { keep: usize },
    /// Put a huge varint at `at`, replacing what was there.
    HugeLength { at: usize, varint: Vec<u8> },
    /// Replace the tag (first byte) by this byte.
    Tag(u8),
    /// Append bytes.
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), 0..8u8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        2 => any::<usize>().prop_map(|keep| Mutation::Truncate { keep }),
        2 => (any::<usize>(), huge_varint()).prop_map(|(at, varint)| Mutation::HugeLength { at, varint }),
        2 => any::<u8>().prop_map(Mutation::Tag),
        1 => proptest::collection::vec(any::<u8>(), 1..8).prop_map(Mutation::Append),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match m {
            Mutation::FlipBit { at, bit } if len > 0 => bytes[at % len] ^= 1 << bit,
            Mutation::Truncate { keep } => bytes.truncate(keep % (len + 1)),
            Mutation::HugeLength { at, varint } => {
                let at = at % (len + 1);
                let end = (at + varint.len()).min(len);
                bytes.splice(at..end, varint.iter().copied());
            }
            Mutation::Tag(tag) if len > 0 => bytes[0] = *tag,
            Mutation::Append(more) => bytes.extend_from_slice(more),
            _ => {}
        }
    }
    bytes
}

/// A vector of the doc with a few mutations applied.
fn mutated(batch: bool) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(doc_vectors(batch)),
        proptest::collection::vec(mutation(), 1..4),
    )
        .prop_map(|(seed, mutations)| mutate(seed, &mutations))
}

/// What must hold for whatever `decode` makes of `bytes`: a frame re-encodes to
/// bytes that decode to the same frame; an error is one the spec lists.
fn check_decode(bytes: &[u8]) -> Result<(), TestCaseError> {
    match decode(bytes) {
        Ok(frame) => {
            let again = encode(&frame);
            prop_assert_eq!(decode(&again), Ok(frame.clone()));
            // Encoding is canonical: the shortest varints, so never longer.
            prop_assert!(again.len() <= bytes.len(), "{frame:?} grew");
        }
        Err(DecodeError::Empty) => prop_assert!(bytes.is_empty()),
        Err(e @ DecodeError::UnknownTag(tag)) => {
            prop_assert!(tag >= FRAME_TAGS, "{e}");
            prop_assert_eq!(e.to_string(), format!("unknown frame tag {tag}"));
        }
        Err(e @ DecodeError::Trailing(n)) => {
            prop_assert!(n > 0 && n < bytes.len(), "{e} of {}", bytes.len());
            prop_assert_eq!(
                e.to_string(),
                format!("malformed frame: {n} trailing bytes")
            );
        }
        Err(e @ DecodeError::Malformed(_)) => {
            prop_assert!(e.to_string().starts_with("malformed frame: "), "{e}");
        }
    }
    Ok(())
}

/// The same for `split_batch`: frames tile the body; errors are the spec's.
fn check_split(body: &[u8], max_frames: usize) -> Result<(), TestCaseError> {
    let body = Bytes::copy_from_slice(body);
    match split_batch(&body, max_frames) {
        Ok(frames) => {
            prop_assert!(frames.len() <= max_frames);
            let payload: usize = frames.iter().map(Bytes::len).sum();
            prop_assert!(payload <= body.len());
            // Re-encoding gives canonical prefixes that split into the same frames.
            let again = encode_batch(&frames);
            prop_assert!(again.len() <= body.len());
            prop_assert_eq!(split_batch(&again, max_frames), Ok(frames.clone()));
            for frame in &frames {
                check_decode(frame)?;
            }
        }
        Err(BatchError::TooMany(limit)) => prop_assert_eq!(limit, max_frames),
        Err(e @ BatchError::Malformed(_)) => prop_assert!(
            [
                "malformed batch: bad length prefix",
                "malformed batch: frame runs past the end of the body",
                "malformed batch: length too large",
            ]
            .contains(&e.to_string().as_str()),
            "{e}"
        ),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn every_frame_round_trips(frame in frame()) {
        let bytes = encode(&frame);
        prop_assert_eq!(decode(&bytes), Ok(frame.clone()));
        if let Frame::Event { ns, name, payload, ack: None } = &frame {
            prop_assert_eq!(encode_event(EventKind::Reliable, ns, name, payload), bytes.clone());
        }
        if let Frame::Volatile { ns, name, payload } = &frame {
            prop_assert_eq!(encode_event(EventKind::Volatile, ns, name, payload), bytes);
        }
    }

    #[test]
    fn arbitrary_bytes_decode_or_fail_as_specified(
        bytes in proptest::collection::vec(any::<u8>(), 0..64)
    ) {
        check_decode(&bytes)?;
    }

    #[test]
    fn mutated_vectors_decode_or_fail_as_specified(bytes in mutated(false)) {
        check_decode(&bytes)?;
    }

    #[test]
    fn mutated_frames_decode_or_fail_as_specified(
        frame in frame(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        check_decode(&mutate(encode(&frame).to_vec(), &mutations))?;
    }

    #[test]
    fn batches_of_any_frames_round_trip(frames in proptest::collection::vec(frame(), 0..6)) {
        let encoded: Vec<Bytes> = frames.iter().map(encode).collect();
        let body = encode_batch(&encoded);
        let split = split_batch(&body, 8);
        prop_assert_eq!(split.as_ref(), Ok(&encoded));
        let decoded: Result<Vec<Frame>, _> = encoded.iter().map(|b| decode(b)).collect();
        prop_assert_eq!(decoded, Ok(frames));
    }

    #[test]
    fn arbitrary_bodies_split_or_fail_as_specified(
        body in proptest::collection::vec(any::<u8>(), 0..64),
        max_frames in 1..8usize,
    ) {
        check_split(&body, max_frames)?;
    }

    #[test]
    fn mutated_batch_vectors_split_or_fail_as_specified(
        body in mutated(true),
        max_frames in 1..8usize,
    ) {
        check_split(&body, max_frames)?;
    }
}
