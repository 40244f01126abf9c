//! What every simulated client does the same way: where its connection starts from,
//! its client settings, opening its session (timed, failures counted), waiting for
//! an ack, and closing.
//!
//! A simulated client is a task on its worker's thread that owns one
//! [`volley::client::Client`]; the scenario files say what it does once connected.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use volley::client::{Backoff, Client, ClientConfig, NamespaceClient, Transport};

use crate::client_ctx::WorkerCtx;
use crate::control::unix_us;
use crate::rawplayer::RawPlayer;
use crate::seq::SeqCheck;

/// How long a client waits for an acknowledgement before calling it a problem.
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// How long closing a session may take before the client just drops it.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// The source address of client `index` of the worker: clients take 127.0.0.1,
/// 127.0.0.2, ... in turn, so that each address's ephemeral ports (about 28,000 on
/// this machine) serve only its share of the connections.
pub fn source_address(ctx: &WorkerCtx, index: usize) -> Option<IpAddr> {
    let sources = ctx.plan.sources.min(254);
    if sources == 0 {
        return None;
    }
    let n = (ctx.plan.first_client + index) % sources;
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + n as u8)))
}

/// The client settings of client `index`.
pub fn config(ctx: &WorkerCtx, index: usize) -> ClientConfig {
    let transport = match ctx.plan.transport.as_str() {
        "polling" => Transport::Polling,
        _ => Transport::WebSocket,
    };
    ClientConfig {
        transport,
        local_address: source_address(ctx, index),
        ..ClientConfig::default()
    }
}

/// The settings of client `index` in a scenario that cuts connections: it
/// reconnects after `backoff_ms` (± 50%), doubling up to at least 5 s.
pub fn config_with_backoff(ctx: &WorkerCtx, index: usize, backoff_ms: u64) -> ClientConfig {
    let initial = Duration::from_millis(backoff_ms);
    ClientConfig {
        backoff: Backoff {
            initial,
            max: initial.max(Duration::from_secs(5)),
            ..Backoff::default()
        },
        ..config(ctx, index)
    }
}

/// A name for client `index` in problem reports.
pub fn who(ctx: &WorkerCtx, index: usize) -> String {
    format!("client {}", ctx.plan.first_client + index)
}

/// Opens a session and joins namespace `ns`, timing both (`connect`: connection and
/// handshake; `join`: the namespace round trip). On failure the client is counted
/// as failed.
pub async fn open(
    ctx: &WorkerCtx,
    index: usize,
    ns: &str,
    config: ClientConfig,
) -> Option<(Client, NamespaceClient)> {
    let started = Instant::now();
    let client = match Client::connect_with(&ctx.url, config).await {
        Ok(client) => client,
        Err(e) => {
            ctx.fail(format!("{}: {e}", who(ctx, index)));
            return None;
        }
    };
    ctx.record("connect", started.elapsed());
    let joining = Instant::now();
    match client.join(ns, &()).await {
        Ok(joined) => {
            ctx.record("join", joining.elapsed());
            Some((client, joined))
        }
        Err(e) => {
            ctx.fail(format!("{}: could not join {ns}: {e}", who(ctx, index)));
            None
        }
    }
}

/// [`open`] for a lean player on a raw WebSocket (`--player raw`), from the client's
/// source address, [`RawPlayer::resumable`] if asked (before its first reliable
/// frame, the join): the same `connect` and `join` timings, the same failure count.
pub async fn open_raw(
    ctx: &WorkerCtx,
    index: usize,
    ns: &str,
    resumable: bool,
) -> Option<RawPlayer> {
    let started = Instant::now();
    let mut player = match RawPlayer::connect(&ctx.url, source_address(ctx, index)).await {
        Ok(player) if resumable => player.resumable(),
        Ok(player) => player,
        Err(e) => {
            ctx.fail(format!("{}: {e}", who(ctx, index)));
            return None;
        }
    };
    ctx.record("connect", started.elapsed());
    let joining = Instant::now();
    if let Err(e) = player.join(ns).await {
        ctx.fail(format!("{}: {e}", who(ctx, index)));
        return None;
    }
    ctx.record("join", joining.elapsed());
    Some(player)
}

/// Sends `event` with an ack and waits for the answer; a missing answer is counted
/// as a problem and gives `None`.
pub async fn ask<T: Serialize, R: DeserializeOwned>(
    ctx: &WorkerCtx,
    index: usize,
    ns: &NamespaceClient,
    event: &str,
    payload: &T,
) -> Option<R> {
    match ns.emit_with_ack(event, payload, ACK_WAIT).await {
        Ok(answer) => Some(answer),
        Err(e) => {
            ctx.problem(format!(
                "{}: '{event}' not acknowledged: {e}",
                who(ctx, index)
            ));
            None
        }
    }
}

/// The last thing of a client that only had to stay connected: one echo round trip
/// (timed as `echo`) to show its session still works, then closing it.
pub async fn echo_and_close(ctx: &WorkerCtx, index: usize, ns: &NamespaceClient, client: Client) {
    let asked = Instant::now();
    if ask::<_, u64>(ctx, index, ns, "echo", &1u64).await.is_some() {
        ctx.record("echo", asked.elapsed());
    }
    close(client).await;
}

/// Ends the session politely, but without waiting long for it.
pub async fn close(client: Client) {
    let _ = tokio::time::timeout(CLOSE_WAIT, client.close()).await;
}

/// Receives a published numbered stream (fan-out, chat) as stream `stream`: `next`
/// gives the next message's number and send time (`Ok(None)` for anything else; an
/// error ends the client as a problem). Each message's delivery latency is recorded.
/// It ends once the run finishes and every published message arrived, or `drain`
/// after the run finished.
pub async fn receive_numbered(
    ctx: &WorkerCtx,
    index: usize,
    stream: &str,
    drain: Duration,
    mut next: impl AsyncFnMut() -> Result<Option<(u64, u64)>, String>,
) {
    let mut check = SeqCheck::default();
    let mut expected: Option<u64> = None;
    let mut drain_until = tokio::time::Instant::now();
    loop {
        if expected.is_some_and(|n| check.has_all(n)) {
            break;
        }
        tokio::select! {
            message = next() => match message {
                Ok(Some((seq, sent_us))) => {
                    let now = unix_us();
                    check.observe(seq);
                    ctx.record_us("delivery", now.saturating_sub(sent_us));
                    ctx.delivered(now);
                }
                Ok(None) => {}
                Err(e) => {
                    ctx.problem(format!("{}: {e}", who(ctx, index)));
                    break;
                }
            },
            n = ctx.until_finishing(), if expected.is_none() => {
                expected = Some(n);
                drain_until = tokio::time::Instant::now() + drain;
            }
            _ = tokio::time::sleep_until(drain_until), if expected.is_some() => break,
        }
    }
    // A client cut off early still learns how many it should have had.
    let expected = match expected {
        Some(n) => n,
        None => ctx.until_finishing().await,
    };
    ctx.stream(stream, expected, check.counts());
}
