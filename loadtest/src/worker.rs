//! A worker process: `loadtest worker`, started by the coordinator, runs thousands of
//! simulated clients on one thread and reports what they measured.
//!
//! The Rust client is not `Send` (its WebSocket is awc's), so each worker is one
//! actix system on one thread, and a run scales out over worker processes: that also
//! keeps each process under the file-descriptor limit. Clients are tasks on that
//! thread; they share the worker's [`WorkerCtx`] (the plan, the phase, and the
//! figures: `client_ctx.rs`).
//!
//! The worker reads its [`Plan`] and then [`Command`]s from stdin, opens its clients
//! at the planned rate, says `ready` once all have connected (or failed), follows the
//! commands, and writes its [`Outcome`](crate::control::Outcome) when every client is
//! done. It exits if stdin closes: a worker never outlives its coordinator.

use std::io::{BufRead, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::client_ctx::{Phase, WorkerCtx};
use crate::control::{unix_us, Command, Message, Plan, ScenarioPlan};
use crate::proxy::CutProxy;
use crate::scenarios;

/// How often progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Writes one message line to the coordinator.
fn tell(msg: &Message) {
    let Ok(line) = serde_json::to_string(msg) else {
        return;
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs a worker: reads its plan from stdin, runs its clients, reports.
pub fn run() -> Result<(), String> {
    // One thread reads stdin for the life of the process, so no line is lost between
    // the plan and the commands; the end of stdin ends the worker.
    let (lines_tx, mut lines) = mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
        std::process::exit(1);
    });
    let first = lines.blocking_recv().ok_or("no plan on stdin")?;
    let plan: Plan = serde_json::from_str(&first).map_err(|e| format!("bad plan: {e}"))?;
    actix_rt::System::new().block_on(work(plan, lines))
}

async fn work(plan: Plan, commands: mpsc::UnboundedReceiver<String>) -> Result<(), String> {
    let cuts_per_min = match &plan.scenario {
        // Raw players cut their own connections, or the server cuts them: no proxy.
        ScenarioPlan::Reconnect {
            raw, server_cut, ..
        } => (!raw && !server_cut).then_some(0.0),
        ScenarioPlan::Soak(soak) if soak.cuts_per_min > 0.0 => Some(soak.cuts_per_min),
        _ => None,
    };
    let proxy = match cuts_per_min {
        Some(_) => Some(Rc::new(
            CutProxy::start(&plan.url, proxy_source(plan.worker))
                .map_err(|e| format!("proxy: {e}"))?,
        )),
        None => None,
    };
    let url = proxy.as_ref().map_or_else(|| plan.url.clone(), |p| p.url());
    let ctx = Rc::new(WorkerCtx::new(plan, url));
    if let (Some(proxy), Some(per_min)) = (&proxy, cuts_per_min.filter(|&n| n > 0.0)) {
        actix_rt::spawn(cut_at_random(ctx.clone(), proxy.clone(), per_min));
    }
    actix_rt::spawn(follow(ctx.clone(), commands, proxy.clone()));
    actix_rt::spawn(report_progress(ctx.clone()));
    actix_rt::spawn(open_clients(ctx.clone()));

    let clients = ctx.plan.clients as u64;
    while ctx.counters().settled() < clients {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tell(&Message::Progress {
        counters: ctx.counters(),
    });
    tell(&Message::Ready);
    while ctx.counters().finished < clients {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some((count @ 1.., first)) = proxy.as_ref().map(|p| p.failures()) {
        let first = first.unwrap_or_default();
        ctx.problem(format!(
            "the proxy failed {count} time(s) to take a client or connect it to the server; the first: {first}"
        ));
    }
    let mut outcome = ctx.outcome();
    outcome.cpu_seconds = crate::proc::sample("self").map_or(0.0, |s| s.cpu_seconds);
    tell(&Message::Done {
        outcome: Box::new(outcome),
    });
    Ok(())
}

/// The address worker `worker`'s cutting proxy connects to the server from:
/// 127.0.1.1, 127.0.1.2, ... (the clients' own source addresses are 127.0.0.x).
fn proxy_source(worker: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1 + (worker % 254) as u8))
}

/// Starts the clients at the planned rate, each at its own time from the start (so
/// a slow start does not shift the later ones).
async fn open_clients(ctx: Rc<WorkerCtx>) {
    let start = tokio::time::Instant::now();
    let rate = ctx.plan.connect_rate.max(0.001);
    for index in 0..ctx.plan.clients {
        tokio::time::sleep_until(start + Duration::from_secs_f64(index as f64 / rate)).await;
        actix_rt::spawn(scenarios::client(ctx.clone(), index));
    }
}

/// While the run is in its measured phase, cuts each connection `per_min` times a
/// minute on average: every second, each one with probability `per_min / 60`.
async fn cut_at_random(ctx: Rc<WorkerCtx>, proxy: Rc<CutProxy>, per_min: f64) {
    ctx.until_running().await;
    let share = (per_min / 60.0).min(1.0);
    let mut phase = ctx.phase();
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.tick().await;
    loop {
        tokio::select! {
            _ = every.tick() => proxy.cut_share(share),
            _ = phase.changed() => {
                if *phase.borrow_and_update() != Phase::Running {
                    return;
                }
            }
        }
    }
}

/// Applies the coordinator's commands.
async fn follow(
    ctx: Rc<WorkerCtx>,
    mut commands: mpsc::UnboundedReceiver<String>,
    proxy: Option<Rc<CutProxy>>,
) {
    while let Some(line) = commands.recv().await {
        let command = match serde_json::from_str::<Command>(&line) {
            Ok(command) => command,
            Err(e) => {
                tracing::warn!(%line, error = %e, "unknown command");
                continue;
            }
        };
        match command {
            Command::Start => {
                ctx.set_phase(Phase::Running);
            }
            Command::Cut { at_unix_us } => {
                let wait = Duration::from_micros(at_unix_us.saturating_sub(unix_us()));
                tokio::time::sleep(wait).await;
                ctx.cut_at_us.set(Some(unix_us()));
                match (&proxy, &ctx.plan.scenario) {
                    (Some(proxy), _) => proxy.cut(),
                    // The coordinator has the server cut them at this instant.
                    (
                        None,
                        ScenarioPlan::Reconnect {
                            server_cut: true, ..
                        },
                    ) => {}
                    (None, ScenarioPlan::Reconnect { raw: true, .. }) => ctx.cut_players(),
                    (None, _) => ctx.problem("cut asked for, but this worker has no proxy".into()),
                }
            }
            Command::Finish { expected } => {
                ctx.set_phase(Phase::Finishing { expected });
            }
        }
    }
}

/// Reports the counters until the worker ends.
async fn report_progress(ctx: Rc<WorkerCtx>) {
    loop {
        tokio::time::sleep(PROGRESS_EVERY).await;
        tell(&Message::Progress {
            counters: ctx.counters(),
        });
    }
}
