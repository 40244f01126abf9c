//! The Volley server the scenarios run against: `loadtest serve`. With `--spawn` the
//! load tester starts it as its own process, so that its CPU and memory are measured
//! apart from the load; it can also be started by hand and pointed at with `--url`.
//!
//! It has what the scenarios need and nothing else:
//! - namespace `/lt`: `echo` (ack), `join_room` (ack), `publish` (re-broadcast to the
//!   fan-out room as `pub`), `say` (a chat message to a room, re-broadcast to the
//!   room as `said` with the sender's id), `c2s` (a numbered message, checked), `stream` (start
//!   sending this socket numbered `s2c` messages at a rate), and `flush` (ack: stop
//!   them, and say what both numbered streams looked like);
//! - namespace `/game`: the standard game events over a `pulse` room type whose state
//!   tells each player the last input the room applied, plus `input` (checked before
//!   it goes to the room) and `flush`;
//! - namespace `/chat`: the chat of `loadtest compare`, as its peers run it
//!   (`scenarios/chat.rs`): join with `{"name"}`, `join` a room (ack `"ok"`),
//!   `say` `(room, text)` → `message` `{"from", "text"}` to the room's other members;
//! - `GET /loadtest/metrics`: [`ServerMetrics`], including the game rooms' tick
//!   lateness from [`GameRooms::all_metrics`].

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use volley::{ConnectRate, LeaveReason, RateLimit, Socket, Volley, VolleyBuilder};
use volley::{Game, GameRooms, Namespace, RoomContext, RoomOptions, RoomSetup, SessionId};

use crate::args::Flags;
use crate::chat_wire::{ChatMessage, CHAT_NAMESPACE};
use crate::seq::{SeqCheck, SeqCounts};

/// The namespace of the connect, idle, fan-out and reconnect scenarios.
pub const NAMESPACE: &str = "/lt";
/// The namespace of the rooms scenario.
pub const GAME_NAMESPACE: &str = "/game";
/// The game room type of the rooms scenario.
pub const ROOM_TYPE: &str = "pulse";
/// The room every fan-out receiver joins.
pub const FANOUT_ROOM: &str = "fanout";
/// Where the server's metrics are served.
pub const METRICS_PATH: &str = "/loadtest/metrics";
/// `POST`: drops every session's connection, as a network failure would (the
/// `reconnect --cut server` storm); answers how many.
pub const CUT_PATH: &str = "/loadtest/cut";

/// A fan-out message: the publisher's number for it, when it was sent, and padding
/// to the size asked for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Publish {
    pub seq: u64,
    pub sent_us: u64,
    pub pad: String,
}

/// What the server reads of an input before the room does: its number, if any.
#[derive(Deserialize)]
struct Numbered {
    seq: Option<u64>,
}

/// A player's input: its number in the player's stream.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Input {
    pub seq: u64,
}

/// The state of a pulse room: the tick, and for each player the number of the last
/// input the room applied (so a client measures input → state latency).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PulseState {
    pub tick: u64,
    pub applied: Vec<(u64, u64)>,
}

/// What `flush` answers: the client's numbered stream as this socket saw it, and how
/// many numbered messages the server sent it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct FlushAnswer {
    pub c2s: SeqCounts,
    pub s2c_sent: u64,
}

/// Server figures for the report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerMetrics {
    pub pid: u32,
    /// Live sessions (attached or detached).
    pub sessions: usize,
    pub rooms: usize,
    pub players: usize,
    pub ticks: u64,
    pub skipped_ticks: u64,
    pub inputs_applied: u64,
    pub inputs_dropped: u64,
    pub state_frames: u64,
    /// Tick lateness. Each room keeps a histogram with fixed buckets; its p50 and p99
    /// are bucket upper bounds. `*_median`: the median room's; `*_worst`: the worst
    /// room's; `max` and `mean` are over every tick of every room.
    pub lateness_p50_us_median: u64,
    pub lateness_p99_us_median: u64,
    pub lateness_p99_us_worst: u64,
    pub lateness_max_us: u64,
    pub lateness_mean_us: u64,
    /// The worst room's p99 of how long a tick (inputs, simulation, fan-out) took.
    pub tick_duration_p99_us_worst: u64,
}

/// `loadtest serve`'s settings.
pub struct ServeOptions {
    pub addr: SocketAddr,
    pub ping: Duration,
    pub ping_timeout: Duration,
    pub grace: Duration,
    /// `Config::max_detached_sessions` (`--max-detached N`; default: the
    /// framework's, as many as `max_connections`).
    pub max_detached: Option<usize>,
    pub tick_rate: u32,
    pub room_size: usize,
    /// `Config::io_window` (`--io-window-us`, default 0: off).
    pub io_window: Duration,
    /// Stop when stdin closes (set when the load tester spawned us).
    pub stop_on_eof: bool,
    /// Join the cluster on this Redis (`--redis URL`, feature `cluster`).
    pub redis: Option<String>,
}

impl ServeOptions {
    pub fn from_flags(flags: &Flags) -> Result<ServeOptions, String> {
        let ms = |name, default| flags.get::<u64>(name, default).map(Duration::from_millis);
        Ok(ServeOptions {
            addr: flags.get("addr", SocketAddr::from(([127, 0, 0, 1], 8090)))?,
            ping: ms("ping-ms", 25_000)?,
            ping_timeout: ms("ping-timeout-ms", 20_000)?,
            grace: Duration::from_secs(flags.get("grace-s", 120)?),
            max_detached: flags.opt("max-detached")?,
            tick_rate: flags.get("tick-rate", 30)?,
            room_size: flags.count("room-size", 8)?,
            io_window: Duration::from_micros(flags.get("io-window-us", 0)?),
            stop_on_eof: flags.switch("stop-on-eof"),
            redis: flags.opt("redis")?,
        })
    }
}

/// The game of the rooms scenario: it remembers each player's last input number and
/// shows them all to everyone. Trivial on purpose: the load is the framework's.
#[derive(Default)]
struct Pulse {
    tick: u64,
    applied: BTreeMap<SessionId, u64>,
}

impl Game for Pulse {
    type Input = Input;
    type Subset = ();
    type State = PulseState;

    fn create(_: &RoomSetup<'_>) -> Result<Self, String> {
        Ok(Pulse::default())
    }

    fn leave(&mut self, _: &mut RoomContext, player: SessionId, _: &LeaveReason) {
        self.applied.remove(&player);
    }

    fn input(&mut self, _: &mut RoomContext, player: SessionId, input: Input) {
        self.applied.insert(player, input.seq);
    }

    fn tick(&mut self, ctx: &mut RoomContext, _: Duration) {
        self.tick = ctx.tick();
    }

    fn subset(&self, _: SessionId) {}

    fn state(&self, _: &()) -> PulseState {
        PulseState {
            tick: self.tick,
            applied: self.applied.iter().map(|(p, s)| (p.0, *s)).collect(),
        }
    }
}

/// Per socket: the check of its client's numbered stream, and the server's own
/// numbered stream to the client. Events of one socket, and its ticker, run on its
/// session's thread one at a time, so the lock is never contended.
#[derive(Default)]
struct Stream(Mutex<Streams>);

#[derive(Default)]
struct Streams {
    /// What arrived of the client's stream.
    c2s: SeqCheck,
    /// Numbered messages sent to the client so far.
    s2c_sent: u64,
    /// Whether the ticker sends (from `stream` until `flush`).
    ticking: bool,
}

impl Stream {
    fn of(socket: &Socket) -> Option<std::sync::MutexGuard<'_, Streams>> {
        let stream = socket.data::<Stream>()?;
        Some(stream.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Stops the ticker and says what the streams looked like.
    fn flush(socket: &Socket) -> FlushAnswer {
        Stream::of(socket).map_or_else(FlushAnswer::default, |mut s| {
            s.ticking = false;
            FlushAnswer {
                c2s: s.c2s.counts(),
                s2c_sent: s.s2c_sent,
            }
        })
    }

    /// Sends the client numbered `s2c` messages `rate` times a second, for at most
    /// `limit` seconds or until `flush`. They are sent whether or not the client is
    /// connected: while it is not, its session keeps them for replay. The first
    /// comes at a random point of the first period, so that thousands of streams
    /// asked for at once do not send in step (and a short cut finds some of them
    /// sending: replayed on resume).
    fn tick(socket: &Socket, rate: f64, limit: f64) {
        match Stream::of(socket) {
            Some(mut s) if !s.ticking => s.ticking = true,
            _ => return,
        }
        let socket = socket.clone();
        let period = Duration::from_secs_f64(1.0 / rate.clamp(0.1, 1_000.0));
        let until = Instant::now() + Duration::from_secs_f64(limit.clamp(0.0, 3_600.0));
        actix_rt::spawn(async move {
            let first = tokio::time::Instant::now() + period.mul_f64(rand::random::<f64>());
            let mut ticks = tokio::time::interval_at(first, period);
            while Instant::now() < until {
                ticks.tick().await;
                let n = match Stream::of(&socket) {
                    Some(mut s) if s.ticking => {
                        s.s2c_sent += 1;
                        s.s2c_sent - 1
                    }
                    _ => return,
                };
                let _ = socket.emit("s2c", &n);
            }
        });
    }
}

fn lt_namespace() -> Namespace {
    Namespace::new()
        .authorize(|_| Ok(Stream::default()))
        .on_ack("echo", |_, value: Value, ack| {
            let _ = ack.send(&value);
        })
        .on_ack("join_room", |socket, room: String, ack| {
            socket.join(&room);
            let _ = ack.send(&room);
        })
        .on("publish", |socket, message: Publish| {
            let _ = socket.to(FANOUT_ROOM).emit("pub", &message);
        })
        .on("say", |socket, (room, n): (String, u64)| {
            let _ = socket.to(&room).emit("said", &(socket.id().0, n));
        })
        .on("c2s", |socket, n: u64| {
            if let Some(mut s) = Stream::of(socket) {
                s.c2s.observe(n);
            }
        })
        .on("stream", |socket, (rate, limit): (f64, f64)| {
            Stream::tick(socket, rate, limit);
        })
        .on_ack("flush", |socket, (): (), ack| {
            let _ = ack.send(&Stream::flush(socket));
        })
}

/// A chat member's name, from its auth payload.
struct ChatName(String);

fn chat_namespace() -> Namespace {
    Namespace::new()
        .authorize(|hs| {
            let auth: Value = hs.auth()?;
            let name = auth["name"].as_str().unwrap_or("anonymous");
            Ok(ChatName(name.to_owned()))
        })
        .on_ack("join", |socket, room: String, ack| {
            socket.join(&room);
            let _ = ack.send(&"ok");
        })
        .on("say", |socket, (room, text): (String, String)| {
            let from = socket.data::<ChatName>().map(|n| n.0.clone());
            let message = ChatMessage {
                from: from.unwrap_or_default(),
                text,
            };
            let _ = socket.to(&room).emit("message", &message);
        })
}

fn game_namespace(rooms: &GameRooms) -> Namespace {
    let inputs = rooms.clone();
    rooms
        .with_events(Namespace::new().authorize(|_| Ok(Stream::default())))
        // Replaces the standard `input` handler: check the number, then queue it.
        .on_json("input", move |socket, raw| {
            // Its number only: the room parses the rest once, at its tick.
            if let Ok(Numbered { seq: Some(seq) }) = serde_json::from_str(raw.get()) {
                if let Some(mut s) = Stream::of(socket) {
                    s.c2s.observe(seq);
                }
            }
            let _ = inputs.input_json(socket, raw);
        })
        .on_ack("flush", |socket, (): (), ack| {
            let _ = ack.send(&Stream::flush(socket));
        })
}

/// What the metrics endpoint needs.
struct Handles {
    volley: Volley,
    rooms: GameRooms,
}

/// Drops every session's connection at once (`Volley::drop_connection`, all asked
/// together); answers how many were dropped.
async fn cut(handles: web::Data<Handles>) -> HttpResponse {
    let volley = &handles.volley;
    let ids: Vec<_> = volley.sessions().await.into_iter().map(|s| s.id).collect();
    let drops = ids.into_iter().map(|id| volley.drop_connection(id));
    let dropped = futures_util::future::join_all(drops)
        .await
        .into_iter()
        .filter(|&dropped| dropped)
        .count();
    HttpResponse::Ok().body(dropped.to_string())
}

async fn metrics(handles: web::Data<Handles>) -> HttpResponse {
    let sessions = handles.volley.local_session_count().await;
    let rooms = handles.rooms.all_metrics().await;
    let mut m = ServerMetrics {
        pid: std::process::id(),
        sessions,
        rooms: rooms.len(),
        ..ServerMetrics::default()
    };
    let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
    let mut weighted_sum: u128 = 0;
    for r in &rooms {
        m.players += r.players;
        m.ticks += r.ticks;
        m.skipped_ticks += r.skipped_ticks;
        m.inputs_applied += r.inputs_applied;
        m.inputs_dropped += r.inputs_dropped;
        m.state_frames += r.frames_sent;
        p50s.push(us(r.lateness.p50));
        p99s.push(us(r.lateness.p99));
        m.lateness_max_us = m.lateness_max_us.max(us(r.lateness.max));
        weighted_sum += u128::from(us(r.lateness.mean)) * u128::from(r.lateness.count);
        m.tick_duration_p99_us_worst = m.tick_duration_p99_us_worst.max(us(r.tick_duration.p99));
    }
    let counted: u64 = rooms.iter().map(|r| r.lateness.count).sum();
    if counted > 0 {
        m.lateness_mean_us = u64::try_from(weighted_sum / u128::from(counted)).unwrap_or(0);
    }
    m.lateness_p50_us_median = median(&mut p50s);
    m.lateness_p99_us_median = median(&mut p99s);
    m.lateness_p99_us_worst = p99s.iter().copied().max().unwrap_or(0);
    HttpResponse::Ok().json(m)
}

fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

/// Runs the server until the process is stopped (or stdin closes, with
/// `--stop-on-eof`). Prints `listening <ws url>` on stdout once it accepts.
/// Joins `builder` to the cluster on `redis`, if given.
fn in_cluster(builder: VolleyBuilder, redis: Option<&str>) -> std::io::Result<VolleyBuilder> {
    let Some(url) = redis else {
        return Ok(builder);
    };
    #[cfg(feature = "cluster")]
    {
        let cluster = volley::cluster::RedisCluster::new(url)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        Ok(builder.cluster(cluster))
    }
    #[cfg(not(feature = "cluster"))]
    {
        let _ = builder;
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("--redis {url}: build the load tester with its default features (cluster)"),
        ))
    }
}

pub async fn serve(opts: ServeOptions) -> std::io::Result<()> {
    let pulse = RoomOptions {
        max_players: opts.room_size,
        tick_rate: opts.tick_rate,
        broadcast_rate: opts.tick_rate,
        ..RoomOptions::default()
    };
    let rooms = GameRooms::builder().game::<Pulse>(ROOM_TYPE, pulse).build();
    let builder = Volley::builder()
        .heartbeat(opts.ping, opts.ping_timeout)
        .resume_grace(opts.grace)
        .io_window(opts.io_window)
        // Every simulated client comes from this machine's address, and a scenario
        // may push one client past a player's rate: measure the server, not its limits.
        .max_connections(usize::MAX, usize::MAX)
        .connect_rate_per_ip(ConnectRate::OFF)
        .rate_limit(RateLimit::OFF)
        .namespace(NAMESPACE, lt_namespace())
        .namespace(GAME_NAMESPACE, game_namespace(&rooms))
        .namespace(CHAT_NAMESPACE, chat_namespace());
    let builder = match opts.max_detached {
        Some(sessions) => builder.max_detached_sessions(sessions),
        None => builder,
    };
    let volley = in_cluster(builder, opts.redis.as_deref())?.build();
    // On a cluster the game rooms are the cluster's: a player of any node joins the
    // fullest matching room of any node, new rooms go to the least loaded node.
    #[cfg(feature = "cluster")]
    rooms.share_in(&volley);
    let handles = web::Data::new(Handles {
        volley: volley.clone(),
        rooms,
    });
    let server = volley
        .http_server(move || {
            App::new()
                .app_data(handles.clone())
                .route(METRICS_PATH, web::get().to(metrics))
                .route(CUT_PATH, web::post().to(cut))
        })
        // Connection storms: let the kernel queue as many as it allows.
        .backlog(4096)
        .shutdown_timeout(1)
        .bind(opts.addr)?;
    let addr = server.addrs().first().copied().unwrap_or(opts.addr);
    let server = server.run();
    if opts.stop_on_eof {
        // The load tester holds our stdin: when it ends (even killed), so do we.
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
    }
    let mut out = std::io::stdout();
    writeln!(out, "listening ws://{addr}/volley")?;
    out.flush()?;
    server.await
}
