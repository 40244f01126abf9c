//! Samples a server process while a scenario runs: every second its RSS, CPU time and
//! open file descriptors (from `/proc`, when its pid is known), and its sessions and
//! tick lateness (from `/loadtest/metrics`, when it has them). Every
//! [`Run`](crate::coordinator::Run) keeps one from its start: `soak` and `fuzz` judge
//! what grows from it, and the report plots it (`--html`).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::proc;
use crate::server::{ServerMetrics, CUT_PATH, METRICS_PATH};

/// How often the server is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// One sample of the server.
#[derive(Debug, Clone, Copy)]
pub struct ServerPoint {
    /// Seconds since sampling started (or since the instant asked for, see
    /// [`ServerSampler::points_since`]).
    pub t: f64,
    pub cpu_s: f64,
    pub rss_kib: u64,
    pub fds: Option<usize>,
    pub sessions: Option<usize>,
    /// The worst game room's p99 tick lateness since the rooms started, with rooms.
    pub lateness_p99_us: Option<u64>,
}

/// Samples the server process and its metrics every second, from its start until
/// it is stopped.
pub struct ServerSampler {
    task: actix_rt::task::JoinHandle<()>,
    start: Instant,
    samples: Rc<RefCell<Vec<ServerPoint>>>,
}

impl ServerSampler {
    /// Samples process `pid` (if known) and the metrics of the server at `url`.
    pub fn start(pid: Option<u32>, url: String) -> ServerSampler {
        let samples = Rc::new(RefCell::new(Vec::new()));
        let start = Instant::now();
        let task = actix_rt::spawn(sample_server(pid, url, start, samples.clone()));
        ServerSampler {
            task,
            start,
            samples,
        }
    }

    /// The samples taken from `from` on, times in seconds from `from`.
    pub fn points_since(&self, from: Instant) -> Vec<ServerPoint> {
        let offset = from.saturating_duration_since(self.start).as_secs_f64();
        self.samples
            .borrow()
            .iter()
            .filter(|p| p.t >= offset)
            .map(|p| ServerPoint {
                t: p.t - offset,
                ..*p
            })
            .collect()
    }

    /// Stops sampling.
    pub fn stop(&self) {
        self.task.abort();
    }
}

/// Samples the server every second until aborted.
async fn sample_server(
    pid: Option<u32>,
    url: String,
    start: Instant,
    out: Rc<RefCell<Vec<ServerPoint>>>,
) {
    let pid = pid.map(|p| p.to_string());
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A server without `/loadtest/metrics` (a peer in `compare`) is asked once.
    let mut has_metrics = true;
    let mut first = true;
    loop {
        every.tick().await;
        let t = start.elapsed().as_secs_f64();
        let metrics = if has_metrics {
            server_metrics(&url).await
        } else {
            None
        };
        if first {
            has_metrics = metrics.is_some();
            first = false;
        }
        let sessions = metrics.as_ref().map(|m| m.sessions);
        let lateness_p99_us = metrics
            .as_ref()
            .filter(|m| m.rooms > 0)
            .map(|m| m.lateness_p99_us_worst);
        let mut point = ServerPoint {
            t,
            cpu_s: 0.0,
            rss_kib: 0,
            fds: None,
            sessions,
            lateness_p99_us,
        };
        // Without a pid only the metrics are known.
        if let Some(pid) = &pid {
            let Ok(sample) = proc::sample(pid) else {
                return;
            };
            point.cpu_s = sample.cpu_seconds;
            point.rss_kib = sample.rss_kib;
            point.fds = proc::open_fds(pid).ok();
        }
        out.borrow_mut().push(point);
    }
}

/// The metrics of the server at WebSocket URL `url` (`loadtest serve` has them;
/// another server may not).
pub async fn server_metrics(url: &str) -> Option<ServerMetrics> {
    let host = url.strip_prefix("ws://")?.split('/').next()?.to_owned();
    let body = tokio::time::timeout(Duration::from_secs(10), http(&host, "GET", METRICS_PATH))
        .await
        .ok()?
        .map_err(|e| tracing::warn!(error = %e, "server metrics unavailable"))
        .ok()?;
    serde_json::from_str(&body).ok()
}

/// Asks `loadtest serve` at `url` (its `ws://` URL) to drop every connection, as a
/// network failure would (`POST /loadtest/cut`); how many it dropped.
pub async fn cut_server_connections(url: &str) -> Result<u64, String> {
    let host = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| format!("not a ws:// URL: {url}"))?;
    let body = http(host, "POST", CUT_PATH).await?;
    body.trim()
        .parse()
        .map_err(|e| format!("the cut answered {body:?}: {e}"))
}

/// A minimal HTTP/1.1 request without a body (the sampler needs nothing more).
async fn http(host: &str, method: &str, path: &str) -> Result<String, String> {
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP head")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or_default().to_owned());
    }
    Ok(body.to_owned())
}
