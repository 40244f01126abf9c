//! The scenarios, one file each. A file holds both halves of its scenario: what one
//! simulated client does (in a worker) and how the coordinator drives the run and
//! turns the tally into figures.

pub mod chat;
#[cfg(feature = "cluster")]
mod cluster;
mod compare;
mod connect;
mod fanout;
pub mod floor;
mod fuzz;
mod idle;
mod reconnect;
mod rooms;
mod soak;

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::args::Flags;
use crate::client_ctx::WorkerCtx;
use crate::control::{Outcome, Player, ScenarioPlan};
use crate::proc::ProcSample;
use crate::report::Report;

/// The scenario names, as given on the command line.
pub const NAMES: [&str; 10] = [
    "connect",
    "idle",
    "fanout",
    "rooms",
    "reconnect",
    "soak",
    "fuzz",
    "floor",
    "compare",
    "cluster",
];

/// Runs scenario `name` as the coordinator.
pub async fn coordinate(name: &str, flags: &Flags) -> Result<Report, String> {
    match name {
        "connect" => connect::coordinate(flags).await,
        "idle" => idle::coordinate(flags).await,
        "fanout" => fanout::coordinate(flags).await,
        "rooms" => rooms::coordinate(flags).await,
        "reconnect" => reconnect::coordinate(flags).await,
        "soak" => soak::coordinate(flags).await,
        "fuzz" => fuzz::coordinate(flags).await,
        "floor" => floor::coordinate(flags).await,
        "compare" => compare::coordinate(flags).await,
        #[cfg(feature = "cluster")]
        "cluster" => cluster::coordinate(flags).await,
        #[cfg(not(feature = "cluster"))]
        "cluster" => Err("build the load tester with the cluster: \
                          cargo run --release -p loadtest -- cluster --spawn (default features)"
            .into()),
        other => Err(format!("unknown scenario '{other}'")),
    }
}

/// Runs client `index` of a worker, as its plan says.
pub async fn client(ctx: Rc<WorkerCtx>, index: usize) {
    let _finished = ctx.finished_on_drop();
    match ctx.plan.scenario.clone() {
        ScenarioPlan::Connect => connect::client(&ctx, index).await,
        ScenarioPlan::Idle => idle::client(&ctx, index).await,
        ScenarioPlan::Fanout { dialect } => fanout::client(&ctx, index, dialect).await,
        ScenarioPlan::Rooms {
            room_size,
            input_hz,
            player,
        } => match player {
            Player::Client => rooms::client(&ctx, index, room_size, input_hz).await,
            Player::Raw => rooms::raw_client(&ctx, index, room_size, input_hz).await,
            Player::SocketIo => rooms::sio_client(&ctx, index, room_size, input_hz, false).await,
            Player::SocketIoUpgrade => {
                rooms::sio_client(&ctx, index, room_size, input_hz, true).await
            }
        },
        ScenarioPlan::Reconnect {
            msg_rate,
            stream_limit_s,
            backoff_ms,
            raw: false,
            ..
        } => reconnect::client(&ctx, index, msg_rate, stream_limit_s, backoff_ms).await,
        ScenarioPlan::Reconnect {
            msg_rate,
            stream_limit_s,
            backoff_ms,
            raw: true,
            ..
        } => reconnect::raw_client(&ctx, index, msg_rate, stream_limit_s, backoff_ms).await,
        ScenarioPlan::Soak(plan) => soak::client(&ctx, index, &plan).await,
        ScenarioPlan::Chat { dialect } => chat::client(&ctx, index, dialect).await,
    }
}

/// `--player`: `client` (the framework's Rust client, the default) or `raw` (the
/// load tester's lean player on a raw WebSocket, `rawplayer.rs`): `true` for raw.
pub fn raw_player(flags: &Flags) -> Result<bool, String> {
    match flags.get::<String>("player", "client".into())?.as_str() {
        "client" => Ok(false),
        "raw" => Ok(true),
        other => Err(format!("--player {other}: client or raw")),
    }
}

/// `--player` of the game rooms: `client` (the default), `raw`, `socketio` (a
/// Socket.IO client on the server's `/socket.io/`) or `socketio-upgrade` (the same,
/// opening with long polling and upgrading).
pub fn room_player(flags: &Flags) -> Result<Player, String> {
    match flags.get::<String>("player", "client".into())?.as_str() {
        "client" => Ok(Player::Client),
        "raw" => Ok(Player::Raw),
        "socketio" => Ok(Player::SocketIo),
        "socketio-upgrade" => Ok(Player::SocketIoUpgrade),
        other => Err(format!(
            "--player {other}: client, raw, socketio or socketio-upgrade"
        )),
    }
}

/// Adds the server's CPU time over a window (`from` → `to`) and its peak memory.
fn server_figures(
    report: &mut Report,
    window: &str,
    from: Option<ProcSample>,
    to: Option<ProcSample>,
) {
    match (from, to) {
        (Some(from), Some(to)) => {
            let cpu = to.cpu_seconds - from.cpu_seconds;
            report.figure("server_cpu_s", &format!("server CPU ({window})"), cpu, "s");
            report.figure(
                "server_peak_rss_kib",
                "server peak RSS",
                to.peak_rss_kib as f64,
                "KiB",
            );
        }
        _ => report.notes.push(
            "server CPU and memory not measured: use --spawn, or --server-pid with --url".into(),
        ),
    }
}

/// The server's CPU over a window by kind of thread (`server CPU on volley-io
/// threads`, ...), from two readings of [`Run::server_threads`](crate::coordinator::Run::server_threads);
/// kinds that took under 10 ms are left out.
fn thread_figures(
    report: &mut Report,
    from: Option<BTreeMap<String, f64>>,
    to: Option<BTreeMap<String, f64>>,
) {
    let (Some(from), Some(to)) = (from, to) else {
        return;
    };
    for (group, cpu) in &to {
        let used = cpu - from.get(group).copied().unwrap_or(0.0);
        if used >= 0.01 {
            let key = format!(
                "server_cpu_s_{}",
                group.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
            );
            report.figure(&key, &format!("server CPU on {group} threads"), used, "s");
        }
    }
}

/// `count / seconds`, or 0 for an empty window.
fn per_second(count: f64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count / seconds
    } else {
        0.0
    }
}

/// The failed reconnection attempts of a run that cuts connections: how many, and
/// what went wrong (most frequent first) as a note.
pub fn failed_attempts(report: &mut Report, tally: &Outcome) {
    report.figure(
        "failed_attempts",
        "reconnection attempts that failed",
        tally.counters.failed_attempts as f64,
        "",
    );
    report.notes.extend(tally.attempt_errors_line());
}
