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

mod rounds;

use rounds::{median_floor, range, table, PeerRounds};

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
    /// Rounds of the floor and every peer, in turn (`--rounds`).
    rounds: usize,
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
        rounds: flags.count("rounds", 1)?.max(1),
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
    report.setting("rounds", settings.rounds);
    let frame = volley_frame_size(settings.size);
    report.setting("floor_size", frame);

    let plan = FloorPlan {
        clients: settings.clients,
        size: frame,
        rate: settings.rate,
        duration: settings.duration,
        batch: 1,
    };
    eprintln!(
        "compare: the floor, {} messages per write()",
        settings.batch
    );
    let batched = floor::measure(FloorPlan {
        batch: settings.batch,
        ..plan
    })
    .await?;
    // Round by round: the floor, then every peer, so that each peer's figure is
    // read against the floor of its own minutes (the machine's speed moves).
    let mut floors = Vec::new();
    let mut measured: Vec<PeerRounds> = (peers.iter())
        .map(|peer| PeerRounds {
            peer: *peer,
            rounds: Vec::new(),
        })
        .collect();
    for round in 1..=settings.rounds {
        let of = format!("round {round} of {}: ", settings.rounds);
        eprintln!("compare: {of}the floor, one write() per message of {frame} bytes");
        let single = floor::measure(plan).await?;
        let floor_us = single.writer_us_per_message();
        for peer in measured.iter_mut() {
            eprintln!("compare: {of}{}", peer.peer.label());
            match measure_peer(peer.peer, &settings).await {
                Ok(figures) => peer.rounds.push((figures, floor_us)),
                Err(e) => {
                    eprintln!("compare: {} skipped: {e}", peer.peer.label());
                    (report.notes).push(format!("{} skipped ({of}): {e}", peer.peer.label()));
                }
            }
        }
        floors.push(single);
    }
    // The floor the report shows: the median round's.
    let single = median_floor(&floors);
    floor::add_figures(
        &mut report,
        "floor_",
        "floor, one write per message",
        single,
    );
    if settings.rounds > 1 {
        let (lo, hi) = range(floors.iter().map(FloorFigures::writer_us_per_message));
        report.figure(
            "floor_writer_cpu_us_per_message_min",
            "floor, one write per message: the cheapest round",
            lo,
            "µs",
        );
        report.figure(
            "floor_writer_cpu_us_per_message_max",
            "floor, one write per message: the dearest round",
            hi,
            "µs",
        );
    }
    floor::add_figures(
        &mut report,
        "floor_batched_",
        "floor, batched writes",
        &batched,
    );

    measured.retain(|p| !p.rounds.is_empty());
    for peer in &measured {
        add_peer(&mut report, peer, settings.clients as u64);
    }
    report
        .tables
        .push(table(&settings, &floors, &batched, &measured));
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

/// Adds a peer's figures to the report (keys prefixed with its name): those of its
/// median round, with the range over the rounds when there are several; what was
/// lost or duplicated, and every failure, of all rounds.
fn add_peer(report: &mut Report, measured: &PeerRounds, clients: u64) {
    let peer = measured.peer;
    let name = peer.name();
    let label = peer.label();
    let (f, floor) = measured.median();
    report.clients += clients;
    report.connected += f.connected;
    report.failed += clients.saturating_sub(f.connected);
    let mut chat = StreamTotals::default();
    for (round, _) in &measured.rounds {
        chat.add(&round.chat);
    }
    report.streams.insert(name.to_owned(), chat);
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
        per_second(f.cpu_us_per_delivery(), *floor),
        "×",
    );
    if measured.rounds.len() > 1 {
        let (lo, hi) = range(measured.ratios().into_iter());
        report.figure(
            &format!("{name}_cpu_per_delivery_x_floor_min"),
            &format!("{label}: server CPU per delivery / floor, the lowest round"),
            lo,
            "×",
        );
        report.figure(
            &format!("{name}_cpu_per_delivery_x_floor_max"),
            &format!("{label}: server CPU per delivery / floor, the highest round"),
            hi,
            "×",
        );
    }
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
    for (i, (round, _)) in measured.rounds.iter().enumerate() {
        report.notes.push(format!(
            "{label}, round {}: load average {:.1} before, {:.1} after",
            i + 1,
            round.load_before,
            round.load_after
        ));
        for failure in &round.failures {
            report.failures.push(format!("{label}: {failure}"));
        }
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
    fn a_peer_shows_its_median_round_against_that_round_s_floor() {
        // CPU per delivery 8, 6 and 9 µs over floors of 4, 5 and 4.5 µs: multiples
        // 2.0, 1.2 and 2.0; the median round is a 2.0 (the lower middle of the sorted
        // three: 1.2, 2.0, 2.0), the range 1.2–2.0.
        let round = |cpu_us: f64, floor: f64| {
            let figures = PeerFigures {
                deliveries: 1_000_000,
                server_cpu_s: cpu_us,
                ..PeerFigures::default()
            };
            (figures, floor)
        };
        let peer = PeerRounds {
            peer: Peer::Volley,
            rounds: vec![round(8.0, 4.0), round(6.0, 5.0), round(9.0, 4.5)],
        };
        assert_eq!(peer.ratios(), [2.0, 1.2, 2.0]);
        let (median, floor) = peer.median();
        assert_eq!(per_second(median.cpu_us_per_delivery(), *floor), 2.0);
        assert_eq!(range(peer.ratios().into_iter()), (1.2, 2.0));
        assert_eq!(range(std::iter::empty()), (0.0, 0.0));
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
