//! `connect`: a connection storm. Clients open sessions at `--connect-rate` per
//! second (over all workers together) and join a namespace; each then makes one
//! echo round trip to show its session works. Measures: how long connecting (TCP,
//! WebSocket upgrade, handshake) and joining took, the rate reached, and the
//! server's CPU for the storm.

use std::time::{Duration, Instant};

use super::{per_second, server_figures};
use crate::args::Flags;
use crate::client_ctx::WorkerCtx;
use crate::control::ScenarioPlan;
use crate::coordinator::{Common, Run};
use crate::report::Report;
use crate::server::NAMESPACE;
use crate::sim;

pub async fn coordinate(flags: &Flags) -> Result<Report, String> {
    let common = Common::from_flags(flags, 1_000, 500.0)?;
    flags.finish()?;
    let mut run = Run::start("connect", &common).await?;
    let before = run.server_sample();
    let storm = Instant::now();
    run.start_workers(&common, ScenarioPlan::Connect).await?;
    run.connect(common.connect_timeout).await;
    let took = storm.elapsed().as_secs_f64();
    let after = run.server_sample();
    let tally = run.finish(0, Duration::from_secs(60)).await;

    let mut report = run.report(&common, &tally);
    let connected = tally.counters.connected as f64;
    report.figure(
        "sessions_per_s",
        "sessions opened and joined per second",
        per_second(connected, took),
        "/s",
    );
    server_figures(&mut report, "storm", before, after);
    if let (Some(b), Some(a)) = (before, after) {
        report.figure(
            "server_cpu_us_per_session",
            "server CPU per session opened",
            per_second((a.cpu_seconds - b.cpu_seconds) * 1e6, connected),
            "µs",
        );
    }
    run.stop().await;
    Ok(report)
}

pub async fn client(ctx: &WorkerCtx, index: usize) {
    let config = sim::config(ctx, index);
    let Some((client, ns)) = sim::open(ctx, index, NAMESPACE, config).await else {
        return;
    };
    ctx.ready();
    ctx.until_finishing().await;
    sim::echo_and_close(ctx, index, &ns, client).await;
}
