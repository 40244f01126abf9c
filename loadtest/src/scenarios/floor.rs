//! `floor`: what the machine itself charges for a delivery, the yardstick every
//! server's CPU per delivery is given against. No framework: this process accepts
//! `--clients` loopback TCP connections from a drainer process (`loadtest
//! floor-drain`, a worker like the scenarios' client processes) and writes
//! `--size`-byte messages to each at `--rate` a second for `--duration` seconds,
//! with one blocking `write()` per message; then again with `--batch` messages per
//! `write()`. It reports the CPU per message of the writer (this process) and of the
//! drainer, measured apart.
//!
//! `floor --ping` is the floor of a heartbeat round trip instead: every
//! `--interval-ms` each connection gets a Volley ping frame (2-byte WebSocket header
//! and the encoded `Ping`), written on a grid of 20 slots per interval as Volley's
//! server writes them (one slot's connections in one pass), and the drainer answers
//! each with a client's masked `Pong`, which this process reads back (one `read()`
//! each, readiness from the reactor). It reports this process's CPU per round trip:
//! the machine's own cost of what a server does per heartbeat.
//!
//! The default size, 120 bytes, is one Volley broadcast frame on the wire for a
//! ~100-byte chat message: a 2-byte WebSocket header and the encoded `Event` frame
//! (namespace, event name, sequence number and the JSON payload).

use std::io::{BufRead, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command as Process;

use super::per_second;
use crate::args::Flags;
use crate::proc;
use crate::report::Report;

/// Bytes a drainer reads at a time per connection.
const READ_CHUNK: usize = 4096;
/// Longest the drainer may take to connect or to finish reading.
const DRAINER_WAIT: Duration = Duration::from_secs(60);

/// One floor measurement: `clients` connections, `size`-byte messages at `rate` per
/// second per connection for `duration`, `batch` messages per `write()`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloorPlan {
    pub clients: usize,
    pub size: usize,
    pub rate: f64,
    pub duration: Duration,
    pub batch: usize,
}

impl FloorPlan {
    /// Writes to each connection over the run: every message of the duration,
    /// rounded down to whole batches.
    pub fn writes(&self) -> u64 {
        let messages = (self.rate * self.duration.as_secs_f64()).floor() as u64;
        messages / self.batch.max(1) as u64
    }

    /// When write round `k` (one write to every connection) is due, from the start.
    pub fn due(&self, k: u64) -> Duration {
        Duration::from_secs_f64(k as f64 * self.batch.max(1) as f64 / self.rate)
    }

    /// Messages the run writes over all connections.
    pub fn messages(&self) -> u64 {
        self.writes() * self.batch.max(1) as u64 * self.clients as u64
    }
}

/// What one floor measurement found.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FloorFigures {
    pub messages: u64,
    /// Bytes the drainer read (the messages' bytes if nothing went missing).
    pub drained_bytes: u64,
    pub writer_cpu_s: f64,
    pub drainer_cpu_s: f64,
    /// Messages per second over the writing phase (the writer may fall behind).
    pub rate_reached: f64,
}

impl FloorFigures {
    pub fn writer_us_per_message(&self) -> f64 {
        per_second(self.writer_cpu_s * 1e6, self.messages as f64)
    }

    pub fn drainer_us_per_message(&self) -> f64 {
        per_second(self.drainer_cpu_s * 1e6, self.messages as f64)
    }
}

pub async fn coordinate(flags: &Flags) -> Result<Report, String> {
    if flags.switch("ping") {
        return coordinate_pings(flags).await;
    }
    let plan = FloorPlan {
        clients: flags.count("clients", 2000)?,
        size: flags.count("size", 120)?,
        rate: flags.positive("rate", 20.0)?,
        duration: Duration::from_secs_f64(flags.positive("duration", 10.0)?),
        batch: 1,
    };
    let batch = flags.count("batch", 10)?;
    flags.finish()?;
    let started = Instant::now();
    let mut report = Report {
        scenario: "floor".into(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        clients: plan.clients as u64,
        ..Report::default()
    };
    report.setting("clients", plan.clients);
    report.setting("size", plan.size);
    report.setting("rate", plan.rate);
    report.setting("duration_s", plan.duration.as_secs_f64());
    report.setting("batch", batch);
    let single = measure(plan).await?;
    let batched = measure(FloorPlan { batch, ..plan }).await?;
    report.connected = plan.clients as u64;
    add_figures(&mut report, "", "one write per message", &single);
    add_figures(
        &mut report,
        "batched_",
        &format!("{batch} messages per write"),
        &batched,
    );
    for (figures, what) in [(&single, "one write per message"), (&batched, "batched")] {
        let expected = (figures.messages as usize * plan.size) as u64;
        check_drained(&mut report, what, figures.drained_bytes, expected);
    }
    report.duration = started.elapsed();
    Ok(report)
}

/// A run fails when the drainer did not read every byte written.
fn check_drained(report: &mut Report, what: &str, drained: u64, expected: u64) {
    if drained != expected {
        report.failures.push(format!(
            "{what}: the drainer read {drained} bytes of {expected}"
        ));
    }
}

/// Adds one measurement's figures, keys prefixed with `prefix`.
pub fn add_figures(report: &mut Report, prefix: &str, what: &str, f: &FloorFigures) {
    report.figure(
        &format!("{prefix}messages"),
        &format!("messages ({what})"),
        f.messages as f64,
        "",
    );
    report.figure(
        &format!("{prefix}rate_reached_per_s"),
        &format!("messages per second ({what})"),
        f.rate_reached,
        "/s",
    );
    report.figure(
        &format!("{prefix}writer_cpu_us_per_message"),
        &format!("writer CPU per message ({what})"),
        f.writer_us_per_message(),
        "µs",
    );
    report.figure(
        &format!("{prefix}drainer_cpu_us_per_message"),
        &format!("drainer CPU per message ({what})"),
        f.drainer_us_per_message(),
        "µs",
    );
}

/// Runs one floor measurement: starts a drainer, accepts its connections, writes
/// as planned on a thread of this process, and reads both processes' CPU time
/// around the writing.
pub async fn measure(plan: FloorPlan) -> Result<FloorFigures, String> {
    let driven = drive(plan.clients, false, move |c| write_all(c, plan).map(|()| 0)).await?;
    Ok(FloorFigures {
        messages: plan.messages(),
        drained_bytes: driven.drained_bytes,
        writer_cpu_s: driven.writer_cpu_s,
        drainer_cpu_s: driven.drainer_cpu_s,
        // Batches end early (the last is due one batch before the end).
        rate_reached: per_second(
            plan.messages() as f64,
            driven.elapsed.max(plan.duration).as_secs_f64(),
        ),
    })
}

/// What [`drive`] measured around the work.
struct Driven {
    /// What the work counted.
    count: u64,
    drained_bytes: u64,
    writer_cpu_s: f64,
    drainer_cpu_s: f64,
    elapsed: Duration,
}

/// Starts a drainer (`echo`: one that answers pings), accepts its `clients`
/// connections, runs `work` on them on a thread of this process, and reads both
/// processes' CPU time around it.
async fn drive<W>(clients: usize, echo: bool, work: W) -> Result<Driven, String>
where
    W: FnOnce(Vec<TcpStream>) -> std::io::Result<u64> + Send + 'static,
{
    let listener = tokio::net::TcpSocket::new_v4()
        .and_then(|s| {
            s.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            s.listen(4096)
        })
        .map_err(|e| format!("floor: cannot listen: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let mut args = vec![
        "floor-drain".to_owned(),
        addr.to_string(),
        clients.to_string(),
    ];
    if echo {
        args.push("echo".into());
    }
    let mut drainer = Process::new(exe)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the drainer: {e}"))?;
    let pid = drainer
        .id()
        .ok_or("the drainer exited at start")?
        .to_string();
    let stdout = drainer.stdout.take().ok_or("drainer stdout missing")?;
    let mut lines = BufReader::new(stdout).lines();

    let mut connections = Vec::with_capacity(clients);
    let accepting = async {
        while connections.len() < clients {
            let (stream, _) = listener.accept().await?;
            let stream = stream.into_std()?;
            stream.set_nonblocking(false)?;
            // As a server under test does: each write goes out at once.
            stream.set_nodelay(true)?;
            connections.push(stream);
        }
        Ok::<(), std::io::Error>(())
    };
    tokio::time::timeout(DRAINER_WAIT, accepting)
        .await
        .map_err(|_| "floor: the drainer did not connect in time")?
        .map_err(|e| format!("floor: accept: {e}"))?;

    let sample = |pid: &str| proc::sample(pid).map_err(|e| format!("floor: {e}"));
    let (me_from, drainer_from) = (sample("self")?, sample(&pid)?);
    let started = Instant::now();
    let working = std::thread::spawn(move || work(connections));
    // The working thread blocks; this thread only waits for it.
    let count = loop {
        if working.is_finished() {
            break working.join().map_err(|_| "floor: the writer panicked")?;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let elapsed = started.elapsed();
    let me_to = sample("self")?;
    let count = count.map_err(|e| format!("floor: write: {e}"))?;
    // The connections are closed: the drainer reads to the end and says how much.
    let last = tokio::time::timeout(DRAINER_WAIT, lines.next_line())
        .await
        .map_err(|_| "floor: the drainer did not finish in time")?
        .map_err(|e| format!("floor: drainer output: {e}"))?
        .ok_or("floor: the drainer exited without its count")?;
    let drainer_to = sample(&pid)?;
    let drained_bytes = parse_drained(&last)?;
    let _ = drainer.kill().await;
    Ok(Driven {
        count,
        drained_bytes,
        writer_cpu_s: me_to.cpu_seconds - me_from.cpu_seconds,
        drainer_cpu_s: drainer_to.cpu_seconds - drainer_from.cpu_seconds,
        elapsed,
    })
}

/// The floor of a heartbeat round trip (`floor --ping`).
async fn coordinate_pings(flags: &Flags) -> Result<Report, String> {
    let clients = flags.count("clients", 10_000)?;
    let interval = Duration::from_millis(flags.get("interval-ms", 2_000)?);
    let duration = Duration::from_secs_f64(flags.positive("duration", 20.0)?);
    flags.finish()?;
    let started = Instant::now();
    let mut report = Report {
        scenario: "floor".into(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        clients: clients as u64,
        ..Report::default()
    };
    report.setting("ping", true);
    report.setting("clients", clients);
    report.setting("interval_ms", interval.as_millis() as u64);
    report.setting("duration_s", duration.as_secs_f64());
    let driven = drive(clients, true, move |c| ping_all(c, interval, duration)).await?;
    report.connected = clients as u64;
    let round_trips = driven.count;
    report.figure("round_trips", "ping round trips", round_trips as f64, "");
    report.figure(
        "cpu_us_per_round_trip",
        "pinger CPU per round trip (write the ping, read the pong)",
        per_second(driven.writer_cpu_s * 1e6, round_trips as f64),
        "µs",
    );
    report.figure(
        "drainer_cpu_us_per_round_trip",
        "answering client's CPU per round trip",
        per_second(driven.drainer_cpu_s * 1e6, round_trips as f64),
        "µs",
    );
    let expected = round_trips * ping_frames().0.len() as u64;
    check_drained(&mut report, "pings", driven.drained_bytes, expected);
    report.duration = started.elapsed();
    Ok(report)
}

/// A server's ping and a client's pong, as Volley puts them on the wire: the ping
/// unmasked, the pong masked (with a zero mask: the same bytes, the same length).
fn ping_frames() -> (Vec<u8>, Vec<u8>) {
    use volley::protocol::{encode, Frame};
    let ping = encode(&Frame::Ping);
    let pong = encode(&Frame::Pong { last_seq: 0 });
    let mut ping_frame = vec![0x82, ping.len() as u8];
    ping_frame.extend_from_slice(&ping);
    let mut pong_frame = vec![0x82, 0x80 | pong.len() as u8, 0, 0, 0, 0];
    pong_frame.extend_from_slice(&pong);
    (ping_frame, pong_frame)
}

/// Grid slots per interval, as the server's `ping_grid` lays them at 2 s.
const PING_SLOTS: usize = 20;

/// The pinger: on one thread with its own reactor, as a server's worker thread; each
/// grid slot, one `write()` of the ping to each of the slot's connections, then one
/// `read()` of each pong as it is ready. Returns the round trips done.
fn ping_all(
    connections: Vec<TcpStream>,
    interval: Duration,
    duration: Duration,
) -> std::io::Result<u64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let streams = connections
            .into_iter()
            .map(|c| {
                c.set_nonblocking(true)?;
                tokio::net::TcpStream::from_std(c)
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let (ping, pong) = ping_frames();
        let grid = interval / PING_SLOTS as u32;
        let rounds = (duration.as_secs_f64() / grid.as_secs_f64()).floor() as u32;
        let start = tokio::time::Instant::now();
        let mut buf = [0u8; 64];
        let mut round_trips = 0;
        for k in 0..rounds {
            tokio::time::sleep_until(start + grid * k).await;
            let slot = || {
                streams
                    .iter()
                    .skip(k as usize % PING_SLOTS)
                    .step_by(PING_SLOTS)
            };
            for stream in slot() {
                // A few bytes to an idle connection: the socket takes them at once
                // (once the reactor has seen it writable, the first time).
                loop {
                    stream.writable().await?;
                    match stream.try_write(&ping) {
                        Ok(n) if n == ping.len() => break,
                        Ok(_) => return Err(std::io::Error::other("ping not taken whole")),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            for stream in slot() {
                let mut got = 0;
                while got < pong.len() {
                    stream.readable().await?;
                    match stream.try_read(&mut buf) {
                        Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                        Ok(n) => got += n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
                round_trips += 1;
            }
        }
        Ok(round_trips)
    })
}

/// The writer: each round, at its due time, one `write()` of `batch` messages to
/// every connection (std's `write_all` is one `write()` while the socket buffer has
/// room). Closing the connections at the end tells the drainer it is over.
fn write_all(mut connections: Vec<TcpStream>, plan: FloorPlan) -> std::io::Result<()> {
    let chunk = vec![b'x'; plan.size * plan.batch.max(1)];
    let start = Instant::now();
    for k in 0..plan.writes() {
        if let Some(wait) = plan.due(k).checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        for connection in &mut connections {
            connection.write_all(&chunk)?;
        }
    }
    Ok(())
}

/// `drained <bytes>` → bytes.
fn parse_drained(line: &str) -> Result<u64, String> {
    line.strip_prefix("drained ")
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("floor: unexpected drainer output '{line}'"))
}

/// The drainer process: `loadtest floor-drain <addr> <clients>`. Opens the
/// connections, reads every one to its end, says `drained <bytes>`, and waits for
/// its stdin to close (so the writer can still read its CPU time): it never
/// outlives the writer.
pub fn drain(args: &[String]) -> Result<(), String> {
    let (addr, clients, echo) = match args {
        [addr, clients] => (addr, clients, false),
        [addr, clients, echo] if echo == "echo" => (addr, clients, true),
        _ => return Err("usage: loadtest floor-drain <addr> <clients> [echo]".into()),
    };
    let pong = ping_frames().1;
    let addr: SocketAddr = addr.parse().map_err(|e| format!("'{addr}': {e}"))?;
    let clients: usize = clients.parse().map_err(|e| format!("'{clients}': {e}"))?;
    std::thread::spawn(|| {
        for _ in std::io::stdin().lock().lines() {}
        std::process::exit(0);
    });
    let bytes = actix_rt::System::new().block_on(async move {
        let mut readers = Vec::with_capacity(clients);
        for _ in 0..clients {
            let mut stream = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect {addr}: {e}"))?;
            let pong = pong.clone();
            readers.push(actix_rt::spawn(async move {
                let mut buf = vec![0u8; READ_CHUNK];
                let mut total = 0u64;
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    total += n as u64;
                    // A pinger waits for each answer before the next ping: one
                    // read is one ping.
                    if echo && stream.write_all(&pong).await.is_err() {
                        break;
                    }
                }
                total
            }));
        }
        let mut bytes = 0;
        for reader in readers {
            bytes += reader.await.unwrap_or(0);
        }
        Ok::<u64, String>(bytes)
    })?;
    let mut out = std::io::stdout();
    writeln!(out, "drained {bytes}").map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(batch: usize) -> FloorPlan {
        FloorPlan {
            clients: 2000,
            size: 120,
            rate: 20.0,
            duration: Duration::from_secs(20),
            batch,
        }
    }

    #[test]
    fn batching_keeps_the_message_count_and_spaces_the_writes() {
        assert_eq!(plan(1).writes(), 400);
        assert_eq!(plan(1).messages(), 800_000);
        assert_eq!(plan(10).writes(), 40);
        assert_eq!(plan(10).messages(), 800_000);
        assert_eq!(plan(1).due(3), Duration::from_millis(150));
        assert_eq!(plan(10).due(3), Duration::from_millis(1500));
        // A duration that is not whole batches rounds down.
        let short = FloorPlan {
            duration: Duration::from_millis(1234),
            ..plan(10)
        };
        assert_eq!(short.writes(), 2);
    }

    #[test]
    fn cpu_is_given_per_message() {
        let f = FloorFigures {
            messages: 800_000,
            writer_cpu_s: 2.0,
            drainer_cpu_s: 1.2,
            ..FloorFigures::default()
        };
        assert!((f.writer_us_per_message() - 2.5).abs() < 1e-9);
        assert!((f.drainer_us_per_message() - 1.5).abs() < 1e-9);
        assert_eq!(FloorFigures::default().writer_us_per_message(), 0.0);
    }

    #[test]
    fn the_drainer_line_is_read_or_refused() {
        assert_eq!(parse_drained("drained 96000"), Ok(96_000));
        assert!(parse_drained("drained lots").is_err());
        assert!(parse_drained("connected").is_err());
    }
}
