//! `rooms`: `--rooms` game rooms of `--players` players each; every player sends
//! `--hz` numbered inputs a second for `--duration` seconds, and each room ticks
//! (and sends its state) `--tick-rate` times a second. The state tells each player
//! the last input the room applied, so a client measures input → state latency: from
//! sending an input to seeing a state that includes it. The server checks every
//! player's input numbers. Measures: input → state latency, the rooms' tick lateness
//! (from the server's own metrics), server CPU.

mod players;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use self::players::{client, raw_client, sio_client};
use super::{per_second, server_figures, thread_figures};
use crate::args::Flags;
use crate::control::{Player, ScenarioPlan};
use crate::coordinator::{Common, Run};
use crate::histogram::Histogram;
use crate::proc;
use crate::report::Report;
use crate::sampler::server_metrics;
use crate::server::ServerMetrics;

/// What `rooms` plays: how many rooms of how many players, at what rates, how long.
#[derive(Debug, Clone, Copy)]
pub struct Play {
    pub rooms: usize,
    pub players: usize,
    pub hz: f64,
    pub tick_rate: u32,
    pub duration: f64,
    /// `--player`: the Rust client, lean players on a raw WebSocket
    /// (`rawplayer.rs`), or Socket.IO clients.
    pub player: Player,
}

impl Play {
    /// Reads `--rooms` (default `rooms`), `--players`, `--hz`, `--tick-rate` and the
    /// duration from flag `duration`.
    /// `rooms` is the default of `--rooms`; 0 (none) is allowed here, the rooms
    /// scenario itself asks for at least one.
    pub fn from_flags(flags: &Flags, rooms: usize, duration: &str) -> Result<Play, String> {
        Ok(Play {
            rooms: flags.get("rooms", rooms)?,
            players: flags.count("players", 8)?,
            hz: flags.positive("hz", 30.0)?,
            tick_rate: flags.get("tick-rate", 30)?,
            duration: flags.positive(duration, 10.0)?,
            player: super::room_player(flags)?,
        })
    }

    /// The server settings the rooms need (`loadtest serve` flags).
    pub fn serve_flags(&self) -> [(&'static str, String); 2] {
        [
            ("tick-rate", self.tick_rate.to_string()),
            ("room-size", self.players.to_string()),
        ]
    }
}

pub async fn coordinate(flags: &Flags) -> Result<Report, String> {
    let play = Play::from_flags(flags, 10, "duration")?;
    if play.rooms == 0 {
        return Err("--rooms must be at least 1".into());
    }
    let mut common = Common::from_flags(flags, play.rooms * play.players, 500.0)?;
    flags.finish()?;
    if common.clients != play.rooms * play.players {
        return Err("rooms: the clients are --rooms × --players; leave out --clients".into());
    }
    for (name, value) in play.serve_flags() {
        common.serve_flag(name, value);
    }
    run(&common, play, &[]).await
}

/// The game metrics of several nodes as one server's: counts added up, tick lateness
/// and tick duration the worst node's. `None` if a node has none.
async fn added_up(nodes: &[(String, u32)]) -> Option<ServerMetrics> {
    let mut all = ServerMetrics::default();
    for (url, _) in nodes {
        let m = server_metrics(url).await?;
        all.sessions += m.sessions;
        all.rooms += m.rooms;
        all.players += m.players;
        all.ticks += m.ticks;
        all.skipped_ticks += m.skipped_ticks;
        all.inputs_applied += m.inputs_applied;
        all.inputs_dropped += m.inputs_dropped;
        all.state_frames += m.state_frames;
        all.lateness_p50_us_median = all.lateness_p50_us_median.max(m.lateness_p50_us_median);
        all.lateness_p99_us_median = all.lateness_p99_us_median.max(m.lateness_p99_us_median);
        all.lateness_p99_us_worst = all.lateness_p99_us_worst.max(m.lateness_p99_us_worst);
        all.lateness_max_us = all.lateness_max_us.max(m.lateness_max_us);
        all.lateness_mean_us = all.lateness_mean_us.max(m.lateness_mean_us);
        all.tick_duration_p99_us_worst = all
            .tick_duration_p99_us_worst
            .max(m.tick_duration_p99_us_worst);
    }
    Some(all)
}

/// The game metrics of the server, or of every node added up.
async fn metrics_of(run: &Run, nodes: &[(String, u32)]) -> Option<ServerMetrics> {
    match nodes {
        [] => run.server_metrics().await,
        nodes => added_up(nodes).await,
    }
}

/// Plays `play` on `common`'s server. Its game metrics and CPU come from the server,
/// or, for several nodes behind one address, from each of `nodes` (their `ws://` URL
/// and process id) added up (tick lateness: the worst node's).
pub async fn run(common: &Common, play: Play, nodes: &[(String, u32)]) -> Result<Report, String> {
    let Play {
        rooms,
        players,
        hz,
        tick_rate,
        duration,
        player,
    } = play;
    let mut run = Run::start("rooms", common).await?;
    let plan = ScenarioPlan::Rooms {
        room_size: players,
        input_hz: hz,
        player,
    };
    run.start_workers(common, plan).await?;
    run.connect(common.connect_timeout).await;
    let nodes_cpu = || -> f64 {
        let sample = |pid: &u32| proc::sample(&pid.to_string()).ok();
        nodes
            .iter()
            .filter_map(|(_, pid)| sample(pid))
            .map(|s| s.cpu_seconds)
            .sum()
    };
    // The server's own counts at both ends of the window, and its CPU read around
    // them: what it did while its CPU was measured. A generator that falls behind
    // reads states from before the window during it, so its own counts are no
    // denominator then. A saturated server's rooms answer the metrics over a while
    // (each room in turn), so the window runs from before the first question to
    // after the last answer: rates over it are never above what the server did.
    let window = Instant::now();
    let (cpu_from, nodes_from) = (run.server_sample(), nodes_cpu());
    let threads_from = run.server_threads();
    let metrics_from = metrics_of(&run, nodes).await;
    let first_answer = window.elapsed();
    let began = Instant::now();
    run.send(&crate::control::Command::Start).await;
    run.hold("playing", Duration::from_secs_f64(duration), &|_| false)
        .await;
    let metrics = metrics_of(&run, nodes).await;
    let (cpu_to, nodes_to) = (run.server_sample(), nodes_cpu());
    let threads_to = run.server_threads();
    let window = window.elapsed().as_secs_f64();
    // The players play until told to finish, after the metrics: they count to here.
    let played = began.elapsed().as_secs_f64();
    let tally = run.finish(0, Duration::from_secs(60)).await;

    let mut report = run.report(common, &tally);
    report.setting("rooms", rooms);
    report.setting("players", players);
    report.setting("hz", hz);
    report.setting("tick_rate", tick_rate);
    report.setting("duration_s", duration);
    report.setting("player", player.name());
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
    // Inputs the rooms applied and states they sent during the window.
    let served = metrics_from.as_ref().zip(metrics.as_ref()).map(|(a, b)| {
        (
            b.inputs_applied.saturating_sub(a.inputs_applied),
            b.state_frames.saturating_sub(a.state_frames),
        )
    });
    if served.is_none() {
        report.notes.push(format!(
            "the server's game metrics did not come at both ends of the window (the \
             first: {}, after {first_answer:.1?}): CPU per input and state from the \
             generator's counts",
            if metrics_from.is_some() {
                "answered"
            } else {
                "unanswered"
            },
        ));
    }
    if served.is_some() && window > played + 1.0 {
        report.notes.push(format!(
            "the server's rooms took {first_answer:.1?} to answer their metrics at the \
             start: its own rates and CPU per input and state are over the \
             {window:.1} s from the first question to the last answer, {played:.1} s \
             of them playing (its rates are lower bounds)"
        ));
    }
    if let Some((inputs, states)) = served {
        report.figure(
            "server_inputs_per_s",
            "inputs applied by the server per second",
            per_second(inputs as f64, window),
            "/s",
        );
        report.figure(
            "server_states_per_s",
            "states sent by the server per second",
            per_second(states as f64, window),
            "/s",
        );
    }
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
    if let Some(note) = kept_up(&mut report, &tally.histograms, tick_rate) {
        report.notes.push(note);
    }
    let cpu = match nodes {
        [] => {
            server_figures(&mut report, "playing", cpu_from, cpu_to);
            thread_figures(&mut report, threads_from, threads_to);
            cpu_from
                .zip(cpu_to)
                .map(|(a, b)| b.cpu_seconds - a.cpu_seconds)
        }
        _ => {
            let cpu = nodes_to - nodes_from;
            report.figure("server_cpu_s", "server CPU (playing, all nodes)", cpu, "s");
            Some(cpu)
        }
    };
    if let Some(cpu) = cpu {
        // The server's counts when it gave them; the generator's otherwise.
        let (events, label) = match served {
            Some((inputs, states)) => (
                inputs + states,
                "server CPU per input applied and state sent",
            ),
            None => (
                c.sent + c.delivered,
                "server CPU per input sent and state received",
            ),
        };
        report.figure(
            "server_cpu_us_per_input_and_state",
            label,
            per_second(cpu * 1e6, events as f64),
            "µs",
        );
    }
    run.stop().await;
    Ok(report)
}

/// Whether the server kept up with the players: a room applies an input at its next
/// tick, so while nothing queues, half the inputs are seen applied within a tick
/// period of being sent (half a period on average, plus the state's way back).
/// Records the median input → state latency in tick periods and returns a note when
/// it is over one: the server (or the generator) fell behind, and a server writing a
/// backlog puts several states in one write, so its CPU per input and state is not
/// comparable with a run that kept up. `tick_rate` is the scenario's (a server run
/// apart with another `--tick-rate` has its own period).
fn kept_up(
    report: &mut Report,
    histograms: &BTreeMap<String, Histogram>,
    tick_rate: u32,
) -> Option<String> {
    let latency = histograms.get("input_to_state")?;
    if tick_rate == 0 || latency.percentiles().count == 0 {
        return None;
    }
    let period_us = 1e6 / f64::from(tick_rate);
    let p50_us = latency.quantile_us(0.5) as f64;
    let ticks = p50_us / period_us;
    report.figure(
        "input_to_state_p50_ticks",
        "input → state p50, in tick periods",
        ticks,
        "",
    );
    (ticks > 1.0).then(|| {
        format!(
            "the server fell behind: input → state p50 is {:.1} ms, over the tick period \
             ({:.1} ms) in which a room that keeps up applies an input; its CPU per input \
             and state is that of a backlog (states written several at a time), not \
             comparable with a run that kept up",
            p50_us / 1e3,
            period_us / 1e3,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latencies(ms: &[u64]) -> BTreeMap<String, Histogram> {
        let mut h = Histogram::default();
        for &m in ms {
            h.record_us(m * 1000);
        }
        BTreeMap::from([("input_to_state".to_owned(), h)])
    }

    fn ticks(report: &Report) -> Option<f64> {
        let figure = report.figures.iter();
        let mut figure = figure.filter(|f| f.key == "input_to_state_p50_ticks");
        figure.next().map(|f| f.value)
    }

    #[test]
    fn a_median_within_a_tick_period_kept_up() {
        let mut report = Report::default();
        // 30 Hz: a period of 33.3 ms; inputs applied 15–25 ms after they were sent.
        let note = kept_up(&mut report, &latencies(&[15, 18, 19, 20, 25]), 30);
        assert_eq!(note, None);
        let ticks = ticks(&report).expect("the figure is there");
        assert!((0.5..0.7).contains(&ticks), "{ticks}");
    }

    #[test]
    fn a_median_over_a_tick_period_fell_behind() {
        let mut report = Report::default();
        let note = kept_up(&mut report, &latencies(&[40, 50, 51, 60, 200]), 30);
        let note = note.expect("a note");
        assert!(note.contains("fell behind"), "{note}");
        assert!(note.contains("over the tick period (33.3 ms)"), "{note}");
        assert!(ticks(&report) > Some(1.0));
    }

    #[test]
    fn no_latency_no_verdict() {
        let mut report = Report::default();
        assert_eq!(kept_up(&mut report, &BTreeMap::new(), 30), None);
        assert_eq!(kept_up(&mut report, &latencies(&[]), 30), None);
        assert_eq!(kept_up(&mut report, &latencies(&[20]), 0), None);
        assert_eq!(ticks(&report), None);
    }
}
