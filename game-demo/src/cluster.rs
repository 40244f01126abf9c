//! `--cluster N`: the demo on N nodes sharing one Redis, behind a round-robin
//! balancer of its own (no stickiness), so that two browser windows on different
//! nodes play in one room, and a window whose node is stopped reconnects to another.
//!
//! This process starts `redis-server` (unless `--redis URL` names one), then N
//! copies of itself as child processes (`--redis URL --addr 127.0.0.1:0`), then the
//! balancer on `--addr`. Stopping it stops them all; stopping one node (its pid is
//! printed) sends its windows to the others (with new sessions, until a stopping
//! node hands its sessions over).

use std::io::Write;
use std::net::SocketAddr;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use volley::cluster::testbed::{round_robin, LocalRedis};

use crate::Args;

/// Runs the nodes and the balancer until this process is stopped.
pub async fn run(args: &Args, nodes: usize) -> std::io::Result<()> {
    let fail = |why: String| std::io::Error::other(format!("game-demo --cluster: {why}"));
    let (redis, url) = match &args.redis {
        Some(url) => (None, url.clone()),
        None => {
            let redis = LocalRedis::start().await.map_err(|why| {
                fail(format!(
                    "{why}; or give --redis redis://HOST:PORT (Redis 7 or later)"
                ))
            })?;
            let url = redis.url();
            (Some(redis), url)
        }
    };
    let token = args.admin_token.clone().unwrap_or_else(crate::random_token);
    let mut children = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..nodes {
        let (child, addr) = spawn_node(&url, &token, args.bots).await.map_err(fail)?;
        children.push(child);
        addrs.push(addr);
    }
    let listen: SocketAddr =
        (args.addr.parse()).map_err(|e| fail(format!("--addr {}: {e}", args.addr)))?;
    let addr = round_robin(listen, addrs.clone()).await?;
    let mut banner = format!(
        "Orb Arena is running: http://{addr}/  ({nodes} nodes behind a round-robin balancer)\n\
         Admin dashboard:      http://{addr}/admin.html  (admin token: {token})\n\
         Redis:                {url}{}\n",
        if redis.is_some() {
            " (started for this run)"
        } else {
            ""
        }
    );
    for (child, node) in children.iter().zip(&addrs) {
        let pid = child.id().map_or("?".to_owned(), |p| p.to_string());
        banner.push_str(&format!(
            "Node:                 http://{node}/  (pid {pid})\n"
        ));
    }
    banner.push_str("Stop a node (kill PID): its windows reconnect to another node.\n");
    let _ = std::io::stdout()
        .write_all(banner.as_bytes())
        .and_then(|()| std::io::stdout().flush());
    stopped().await;
    // Dropping the handles kills the nodes and Redis.
    drop((children, redis));
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn stopped() {
    use actix_rt::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = actix_rt::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = actix_rt::signal::ctrl_c().await;
        }
    }
}

/// Starts one node (this binary with `--redis`) and reads its address from its
/// banner.
async fn spawn_node(redis: &str, token: &str, bots: usize) -> Result<(Child, SocketAddr), String> {
    let exe = std::env::current_exe().map_err(|e| format!("this program's path: {e}"))?;
    let mut child = Command::new(exe)
        .args(["--redis", redis, "--addr", "127.0.0.1:0"])
        .args(["--admin-token", token, "--bots", &bots.to_string()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting a node: {e}"))?;
    let stdout = child.stdout.take().ok_or("a node's stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next_line().await.ok().flatten().unwrap_or_default();
    // Keep its stdout drained while it runs.
    actix_rt::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let addr = first
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .and_then(|w| w.trim_end_matches('/').parse().ok())
        .ok_or_else(|| format!("a node did not say where it listens: {first:?}"))?;
    Ok((child, addr))
}
