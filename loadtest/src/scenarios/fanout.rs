//! `fanout`: N clients in one room, and a publisher (a client in the coordinator)
//! that sends `--rate` numbered messages a second for `--duration` seconds; the
//! server broadcasts each one to the room, encoded once. Each receiver checks the
//! numbers (none lost, none twice) and measures delivery latency from the
//! publisher's send time. Measures: deliveries per second, server CPU per delivery,
//! delivery latency. `--protocol socketio`: the receivers speak Socket.IO to the same
//! server's `/socket.io/` endpoint (the publisher stays a native client).

use std::time::Duration;

use serde_json::json;
use volley::client::{Client, ClientError, Emitter};

use super::{per_second, server_figures, thread_figures};
use crate::args::Flags;
use crate::chat_wire::Dialect;
use crate::client_ctx::WorkerCtx;
use crate::control::{unix_us, ScenarioPlan};
use crate::coordinator::{Common, Run};
use crate::report::Report;
use crate::server::{Publish, FANOUT_ROOM, NAMESPACE};
use crate::sim;
use crate::sioclient::SioClient;

/// How long receivers wait for the last messages after the publisher stopped.
const DRAIN: Duration = Duration::from_secs(20);

/// The publisher's settings.
#[derive(Debug, Clone, Copy)]
pub struct Publishing {
    /// Messages a second.
    pub rate: f64,
    /// Seconds of publishing.
    pub duration: f64,
    /// Bytes of padding per message.
    pub size: usize,
    /// What the receivers speak (`--protocol volley|socketio`).
    pub dialect: Dialect,
}

impl Publishing {
    pub fn from_flags(flags: &Flags) -> Result<Publishing, String> {
        let protocol = flags.get("protocol", "volley".to_owned())?;
        let dialect = match protocol.as_str() {
            "volley" => Dialect::Volley,
            "socketio" => Dialect::SocketIo,
            "socketio-upgrade" => Dialect::SocketIoUpgrade,
            other => {
                return Err(format!(
                    "--protocol: '{other}' is not volley, socketio or socketio-upgrade"
                ))
            }
        };
        Ok(Publishing {
            rate: flags.positive("rate", 20.0)?,
            duration: flags.positive("duration", 10.0)?,
            size: flags.get("size", 100)?,
            dialect,
        })
    }
}

pub async fn coordinate(flags: &Flags) -> Result<Report, String> {
    let common = Common::from_flags(flags, 500, 500.0)?;
    let publishing = Publishing::from_flags(flags)?;
    flags.finish()?;
    run(&common, publishing).await
}

/// Runs the fan-out against `common`'s server (the cluster scenario runs it against
/// a balancer in front of several).
pub async fn run(common: &Common, publishing: Publishing) -> Result<Report, String> {
    let Publishing {
        rate,
        duration,
        size,
        dialect,
    } = publishing;
    let mut run = Run::start("fanout", common).await?;
    run.start_workers(common, ScenarioPlan::Fanout { dialect })
        .await?;
    run.connect(common.connect_timeout).await;

    let publisher = Client::connect(&run.url)
        .await
        .map_err(|e| format!("publisher: {e}"))?;
    let channel = publisher
        .join(NAMESPACE, &())
        .await
        .map_err(|e| format!("publisher: {e}"))?;
    let (cpu_from, threads_from) = (run.server_sample(), run.server_threads());
    let first_publish_us = unix_us();
    let publishing = actix_rt::spawn(publish(
        channel.emitter(),
        rate,
        Duration::from_secs_f64(duration),
        "x".repeat(size),
    ));
    run.hold("publishing", Duration::from_secs_f64(duration), &|_| false)
        .await;
    let published = publishing.await.map_err(|e| format!("publisher: {e}"))?;
    // Events of one session are handled in order: once the echo is answered, every
    // message before it has been broadcast.
    let flushed: Result<u64, _> = channel.emit_with_ack("echo", &0u64, sim::ACK_WAIT).await;
    if let Err(e) = flushed {
        run.failures
            .push(format!("publisher: the server did not answer: {e}"));
    }
    let tally = run.finish(published, DRAIN + Duration::from_secs(30)).await;
    let (cpu_to, threads_to) = (run.server_sample(), run.server_threads());
    publisher.close().await;

    let mut report = run.report(common, &tally);
    report.setting("rate", rate);
    report.setting("duration_s", duration);
    report.setting("size", size);
    report.setting(
        "protocol",
        match dialect {
            Dialect::Volley => "volley",
            Dialect::SocketIo => "socketio",
            Dialect::SocketIoUpgrade => "socketio-upgrade",
        },
    );
    report.figure("published", "messages published", published as f64, "");
    report.figure(
        "publish_rate_per_s",
        "publish rate reached",
        per_second(published as f64, duration),
        "/s",
    );
    let delivered = tally.counters.delivered as f64;
    report.figure("deliveries", "deliveries", delivered, "");
    let window = tally.last_delivery_us.saturating_sub(first_publish_us) as f64 / 1e6;
    report.figure(
        "deliveries_per_s",
        "deliveries per second",
        per_second(delivered, window),
        "/s",
    );
    server_figures(&mut report, "publishing and delivery", cpu_from, cpu_to);
    thread_figures(&mut report, threads_from, threads_to);
    if let (Some(from), Some(to)) = (cpu_from, cpu_to) {
        report.figure(
            "server_cpu_us_per_delivery",
            "server CPU per delivery",
            per_second((to.cpu_seconds - from.cpu_seconds) * 1e6, delivered),
            "µs",
        );
    }
    run.stop().await;
    Ok(report)
}

/// Publishes numbered messages on an absolute schedule (message `n` at `n / rate`),
/// for `duration`; returns how many. A full send buffer delays a message, never
/// skips its number.
async fn publish(emitter: Emitter, rate: f64, duration: Duration, pad: String) -> u64 {
    let start = tokio::time::Instant::now();
    let mut seq = 0u64;
    loop {
        let at = Duration::from_secs_f64(seq as f64 / rate);
        if at >= duration {
            return seq;
        }
        tokio::time::sleep_until(start + at).await;
        let message = Publish {
            seq,
            sent_us: unix_us(),
            pad: pad.clone(),
        };
        loop {
            match emitter.emit("publish", &message) {
                Ok(()) => break,
                Err(ClientError::SendBufferFull) => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "publisher stopped");
                    return seq;
                }
            }
        }
        seq += 1;
    }
}

pub async fn client(ctx: &WorkerCtx, index: usize, dialect: Dialect) {
    if let Some(upgrade) = dialect.socketio() {
        return socketio_client(ctx, index, upgrade).await;
    }
    let config = sim::config(ctx, index);
    let Some((client, mut ns)) = sim::open(ctx, index, NAMESPACE, config).await else {
        return;
    };
    if sim::ask::<_, String>(ctx, index, &ns, "join_room", &FANOUT_ROOM)
        .await
        .is_none()
    {
        ctx.fail(format!("{}: could not join the room", sim::who(ctx, index)));
        return;
    }
    ctx.ready();
    sim::receive_numbered(ctx, index, "fanout", DRAIN, async || {
        let event = ns.next_event().await.ok_or("namespace closed")?;
        if event.name != "pub" {
            return Ok(None);
        }
        match event.decode::<Publish>() {
            Ok(message) => Ok(Some((message.seq, message.sent_us))),
            Err(_) => {
                ctx.problem(format!("{}: undecodable message", sim::who(ctx, index)));
                Ok(None)
            }
        }
    })
    .await;
    sim::close(client).await;
}

/// A receiver speaking Socket.IO to the server's `/socket.io/` endpoint: the same
/// room, the same numbered messages, as Socket.IO events (`pub`, then the offset).
async fn socketio_client(ctx: &WorkerCtx, index: usize, upgrade: bool) {
    let base = ctx.url.trim_end_matches("/volley");
    let local = sim::source_address(ctx, index);
    let started = std::time::Instant::now();
    let mut sio = match SioClient::connect(base, NAMESPACE, &json!({}), local, upgrade).await {
        Ok(sio) => sio,
        Err(e) => return ctx.fail(format!("{}: {e}", sim::who(ctx, index))),
    };
    ctx.record("connect", started.elapsed());
    let joined = tokio::time::timeout(
        sim::ACK_WAIT,
        sio.emit_with_ack("join_room", &[json!(FANOUT_ROOM)]),
    )
    .await;
    if !matches!(joined, Ok(Ok(_))) {
        return ctx.fail(format!("{}: could not join the room", sim::who(ctx, index)));
    }
    ctx.ready();
    sim::receive_numbered(ctx, index, "fanout", DRAIN, async || {
        let (name, args) = sio.next_event().await?;
        if name != "pub" {
            return Ok(None);
        }
        match args.first().cloned().map(serde_json::from_value::<Publish>) {
            Some(Ok(message)) => Ok(Some((message.seq, message.sent_us))),
            _ => {
                ctx.problem(format!("{}: undecodable message", sim::who(ctx, index)));
                Ok(None)
            }
        }
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(2), sio.close()).await;
}
