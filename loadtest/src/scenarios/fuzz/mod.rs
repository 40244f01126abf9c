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
use rand::SeedableRng;

use crate::args::Flags;
use crate::control::{Command, ScenarioPlan, SoakPlan};
use crate::coordinator::{Common, Run};
use crate::rawws::RawWs;
use crate::report::Report;
use crate::sampler::server_metrics;
use crate::sampler::ServerPoint;
use crate::trend::{self, Limit};

mod cases;
use cases::*;

/// How long a case waits for the server to close the connection.
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// Mismatches reported in full.
const MISMATCHES_KEPT: usize = 10;

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
    let samples = run.sampler.points_since(began);
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
    use volley::protocol::{encode, Frame};

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
