//! `fuzz`: hostile input at a running server. For `--duration` seconds (default 10;
//! or until `--cases` connections), raw WebSocket connections, `--concurrency` at a
//! time (default 8), each send something a client must not:
//! protocol frames mutated from valid ones (bit flips, truncations, huge varint
//! lengths, wrong tags, bytes appended), random bytes, frames only the server may
//! send (`open`, `ping`, ...), and WebSocket-level violations (text, fragmented,
//! unmasked, reserved bits, a header claiming a huge length). Meanwhile `--clients`
//! well-behaved sessions (default 4) keep chatting and streaming numbered messages.
//!
//! Each case's expected answer is worked out from `docs/protocol.md` (§5.1 for a
//! first frame, §6.1 for the close reasons and statuses) with the codec deciding
//! what the bytes are; the server must close the connection with that reason in its
//! `Close` frame and that WebSocket status. The run fails on any other answer, on
//! any loss or duplicate in the good clients' streams, if server RSS grows during
//! the run (as in `soak`), or if sessions are left over. `--seed` repeats a run.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_bytes::ByteBuf;
use volley::protocol::{decode, encode, DecodeError, Frame, Open};

use super::soak::{ServerPoint, ServerSampler};
use crate::args::Flags;
use crate::control::{Command, ScenarioPlan, SoakPlan};
use crate::coordinator::{server_metrics, Common, Run};
use crate::rawws::{self, FrameHead, RawWs};
use crate::report::Report;
use crate::trend::{self, Limit};

/// How long a case waits for the server to close the connection.
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// Mismatches reported in full.
const MISMATCHES_KEPT: usize = 10;

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
    fn matches(&self, reason: &str) -> bool {
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

fn policy(reason: Reason) -> Expect {
    Expect {
        reason,
        status: 1008,
    }
}

/// What the server does with one protocol frame from a client.
#[derive(Debug, Clone, PartialEq)]
enum Fate {
    /// It closes the connection, as expected.
    Refused(Expect),
    /// The session (or the opening) goes on; a `Close` from the client then ends
    /// it with this answer.
    GoesOn(Expect),
}

/// The close a decode error gets (§6.1).
fn decode_error(e: &DecodeError) -> Expect {
    policy(match e {
        DecodeError::Malformed(_) => Reason::Prefix("malformed frame: "),
        other => Reason::Exact(other.to_string()),
    })
}

/// What the first message of a connection gets (§5.1).
fn first_frame_fate(bytes: &[u8]) -> Fate {
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
fn in_session_fate(bytes: &[u8]) -> Fate {
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

fn client_left() -> Expect {
    Expect {
        reason: Reason::Exact("client left".into()),
        status: 1000,
    }
}

/// One hostile connection: what to write, and the answer it must get.
#[derive(Debug, Clone)]
pub struct Case {
    pub kind: &'static str,
    /// The offending protocol frame or WebSocket frame, for the report.
    pub input: Vec<u8>,
    pub bytes: Vec<u8>,
    pub expect: Expect,
}

/// The case kinds, in the report's order.
const KINDS: [&str; 9] = [
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
fn seed_frames() -> Vec<Frame> {
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
fn damage(rng: &mut StdRng, mut bytes: Vec<u8>) -> Vec<u8> {
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
pub fn case(n: usize, rng: &mut StdRng) -> Case {
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

/// What the cases found.
#[derive(Debug, Default)]
struct Tally {
    /// Per kind: cases run, and answered as the spec says.
    run: [u64; KINDS.len()],
    as_expected: [u64; KINDS.len()],
    mismatches: Vec<String>,
    mismatch_count: u64,
}

fn hex(bytes: &[u8]) -> String {
    let shown: Vec<String> = bytes.iter().take(24).map(|b| format!("{b:02x}")).collect();
    let more = if bytes.len() > 24 { " …" } else { "" };
    format!("{}{more}", shown.join(" "))
}

/// Runs one case; `Err` says how the answer differed.
async fn run_case(host: &str, path: &str, case: &Case) -> Result<(), String> {
    let mut ws = RawWs::connect(host, path).await?;
    ws.send(&case.bytes).await?;
    let answer = ws.answer(ANSWER_WAIT).await?;
    let reason = answer.close_reason.as_deref().unwrap_or("(no Close frame)");
    if !case.expect.reason.matches(reason) || answer.status != Some(case.expect.status) {
        return Err(format!(
            "got {reason:?} status {:?}, the spec says {} status {}",
            answer.status, case.expect.reason, case.expect.status
        ));
    }
    Ok(())
}

/// Runs cases for `duration` or until `cases` ran, `concurrency` connections at a
/// time.
async fn fuzz(
    url: String,
    duration: Duration,
    cases: usize,
    concurrency: usize,
    seed: u64,
) -> Tally {
    let Some((host, path)) = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split_once('/'))
        .map(|(h, p)| (h.to_owned(), format!("/{p}")))
    else {
        let mut tally = Tally::default();
        tally.mismatches.push(format!("cannot read the URL {url}"));
        tally.mismatch_count = 1;
        return tally;
    };
    let tally = Rc::new(RefCell::new(Tally::default()));
    let next = Rc::new(Cell::new(0usize));
    let until = Instant::now() + duration;
    let lanes: Vec<_> = (0..concurrency)
        .map(|lane| {
            let (host, path, tally, next) =
                (host.clone(), path.clone(), tally.clone(), next.clone());
            // Each lane its own generator: the cases of a seed do not depend on
            // which lane was faster.
            actix_rt::spawn(async move {
                loop {
                    let n = next.get();
                    if n >= cases || Instant::now() >= until {
                        return;
                    }
                    next.set(n + 1);
                    let mut rng = StdRng::seed_from_u64(
                        seed ^ (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    );
                    let case = case(n, &mut rng);
                    let kind = n % KINDS.len();
                    let result = run_case(&host, &path, &case).await;
                    let mut t = tally.borrow_mut();
                    t.run[kind] += 1;
                    match result {
                        Ok(()) => t.as_expected[kind] += 1,
                        Err(why) => {
                            t.mismatch_count += 1;
                            if t.mismatches.len() < MISMATCHES_KEPT {
                                t.mismatches.push(format!(
                                    "case {n} ({}, lane {lane}) [{}]: {why}",
                                    case.kind,
                                    hex(&case.input)
                                ));
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for lane in lanes {
        let _ = lane.await;
    }
    Rc::try_unwrap(tally).map_or_else(
        |rc| std::mem::take(&mut *rc.borrow_mut()),
        RefCell::into_inner,
    )
}

pub async fn coordinate(flags: &Flags) -> Result<Report, String> {
    let mut common = Common::from_flags(flags, 4, 100.0)?;
    // Every hostile connection is a warning in the server's log.
    common.server_log = Some("error");
    let duration = flags.positive("duration", 10.0)?;
    let cases: usize = flags.get("cases", usize::MAX)?;
    let concurrency = flags.count("concurrency", 8)?;
    let seed: u64 = flags.get("seed", rand::random::<u64>() >> 12)?;
    let rss = Limit {
        per_min: flags.positive("max-rss-mib-per-min", 1.0)?,
        floor: 4.0,
    };
    flags.finish()?;

    let mut run = Run::start("fuzz", &common).await?;
    // The good clients: soak clients that stream, chat and are never cut.
    let plan = SoakPlan {
        msg_rate: 5.0,
        chat_rate: 1.0,
        chat_room_size: common.clients,
        room_size: 1,
        input_hz: 0.0,
        cuts_per_min: 0.0,
        backoff_ms: 200,
        stream_limit_s: 3_600.0,
    };
    run.start_workers(&common, ScenarioPlan::Soak(plan)).await?;
    run.connect(common.connect_timeout).await;
    run.send(&Command::Start).await;
    let sampler = ServerSampler::start(&run);
    let began = Instant::now();
    let done = Rc::new(Cell::new(false));
    let fuzzing = {
        let done = done.clone();
        let url = run.url.clone();
        actix_rt::spawn(async move {
            let duration = Duration::from_secs_f64(duration);
            let tally = fuzz(url, duration, cases, concurrency, seed).await;
            done.set(true);
            tally
        })
    };
    let limit = Duration::from_secs_f64(duration + 60.0);
    run.hold("fuzzing", limit, &|_| done.get()).await;
    let tally = if done.get() {
        fuzzing.await.unwrap_or_default()
    } else {
        fuzzing.abort();
        run.failures
            .push(format!("the cases were not over within {limit:?}"));
        Tally::default()
    };
    let fuzzed_s = began.elapsed().as_secs_f64();
    let samples = sampler.stop();
    let sessions = server_metrics(&run.url).await.map(|m| m.sessions);
    let outcome = run.finish(0, Duration::from_secs(60)).await;

    let mut report = run.report(&common, &outcome);
    report.setting("duration_s", duration);
    if cases < usize::MAX {
        report.setting("cases", cases);
    }
    report.setting("concurrency", concurrency);
    report.setting("seed", seed);
    let run_total: u64 = tally.run.iter().sum();
    report.figure("cases_run", "hostile connections", run_total as f64, "");
    report.figure(
        "cases_per_s",
        "hostile connections per second",
        run_total as f64 / fuzzed_s.max(1e-3),
        "/s",
    );
    for (i, kind) in KINDS.iter().enumerate() {
        report.figure(
            &format!("as_expected_{}", kind.replace(' ', "_")),
            &format!("{kind}: answered as specified"),
            tally.as_expected[i] as f64,
            "",
        );
    }
    report.figure(
        "mismatches",
        "answers that differ from the spec",
        tally.mismatch_count as f64,
        "",
    );
    if tally.mismatch_count > 0 {
        report.failures.push(format!(
            "{} of {run_total} hostile connections were not answered as the spec says (seed {seed}); the first: {}",
            tally.mismatch_count,
            tally.mismatches.join(" | ")
        ));
    }
    if run_total == 0 {
        report.failures.push("no case ran".into());
    }
    check_rss(&mut report, &samples, rss);
    if let Some(sessions) = sessions {
        report.figure(
            "server_sessions_after",
            "server sessions after the cases",
            sessions as f64,
            "",
        );
        if sessions as u64 != outcome.counters.connected {
            report.failures.push(format!(
                "{sessions} sessions on the server for {} good clients: hostile connections left sessions behind",
                outcome.counters.connected
            ));
        }
    }
    run.stop().await;
    Ok(report)
}

/// Server RSS must stay flat: no unbounded growth over the second half (as in soak).
fn check_rss(report: &mut Report, samples: &[ServerPoint], limit: Limit) {
    let rss: trend::Points = samples
        .iter()
        .filter(|p| p.rss_kib > 0)
        .map(|p| (p.t, p.rss_kib as f64 / 1024.0))
        .collect();
    let (Some(first), Some(last)) = (rss.first(), rss.last()) else {
        report
            .notes
            .push("server RSS not measured: use --spawn, or --server-pid with --url".into());
        return;
    };
    report.figure("rss_mib_first", "server RSS at the start", first.1, "MiB");
    report.figure("rss_mib_last", "server RSS at the end", last.1, "MiB");
    match trend::growth(&rss, limit) {
        Some(g) if g.unbounded => report.failures.push(format!(
            "server RSS grows: {:.3} MiB/min over the second half, rising {:.3} MiB",
            g.per_min, g.rise
        )),
        Some(g) => report.figure(
            "rss_mib_slope_per_min",
            "server RSS: slope over the 2nd half, per minute",
            g.per_min,
            "MiB",
        ),
        None => report
            .notes
            .push("too few RSS samples for a trend: a longer --duration has them".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_frames_get_the_answers_of_the_spec() {
        let refused = |bytes: &[u8]| match first_frame_fate(bytes) {
            Fate::Refused(e) => e,
            Fate::GoesOn(e) => panic!("{bytes:?} goes on to {e:?}"),
        };
        assert_eq!(
            refused(&[]),
            policy(Reason::Exact("malformed frame: empty".into()))
        );
        assert_eq!(
            refused(&[0x11]),
            policy(Reason::Exact("unknown frame tag 17".into()))
        );
        assert_eq!(
            refused(&[9, 5, b'/']),
            policy(Reason::Prefix("malformed frame: "))
        );
        assert_eq!(
            refused(&[0, 2]).reason,
            Reason::Exact("unsupported protocol version 2; this server speaks 1".into())
        );
        assert_eq!(
            refused(&[2]).reason,
            Reason::Exact("expected 'hello' as the first frame, got 'ping'".into())
        );
        assert_eq!(first_frame_fate(&[0, 1]), Fate::GoesOn(client_left()));
    }

    #[test]
    fn frames_in_a_session_get_the_answers_of_the_spec() {
        let seeds = seed_frames();
        let open = seeds.iter().find(|f| matches!(f, Frame::Open(_)));
        let open = encode(open.expect("an open seed"));
        assert_eq!(
            in_session_fate(&open),
            Fate::Refused(Expect {
                reason: Reason::Exact(
                    "protocol error: unexpected 'open' frame from a client".into()
                ),
                status: 1000
            })
        );
        assert_eq!(in_session_fate(&[3, 0]), Fate::GoesOn(client_left()));
        assert!(matches!(
            in_session_fate(&[3, 5]),
            Fate::Refused(Expect { status: 1000, .. })
        ));
        assert_eq!(in_session_fate(&[0x0d, 0]), Fate::Refused(client_left()));
        assert_eq!(
            in_session_fate(&[2, 0]).clone(),
            Fate::Refused(policy(Reason::Exact(
                "malformed frame: 1 trailing bytes".into()
            )))
        );
    }

    #[test]
    fn cases_are_repeatable_and_cover_every_kind() {
        let one: Vec<Case> = (0..KINDS.len() * 3)
            .map(|n| case(n, &mut StdRng::seed_from_u64(n as u64)))
            .collect();
        let two: Vec<Case> = (0..KINDS.len() * 3)
            .map(|n| case(n, &mut StdRng::seed_from_u64(n as u64)))
            .collect();
        for (n, (a, b)) in one.iter().zip(&two).enumerate() {
            assert_eq!((a.kind, &a.expect), (b.kind, &b.expect));
            // WebSocket frames get a fresh mask each time; protocol frames are equal.
            if n % KINDS.len() < 4 {
                assert_eq!(a.input, b.input);
            }
        }
        for kind in KINDS {
            assert!(one.iter().any(|c| c.kind == kind), "{kind}");
        }
        // A case in a session starts with `Hello`; the masked first byte is 0x82.
        assert_eq!(one[1].bytes[0], 0x82);
    }
}
