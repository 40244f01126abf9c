//! `idle`: hold N connections for `--hold` seconds while the server pings each every
//! `--ping-ms`. Measures what an idle connection costs the server: resident memory
//! per connection (the server's RSS with every client connected, less its RSS
//! before the first one), and CPU over the hold (heartbeats). Every connection must
//! stay up the whole time and answer an echo at the end.

use std::time::Duration;

use volley::client::ConnectionEvent;

use super::server_figures;
use crate::args::Flags;
use crate::client_ctx::WorkerCtx;
use crate::control::ScenarioPlan;
use crate::coordinator::{Common, Run};
use crate::report::Report;
use crate::server::NAMESPACE;
use crate::sim;

pub async fn coordinate(flags: &Flags) -> Result<Report, String> {
    let mut common = Common::from_flags(flags, 1_000, 1_000.0)?;
    let hold = flags.positive("hold", 10.0)?;
    let ping_ms: u64 = flags.get("ping-ms", 2_000)?;
    flags.finish()?;
    // A dead client is then found within two intervals, well inside a short hold.
    common.serve_flag("ping-ms", ping_ms);
    common.serve_flag("ping-timeout-ms", ping_ms);

    let mut run = Run::start("idle", &common).await?;
    // The server's memory before any client: its threads and buffers at rest.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = run.server_sample();
    run.start_workers(&common, ScenarioPlan::Idle).await?;
    run.connect(common.connect_timeout).await;
    let held_from = run.server_sample();
    run.hold("holding", Duration::from_secs_f64(hold), &|_| false)
        .await;
    let held_to = run.server_sample();
    let metrics = run.server_metrics().await;
    let tally = run.finish(0, Duration::from_secs(60)).await;

    let mut report = run.report(&common, &tally);
    report.setting("hold_s", hold);
    report.setting("ping_ms", ping_ms);
    let connected = tally.counters.connected;
    if let (Some(base), Some(end)) = (baseline, held_to) {
        report.figure(
            "server_rss_baseline_kib",
            "server RSS before clients",
            base.rss_kib as f64,
            "KiB",
        );
        report.figure(
            "server_rss_held_kib",
            "server RSS holding the clients",
            end.rss_kib as f64,
            "KiB",
        );
        if connected > 0 {
            let per = end.rss_kib.saturating_sub(base.rss_kib) as f64 / connected as f64;
            report.figure(
                "server_rss_per_connection_kib",
                "server RSS per connection",
                per,
                "KiB",
            );
        }
    }
    server_figures(&mut report, "hold", held_from, held_to);
    if let Some(m) = metrics {
        report.figure(
            "server_sessions",
            "server sessions at the end of the hold",
            m.sessions as f64,
            "",
        );
        if m.sessions as u64 != connected {
            report.failures.push(format!(
                "the server had {} sessions for {connected} connected clients",
                m.sessions
            ));
        }
    }
    if tally.counters.drops > 0 {
        report.failures.push(format!(
            "{} connection(s) dropped during the hold",
            tally.counters.drops
        ));
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
    // Nothing to do but answer pings (the client does) and notice a drop.
    loop {
        tokio::select! {
            _ = ctx.until_finishing() => break,
            event = client.next_connection_event() => match event {
                Some(ConnectionEvent::Reconnecting { attempt: 1, .. }) => {
                    ctx.count(|c| c.drops += 1);
                    ctx.problem(format!("{}: connection dropped while idle", sim::who(ctx, index)));
                }
                Some(ConnectionEvent::Closed { reason }) | Some(ConnectionEvent::SessionLost { reason, .. }) => {
                    ctx.problem(format!("{}: session ended while idle: {reason}", sim::who(ctx, index)));
                    return;
                }
                Some(_) => {}
                None => return,
            },
        }
    }
    sim::echo_and_close(ctx, index, &ns, client).await;
}
