//! `soak`: a long run that looks for what grows. `--clients` sessions (default 500)
//! for `--duration` seconds (default 600): each streams numbered messages both ways
//! (`--msg-rate`), chats in a room of `--chat-room-size` (`--chat-rate` messages a
//! second), plays in a game room of `--players` (`--hz` inputs a second, the room
//! ticking at `--tick-rate`), and has its connection cut at random `--cuts-per-min`
//! times a minute (by its worker's proxy); it resumes by itself.
//!
//! Every second the coordinator samples the server process (RSS, CPU time, open file
//! descriptors, from `/proc`) and its sessions (`/loadtest/metrics`); the clients
//! count the pings they receive in whole seconds during which they stayed connected.
//! The run fails if a sample grows without bound (the fitted slope over the second
//! half above a limit, see `trend`), if pings per session per interval depart from 1
//! by more than `--ping-tolerance` (10%), or if any numbered message (both streams,
//! inputs, chat) was lost or duplicated. `--svg FILE` plots RSS, CPU and pings/s.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use volley::client::{ClientError, ConnectionEvent, Event, NamespaceClient};
use volley::{JoinRequest, Joined};

use super::failed_attempts;
use crate::args::Flags;
use crate::client_ctx::{Phase, WorkerCtx};
use crate::control::{Command, Counters, ScenarioPlan, SoakPlan};
use crate::coordinator::{Common, Run};
use crate::plot::{self, Panel};
use crate::report::Report;
use crate::sampler::ServerPoint;
use crate::seq::SeqCheck;
use crate::server::{FlushAnswer, Input, GAME_NAMESPACE, NAMESPACE, ROOM_TYPE};
use crate::sim;
use crate::trend::{self, Limit, Points};

/// How long a client waits for the server's last numbered messages after the flush.
const DRAIN: Duration = Duration::from_secs(10);
/// How often the clients count pings (the server is sampled as often).
const SAMPLE_EVERY: Duration = crate::sampler::SAMPLE_EVERY;
const MIB: f64 = 1024.0;
/// The window, in seconds, of the plotted pings received per second.
const PINGS_PER_S_OVER: f64 = 5.0;

/// The growth limits, one per sampled quantity (flags `--max-<name>-per-min`).
struct Limits {
    rss_mib: Limit,
    fds: Limit,
    sessions: Limit,
    cpu_pct: Limit,
    pings: Limit,
}

impl Limits {
    fn from_flags(flags: &Flags) -> Result<Limits, String> {
        let limit = |name: &str, per_min: f64, floor: f64| -> Result<Limit, String> {
            Ok(Limit {
                per_min: flags.positive(&format!("max-{name}-per-min"), per_min)?,
                floor,
            })
        };
        Ok(Limits {
            rss_mib: limit("rss-mib", 1.0, 4.0)?,
            fds: limit("fds", 0.5, 10.0)?,
            sessions: limit("sessions", 0.5, 10.0)?,
            cpu_pct: limit("cpu-pct", 5.0, 20.0)?,
            pings: limit("pings", 0.05, 0.1)?,
        })
    }
}

pub async fn coordinate(flags: &Flags) -> Result<Report, String> {
    let mut common = Common::from_flags_proxied(flags, 500, 200.0)?;
    let duration = flags.positive("duration", 600.0)?;
    let ping_ms: u64 = flags.get("ping-ms", 1_000)?;
    let ping_timeout_ms: u64 = flags.get("ping-timeout-ms", ping_ms.max(1_000))?;
    let tick_rate: u32 = flags.get("tick-rate", 10)?;
    let cuts_per_min: f64 = flags.get("cuts-per-min", 0.5)?;
    if !(0.0..=60.0).contains(&cuts_per_min) {
        return Err("--cuts-per-min is between 0 and 60".into());
    }
    let plan = SoakPlan {
        msg_rate: flags.positive("msg-rate", 1.0)?,
        chat_rate: flags.positive("chat-rate", 0.2)?,
        chat_room_size: flags.count("chat-room-size", 10)?,
        room_size: flags.count("players", 8)?,
        input_hz: flags.positive("hz", 2.0)?,
        cuts_per_min,
        backoff_ms: flags.get("backoff-ms", 200)?,
        stream_limit_s: duration + 300.0,
    };
    let limits = Limits::from_flags(flags)?;
    let tolerance = flags.positive("ping-tolerance", 0.10)?;
    let svg: Option<String> = flags.opt("svg")?;
    flags.finish()?;
    if ping_ms == 0 {
        return Err("--ping-ms must be at least 1".into());
    }
    common.serve_flag("ping-ms", ping_ms);
    common.serve_flag("ping-timeout-ms", ping_timeout_ms);
    common.serve_flag("tick-rate", tick_rate);
    common.serve_flag("room-size", plan.room_size);

    let mut run = Run::start("soak", &common).await?;
    run.start_workers(&common, ScenarioPlan::Soak(plan.clone()))
        .await?;
    run.connect(common.connect_timeout).await;
    let began = run.started.elapsed().as_secs_f64();
    let sampled_from = Instant::now();
    run.send(&Command::Start).await;
    run.hold("soaking", Duration::from_secs_f64(duration), &|_| false)
        .await;
    let samples = run.sampler.points_since(sampled_from);
    let tally = run.finish(0, DRAIN + Duration::from_secs(60)).await;

    let mut report = run.report(&common, &tally);
    report.setting("duration_s", duration);
    report.setting("ping_ms", ping_ms);
    report.setting("ping_timeout_ms", ping_timeout_ms);
    report.setting("msg_rate", plan.msg_rate);
    report.setting("chat_rate", plan.chat_rate);
    report.setting("chat_room_size", plan.chat_room_size);
    report.setting("players", plan.room_size);
    report.setting("hz", plan.input_hz);
    report.setting("tick_rate", tick_rate);
    report.setting("cuts_per_min", cuts_per_min);
    let c = &tally.counters;
    report.figure(
        "drops",
        "connections dropped (cut, or a ping timeout)",
        c.drops as f64,
        "",
    );
    report.figure("sessions_resumed", "sessions resumed", c.resumed as f64, "");
    failed_attempts(&mut report, &tally);
    report.figure("pings", "pings received", c.pings as f64, "");
    if c.sessions_lost > 0 {
        report.failures.push(format!(
            "{} session(s) could not be resumed",
            c.sessions_lost
        ));
    }

    let interval_s = ping_ms as f64 / 1000.0;
    check_ping_rate(&mut report, c, interval_s, tolerance);
    let history = std::mem::take(&mut run.history);
    let series = Series::new(&samples, &history, began, interval_s);
    series.check(&mut report, &limits);
    // The generic series (rates, server CPU and RSS) are there already; the pings
    // are the soak's own. Times from the run's start, like the others.
    report.series.push(crate::report::Series {
        label: "pings per session per interval (configured: 1)".into(),
        points: series.pings.iter().map(|&(t, v)| (t + began, v)).collect(),
    });
    if let Some(path) = svg {
        let title = format!(
            "loadtest soak: {} clients, {duration} s, pings every {ping_ms} ms",
            common.clients
        );
        let all_pings_per_s = c.connected as f64 / interval_s;
        std::fs::write(&path, series.svg(&title, all_pings_per_s))
            .map_err(|e| format!("cannot write {path}: {e}"))?;
        report.notes.push(format!("plot written to {path}"));
    }
    run.stop().await;
    Ok(report)
}

/// Pings per session per interval over the whole run must be 1 ± `tolerance`.
fn check_ping_rate(report: &mut Report, c: &Counters, interval_s: f64, tolerance: f64) {
    if c.window_us == 0 {
        report
            .failures
            .push("no ping counted: no client stayed connected for a whole second".into());
        return;
    }
    let per_interval = c.window_pings as f64 / (c.window_us as f64 / 1e6) * interval_s;
    report.figure(
        "pings_per_session_per_interval",
        "pings per session per interval (configured: 1)",
        per_interval,
        "",
    );
    if (per_interval - 1.0).abs() > tolerance {
        report.failures.push(format!(
            "the server sent {per_interval:.3} pings per session per ping interval, \
             not 1 ± {tolerance}"
        ));
    }
}

/// The run's time series, in seconds since the soak started.
struct Series {
    rss_mib: Points,
    cpu_pct: Points,
    fds: Points,
    sessions: Points,
    pings_per_s: Points,
    /// Pings per session per interval, from the clients' connected seconds.
    pings: Points,
}

impl Series {
    fn new(
        server: &[ServerPoint],
        history: &[(Duration, Counters)],
        began: f64,
        interval_s: f64,
    ) -> Series {
        let measured = server.iter().any(|p| p.rss_kib > 0);
        let pick = |f: &dyn Fn(&ServerPoint) -> Option<f64>| -> Points {
            server.iter().filter_map(|p| Some((p.t, f(p)?))).collect()
        };
        let cpu_total = pick(&|p| measured.then_some(p.cpu_s));
        let counters: Vec<(f64, Counters)> = history
            .iter()
            .map(|(t, c)| (t.as_secs_f64() - began, *c))
            .filter(|(t, _)| *t >= 0.0)
            .collect();
        let counters = trend::thin(&counters, SAMPLE_EVERY.as_secs_f64());
        let total = |f: fn(&Counters) -> u64| -> Points {
            counters.iter().map(|(t, c)| (*t, f(c) as f64)).collect()
        };
        // Pings over whole intervals at least: with pings every 25 s, the sessions'
        // pings come on a few slots of each interval, and rates over single seconds
        // swing between none and many (their trend was noise, and failed the run).
        let per_interval = trend::thin(&counters, interval_s.max(SAMPLE_EVERY.as_secs_f64()));
        let over_intervals = |f: fn(&Counters) -> u64| -> Points {
            per_interval
                .iter()
                .map(|(t, c)| (*t, f(c) as f64))
                .collect()
        };
        let window_pings = trend::rates(&over_intervals(|c| c.window_pings));
        let window_s = trend::rates(&over_intervals(|c| c.window_us));
        let pings = window_pings
            .iter()
            .zip(&window_s)
            .filter(|(_, s)| s.1 > 0.0)
            .map(|(p, s)| (p.0, p.1 / (s.1 / 1e6) * interval_s))
            .collect();
        Series {
            rss_mib: pick(&|p| measured.then_some(p.rss_kib as f64 / MIB)),
            cpu_pct: trend::rates(&cpu_total)
                .into_iter()
                .map(|(t, v)| (t, v * 100.0))
                .collect(),
            fds: pick(&|p| p.fds.map(|n| n as f64)),
            sessions: pick(&|p| p.sessions.map(|n| n as f64)),
            // Every client adds its pings once a second, all at about the same
            // moment: over single seconds the rate would alias between 0 and 2×.
            pings_per_s: trend::rates(&trend::thin(&total(|c| c.pings), PINGS_PER_S_OVER)),
            pings,
        }
    }

    /// Adds each quantity's growth to the report, and a failure for each that grows
    /// without bound.
    fn check(&self, report: &mut Report, limits: &Limits) {
        let checks = [
            (
                "rss_mib",
                "server RSS",
                &self.rss_mib,
                limits.rss_mib,
                "MiB",
            ),
            ("cpu_pct", "server CPU", &self.cpu_pct, limits.cpu_pct, "%"),
            ("fds", "server open fds", &self.fds, limits.fds, "fds"),
            (
                "sessions",
                "server sessions",
                &self.sessions,
                limits.sessions,
                "sessions",
            ),
            (
                "pings",
                "pings per session per interval",
                &self.pings,
                limits.pings,
                "pings",
            ),
        ];
        for (key, label, points, limit, unit) in checks {
            if let (Some(first), Some(last)) = (points.first(), points.last()) {
                report.figure(
                    &format!("{key}_first"),
                    &format!("{label} at the start"),
                    first.1,
                    unit,
                );
                report.figure(
                    &format!("{key}_last"),
                    &format!("{label} at the end"),
                    last.1,
                    unit,
                );
            }
            let Some(growth) = trend::growth(points, limit) else {
                report.notes.push(format!("{label}: too few samples"));
                continue;
            };
            report.figure(
                &format!("{key}_slope_per_min"),
                &format!("{label}: slope over the 2nd half, per minute"),
                growth.per_min,
                unit,
            );
            if growth.unbounded {
                report.failures.push(format!(
                    "{label} grows without bound: {:.3} {unit}/min over the second half \
                     (limit {} {unit}/min), rising {:.3} {unit} (limit {})",
                    growth.per_min, limit.per_min, growth.rise, limit.floor
                ));
            }
        }
    }

    /// The plot; `all_pings_per_s` is what every client together should receive.
    fn svg(&self, title: &str, all_pings_per_s: f64) -> String {
        plot::svg(
            title,
            &[
                Panel {
                    label: "server RSS (MiB)",
                    points: &self.rss_mib,
                    reference: None,
                },
                Panel {
                    label: "server CPU (% of one core)",
                    points: &self.cpu_pct,
                    reference: None,
                },
                Panel {
                    label: "pings received per second, all clients (dashed: configured)",
                    points: &self.pings_per_s,
                    reference: Some(all_pings_per_s),
                },
                Panel {
                    label: "pings per session per interval (dashed: configured)",
                    points: &self.pings,
                    reference: Some(1.0),
                },
            ],
        )
    }
}

pub async fn client(ctx: &WorkerCtx, index: usize, plan: &SoakPlan) {
    let config = sim::config_with_backoff(ctx, index, plan.backoff_ms);
    let Some((client, mut chat)) = sim::open(ctx, index, NAMESPACE, config).await else {
        return;
    };
    let who = sim::who(ctx, index);
    let global = ctx.plan.first_client + index;
    let room = format!("chat-{}", global / plan.chat_room_size);
    if sim::ask::<_, String>(ctx, index, &chat, "join_room", &room)
        .await
        .is_none()
    {
        return ctx.fail(format!("{who}: could not join the chat room"));
    }
    let mut game = None;
    if plan.input_hz > 0.0 && plan.room_size > 0 {
        match join_game(ctx, index, &client, global / plan.room_size).await {
            Ok(ns) => game = Some(ns),
            Err(why) => return ctx.fail(format!("{who}: {why}")),
        }
    }
    ctx.ready();

    let mut soak = ClientSoak::new(&who, plan);
    let mut phase = ctx.phase();
    loop {
        let current = *phase.borrow_and_update();
        if matches!(current, Phase::Finishing { .. }) {
            break;
        }
        let running = current == Phase::Running;
        if running && !soak.streaming {
            soak.start(ctx, &chat, plan);
        }
        tokio::select! {
            _ = phase.changed() => {}
            _ = soak.c2s.tick(), if running => soak.send_c2s(ctx, &chat),
            _ = soak.chat.tick(), if running => soak.say(ctx, &chat, &room),
            _ = soak.inputs.tick(), if running && game.is_some() => {
                if let Some(game) = &game {
                    soak.send_input(ctx, game);
                }
            }
            _ = soak.sample.tick(), if running => soak.count_pings(ctx, &client),
            event = chat.next_event() => if !soak.on_chat_event(ctx, event) {
                ctx.problem(format!("{who}: namespace closed"));
                break;
            },
            event = next_game_event(&mut game) => {
                if event.as_ref().is_some_and(|e| e.name == "state") {
                    ctx.delivered(crate::control::unix_us());
                }
            }
            event = client.next_connection_event() => match event {
                Some(event) => soak.on_connection_event(ctx, event),
                None => break,
            },
        }
    }
    soak.finish(ctx, index, &mut chat, game.as_ref()).await;
    sim::close(client).await;
}

/// Joins `/game` and sits in the pulse room of `group`.
async fn join_game(
    ctx: &WorkerCtx,
    index: usize,
    client: &volley::client::Client,
    group: usize,
) -> Result<NamespaceClient, String> {
    let ns = client
        .join(GAME_NAMESPACE, &())
        .await
        .map_err(|e| format!("could not join {GAME_NAMESPACE}: {e}"))?;
    let request = JoinRequest::new(ROOM_TYPE).filter("group", group as u64);
    match sim::ask::<_, Result<Joined, String>>(ctx, index, &ns, "join_game", &request).await {
        Some(Ok(_)) => Ok(ns),
        Some(Err(reason)) => Err(format!("game join refused: {reason}")),
        None => Err("game join unanswered".into()),
    }
}

/// The next event of the game namespace, or never without one.
async fn next_game_event(game: &mut Option<NamespaceClient>) -> Option<Event> {
    match game {
        Some(game) => game.next_event().await,
        None => std::future::pending().await,
    }
}

/// One soak client's streams, checks and ping count.
struct ClientSoak {
    who: String,
    streaming: bool,
    c2s: tokio::time::Interval,
    chat: tokio::time::Interval,
    inputs: tokio::time::Interval,
    sample: tokio::time::Interval,
    sent: u64,
    said: u64,
    input_seq: u64,
    s2c: SeqCheck,
    /// The chat of each other member of the room, by session id.
    heard: HashMap<u64, SeqCheck>,
    /// Pings counted so far, and the start of the current whole connected second
    /// with the ping count then (`None` while disconnected, or once an event came).
    pings_seen: Option<u64>,
    window: Option<(Instant, u64)>,
    connected: bool,
}

/// A ticker of `rate` a second, starting at a random point of its first period so
/// that the clients do not all send at once.
fn ticker(rate: f64) -> tokio::time::Interval {
    let period = Duration::from_secs_f64(1.0 / rate.max(1e-3));
    let first = tokio::time::Instant::now() + period.mul_f64(rand::random::<f64>());
    let mut ticks = tokio::time::interval_at(first, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    ticks
}

impl ClientSoak {
    fn new(who: &str, plan: &SoakPlan) -> ClientSoak {
        ClientSoak {
            who: who.to_owned(),
            streaming: false,
            c2s: ticker(plan.msg_rate),
            chat: ticker(plan.chat_rate),
            inputs: ticker(plan.input_hz),
            sample: {
                // Not polled before the run starts: no burst of missed ticks then.
                let mut every = tokio::time::interval(SAMPLE_EVERY);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                every
            },
            sent: 0,
            said: 0,
            input_seq: 0,
            s2c: SeqCheck::default(),
            heard: HashMap::new(),
            pings_seen: None,
            window: None,
            connected: true,
        }
    }

    /// Asks for the server's stream (it goes on through cuts).
    fn start(&mut self, ctx: &WorkerCtx, chat: &NamespaceClient, plan: &SoakPlan) {
        self.streaming = true;
        if let Err(e) = chat.emit("stream", &(plan.msg_rate, plan.stream_limit_s)) {
            ctx.problem(format!(
                "{}: could not start the server's stream: {e}",
                self.who
            ));
        }
    }

    /// Sends with `send`, counting it as sent when it went into the send buffer.
    fn emit(
        &self,
        ctx: &WorkerCtx,
        sent: &mut u64,
        send: impl FnOnce(u64) -> Result<(), ClientError>,
    ) {
        match send(*sent) {
            Ok(()) => {
                *sent += 1;
                ctx.count(|c| c.sent += 1);
            }
            Err(ClientError::SendBufferFull) => ctx.count(|c| c.refused += 1),
            Err(e) => ctx.problem(format!("{}: message not sent: {e}", self.who)),
        }
    }

    fn send_c2s(&mut self, ctx: &WorkerCtx, chat: &NamespaceClient) {
        let mut sent = self.sent;
        self.emit(ctx, &mut sent, |n| chat.emit("c2s", &n));
        self.sent = sent;
    }

    fn say(&mut self, ctx: &WorkerCtx, chat: &NamespaceClient, room: &str) {
        let mut said = self.said;
        self.emit(ctx, &mut said, |n| chat.emit("say", &(room, n)));
        self.said = said;
    }

    fn send_input(&mut self, ctx: &WorkerCtx, game: &NamespaceClient) {
        let mut seq = self.input_seq;
        self.emit(ctx, &mut seq, |seq| game.emit("input", &Input { seq }));
        self.input_seq = seq;
    }

    /// Once a second: pings since the last count, and those of the second just
    /// ended if the client stayed connected all through it.
    fn count_pings(&mut self, ctx: &WorkerCtx, client: &volley::client::Client) {
        let now = client.pings_received();
        if let Some(seen) = self.pings_seen {
            ctx.count(|c| c.pings += now - seen);
        }
        self.pings_seen = Some(now);
        if let Some((start, at_start)) = self.window.take() {
            let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
            ctx.count(|c| {
                c.window_pings += now - at_start;
                c.window_us += us;
            });
        }
        if self.connected {
            self.window = Some((Instant::now(), now));
        }
    }

    /// Checks a message of the chat namespace; `false` when the namespace closed.
    fn on_chat_event(&mut self, ctx: &WorkerCtx, event: Option<Event>) -> bool {
        let Some(event) = event else {
            return false;
        };
        match event.name.as_str() {
            "s2c" => {
                if let Ok(n) = event.decode::<u64>() {
                    self.s2c.observe(n);
                    ctx.delivered(crate::control::unix_us());
                }
            }
            "said" => {
                if let Ok((from, n)) = event.decode::<(u64, u64)>() {
                    self.heard.entry(from).or_default().observe(n);
                    ctx.delivered(crate::control::unix_us());
                }
            }
            _ => {}
        }
        true
    }

    fn on_connection_event(&mut self, ctx: &WorkerCtx, event: ConnectionEvent) {
        // A second with a cut or a resumption in it does not count for pings.
        self.window = None;
        match event {
            ConnectionEvent::Reconnecting { attempt, .. } => {
                self.connected = false;
                ctx.count(|c| {
                    c.attempts += 1;
                    c.drops += u64::from(attempt == 1);
                });
            }
            ConnectionEvent::Reconnected {
                resumed,
                replayed,
                resent,
            } => {
                self.connected = true;
                ctx.count(|c| {
                    c.resumed += u64::from(resumed);
                    c.replayed += replayed;
                    c.resent += resent;
                });
            }
            ConnectionEvent::SessionLost { reason, dropped } => {
                ctx.count(|c| c.sessions_lost += 1);
                ctx.problem(format!(
                    "{}: session lost ({reason}); {dropped} unconfirmed frames dropped",
                    self.who
                ));
            }
            ConnectionEvent::Closed { reason } => {
                ctx.problem(format!("{}: client closed: {reason}", self.who));
            }
            ConnectionEvent::ReconnectFailed { error, .. } => ctx.attempt_failed(&error),
            ConnectionEvent::FellBack { .. } => {}
        }
    }

    /// Flushes both namespaces and adds the checked streams: `c2s` and `inputs` as
    /// the server saw them, `s2c` and `chat` as this client did.
    async fn finish(
        &mut self,
        ctx: &WorkerCtx,
        index: usize,
        chat: &mut NamespaceClient,
        game: Option<&NamespaceClient>,
    ) {
        if let Some(game) = game {
            if let Some(answer) = sim::ask::<_, FlushAnswer>(ctx, index, game, "flush", &()).await {
                ctx.stream("inputs", self.input_seq, answer.c2s);
            }
        }
        let Some(answer) = sim::ask::<_, FlushAnswer>(ctx, index, chat, "flush", &()).await else {
            ctx.stream("c2s", self.sent, Default::default());
            return;
        };
        ctx.stream("c2s", self.sent, answer.c2s);
        let drained = tokio::time::Instant::now() + DRAIN;
        while !self.s2c.has_all(answer.s2c_sent) {
            tokio::select! {
                event = chat.next_event() => if !self.on_chat_event(ctx, event) {
                    break;
                },
                _ = tokio::time::sleep_until(drained) => break,
            }
        }
        ctx.stream("s2c", answer.s2c_sent, self.s2c.counts());
        for heard in self.heard.values() {
            ctx.stream("chat", heard.reached(), heard.counts());
        }
    }
}
