//! `reconnect`: a reconnection storm. Clients connect through a cutting proxy in
//! their worker; each session streams numbered messages both ways, `--msg-rate` a
//! second each way (the server checks the client's, the client the server's). After
//! `--warmup` seconds every proxied connection is cut at once; the clients reconnect
//! by themselves (with their back-off, first delay `--backoff-ms` ± 50%) and resume
//! their sessions. Both streams go on through the cut — while a client is away the
//! server keeps its messages for replay, and the client buffers its own — and for
//! `--after` seconds past the last resumption. Measures: time from the cut until
//! each session, and all of them, resumed; frames replayed and resent; messages
//! lost or duplicated either way.
//!
//! With `--player raw` the sessions are the load tester's lean players
//! (`rawplayer.rs`) instead of the Rust client, and there is no proxy: at the cut each
//! player drops its own connection, as a network failure would, and resumes it
//! after the same back-off. The server sees the same storm (19,000 connections gone
//! at once, 19,000 `Resume`s), and the generator spends far less of the machine on
//! its side of it.

use std::time::Duration;

use tokio::time::Instant;
use volley::client::{Backoff, ClientError, ConnectionEvent, Event};

use super::{failed_attempts, server_figures, thread_figures};
use crate::args::Flags;
use crate::client_ctx::{Phase, WorkerCtx};
use crate::control::{unix_us, Command, ScenarioPlan};
use crate::coordinator::{Common, Run};
use crate::rawplayer::{RawEvent, RawPlayer, ResumeError};
use crate::report::Report;
use crate::seq::SeqCheck;
use crate::server::{FlushAnswer, NAMESPACE};
use crate::sim;

/// How long a client waits for the server's last numbered messages after the flush.
const DRAIN: Duration = Duration::from_secs(10);
/// Delay between the cut command and the cut, so that every worker cuts together.
const CUT_LEAD: Duration = Duration::from_millis(200);

/// The storm's settings.
#[derive(Debug, Clone, Copy)]
pub struct Storm {
    /// Numbered messages a second, each way, per session.
    pub msg_rate: f64,
    /// The clients' first back-off delay.
    pub backoff_ms: u64,
    /// Seconds of streaming before the cut.
    pub warmup: f64,
    /// Seconds of streaming after the last resumption.
    pub after: f64,
    /// Seconds every session has to resume.
    pub resume_timeout: f64,
    /// `--player raw`: lean players that cut their own connections (no proxy).
    pub raw: bool,
    /// `--cut server`: the server drops every connection (no proxy, and players do
    /// not cut their own); `--cut client` (the default): the proxies cut them, or
    /// raw players their own.
    pub server_cut: bool,
}

impl Storm {
    pub fn from_flags(flags: &Flags) -> Result<Storm, String> {
        Ok(Storm {
            msg_rate: flags.positive("msg-rate", 5.0)?,
            backoff_ms: flags.get("backoff-ms", 1_000)?,
            warmup: flags.positive("warmup", 1.0)?,
            after: flags.positive("after", 2.0)?,
            resume_timeout: flags.positive("resume-timeout", 60.0)?,
            raw: super::raw_player(flags)?,
            server_cut: match flags.get::<String>("cut", "client".into())?.as_str() {
                "client" => false,
                "server" => true,
                other => return Err(format!("--cut {other}: client or server")),
            },
        })
    }
}

pub async fn coordinate(flags: &Flags) -> Result<Report, String> {
    let storm = Storm::from_flags(flags)?;
    let common = if storm.raw || storm.server_cut {
        Common::from_flags(flags, 200, 500.0)?
    } else {
        Common::from_flags_proxied(flags, 200, 500.0)?
    };
    flags.finish()?;
    run(&common, storm).await
}

/// Runs the storm against `common`'s server (the cluster scenario runs it against a
/// balancer in front of several).
pub async fn run(common: &Common, storm: Storm) -> Result<Report, String> {
    let Storm {
        msg_rate,
        backoff_ms,
        warmup,
        after,
        resume_timeout,
        raw,
        server_cut,
    } = storm;
    let mut run = Run::start("reconnect", common).await?;
    let plan = ScenarioPlan::Reconnect {
        msg_rate,
        // Every phase at its longest, and a margin: the server's streams never
        // outlive the run by much, even if a client dies without flushing.
        stream_limit_s: warmup + resume_timeout + after + 120.0,
        backoff_ms,
        raw,
        server_cut,
    };
    run.start_workers(common, plan).await?;
    run.connect(common.connect_timeout).await;
    run.send(&Command::Start).await;
    run.hold("streaming", Duration::from_secs_f64(warmup), &|_| false)
        .await;

    let (cpu_from, threads_from) = (run.server_sample(), run.server_threads());
    let at_unix_us = unix_us() + CUT_LEAD.as_micros() as u64;
    run.send(&Command::Cut { at_unix_us }).await;
    let mut server_dropped = None;
    if server_cut {
        // At the instant the workers take as the cut.
        tokio::time::sleep(Duration::from_micros(at_unix_us.saturating_sub(unix_us()))).await;
        match crate::sampler::cut_server_connections(&run.url).await {
            Ok(dropped) => server_dropped = Some(dropped),
            Err(e) => run.failures.push(format!("the server could not cut: {e}")),
        }
    }
    let sessions = run.totals().connected;
    let all_back = run
        .watch(
            "resuming",
            Duration::from_secs_f64(resume_timeout),
            &|c| c.resumed as f64 / sessions.max(1) as f64,
            &|c| c.resumed + c.sessions_lost >= sessions,
        )
        .await;
    let (cpu_to, threads_to) = (run.server_sample(), run.server_threads());
    if !all_back {
        let back = run.totals().resumed;
        run.failures.push(format!(
            "only {back} of {sessions} sessions resumed within {resume_timeout} s"
        ));
    }
    run.hold("streaming", Duration::from_secs_f64(after), &|_| false)
        .await;
    let tally = run.finish(0, DRAIN + Duration::from_secs(60)).await;

    let mut report = run.report(common, &tally);
    report.setting("msg_rate", msg_rate);
    report.setting("backoff_ms", backoff_ms);
    report.setting("warmup_s", warmup);
    report.setting("after_s", after);
    report.setting("player", if raw { "raw" } else { "client" });
    report.setting("cut", if server_cut { "server" } else { "client" });
    if let Some(dropped) = server_dropped {
        report.figure(
            "server_dropped",
            "connections the server dropped at the cut",
            dropped as f64,
            "",
        );
    }
    let c = &tally.counters;
    report.figure("sessions_cut", "sessions cut", sessions as f64, "");
    report.figure("sessions_resumed", "sessions resumed", c.resumed as f64, "");
    report.figure(
        "sessions_lost",
        "sessions lost (fresh session instead)",
        c.sessions_lost as f64,
        "",
    );
    report.figure(
        "reconnect_attempts",
        "reconnection attempts",
        c.attempts as f64,
        "",
    );
    failed_attempts(&mut report, &tally);
    report.figure(
        "frames_replayed",
        "frames the server replayed on resumption",
        c.replayed as f64,
        "",
    );
    report.figure(
        "frames_resent",
        "frames the clients resent on resumption",
        c.resent as f64,
        "",
    );
    if let Some(resume) = tally.histograms.get("resume") {
        report.figure(
            "all_resumed_ms",
            "time from the cut until all resumed",
            resume.max_us() as f64 / 1000.0,
            "ms",
        );
    }
    server_figures(&mut report, "cut to all resumed", cpu_from, cpu_to);
    thread_figures(&mut report, threads_from, threads_to);
    if c.sessions_lost > 0 {
        report.failures.push(format!(
            "{} session(s) could not be resumed",
            c.sessions_lost
        ));
    }
    run.stop().await;
    Ok(report)
}

pub async fn client(
    ctx: &WorkerCtx,
    index: usize,
    msg_rate: f64,
    stream_limit_s: f64,
    backoff_ms: u64,
) {
    let config = sim::config_with_backoff(ctx, index, backoff_ms);
    let Some((client, mut ns)) = sim::open(ctx, index, NAMESPACE, config).await else {
        return;
    };
    ctx.ready();
    let who = sim::who(ctx, index);
    let mut phase = ctx.phase();
    let period = Duration::from_secs_f64(1.0 / msg_rate);
    let first = tokio::time::Instant::now() + period.mul_f64(rand::random::<f64>());
    let mut ticks = tokio::time::interval_at(first, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0u64;
    let mut check = SeqCheck::default();
    let mut attempt_at = None;
    let mut asked_stream = false;
    loop {
        let current = *phase.borrow_and_update();
        if matches!(current, Phase::Finishing { .. }) {
            break;
        }
        let streaming = current == Phase::Running;
        if streaming && !asked_stream {
            // The server's stream to this client, which goes on through the cut.
            asked_stream = true;
            if let Err(e) = ns.emit("stream", &(msg_rate, stream_limit_s)) {
                ctx.problem(format!("{who}: could not start the server's stream: {e}"));
            }
        }
        tokio::select! {
            _ = phase.changed() => {}
            _ = ticks.tick(), if streaming => match ns.emit("c2s", &sent) {
                Ok(()) => {
                    sent += 1;
                    ctx.count(|c| c.sent += 1);
                }
                Err(ClientError::SendBufferFull) => ctx.count(|c| c.refused += 1),
                Err(e) => {
                    ctx.problem(format!("{who}: message not sent: {e}"));
                    break;
                }
            },
            event = ns.next_event() => if !on_event(ctx, &mut check, event) {
                ctx.problem(format!("{who}: namespace closed"));
                break;
            },
            event = client.next_connection_event() => match event {
                Some(event) => on_connection_event(ctx, &who, event, &mut attempt_at),
                None => break,
            },
        }
    }
    // Everything sent before the flush has been processed once it is answered; the
    // flush stops the server's stream, and the answer says how long it was.
    let Some(answer) = sim::ask::<_, FlushAnswer>(ctx, index, &ns, "flush", &()).await else {
        ctx.stream("c2s", sent, Default::default());
        return;
    };
    ctx.stream("c2s", sent, answer.c2s);
    let drained = tokio::time::Instant::now() + DRAIN;
    while !check.has_all(answer.s2c_sent) {
        tokio::select! {
            event = ns.next_event() => if !on_event(ctx, &mut check, event) {
                break;
            },
            _ = tokio::time::sleep_until(drained) => break,
        }
    }
    ctx.stream("s2c", answer.s2c_sent, check.counts());
    sim::close(client).await;
}

/// How long one resumption attempt of a raw player may take (connection, upgrade,
/// `Resume` answered), as the Rust client's handshake timeout.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// A session of `--player raw`: the same streams, checks and timings as [`client`],
/// spoken over a raw WebSocket by one task, which drops its own connection at the
/// cut and resumes after the client's back-off (first delay `backoff_ms` ± 50%,
/// doubling after a failed attempt, at most 5 s).
pub async fn raw_client(
    ctx: &WorkerCtx,
    index: usize,
    msg_rate: f64,
    stream_limit_s: f64,
    backoff_ms: u64,
) {
    let who = sim::who(ctx, index);
    let Some(mut player) = sim::open_raw(ctx, index, NAMESPACE, true).await else {
        return;
    };
    ctx.ready();
    let mut check = SeqCheck::default();
    let mut cuts = ctx.cuts();
    loop {
        tokio::select! {
            _ = ctx.until_running() => break,
            event = player.next_event() => match event {
                Ok(event) => on_raw_event(ctx, &mut check, event),
                Err(e) => return ctx.problem(format!("{who}: {e}")),
            },
        }
        if let Err(e) = player.pay_owed().await {
            return ctx.problem(format!("{who}: {e}"));
        }
    }
    // The server's stream to this session, which goes on through the cut.
    if let Err(e) = player.emit("stream", &(msg_rate, stream_limit_s)).await {
        return ctx.problem(format!("{who}: could not start the server's stream: {e}"));
    }

    let initial = Duration::from_millis(backoff_ms);
    let backoff = Backoff {
        initial,
        max: initial.max(Duration::from_secs(5)),
        ..Backoff::default()
    };
    let period = Duration::from_secs_f64(1.0 / msg_rate);
    let first = Instant::now() + period.mul_f64(rand::random::<f64>());
    let mut ticks = tokio::time::interval_at(first, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0u64;
    // While cut off: the attempt to make next, and when.
    let mut away: Option<(u32, Instant)> = None;
    let mut finish_by: Option<Instant> = None;
    let mut noticed = false;
    enum Step {
        Tick,
        Event(Result<RawEvent, String>),
        Cut,
        Attempt,
        Finish,
    }
    loop {
        let connected = player.is_connected();
        if connected && finish_by.is_some() {
            break;
        }
        let attempt_at = away.map_or_else(Instant::now, |(_, at)| at);
        // The branches only read; what a step writes happens after the `select!`.
        let step = tokio::select! {
            _ = ticks.tick(), if finish_by.is_none() => Step::Tick,
            event = player.next_event(), if connected => Step::Event(event),
            _ = cuts.changed(), if connected => Step::Cut,
            _ = tokio::time::sleep_until(attempt_at), if !connected => Step::Attempt,
            _ = ctx.until_finishing(), if finish_by.is_none() => Step::Finish,
        };
        match step {
            Step::Tick => match player.emit("c2s", &sent).await {
                // Sent, or kept for the resume if the connection is gone.
                Ok(()) => {
                    sent += 1;
                    ctx.count(|c| c.sent += 1);
                }
                Err(_) => ctx.count(|c| c.refused += 1),
            },
            Step::Event(Ok(event)) => {
                on_raw_event(ctx, &mut check, event);
                // Heartbeat answers and acknowledgements go out now; a failed write
                // is the connection gone, as a failed read.
                if let Err(e) = player.pay_owed().await {
                    dropped(ctx, &who, &mut player, &e, &mut noticed);
                }
            }
            Step::Event(Err(e)) => dropped(ctx, &who, &mut player, &e, &mut noticed),
            Step::Cut => {
                cuts.borrow_and_update();
                notice_cut(ctx, &mut noticed);
                player.cut();
            }
            Step::Attempt => {
                let (attempt, _) = away.unwrap_or((1, attempt_at));
                let attempt_from = unix_us();
                ctx.count(|c| c.attempts += 1);
                let outcome = tokio::time::timeout(ATTEMPT_TIMEOUT, player.resume()).await;
                let failed = match outcome {
                    Ok(Ok(resumed)) => {
                        away = None;
                        // A cut while away found nothing to cut.
                        cuts.borrow_and_update();
                        if let Some(cut) = ctx.cut_at_us.get() {
                            ctx.record_us("resume", unix_us().saturating_sub(cut));
                        }
                        ctx.record_us("resume_attempt", unix_us().saturating_sub(attempt_from));
                        ctx.count(|c| {
                            c.resumed += 1;
                            c.replayed += resumed.replay;
                            c.resent += resumed.resent;
                        });
                        None
                    }
                    Ok(Err(ResumeError::Refused(reason))) => {
                        ctx.count(|c| c.sessions_lost += 1);
                        return ctx.problem(format!("{who}: session lost ({reason})"));
                    }
                    Ok(Err(ResumeError::Failed(error))) => Some(error),
                    Err(_) => Some(format!(
                        "no answer to the resume within {ATTEMPT_TIMEOUT:?}"
                    )),
                };
                if let Some(error) = failed {
                    ctx.attempt_failed(&error);
                    let delay = backoff.delay(attempt + 1, &mut rand::thread_rng());
                    away = Some((attempt + 1, Instant::now() + delay));
                }
                if finish_by.is_some_and(|by| Instant::now() > by) && !player.is_connected() {
                    ctx.problem(format!("{who}: not resumed within {DRAIN:?} of the finish"));
                    ctx.stream("c2s", sent, Default::default());
                    return;
                }
            }
            Step::Finish => finish_by = Some(Instant::now() + DRAIN),
        }
        if !player.is_connected() && away.is_none() {
            // Just cut off (by the cut, or the connection failed): the first attempt
            // after the first delay.
            away = Some((
                1,
                Instant::now() + backoff.delay(1, &mut rand::thread_rng()),
            ));
        }
    }
    // Everything sent before the flush has been processed once it is answered.
    let flushed = player
        .ask::<_, FlushAnswer>("flush", &(), |event| on_raw_event(ctx, &mut check, event))
        .await;
    let answer = match flushed {
        Ok(answer) => answer,
        Err(e) => {
            ctx.problem(format!("{who}: 'flush' not acknowledged: {e}"));
            ctx.stream("c2s", sent, Default::default());
            return;
        }
    };
    ctx.stream("c2s", sent, answer.c2s);
    let drained = Instant::now() + DRAIN;
    while !check.has_all(answer.s2c_sent) {
        tokio::select! {
            event = player.next_event() => match event {
                Ok(event) => on_raw_event(ctx, &mut check, event),
                Err(_) => break,
            },
            _ = tokio::time::sleep_until(drained) => break,
        }
    }
    ctx.stream("s2c", answer.s2c_sent, check.counts());
    player.close().await;
}

/// A raw player's connection failed (a read or a write; with `--cut server`, the
/// cut): it is cut off and will resume. Before the cut that is a problem of the run.
fn dropped(ctx: &WorkerCtx, who: &str, player: &mut RawPlayer, error: &str, noticed: &mut bool) {
    player.cut();
    if ctx.cut_at_us.get().is_none() {
        ctx.count(|c| c.drops += 1);
        ctx.problem(format!("{who}: connection dropped before the cut: {error}"));
    } else {
        notice_cut(ctx, noticed);
    }
}

/// Times how long after the cut this player learnt of it, once.
fn notice_cut(ctx: &WorkerCtx, noticed: &mut bool) {
    if let (Some(cut), false) = (ctx.cut_at_us.get(), *noticed) {
        *noticed = true;
        ctx.record_us("cut_noticed", unix_us().saturating_sub(cut));
    }
}

/// Checks a numbered message from the server, for a raw player.
fn on_raw_event(ctx: &WorkerCtx, check: &mut SeqCheck, event: RawEvent) {
    if event.name == "s2c" {
        if let Ok(n) = serde_json::from_slice::<u64>(&event.payload) {
            check.observe(n);
            ctx.delivered(unix_us());
        }
    }
}

/// Checks a numbered message from the server; `false` when the namespace closed.
fn on_event(ctx: &WorkerCtx, check: &mut SeqCheck, event: Option<Event>) -> bool {
    let Some(event) = event else {
        return false;
    };
    if event.name == "s2c" {
        if let Ok(n) = event.decode::<u64>() {
            check.observe(n);
            ctx.delivered(unix_us());
        }
    }
    true
}

/// Counts what happened to the connection, and times each resumption twice: from
/// the cut (`resume`: the back-off delay included), and from the start of the
/// attempt that succeeded (`resume_attempt`: reconnecting and resuming only).
/// `attempt_at` is when the current attempt starts, in Unix µs: the first one
/// `delay` after the cut (the driver sees the cut at once), later ones `delay` after
/// the event is read. `cut_noticed` is how long after the cut this task heard of it.
fn on_connection_event(
    ctx: &WorkerCtx,
    who: &str,
    event: ConnectionEvent,
    attempt_at: &mut Option<u64>,
) {
    match event {
        ConnectionEvent::Reconnecting { attempt, delay } => {
            let from = match (attempt, ctx.cut_at_us.get()) {
                (1, Some(cut)) => {
                    ctx.record_us("cut_noticed", unix_us().saturating_sub(cut));
                    cut
                }
                _ => unix_us(),
            };
            *attempt_at = Some(from + delay.as_micros() as u64);
            ctx.count(|c| c.attempts += 1);
            if attempt == 1 && ctx.cut_at_us.get().is_none() {
                ctx.count(|c| c.drops += 1);
                ctx.problem(format!("{who}: connection dropped before the cut"));
            }
        }
        ConnectionEvent::Reconnected {
            resumed: true,
            replayed,
            resent,
        } => {
            if let Some(cut) = ctx.cut_at_us.get() {
                ctx.record_us("resume", unix_us().saturating_sub(cut));
            }
            if let Some(started) = attempt_at.take() {
                ctx.record_us("resume_attempt", unix_us().saturating_sub(started));
            }
            ctx.count(|c| {
                c.resumed += 1;
                c.replayed += replayed;
                c.resent += resent;
            });
        }
        ConnectionEvent::SessionLost { reason, dropped } => {
            ctx.count(|c| c.sessions_lost += 1);
            ctx.problem(format!(
                "{who}: session lost ({reason}); {dropped} unconfirmed frames dropped"
            ));
        }
        ConnectionEvent::Closed { reason } => {
            ctx.problem(format!("{who}: client closed: {reason}"));
        }
        ConnectionEvent::ReconnectFailed { error, .. } => ctx.attempt_failed(&error),
        ConnectionEvent::Reconnected { resumed: false, .. } | ConnectionEvent::FellBack { .. } => {}
    }
}
