//! `compare`: Volley next to the servers people would pick instead, in one run and
//! one table. The same chat (`scenarios/chat.rs`) runs on a minimal Volley server
//! (`loadtest serve`'s `/chat`), on the same server's Socket.IO endpoint (its clients
//! speaking Socket.IO v5, `volley-socketio`; or opening with long polling and
//! upgrading, `volley-socketio-upgrade`), on Socket.IO 4.8 on Node (`loadtest/peers/socketio`)
//! and on socketioxide 0.18.9 (`loadtest/peers/socketioxide`, its own Cargo project
//! outside the workspace), each driven by the same simulated clients: `--clients`
//! members of one room and a publisher at `--rate` for `--duration` seconds. The
//! floor (`scenarios/floor.rs`) is measured in the same run with messages the size
//! of Volley's frame, and every CPU figure is also given as a multiple of it.
//!
//! A peer whose tools are missing (no `node`/`npm`, no `cargo`) or whose build
//! fails is skipped with the reason in the report.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command as Process};

use super::chat::{self, ChatConn, Dialect, CHAT_NAMESPACE, CHAT_ROOM};
use super::floor::{self, FloorFigures, FloorPlan};
use super::per_second;
use crate::args::Flags;
use crate::control::{unix_us, ScenarioPlan, StreamTotals};
use crate::coordinator::{self, Common, Run, Target};
use crate::histogram::Histogram;
use crate::proc;
use crate::report::{Report, Series};
use crate::timeline;

/// The servers compared, by their `--peers` names.
const PEERS: [Peer; 5] = [
    Peer::Volley,
    Peer::VolleySocketIo,
    Peer::VolleySocketIoUpgrade,
    Peer::SocketIo,
    Peer::Socketioxide,
];
/// How long the server settles after the clients connected, before its idle RSS
/// is read.
const SETTLE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Peer {
    Volley,
    /// The same Volley server, its clients speaking Socket.IO to `/socket.io/`.
    VolleySocketIo,
    /// The same, its clients opening with long polling and upgrading to WebSocket.
    VolleySocketIoUpgrade,
    SocketIo,
    Socketioxide,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Volley => "volley",
            Peer::VolleySocketIo => "volley-socketio",
            Peer::VolleySocketIoUpgrade => "volley-socketio-upgrade",
            Peer::SocketIo => "socketio",
            Peer::Socketioxide => "socketioxide",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Peer::Volley => "Volley (loadtest serve, /chat)",
            Peer::VolleySocketIo => "Volley's Socket.IO endpoint (same server, /socket.io/)",
            Peer::VolleySocketIoUpgrade => {
                "Volley's Socket.IO endpoint, clients upgraded from long polling"
            }
            Peer::SocketIo => "Socket.IO 4.8 on Node",
            Peer::Socketioxide => "socketioxide 0.18.9 (axum)",
        }
    }

    fn dialect(self) -> Dialect {
        match self {
            Peer::Volley => Dialect::Volley,
            Peer::VolleySocketIoUpgrade => Dialect::SocketIoUpgrade,
            _ => Dialect::SocketIo,
        }
    }
}

/// Reads `--peers volley,socketio,socketioxide`.
fn parse_peers(list: &str) -> Result<Vec<Peer>, String> {
    list.split(',')
        .map(|name| {
            PEERS
                .into_iter()
                .find(|p| p.name() == name.trim())
                .ok_or_else(|| {
                    format!(
                        "--peers: unknown peer '{name}' (volley, volley-socketio, volley-socketio-upgrade, socketio, socketioxide)"
                    )
                })
        })
        .collect()
}

/// What one peer's run found.
#[derive(Debug, Clone, Default)]
struct PeerFigures {
    connected: u64,
    deliveries: u64,
    server_cpu_s: f64,
    deliveries_per_s: f64,
    /// Delivery latency.
    delivery: Histogram,
    /// The run over time (server CPU and RSS, deliveries per second).
    series: Vec<Series>,
    rss_per_idle_connection_kib: f64,
    chat: StreamTotals,
    /// CPU time of the load generator's workers (connecting included).
    workers_cpu_s: f64,
    /// `/proc/loadavg`'s 1-minute figure before and after: other load on the
    /// machine shows here.
    load_before: f64,
    load_after: f64,
    failures: Vec<String>,
}

impl PeerFigures {
    fn cpu_us_per_delivery(&self) -> f64 {
        per_second(self.server_cpu_s * 1e6, self.deliveries as f64)
    }
}

/// The run's settings.
struct Settings {
    clients: usize,
    workers: usize,
    connect_rate: f64,
    rate: f64,
    duration: Duration,
    size: usize,
    batch: usize,
    peers_dir: PathBuf,
}

pub async fn coordinate(flags: &Flags) -> Result<Report, String> {
    let clients = flags.count("clients", 2000)?;
    let settings = Settings {
        clients,
        workers: flags.count("workers", Common::default_workers(clients))?,
        connect_rate: flags.positive("connect-rate", 500.0)?,
        rate: flags.positive("rate", 20.0)?,
        duration: Duration::from_secs_f64(flags.positive("duration", 20.0)?),
        size: flags.count("size", 80)?,
        batch: flags.count("batch", 10)?,
        peers_dir: flags.get(
            "peers-dir",
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/peers")),
        )?,
    };
    let peers = parse_peers(&flags.get(
        "peers",
        "volley,volley-socketio,socketio,socketioxide".to_owned(),
    )?)?;
    flags.finish()?;

    let started = Instant::now();
    let mut report = Report {
        scenario: "compare".into(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        ..Report::default()
    };
    report.setting("clients", settings.clients);
    report.setting("workers", settings.workers);
    report.setting("rate", settings.rate);
    report.setting("duration_s", settings.duration.as_secs_f64());
    report.setting("text_size", settings.size);
    let frame = volley_frame_size(settings.size);
    report.setting("floor_size", frame);

    let plan = FloorPlan {
        clients: settings.clients,
        size: frame,
        rate: settings.rate,
        duration: settings.duration,
        batch: 1,
    };
    eprintln!("compare: the floor, one write() per message of {frame} bytes");
    let single = floor::measure(plan).await?;
    eprintln!(
        "compare: the floor, {} messages per write()",
        settings.batch
    );
    let batched = floor::measure(FloorPlan {
        batch: settings.batch,
        ..plan
    })
    .await?;
    floor::add_figures(
        &mut report,
        "floor_",
        "floor, one write per message",
        &single,
    );
    floor::add_figures(
        &mut report,
        "floor_batched_",
        "floor, batched writes",
        &batched,
    );

    let mut rows = Vec::new();
    for peer in peers {
        eprintln!("compare: {}", peer.label());
        match measure_peer(peer, &settings).await {
            Ok(figures) => {
                add_peer(
                    &mut report,
                    peer,
                    settings.clients as u64,
                    &figures,
                    &single,
                );
                rows.push((peer, figures));
            }
            Err(e) => {
                eprintln!("compare: {} skipped: {e}", peer.label());
                report.notes.push(format!("{} skipped: {e}", peer.label()));
            }
        }
    }
    report
        .tables
        .push(table(&settings, &single, &batched, &rows));
    report.duration = started.elapsed();
    Ok(report)
}

/// Bytes on the wire of one Volley `message` frame with a text of `size` bytes:
/// what the floor writes per message.
fn volley_frame_size(size: usize) -> usize {
    let message = chat::ChatMessage {
        from: "publisher".into(),
        text: chat::text(0, unix_us(), size),
    };
    let payload = serde_json::to_vec(&message).unwrap_or_default();
    let frame = volley::protocol::encode_event(
        volley::protocol::EventKind::Reliable,
        CHAT_NAMESPACE,
        "message",
        &payload,
    );
    // The server's WebSocket header: 2 bytes up to 125, 4 up to 65,535.
    frame.len() + if frame.len() < 126 { 2 } else { 4 }
}

/// Adds a peer's figures to the report (keys prefixed with its name).
fn add_peer(report: &mut Report, peer: Peer, clients: u64, f: &PeerFigures, floor: &FloorFigures) {
    let name = peer.name();
    let label = peer.label();
    report.clients += clients;
    report.connected += f.connected;
    report.failed += clients.saturating_sub(f.connected);
    report.streams.insert(name.to_owned(), f.chat);
    report.histogram(&format!("{name}_delivery"), &f.delivery);
    report.series.extend(f.series.iter().map(|s| Series {
        label: format!("{label}: {}", s.label),
        points: s.points.clone(),
    }));
    report.figure(
        &format!("{name}_server_cpu_us_per_delivery"),
        &format!("{label}: server CPU per delivery"),
        f.cpu_us_per_delivery(),
        "µs",
    );
    report.figure(
        &format!("{name}_cpu_per_delivery_x_floor"),
        &format!("{label}: server CPU per delivery / floor"),
        per_second(f.cpu_us_per_delivery(), floor.writer_us_per_message()),
        "×",
    );
    report.figure(
        &format!("{name}_deliveries_per_s"),
        &format!("{label}: deliveries per second"),
        f.deliveries_per_s,
        "/s",
    );
    report.figure(
        &format!("{name}_rss_per_idle_connection_kib"),
        &format!("{label}: server RSS per idle connection"),
        f.rss_per_idle_connection_kib,
        "KiB",
    );
    report.figure(
        &format!("{name}_workers_cpu_s"),
        &format!("{label}: load generator CPU (workers)"),
        f.workers_cpu_s,
        "s",
    );
    report.notes.push(format!(
        "{label}: load average {:.1} before, {:.1} after",
        f.load_before, f.load_after
    ));
    for failure in &f.failures {
        report.failures.push(format!("{label}: {failure}"));
    }
}

/// Runs the chat on one peer: starts its server, connects the members, reads the
/// server's RSS, publishes, and reads the server's CPU time around the publishing.
async fn measure_peer(peer: Peer, s: &Settings) -> Result<PeerFigures, String> {
    let mut server = start(peer, &s.peers_dir).await?;
    let pid = server.child.id().ok_or("the server exited at start")?;
    let rss_before = proc::sample(&pid.to_string()).map_err(|e| e.to_string())?;
    let common = Common::new(
        s.clients,
        s.workers,
        s.connect_rate,
        Target::Url {
            url: server.url.clone(),
            pid: Some(pid),
        },
    );
    let result = drive(peer, s, &common, rss_before.rss_kib).await;
    let _ = server.child.kill().await;
    result
}

async fn drive(
    peer: Peer,
    s: &Settings,
    common: &Common,
    rss_before_kib: u64,
) -> Result<PeerFigures, String> {
    let load_before = load_average();
    let mut run = Run::start("compare", common).await?;
    run.start_workers(
        common,
        ScenarioPlan::Chat {
            dialect: peer.dialect(),
        },
    )
    .await?;
    run.connect(common.connect_timeout).await;
    tokio::time::sleep(SETTLE).await;
    let connected = run.totals().connected;
    let idle = run.server_sample();

    let publisher = ChatConn::open(peer.dialect(), &run.url, "publisher", None).await;
    let publisher = publisher.map_err(|e| format!("publisher: {e}"))?;
    let cpu_from = run.server_sample();
    let first_publish_us = unix_us();
    let publishing = actix_rt::spawn(chat::publish(publisher, s.rate, s.duration, s.size));
    run.hold("publishing", s.duration, &|_| false).await;
    let (mut publisher, published) = publishing.await.map_err(|e| format!("publisher: {e}"))?;
    // An acknowledged join after the last `say`: the server has taken them all.
    if let Err(e) = publisher.join(CHAT_ROOM).await {
        run.failures
            .push(format!("publisher: the server did not answer: {e}"));
    }
    let tally = run
        .finish(published, chat::DRAIN + Duration::from_secs(30))
        .await;
    let cpu_to = run.server_sample();
    publisher.close().await;
    let mut failures = run.failures.clone();
    if tally.problem_count > 0 {
        failures.push(format!(
            "{} client problem(s); the first: {}",
            tally.problem_count,
            tally.problems.join(" | ")
        ));
    }
    let series = timeline::series(&run.history, &run.sampler.points_since(run.started));
    run.stop().await;

    let deliveries = tally.counters.delivered;
    let window = tally.last_delivery_us.saturating_sub(first_publish_us) as f64 / 1e6;
    let (Some(from), Some(to), Some(idle)) = (cpu_from, cpu_to, idle) else {
        return Err("the server's CPU and memory could not be read".into());
    };
    Ok(PeerFigures {
        connected,
        deliveries,
        server_cpu_s: to.cpu_seconds - from.cpu_seconds,
        deliveries_per_s: per_second(deliveries as f64, window),
        delivery: tally
            .histograms
            .get("delivery")
            .cloned()
            .unwrap_or_default(),
        series,
        rss_per_idle_connection_kib: per_second(
            idle.rss_kib.saturating_sub(rss_before_kib) as f64,
            connected as f64,
        ),
        chat: tally.streams.get("chat").copied().unwrap_or_default(),
        workers_cpu_s: tally.cpu_seconds,
        load_before,
        load_after: load_average(),
        failures,
    })
}

/// The machine's 1-minute load average (0 if unknown).
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// A peer server process and where it listens.
struct PeerServer {
    child: Child,
    /// Where the chat's clients connect (Volley: `ws://…/volley`; Socket.IO: the
    /// server's `ws://host:port`).
    url: String,
}

/// Builds (if needed) and starts `peer`'s server.
async fn start(peer: Peer, dir: &Path) -> Result<PeerServer, String> {
    match peer {
        Peer::Volley => {
            let (child, url) = coordinator::spawn_server(&[], None).await?;
            Ok(PeerServer { child, url })
        }
        Peer::VolleySocketIo | Peer::VolleySocketIoUpgrade => {
            let (child, url) = coordinator::spawn_server(&[], None).await?;
            // The Socket.IO client adds `/socket.io/` to the server's address.
            let url = url.trim_end_matches("/volley").to_owned();
            Ok(PeerServer { child, url })
        }
        Peer::SocketIo => {
            let dir = dir.join("socketio");
            tool("node", &["--version"], &dir).await?;
            if !dir.join("node_modules").is_dir() {
                eprintln!("compare: npm ci in {}", dir.display());
                tool("npm", &["ci", "--no-audit", "--no-fund"], &dir).await?;
            }
            listen(Process::new("node").arg("server.js").current_dir(&dir)).await
        }
        Peer::Socketioxide => {
            let dir = dir.join("socketioxide");
            eprintln!(
                "compare: cargo build --release in {} (the first build takes minutes)",
                dir.display()
            );
            let target = dir.join("target");
            let target = target.to_string_lossy();
            tool(
                "cargo",
                &["build", "--release", "--quiet", "--target-dir", &target],
                &dir,
            )
            .await?;
            let exe = dir.join("target/release/socketioxide-chat");
            listen(Process::new(exe).current_dir(&dir)).await
        }
    }
}

/// Starts a peer server (it prints `listening <port>`).
async fn listen(command: &mut Process) -> Result<PeerServer, String> {
    let (child, port) = coordinator::start_listening(command).await?;
    Ok(PeerServer {
        child,
        url: format!("ws://127.0.0.1:{port}"),
    })
}

/// Runs `program args` in `dir`; an error says what is missing or what failed.
async fn tool(program: &str, args: &[&str], dir: &Path) -> Result<(), String> {
    let status = Process::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .await
        .map_err(|e| format!("cannot run {program} ({e}): is it installed?"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} {} failed ({status})", args.join(" ")))
    }
}

/// The one table of the run: each server's figures, next to the floor's.
fn table(
    s: &Settings,
    single: &FloorFigures,
    batched: &FloorFigures,
    rows: &[(Peer, PeerFigures)],
) -> String {
    let floor = single.writer_us_per_message();
    let times = |us: f64| {
        if floor > 0.0 {
            format!("{:.1}×", us / floor)
        } else {
            "-".to_owned()
        }
    };
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{} clients in one room, {} msg/s for {} s; server CPU per delivery next to the floor",
        s.clients,
        s.rate,
        s.duration.as_secs_f64()
    );
    let _ = writeln!(
        t,
        "| server | CPU per delivery | × floor | deliveries/s | latency p50 | latency p99 | RSS per idle connection | lost / duplicated |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|---|");
    for (peer, f) in rows {
        let us = f.cpu_us_per_delivery();
        let _ = writeln!(
            t,
            "| {} | {us:.2} µs | {} | {:.0} | {:.2} ms | {:.2} ms | {:.1} KiB | {} / {} |",
            peer.label(),
            times(us),
            f.deliveries_per_s,
            f.delivery.quantile_us(0.5) as f64 / 1000.0,
            f.delivery.quantile_us(0.99) as f64 / 1000.0,
            f.rss_per_idle_connection_kib,
            f.chat.lost,
            f.chat.duplicated
        );
    }
    let _ = writeln!(
        t,
        "| floor: one write() per message (writer; drainer {:.2} µs) | {floor:.2} µs | 1.0× | {:.0} | — | — | — | — |",
        single.drainer_us_per_message(),
        single.rate_reached
    );
    let _ = writeln!(
        t,
        "| floor: {} messages per write() (writer; drainer {:.2} µs) | {:.2} µs | {} | {:.0} | — | — | — | — |",
        s.batch,
        batched.drainer_us_per_message(),
        batched.writer_us_per_message(),
        times(batched.writer_us_per_message()),
        batched.rate_reached
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_named_on_the_command_line() {
        assert_eq!(
            parse_peers("volley,socketioxide"),
            Ok(vec![Peer::Volley, Peer::Socketioxide])
        );
        assert!(parse_peers("volley,nodejs").is_err_and(|e| e.contains("'nodejs'")));
    }

    #[test]
    fn the_floor_writes_what_volley_writes_per_message() {
        // A ~100-byte JSON message ({"from":"publisher","text":<80 bytes>}) is a
        // frame of about 120 bytes with its WebSocket header.
        let size = volley_frame_size(80);
        assert!((110..=135).contains(&size), "{size}");
        assert!(volley_frame_size(200) > 200);
    }
}
