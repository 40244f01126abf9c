//! The test vectors of `docs/protocol.md`, checked against the real codec.
//!
//! The document is the specification a client in another language is written from, so
//! it must not drift from the code. This test reads the fenced blocks of the document
//! (`vectors`, `lenient-vectors`, `invalid-vectors`) and the frame summary table, and
//! checks each vector against the frame written out here, keyed by its name: valid
//! vectors decode to that frame and re-encode byte for byte, lenient ones decode to it
//! but encode canonically, invalid ones are refused with the stated error. The
//! long-polling batches (`batch-vectors`, `invalid-batch-vectors`) are checked the same
//! way with `split_batch` and `encode_batch`. A vector in the document without an
//! expectation here, or the other way round, fails the test.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde_bytes::ByteBuf;
use volley::protocol::{
    decode, encode, encode_batch, split_batch, BatchError, DecodeError, Frame, Open,
};

const DOC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");

/// Number of frame kinds in protocol v1 (tags 0..=16).
const FRAME_KINDS: usize = 17;

/// The token used by the `open` and `resume` vectors: bytes >= 251 that must not be
/// read as varint markers.
const TOKEN: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xfb, 0xfc, 0xfd, 0xff,
];

/// The first sid the server hands out: slot 1, generation 1 of its registry.
const SID: u64 = (1 << 32) | 1;

fn doc() -> String {
    std::fs::read_to_string(DOC_PATH).unwrap_or_else(|e| panic!("cannot read {DOC_PATH}: {e}"))
}

fn bytes(b: &[u8]) -> ByteBuf {
    ByteBuf::from(b.to_vec())
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The lines of the one fenced block tagged `tag`, parsed as `name: hex` vectors.
fn vectors(doc: &str, tag: &str) -> BTreeMap<String, Vec<u8>> {
    let fence = format!("```{tag}");
    let starts: Vec<usize> = doc
        .lines()
        .enumerate()
        .filter(|(_, line)| line.trim_end() == fence)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        starts.len(),
        1,
        "expected exactly one ```{tag} block in the doc"
    );
    let mut out = BTreeMap::new();
    let mut closed = false;
    for line in doc.lines().skip(starts[0] + 1) {
        let line = line.trim();
        if line == "```" {
            closed = true;
            break;
        }
        if line.is_empty() {
            continue;
        }
        let (name, hex_text) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("```{tag} line is not `name: hex`: {line:?}"));
        let parsed = hex_text
            .split_whitespace()
            .map(|pair| {
                assert_eq!(pair.len(), 2, "vector {name}: {pair:?} is not one byte");
                u8::from_str_radix(pair, 16)
                    .unwrap_or_else(|e| panic!("vector {name}: bad hex {pair:?}: {e}"))
            })
            .collect();
        let previous = out.insert(name.trim().to_owned(), parsed);
        assert!(
            previous.is_none(),
            "vector {name} appears twice in ```{tag}"
        );
    }
    assert!(closed, "```{tag} block is not closed");
    out
}

/// Fails unless the document and the test name exactly the same vectors.
fn assert_same_names<'d, 'e>(
    tag: &str,
    in_doc: impl Iterator<Item = &'d String>,
    expected: impl Iterator<Item = &'e str>,
) {
    let in_doc: BTreeSet<&str> = in_doc.map(String::as_str).collect();
    let expected: BTreeSet<&str> = expected.collect();
    let no_expectation: Vec<_> = in_doc.difference(&expected).collect();
    let missing_from_doc: Vec<_> = expected.difference(&in_doc).collect();
    assert!(
        no_expectation.is_empty() && missing_from_doc.is_empty(),
        "```{tag}: vectors in the doc with no expected value here: {no_expectation:?}; \
         vectors expected here but missing from the doc: {missing_from_doc:?}"
    );
}

/// The tag of a frame, written out so that adding a variant to `Frame` breaks this
/// test until the document and its vectors cover it.
fn tag_of(frame: &Frame) -> u8 {
    match frame {
        Frame::Hello { .. } => 0,
        Frame::Open(_) => 1,
        Frame::Ping => 2,
        Frame::Pong { .. } => 3,
        Frame::Received { .. } => 4,
        Frame::Connect { .. } => 5,
        Frame::Connected { .. } => 6,
        Frame::ConnectError { .. } => 7,
        Frame::Disconnect { .. } => 8,
        Frame::Event { .. } => 9,
        Frame::Ack { .. } => 10,
        Frame::Volatile { .. } => 11,
        Frame::Error { .. } => 12,
        Frame::Close { .. } => 13,
        Frame::Resume { .. } => 14,
        Frame::Resumed { .. } => 15,
        Frame::ResumeFailed { .. } => 16,
    }
}

/// The Rust variant name of a frame, from its `Debug` form.
fn variant_of(frame: &Frame) -> String {
    format!("{frame:?}")
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect()
}

mod expected;
use expected::*;

/// One row of the frame summary table: tag, kind, variant, reliable.
struct SummaryRow {
    tag: u8,
    kind: String,
    variant: String,
    reliable: bool,
}

/// The frame summary table of section 3, which follows the `frame-summary` marker.
fn summary_table(doc: &str) -> Vec<SummaryRow> {
    let rows: Vec<&str> = doc
        .lines()
        .skip_while(|line| !line.starts_with("<!-- frame-summary"))
        .skip(3) // the marker, the header row and the separator row
        .take_while(|line| line.starts_with('|'))
        .collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<&str> = row
                .trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().trim_matches('`'))
                .collect();
            assert_eq!(cells.len(), 5, "summary row {row:?} has not 5 cells");
            SummaryRow {
                tag: cells[0]
                    .parse()
                    .unwrap_or_else(|e| panic!("summary row {row:?}: bad tag: {e}")),
                kind: cells[1].to_owned(),
                variant: cells[2].to_owned(),
                reliable: match cells[4] {
                    "yes" => true,
                    "no" => false,
                    other => panic!("summary row {row:?}: reliable is {other:?}"),
                },
            }
        })
        .collect()
}

/// The vectors of block `tag`, after checking that the document and the test name
/// the same ones.
fn checked_vectors<'a>(
    tag: &str,
    expected: impl Iterator<Item = &'a str>,
) -> BTreeMap<String, Vec<u8>> {
    let in_doc = vectors(&doc(), tag);
    assert_same_names(tag, in_doc.keys(), expected);
    in_doc
}

/// Fails unless `wire` decodes to exactly `frame`.
fn assert_decodes_to(name: &str, wire: &[u8], frame: &Frame) {
    match decode(wire) {
        Ok(decoded) => assert_eq!(&decoded, frame, "vector {name} decodes to another frame"),
        Err(e) => panic!("vector {name} ({}) does not decode: {e}", hex(wire)),
    }
}

#[test]
fn valid_vectors_decode_to_the_expected_frame_and_reencode_byte_exact() {
    let expected = valid();
    let in_doc = checked_vectors("vectors", expected.keys().copied());
    for (name, wire) in &in_doc {
        let frame = &expected[name.as_str()];
        assert_decodes_to(name, wire, frame);
        assert_eq!(
            hex(&encode(frame)),
            hex(wire),
            "vector {name}: encoding the frame gives other bytes"
        );
    }
}

#[test]
fn every_frame_kind_has_a_vector_and_matches_the_summary_table() {
    let doc = doc();
    let table = summary_table(&doc);
    let tags: Vec<u8> = table.iter().map(|row| row.tag).collect();
    let all_tags: Vec<u8> = (0..FRAME_KINDS)
        .map(|t| u8::try_from(t).expect("tag fits in a byte"))
        .collect();
    assert_eq!(
        tags, all_tags,
        "summary table must list tags 0..=16 in order"
    );

    let mut covered = BTreeSet::new();
    for (name, wire) in vectors(&doc, "vectors") {
        let frame = decode(&wire).unwrap_or_else(|e| panic!("vector {name}: {e}"));
        let tag = tag_of(&frame);
        assert_eq!(wire[0], tag, "vector {name}: first byte is not the tag");
        let row = &table[usize::from(tag)];
        assert_eq!(row.kind, frame.kind(), "summary row {tag}: kind");
        assert_eq!(
            row.variant,
            variant_of(&frame),
            "summary row {tag}: variant"
        );
        assert_eq!(
            row.reliable,
            frame.is_reliable(),
            "summary row {tag} ({}): reliable",
            row.kind
        );
        covered.insert(frame.kind());
    }
    let listed: BTreeSet<&str> = table.iter().map(|row| row.kind.as_str()).collect();
    assert_eq!(
        listed.len(),
        FRAME_KINDS,
        "summary table kinds must be distinct"
    );
    let uncovered: Vec<_> = listed.difference(&covered).collect();
    assert!(
        uncovered.is_empty(),
        "frame kinds without a vector: {uncovered:?}"
    );
    assert_eq!(covered.len(), FRAME_KINDS);
}

#[test]
fn lenient_vectors_decode_but_encode_canonically() {
    let expected = lenient();
    let in_doc = checked_vectors("lenient-vectors", expected.keys().copied());
    for (name, wire) in &in_doc {
        let (frame, canonical) = &expected[name.as_str()];
        assert_decodes_to(name, wire, frame);
        let encoded = encode(frame);
        assert_eq!(
            hex(&encoded),
            hex(canonical),
            "vector {name}: canonical form"
        );
        assert_ne!(
            hex(&encoded),
            hex(wire),
            "vector {name} is canonical: it belongs in ```vectors"
        );
    }
}

#[test]
fn invalid_vectors_are_refused_with_the_stated_error() {
    let expected = invalid();
    let in_doc = checked_vectors("invalid-vectors", expected.keys().copied());
    for (name, wire) in &in_doc {
        let err = match decode(wire) {
            Ok(frame) => panic!("vector {name} ({}) decodes as {frame:?}", hex(wire)),
            Err(err) => err,
        };
        match &expected[name.as_str()] {
            Refusal::Exactly(error, reason) => {
                assert_eq!(&err, error, "vector {name}");
                assert_eq!(err.to_string(), *reason, "vector {name}: reason");
            }
            Refusal::Malformed => {
                assert!(
                    matches!(err, DecodeError::Malformed(_)),
                    "vector {name}: expected a malformed frame, got {err:?}"
                );
                assert!(
                    err.to_string().starts_with("malformed frame: "),
                    "vector {name}: reason {err}"
                );
            }
        }
    }
}

/// What each vector of the ```batch-vectors block splits into, frame by frame.
fn batches() -> BTreeMap<&'static str, Vec<Frame>> {
    let long_payload = format!("\"{}\"", "a".repeat(249));
    BTreeMap::from([
        ("batch-empty", vec![]),
        ("batch-hello", vec![hello()]),
        (
            "batch-hello-max-frame-size",
            vec![Frame::Hello {
                version: 1,
                max_frame_size: Some(16 * 1024 * 1024),
            }],
        ),
        ("batch-resume", vec![resume(None)]),
        (
            "batch-several",
            vec![
                Frame::Pong { last_seq: 3 },
                Frame::Connect {
                    ns: "/chat".into(),
                    auth: bytes(b""),
                },
                event("/chat", "msg", b"\"hi\"", None),
            ],
        ),
        (
            "batch-long-frame",
            vec![
                Frame::Volatile {
                    ns: "/".into(),
                    name: "s".into(),
                    payload: bytes(long_payload.as_bytes()),
                },
                Frame::Ping,
            ],
        ),
    ])
}

/// The refusal of each vector of the ```invalid-batch-vectors block.
fn invalid_batches() -> BTreeMap<&'static str, BatchError> {
    let past_end = || BatchError::Malformed("frame runs past the end of the body");
    let bad_prefix = || BatchError::Malformed("bad length prefix");
    BTreeMap::from([
        ("batch-length-past-end", past_end()),
        ("batch-second-frame-past-end", past_end()),
        ("batch-cut-length-prefix", bad_prefix()),
        ("batch-length-marker-ff", bad_prefix()),
        ("batch-length-u64-max", past_end()),
    ])
}

#[test]
fn batch_vectors_split_into_frames_that_decode_and_reencode_byte_exact() {
    let expected = batches();
    let in_doc = checked_vectors("batch-vectors", expected.keys().copied());
    for (name, body) in &in_doc {
        let body = Bytes::from(body.clone());
        let frames = split_batch(&body, usize::MAX)
            .unwrap_or_else(|e| panic!("batch {name} ({}) does not split: {e}", hex(&body)));
        let wanted = &expected[name.as_str()];
        assert_eq!(frames.len(), wanted.len(), "batch {name}: number of frames");
        for (i, (wire, frame)) in frames.iter().zip(wanted).enumerate() {
            assert_decodes_to(&format!("{name}[{i}]"), wire, frame);
        }
        assert_eq!(
            hex(&encode_batch(&frames)),
            hex(&body),
            "batch {name}: encoding its frames as a batch gives other bytes"
        );
        let encoded: Vec<Bytes> = wanted.iter().map(encode).collect();
        assert_eq!(
            hex(&encode_batch(&encoded)),
            hex(&body),
            "batch {name}: encoding the expected frames as a batch gives other bytes"
        );
    }
}

#[test]
fn invalid_batch_vectors_are_refused_as_malformed() {
    let expected = invalid_batches();
    let in_doc = checked_vectors("invalid-batch-vectors", expected.keys().copied());
    for (name, body) in &in_doc {
        let body = Bytes::from(body.clone());
        match split_batch(&body, usize::MAX) {
            Ok(frames) => panic!(
                "batch {name} ({}) splits into {} frames",
                hex(&body),
                frames.len()
            ),
            Err(err) => {
                assert_eq!(&err, &expected[name.as_str()], "batch {name}");
                assert!(
                    err.to_string().starts_with("malformed batch: "),
                    "batch {name}: reason {err}"
                );
            }
        }
    }
}

#[test]
fn vector_names_are_unique_across_blocks() {
    let doc = doc();
    let mut seen = BTreeSet::new();
    for tag in [
        "vectors",
        "lenient-vectors",
        "invalid-vectors",
        "batch-vectors",
        "invalid-batch-vectors",
    ] {
        for name in vectors(&doc, tag).into_keys() {
            assert!(
                seen.insert(name.clone()),
                "vector name {name} is used twice"
            );
        }
    }
}
