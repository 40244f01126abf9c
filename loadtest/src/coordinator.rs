//! The coordinator: the process the user starts. It spawns the server (with
//! `--spawn`) and the worker processes, drives the scenario's phases through the
//! workers' stdin, shows live progress from their reports, and adds up their
//! outcomes into the report. It runs no simulated clients itself (the fan-out
//! publisher excepted), so its own work never disturbs the figures.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command as Process};
use tokio::sync::mpsc;

use crate::args::Flags;
use crate::control::{Command, Counters, Message, Outcome, Plan, ScenarioPlan};
use crate::proc::{self, ProcSample};
use crate::progress::{short, Progress};
use crate::report::Report;
use crate::sampler::{server_metrics, ServerSampler};
use crate::server::ServerMetrics;
use crate::timeline;

/// Clients one worker runs at most by default: well under the 20,000 file
/// descriptors a process may have.
const CLIENTS_PER_WORKER: usize = 4_000;
/// The same behind a worker's cutting proxy (`reconnect`, `soak`): a proxied client
/// holds three descriptors (its socket, and the proxy's two), and in a reconnection
/// storm a client's new connection opens before its old ones are closed, and a
/// timed-out attempt leaves the proxy's until the server lets go. At 3,800 clients
/// a worker (11,400 descriptors steady) ran out during storms of 19,000 sessions in
/// about half the runs; its proxy then stalled, attempts timed out, and the retries
/// fed the storm (a minute without all resumed). 2,500 (7,500 steady) did not, in
/// five runs.
const PROXIED_CLIENTS_PER_WORKER: usize = 2_500;
/// How often the progress line is redrawn.
const DRAW_EVERY: Duration = Duration::from_millis(250);

/// Workers for `clients` at `per_worker` each: at least 2 (never more than clients).
fn workers_for(clients: usize, per_worker: usize) -> usize {
    clients.div_ceil(per_worker).max(2).min(clients)
}

/// Clients per source address by default (`--sources`). A client that binds its
/// source address before connecting has the kernel search that address's ports for a
/// free one, and the search slows down as an address's ports fill: with 19,000
/// sessions on 4 addresses, cut at once (their old ports in `TIME_WAIT`) and
/// reconnecting, the load generator spent most of its CPU in that search
/// (`inet_csk_get_port`, `inet_bhash2_conflict` in a profile), attempts stalled past
/// the server's 5 s request timeout (`408`), and the storm took 14–52 s instead of
/// under 2 s; 100 clients an address (190 addresses) took it away.
const CLIENTS_PER_SOURCE: usize = 100;

/// The default `--sources` for `clients`: one address per [`CLIENTS_PER_SOURCE`],
/// at least 4, at most 254 (127.0.0.1 … 127.0.0.254).
fn default_sources(clients: usize) -> usize {
    clients.div_ceil(CLIENTS_PER_SOURCE).clamp(4, 254)
}

/// The flags every scenario takes.
pub struct Common {
    pub clients: usize,
    pub workers: usize,
    pub sources: usize,
    pub transport: String,
    pub connect_rate: f64,
    pub target: Target,
    /// `--io-window-us`: the spawned server's `Config::io_window` (0: off).
    pub io_window_us: u64,
    /// Limit for the connecting phase.
    pub connect_timeout: Duration,
    /// Server settings the scenario wanted but could not apply (`--url`).
    unapplied: Vec<String>,
    /// The spawned server's log filter when `RUST_LOG` is not set (the fuzz
    /// scenario's server would warn about every hostile connection).
    pub server_log: Option<&'static str>,
}

/// The server a run talks to.
pub enum Target {
    /// Start `loadtest serve` with these extra flags.
    Spawn { serve_flags: Vec<String> },
    /// An already running server, and its process id if given (for CPU and memory).
    Url { url: String, pid: Option<u32> },
}

impl Common {
    /// Reads the common flags. `clients` and `connect_rate` are the scenario's
    /// defaults.
    pub fn from_flags(flags: &Flags, clients: usize, connect_rate: f64) -> Result<Common, String> {
        Common::with_workers(flags, clients, connect_rate, CLIENTS_PER_WORKER)
    }

    /// [`Common::from_flags`] for a scenario whose clients connect through a cutting
    /// proxy in their worker: fewer clients per worker by default.
    pub fn from_flags_proxied(
        flags: &Flags,
        clients: usize,
        connect_rate: f64,
    ) -> Result<Common, String> {
        Common::with_workers(flags, clients, connect_rate, PROXIED_CLIENTS_PER_WORKER)
    }

    fn with_workers(
        flags: &Flags,
        clients: usize,
        connect_rate: f64,
        per_worker: usize,
    ) -> Result<Common, String> {
        let clients = flags.count("clients", clients)?;
        let workers = flags.count("workers", workers_for(clients, per_worker))?;
        let transport: String = flags.get("transport", "websocket".to_owned())?;
        if transport != "websocket" && transport != "polling" {
            return Err("--transport is websocket or polling".into());
        }
        let spawn = flags.switch("spawn");
        let url: Option<String> = flags.opt("url")?;
        let pid: Option<u32> = flags.opt("server-pid")?;
        let target = match (spawn, url) {
            (true, None) => Target::Spawn {
                serve_flags: Vec::new(),
            },
            (false, Some(url)) => Target::Url { url, pid },
            (true, Some(_)) => return Err("give --spawn or --url, not both".into()),
            (false, None) => return Err("give --spawn (start a server) or --url ws://...".into()),
        };
        let connect_rate = flags.positive("connect-rate", connect_rate)?;
        let mut common = Common::new(clients, workers, connect_rate, target);
        common.sources = flags.get("sources", default_sources(clients))?;
        common.transport = transport;
        let io_window_us = flags.get("io-window-us", 0)?;
        if io_window_us > 0 {
            common.serve_flag("io-window-us", io_window_us);
            // With --url the server keeps its own (the report says it was not applied).
            if matches!(common.target, Target::Spawn { .. }) {
                common.io_window_us = io_window_us;
            }
        }
        Ok(common)
    }

    /// Settings for `clients` (at most one per worker) over WebSocket from the
    /// default source addresses ([`default_sources`]), opened at `connect_rate` a
    /// second.
    pub fn new(clients: usize, workers: usize, connect_rate: f64, target: Target) -> Common {
        let expected = clients as f64 / connect_rate;
        Common {
            clients,
            workers: workers.min(clients),
            sources: default_sources(clients),
            transport: "websocket".to_owned(),
            connect_rate,
            target,
            io_window_us: 0,
            connect_timeout: Duration::from_secs_f64(expected * 2.0 + 30.0),
            unapplied: Vec::new(),
            server_log: None,
        }
    }

    /// The default number of workers for `clients`: one per 4,000, at least 2.
    pub fn default_workers(clients: usize) -> usize {
        workers_for(clients, CLIENTS_PER_WORKER)
    }

    /// Adds a flag for the spawned server. With `--url` the server runs with its
    /// own settings: the report says so.
    pub fn serve_flag(&mut self, name: &str, value: impl ToString) {
        match &mut self.target {
            Target::Spawn { serve_flags } => {
                serve_flags.push(format!("--{name}"));
                serve_flags.push(value.to_string());
            }
            Target::Url { .. } => self.unapplied.push(name.to_owned()),
        }
    }

    /// Puts the common settings in the report.
    pub fn describe(&self, report: &mut Report) {
        report.setting("clients", self.clients);
        report.setting("workers", self.workers);
        report.setting("sources", self.sources);
        report.setting("transport", self.transport.clone());
        report.setting("connect_rate", self.connect_rate);
        if self.io_window_us > 0 {
            report.setting("io_window_us", self.io_window_us);
        }
        let server = match &self.target {
            Target::Spawn { .. } => "spawned".to_owned(),
            Target::Url { url, .. } => url.clone(),
        };
        report.setting("server", server);
        if !self.unapplied.is_empty() {
            report.notes.push(format!(
                "the server ran with its own --{} (the scenario sets them only with --spawn)",
                self.unapplied.join(", --")
            ));
        }
    }
}

/// What a worker's reader task passes on.
enum WorkerEvent {
    Said(Message),
    Exited,
}

/// A run in progress: the server, the workers, and what they said.
pub struct Run {
    scenario: &'static str,
    pub url: String,
    pub clients: u64,
    server: Option<Child>,
    server_pid: Option<u32>,
    children: Vec<Child>,
    stdins: Vec<ChildStdin>,
    events: mpsc::UnboundedReceiver<(usize, WorkerEvent)>,
    events_tx: mpsc::UnboundedSender<(usize, WorkerEvent)>,
    latest: Vec<Counters>,
    ready: Vec<bool>,
    outcomes: Vec<Option<Outcome>>,
    exited: Vec<bool>,
    /// Problems of the run itself (a worker that died, a phase that timed out).
    pub failures: Vec<String>,
    progress: Progress,
    pub started: Instant,
    /// The workers' counters added up, at every progress draw (four times a
    /// second), with the time since `started`: the rates over time.
    pub history: Vec<(Duration, Counters)>,
    /// The server, sampled every second from the start.
    pub sampler: ServerSampler,
}

impl Run {
    /// Starts the server if asked; workers come with [`Run::start_workers`].
    pub async fn start(scenario: &'static str, common: &Common) -> Result<Run, String> {
        let (server, url, server_pid) = match &common.target {
            Target::Spawn { serve_flags } => {
                let (child, url) = spawn_server(serve_flags, common.server_log).await?;
                let pid = child.id();
                (Some(child), url, pid)
            }
            Target::Url { url, pid } => (None, url.clone(), *pid),
        };
        let (events_tx, events) = mpsc::unbounded_channel();
        let sampler = ServerSampler::start(server_pid, url.clone());
        Ok(Run {
            scenario,
            url,
            clients: common.clients as u64,
            server,
            server_pid,
            children: Vec::new(),
            stdins: Vec::new(),
            events,
            events_tx,
            latest: Vec::new(),
            ready: Vec::new(),
            outcomes: Vec::new(),
            exited: Vec::new(),
            failures: Vec::new(),
            progress: Progress::new(),
            started: Instant::now(),
            history: Vec::new(),
            sampler,
        })
    }

    /// Starts the workers, each with its share of the clients.
    pub async fn start_workers(
        &mut self,
        common: &Common,
        scenario: ScenarioPlan,
    ) -> Result<(), String> {
        let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
        let n = common.workers;
        let mut first = 0;
        for worker in 0..n {
            let clients = common.clients / n + usize::from(worker < common.clients % n);
            let plan = Plan {
                worker,
                url: self.url.clone(),
                first_client: first,
                clients,
                sources: common.sources,
                connect_rate: common.connect_rate * clients as f64 / common.clients as f64,
                transport: common.transport.clone(),
                scenario: scenario.clone(),
            };
            first += clients;
            let mut child = Process::new(&exe)
                .arg("worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot start worker {worker}: {e}"))?;
            let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                return Err("worker pipes missing".into());
            };
            let line = serde_json::to_string(&plan).map_err(|e| e.to_string())? + "\n";
            stdin
                .write_all(line.as_bytes())
                .await
                .map_err(|e| format!("worker {worker}: {e}"))?;
            let tx = self.events_tx.clone();
            actix_rt::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    match serde_json::from_str::<Message>(&line) {
                        Ok(msg) => {
                            let _ = tx.send((worker, WorkerEvent::Said(msg)));
                        }
                        Err(e) => tracing::warn!(worker, error = %e, "unreadable worker line"),
                    }
                }
                let _ = tx.send((worker, WorkerEvent::Exited));
            });
            self.children.push(child);
            self.stdins.push(stdin);
            self.latest.push(Counters::default());
            self.ready.push(false);
            self.outcomes.push(None);
            self.exited.push(false);
        }
        Ok(())
    }

    /// The workers' counters added up.
    pub fn totals(&self) -> Counters {
        let mut all = Counters::default();
        self.latest.iter().for_each(|c| all.add(c));
        all
    }

    /// Sends a command to every worker.
    pub async fn send(&mut self, command: &Command) {
        let Ok(line) = serde_json::to_string(command) else {
            return;
        };
        let line = line + "\n";
        for stdin in &mut self.stdins {
            // A worker that cannot take it has exited: `finish` reports a worker
            // that exited without its outcome.
            let _ = stdin.write_all(line.as_bytes()).await;
        }
    }

    fn all_exited_or(&self, done: impl Fn(usize) -> bool) -> bool {
        (0..self.exited.len()).all(|w| done(w) || self.exited[w])
    }

    /// Waits until every worker has its clients connected (or failed).
    pub async fn connect(&mut self, timeout: Duration) {
        let clients = self.clients.max(1) as f64;
        let done = self
            .pump(
                "connecting",
                Some(Instant::now() + timeout),
                &|c| Some(c.settled() as f64 / clients),
                &|run| run.all_exited_or(|w| run.ready[w]),
            )
            .await;
        if !done {
            self.failures
                .push(format!("clients still connecting after {timeout:?}"));
        }
    }

    /// Shows progress for `length`, or until `until` says stop. Returns whether
    /// `until` stopped it.
    pub async fn hold(
        &mut self,
        label: &str,
        length: Duration,
        until: &dyn Fn(&Counters) -> bool,
    ) -> bool {
        let start = Instant::now();
        let secs = length.as_secs_f64().max(1e-3);
        self.pump(
            label,
            Some(start + length),
            &|_| Some(start.elapsed().as_secs_f64() / secs),
            &|run| until(&run.totals()) || run.all_exited_or(|_| false),
        )
        .await
    }

    /// Shows progress with a bar of `fraction` until `until` or `timeout`. Returns
    /// whether `until` was reached.
    pub async fn watch(
        &mut self,
        label: &str,
        timeout: Duration,
        fraction: &dyn Fn(&Counters) -> f64,
        until: &dyn Fn(&Counters) -> bool,
    ) -> bool {
        self.pump(
            label,
            Some(Instant::now() + timeout),
            &|c| Some(fraction(c)),
            &|run| until(&run.totals()) || run.all_exited_or(|_| false),
        )
        .await
    }

    /// Tells the workers to finish and collects their outcomes.
    pub async fn finish(&mut self, expected: u64, timeout: Duration) -> Outcome {
        self.send(&Command::Finish { expected }).await;
        let clients = self.clients.max(1) as f64;
        let done = self
            .pump(
                "finishing",
                Some(Instant::now() + timeout),
                &|c| Some(c.finished as f64 / clients),
                &|run| run.all_exited_or(|w| run.outcomes[w].is_some()),
            )
            .await;
        if !done {
            self.failures
                .push(format!("workers still finishing after {timeout:?}"));
        }
        let mut tally = Outcome::default();
        for (worker, outcome) in self.outcomes.iter().enumerate() {
            match outcome {
                Some(outcome) => tally.add(outcome),
                None => self.failures.push(format!(
                    "worker {worker} gave no outcome (it exited or hung)"
                )),
            }
        }
        tally
    }

    /// Reads worker reports and redraws progress until `done` or the deadline.
    async fn pump(
        &mut self,
        label: &str,
        deadline: Option<Instant>,
        fraction: &dyn Fn(&Counters) -> Option<f64>,
        done: &dyn Fn(&Run) -> bool,
    ) -> bool {
        let phase_start = Instant::now();
        let at_start = (phase_start, self.totals());
        let mut last = at_start;
        let mut tick = tokio::time::interval(DRAW_EVERY);
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let deadline = tokio::time::Instant::from_std(deadline.unwrap_or(far));
        let reached = loop {
            if done(self) {
                break true;
            }
            tokio::select! {
                event = self.events.recv() => {
                    let Some((worker, event)) = event else { break false };
                    self.apply(worker, event);
                }
                _ = tick.tick() => {
                    let totals = self.totals();
                    let text = self.line(label, phase_start, &last, &totals);
                    self.progress.draw(fraction(&totals), &text);
                    let since_start = self.started.elapsed();
                    self.history.push((since_start, totals));
                    last = (Instant::now(), totals);
                }
                _ = tokio::time::sleep_until(deadline) => break false,
            }
        };
        // The line left behind shows the phase's average rates.
        let totals = self.totals();
        let text = self.line(label, phase_start, &at_start, &totals);
        self.progress.finish(fraction(&totals), &text);
        reached
    }

    fn apply(&mut self, worker: usize, event: WorkerEvent) {
        match event {
            WorkerEvent::Said(Message::Progress { counters }) => self.latest[worker] = counters,
            WorkerEvent::Said(Message::Ready) => self.ready[worker] = true,
            WorkerEvent::Said(Message::Done { outcome }) => {
                self.latest[worker] = outcome.counters;
                self.outcomes[worker] = Some(*outcome);
            }
            WorkerEvent::Exited => {
                self.exited[worker] = true;
                if self.outcomes[worker].is_none() {
                    self.progress
                        .note(&format!("worker {worker} exited before reporting"));
                }
            }
        }
    }

    /// The progress text: phase, time, clients, and the rates since the last draw.
    fn line(
        &self,
        label: &str,
        since: Instant,
        last: &(Instant, Counters),
        now: &Counters,
    ) -> String {
        let dt = last.0.elapsed().as_secs_f64().max(1e-3);
        let rate = |a: u64, b: u64| short(a.saturating_sub(b) as f64 / dt);
        let mut text = format!(
            "{} {label} {:>5.1}s  clients {}/{}",
            self.scenario,
            since.elapsed().as_secs_f64(),
            now.connected,
            self.clients
        );
        let mut add = |part: String| {
            text.push_str("  ");
            text.push_str(&part);
        };
        if now.failed > 0 {
            add(format!("failed {}", now.failed));
        }
        if now.sent > 0 {
            add(format!("sent {}/s", rate(now.sent, last.1.sent)));
        }
        if now.delivered > 0 {
            add(format!(
                "received {}/s",
                rate(now.delivered, last.1.delivered)
            ));
        }
        if now.resumed + now.sessions_lost > 0 {
            add(format!("resumed {}", now.resumed));
        }
        if now.sessions_lost > 0 {
            add(format!("lost sessions {}", now.sessions_lost));
        }
        if now.drops > 0 {
            add(format!("drops {}", now.drops));
        }
        if now.refused > 0 {
            add(format!("refused {}", now.refused));
        }
        text
    }

    /// The server process's costs now, if its pid is known.
    pub fn server_sample(&self) -> Option<ProcSample> {
        proc::sample(&self.server_pid?.to_string()).ok()
    }

    /// The server's CPU so far by kind of thread (see [`proc::thread_groups`]).
    pub fn server_threads(&self) -> Option<std::collections::BTreeMap<String, f64>> {
        proc::thread_groups(&self.server_pid?.to_string()).ok()
    }

    /// The server's own metrics (`loadtest serve` has them; another server may not).
    pub async fn server_metrics(&self) -> Option<ServerMetrics> {
        server_metrics(&self.url).await
    }

    /// A report with what every scenario shows: clients, streams, latencies,
    /// problems, and the workers' CPU.
    pub fn report(&self, common: &Common, tally: &Outcome) -> Report {
        let mut report = Report {
            scenario: self.scenario.to_owned(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            duration: self.started.elapsed(),
            clients: self.clients,
            connected: tally.counters.connected,
            failed: tally.counters.failed,
            streams: tally.streams.clone(),
            failures: self.failures.clone(),
            ..Report::default()
        };
        for (name, h) in &tally.histograms {
            report.histogram(name, h);
        }
        report.series = timeline::series(&self.history, &self.sampler.points_since(self.started));
        common.describe(&mut report);
        if tally.problem_count > 0 {
            report.failures.push(format!(
                "{} client problem(s); the first: {}",
                tally.problem_count,
                tally.problems.join(" | ")
            ));
        }
        if tally.counters.refused > 0 {
            report.notes.push(format!(
                "{} emits refused by full client send buffers (not sent, so not lost)",
                tally.counters.refused
            ));
        }
        report.figure(
            "loadtest_cpu_s",
            "load generator CPU (all workers)",
            tally.cpu_seconds,
            "s",
        );
        report
    }

    /// Stops the server and the workers.
    pub async fn stop(mut self) {
        self.sampler.stop();
        self.stdins.clear();
        for child in &mut self.children {
            let _ = child.kill().await;
        }
        if let Some(mut server) = self.server.take() {
            let _ = server.kill().await;
        }
    }
}

/// Starts `loadtest serve` on a free port and waits until it listens; `log` is its
/// log filter unless `RUST_LOG` says otherwise.
pub async fn spawn_server(flags: &[String], log: Option<&str>) -> Result<(Child, String), String> {
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let mut command = Process::new(exe);
    if let (Some(log), None) = (log, std::env::var_os("RUST_LOG")) {
        command.env("RUST_LOG", log);
    }
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--stop-on-eof"])
        .args(flags);
    start_listening(&mut command).await
}

/// Starts a server process that prints `listening <where>` once it accepts and
/// stops when its stdin closes (`loadtest serve --stop-on-eof`, the peers of
/// `compare`); waits for that line and returns `<where>`.
pub async fn start_listening(command: &mut Process) -> Result<(Child, String), String> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the server: {e}"))?;
    let stdout = child.stdout.take().ok_or("server stdout missing")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .map_err(|_| "the server did not start within 30 s")?
        .map_err(|e| format!("server output: {e}"))?
        .ok_or("the server exited at start")?;
    let at = first
        .strip_prefix("listening ")
        .ok_or_else(|| format!("unexpected server output: {first}"))?
        .trim()
        .to_owned();
    // Keep reading so that the server never blocks on a full pipe.
    actix_rt::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, at))
}
