//! Samples a server process while a scenario runs: every second its RSS, CPU time and
//! open file descriptors (from `/proc`, when its pid is known) and its sessions (from
//! `/loadtest/metrics`). Used by `soak` and `fuzz` to judge what grows.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::coordinator::{server_metrics, Run};
use crate::proc;

/// How often the server is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// One sample of the server.
#[derive(Debug, Clone, Copy)]
pub struct ServerPoint {
    /// Seconds since sampling started.
    pub t: f64,
    pub cpu_s: f64,
    pub rss_kib: u64,
    pub fds: Option<usize>,
    pub sessions: Option<usize>,
}

/// Samples the server process and its sessions every second, from its start until
/// it is stopped.
pub struct ServerSampler {
    task: actix_rt::task::JoinHandle<()>,
    samples: Rc<RefCell<Vec<ServerPoint>>>,
}

impl ServerSampler {
    pub fn start(run: &Run) -> ServerSampler {
        let samples = Rc::new(RefCell::new(Vec::new()));
        let task = actix_rt::spawn(sample_server(
            run.server_pid(),
            run.url.clone(),
            Instant::now(),
            samples.clone(),
        ));
        ServerSampler { task, samples }
    }

    /// The samples, times in seconds from the start.
    pub fn stop(self) -> Vec<ServerPoint> {
        self.task.abort();
        self.samples.take()
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
    loop {
        every.tick().await;
        let t = start.elapsed().as_secs_f64();
        let sessions = server_metrics(&url).await.map(|m| m.sessions);
        let Some(pid) = &pid else {
            // Without a pid only the sessions are known.
            out.borrow_mut().push(ServerPoint {
                t,
                cpu_s: 0.0,
                rss_kib: 0,
                fds: None,
                sessions,
            });
            continue;
        };
        let Ok(sample) = proc::sample(pid) else {
            return;
        };
        out.borrow_mut().push(ServerPoint {
            t,
            cpu_s: sample.cpu_seconds,
            rss_kib: sample.rss_kib,
            fds: proc::open_fds(pid).ok(),
            sessions,
        });
    }
}
