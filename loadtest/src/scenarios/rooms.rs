//! `rooms`: `--rooms` game rooms of `--players` players each; every player sends
//! `--hz` numbered inputs a second for `--duration` seconds, and each room ticks
//! (and sends its state) `--tick-rate` times a second. The state tells each player
//! the last input the room applied, so a client measures input → state latency: from
//! sending an input to seeing a state that includes it. The server checks every
//! player's input numbers. Measures: input → state latency, the rooms' tick lateness
//! (from the server's own metrics), server CPU.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use volley::client::ClientError;
use volley::{JoinRequest, Joined};

use super::{per_second, server_figures};
use crate::args::Flags;
use crate::client_ctx::WorkerCtx;
use crate::control::ScenarioPlan;
use crate::coordinator::{Common, Run};
use crate::report::Report;
use crate::server::{FlushAnswer, Input, PulseState, GAME_NAMESPACE, ROOM_TYPE};
use crate::sim;

pub async fn coordinate(flags: &Flags) -> Result<Report, String> {
    let rooms = flags.count("rooms", 10)?;
    let players = flags.count("players", 8)?;
    let hz = flags.positive("hz", 30.0)?;
    let tick_rate: u32 = flags.get("tick-rate", 30)?;
    let duration = flags.positive("duration", 10.0)?;
    let mut common = Common::from_flags(flags, rooms * players, 500.0)?;
    flags.finish()?;
    if common.clients != rooms * players {
        return Err("rooms: the clients are --rooms × --players; leave out --clients".into());
    }
    common.serve_flag("tick-rate", tick_rate);
    common.serve_flag("room-size", players);

    let mut run = Run::start("rooms", &common).await?;
    let plan = ScenarioPlan::Rooms {
        room_size: players,
        input_hz: hz,
    };
    run.start_workers(&common, plan).await?;
    run.connect(common.connect_timeout).await;
    let cpu_from = run.server_sample();
    let began = Instant::now();
    run.send(&crate::control::Command::Start).await;
    run.hold("playing", Duration::from_secs_f64(duration), &|_| false)
        .await;
    let played = began.elapsed().as_secs_f64();
    let cpu_to = run.server_sample();
    let metrics = run.server_metrics().await;
    let tally = run.finish(0, Duration::from_secs(60)).await;

    let mut report = run.report(&common, &tally);
    report.setting("rooms", rooms);
    report.setting("players", players);
    report.setting("hz", hz);
    report.setting("tick_rate", tick_rate);
    report.setting("duration_s", duration);
    let c = &tally.counters;
    report.figure(
        "inputs_per_s",
        "inputs sent per second",
        per_second(c.sent as f64, played),
        "/s",
    );
    report.figure(
        "states_per_s",
        "states received per second",
        per_second(c.delivered as f64, played),
        "/s",
    );
    match metrics {
        Some(m) => {
            report.figure(
                "server_rooms",
                "game rooms on the server",
                m.rooms as f64,
                "",
            );
            report.figure("server_ticks", "ticks run (all rooms)", m.ticks as f64, "");
            report.figure(
                "server_skipped_ticks",
                "ticks skipped (all rooms)",
                m.skipped_ticks as f64,
                "",
            );
            let lateness = [
                (
                    "tick_lateness_p50_us",
                    "tick lateness p50 (median room)",
                    m.lateness_p50_us_median,
                ),
                (
                    "tick_lateness_p99_us",
                    "tick lateness p99 (median room)",
                    m.lateness_p99_us_median,
                ),
                (
                    "tick_lateness_p99_worst_us",
                    "tick lateness p99 (worst room)",
                    m.lateness_p99_us_worst,
                ),
                (
                    "tick_lateness_max_us",
                    "tick lateness max",
                    m.lateness_max_us,
                ),
                (
                    "tick_lateness_mean_us",
                    "tick lateness mean",
                    m.lateness_mean_us,
                ),
                (
                    "tick_duration_p99_worst_us",
                    "tick duration p99 (worst room)",
                    m.tick_duration_p99_us_worst,
                ),
            ];
            for (key, label, us) in lateness {
                report.figure(key, label, us as f64, "µs");
            }
            report.figure(
                "server_inputs_dropped",
                "inputs dropped by rooms (per-tick bound)",
                m.inputs_dropped as f64,
                "",
            );
            if m.rooms != rooms {
                report.failures.push(format!(
                    "the server has {} game rooms for the {rooms} asked for",
                    m.rooms
                ));
            }
        }
        None => report
            .notes
            .push("server metrics unavailable: no tick lateness".into()),
    }
    server_figures(&mut report, "playing", cpu_from, cpu_to);
    run.stop().await;
    Ok(report)
}

pub async fn client(ctx: &WorkerCtx, index: usize, room_size: usize, hz: f64) {
    let config = sim::config(ctx, index);
    let Some((client, mut ns)) = sim::open(ctx, index, GAME_NAMESPACE, config).await else {
        return;
    };
    // Players are seated by their global number: a room's players fill it together.
    let group = (ctx.plan.first_client + index) / room_size;
    let request = JoinRequest::new(ROOM_TYPE).filter("group", group as u64);
    match sim::ask::<_, Result<Joined, String>>(ctx, index, &ns, "join_game", &request).await {
        Some(Ok(_)) => ctx.ready(),
        Some(Err(reason)) => {
            return ctx.fail(format!("{}: join refused: {reason}", sim::who(ctx, index)));
        }
        None => return ctx.fail(format!("{}: join unanswered", sim::who(ctx, index))),
    }
    let me = client.session_id();

    // States arrive from the moment the player sits: read them while waiting.
    loop {
        tokio::select! {
            _ = ctx.until_running() => break,
            event = ns.next_event() => if event.is_none() { break },
        }
    }

    let period = Duration::from_secs_f64(1.0 / hz);
    // Players of a room do not all send at the same instant.
    let first = tokio::time::Instant::now() + period.mul_f64(rand::random::<f64>());
    let mut inputs = tokio::time::interval_at(first, period);
    inputs.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Inputs sent and not yet seen applied, oldest first.
    let mut pending: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = inputs.tick() => match ns.emit("input", &Input { seq }) {
                Ok(()) => {
                    pending.push_back((seq, Instant::now()));
                    seq += 1;
                    ctx.count(|c| c.sent += 1);
                }
                Err(ClientError::SendBufferFull) => ctx.count(|c| c.refused += 1),
                Err(e) => {
                    ctx.problem(format!("{}: input not sent: {e}", sim::who(ctx, index)));
                    break;
                }
            },
            event = ns.next_event() => {
                let Some(event) = event else {
                    ctx.problem(format!("{}: namespace closed", sim::who(ctx, index)));
                    break;
                };
                if event.name != "state" {
                    continue;
                }
                ctx.delivered(crate::control::unix_us());
                let Ok(state) = event.decode::<PulseState>() else { continue };
                let Some(&(_, applied)) = state.applied.iter().find(|(p, _)| *p == me) else {
                    continue;
                };
                while pending.front().is_some_and(|(n, _)| *n <= applied) {
                    if let Some((_, sent)) = pending.pop_front() {
                        ctx.record("input_to_state", sent.elapsed());
                    }
                }
            }
            _ = ctx.until_finishing() => break,
        }
    }
    // Every input before the flush has reached the server once it answers.
    if let Some(answer) = sim::ask::<_, FlushAnswer>(ctx, index, &ns, "flush", &()).await {
        ctx.stream("inputs", seq, answer.c2s);
    }
    sim::close(client).await;
}
