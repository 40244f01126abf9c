//! A cluster on one machine, for trying and measuring one: a `redis-server` of its
//! own and a plain round-robin TCP balancer. The demo (`game-demo --cluster 2`) and
//! the load tester (`loadtest cluster --spawn`) use them; production runs its own
//! Redis and load balancer.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};

/// A `redis-server` on a free port of 127.0.0.1, without persistence, stopped when
/// this is dropped.
pub struct LocalRedis {
    port: u16,
    _child: Child,
}

impl LocalRedis {
    /// Starts `redis-server` (it must be on the `PATH`: `apt install redis-server`)
    /// and waits until it accepts connections. Must run inside a tokio runtime.
    pub async fn start() -> Result<LocalRedis, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("a free port for Redis: {e}"))?
            .port();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                format!("cannot start redis-server ({e}): install it (apt install redis-server)")
            })?;
        let stdout = child.stdout.take().ok_or("redis-server stdout missing")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("Ready to accept connections") {
                    return true;
                }
            }
            false
        };
        if !tokio::time::timeout(Duration::from_secs(10), ready)
            .await
            .unwrap_or(false)
        {
            return Err("redis-server did not start".into());
        }
        // Keep reading so that it never blocks on a full pipe.
        tokio::task::spawn_local(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(LocalRedis {
            port,
            _child: child,
        })
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its URL, for [`RedisCluster::new`](super::RedisCluster::new).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// Connections the balancer's listener queues: a reconnection storm arrives at once,
/// and with the system's default (1024) thousands of SYNs were dropped and retried a
/// second later (8,000 sessions cut at once: resume attempts p90 1 s, p50 0.1 s).
const BALANCER_BACKLOG: u32 = 4096;

/// How long the balancer waits after a failed `accept` (out of descriptors, say)
/// before the next: it goes on rather than stop balancing.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// Listens on `addr` (port 0: a free one) and sends each new TCP connection to the
/// next of `nodes` in turn, with no stickiness: the next connection of a client goes
/// to another node. A node that refuses the connection (stopped) is skipped. Runs on
/// the current thread's runtime (a tokio `LocalSet`, as in an actix system) until it
/// stops. Returns the address it listens on.
pub async fn round_robin(addr: SocketAddr, nodes: Vec<SocketAddr>) -> std::io::Result<SocketAddr> {
    if nodes.is_empty() {
        return Err(std::io::Error::other("a balancer needs at least one node"));
    }
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(BALANCER_BACKLOG)?;
    let addr = listener.local_addr()?;
    let nodes = std::rc::Rc::new(nodes);
    tokio::task::spawn_local(async move {
        let mut next = 0usize;
        loop {
            let mut client = match listener.accept().await {
                Ok((client, _)) => client,
                Err(e) => {
                    tracing::warn!(error = %e, "balancer: accept failed; going on");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            };
            let first = next;
            next += 1;
            let nodes = nodes.clone();
            tokio::task::spawn_local(async move {
                for i in 0..nodes.len() {
                    let node = nodes[(first + i) % nodes.len()];
                    let Ok(mut server) = TcpStream::connect(node).await else {
                        tracing::debug!(%node, "balancer: node unreachable; trying the next");
                        continue;
                    };
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    return;
                }
            });
        }
    });
    Ok(addr)
}
