//! The control channel between the coordinator and its workers, as JSON lines: the
//! [`Plan`] and then [`Command`]s on a worker's stdin, [`Message`]s (progress, ready,
//! the outcome) on its stdout.
//!
//! Workers are child processes so that a run can hold more connections than one
//! process has file descriptors, and use every core; everything a worker measures
//! travels back in its [`Outcome`], and the coordinator adds the outcomes up.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::histogram::Histogram;
use crate::seq::SeqCounts;

/// Microseconds since the Unix epoch: the clock every process of a run shares, used
/// for latencies measured across processes (publisher to receiver) and for the time
/// of a cut.
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// What one worker runs: the first line of its stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// The worker's number, from 0.
    pub worker: usize,
    /// The Volley server's WebSocket URL.
    pub url: String,
    /// Global number of the worker's first client (clients are numbered across
    /// workers: a room's players, a source address).
    pub first_client: usize,
    /// Clients this worker runs.
    pub clients: usize,
    /// Source addresses to spread clients over (`127.0.0.1` up to `127.0.0.<sources>`);
    /// 0 lets the system choose.
    pub sources: usize,
    /// Connections this worker opens per second.
    pub connect_rate: f64,
    /// `"websocket"` or `"polling"`.
    pub transport: String,
    /// What the clients do.
    pub scenario: ScenarioPlan,
}

/// Who plays a game room (`rooms --player`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Player {
    /// The framework's Rust client.
    #[default]
    Client,
    /// The load tester's lean player on a raw WebSocket (`rawplayer.rs`).
    Raw,
    /// A Socket.IO client (`sioclient.rs`) on the server's `/socket.io/`.
    SocketIo,
    /// The same, opening with long polling and upgrading to WebSocket.
    SocketIoUpgrade,
}

impl Player {
    /// Its `--player` name.
    pub fn name(self) -> &'static str {
        match self {
            Player::Client => "client",
            Player::Raw => "raw",
            Player::SocketIo => "socketio",
            Player::SocketIoUpgrade => "socketio-upgrade",
        }
    }
}

/// The scenario-specific part of a [`Plan`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "scenario", rename_all = "snake_case")]
pub enum ScenarioPlan {
    Connect,
    Idle,
    Fanout {
        /// The protocol the receivers speak (`--protocol`).
        #[serde(default)]
        dialect: crate::chat_wire::Dialect,
    },
    Rooms {
        /// Players per room.
        room_size: usize,
        /// Inputs each player sends per second.
        input_hz: f64,
        /// Who the players are (`--player`).
        #[serde(default)]
        player: Player,
    },
    Reconnect {
        /// Numbered messages per second each session sends, and the server sends it.
        msg_rate: f64,
        /// Longest the server's stream to a session may run, in seconds.
        stream_limit_s: f64,
        /// First reconnection delay of the clients' back-off, in ms.
        backoff_ms: u64,
        /// Lean players on a raw WebSocket (`--player raw`) that cut their own
        /// connections, instead of the Rust client behind a cutting proxy.
        #[serde(default)]
        raw: bool,
        /// The server drops the connections (`--cut server`): no proxy, and players
        /// do not cut their own.
        #[serde(default)]
        server_cut: bool,
    },
    /// The soak: numbered streams both ways, chat in rooms, a game room, random cuts
    /// (see `scenarios/soak.rs`). The fuzz scenario's well-behaved clients are soak
    /// clients without game or cuts.
    Soak(SoakPlan),
    /// A member of `loadtest compare`'s chat, speaking `dialect` (see
    /// `scenarios/chat.rs`).
    Chat {
        dialect: crate::chat_wire::Dialect,
    },
}

/// What each soak client does, per second unless said otherwise.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakPlan {
    /// Numbered messages each session sends, and the server sends it.
    pub msg_rate: f64,
    /// Chat messages each client says to its chat room.
    pub chat_rate: f64,
    /// Clients per chat room.
    pub chat_room_size: usize,
    /// Players per game room, and the inputs each sends; no game when 0.
    pub room_size: usize,
    pub input_hz: f64,
    /// How often each connection is cut, per minute (0: never).
    pub cuts_per_min: f64,
    /// First reconnection delay of the clients' back-off, in ms.
    pub backoff_ms: u64,
    /// Longest the server's stream to a session may run, in seconds.
    pub stream_limit_s: f64,
}

/// What the coordinator tells its workers after the plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// The measured phase begins (send inputs, stream messages).
    Start,
    /// Cut every proxied connection at this time.
    Cut { at_unix_us: u64 },
    /// Stop sending, check what arrived, report. `expected`: messages published to
    /// every client (fan-out), else 0.
    Finish { expected: u64 },
}

/// What a worker tells the coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum Message {
    /// Counters so far, a few times a second.
    Progress { counters: Counters },
    /// Every client of the worker has connected (or failed to).
    Ready,
    /// The worker's outcome; the worker exits after it.
    Done { outcome: Box<Outcome> },
}

/// Running totals of one worker (or, added up, of a run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    /// Clients connected and ready for the scenario.
    pub connected: u64,
    /// Clients that could not connect or join.
    pub failed: u64,
    /// Clients done.
    pub finished: u64,
    /// Numbered reliable messages sent by clients.
    pub sent: u64,
    /// Emits refused because the client's send buffer was full (not sent, so
    /// neither lost nor counted in `sent`).
    pub refused: u64,
    /// Messages received by clients (deliveries, states, echoes).
    pub delivered: u64,
    /// Connections that dropped by themselves (not by a scenario's cut).
    pub drops: u64,
    /// Sessions resumed after a cut.
    pub resumed: u64,
    /// Sessions the server no longer had on reconnection (a fresh one started).
    pub sessions_lost: u64,
    /// Reconnection attempts made.
    pub attempts: u64,
    /// Reconnection attempts that failed (a later one may have succeeded).
    pub failed_attempts: u64,
    /// Frames the server replayed and the clients resent when sessions resumed.
    pub replayed: u64,
    pub resent: u64,
    /// Heartbeat pings the clients received.
    pub pings: u64,
    /// Pings received in whole one-second windows during which the client stayed
    /// connected, and the length of those windows in µs: pings per connected
    /// second, free of the gaps that cuts make.
    pub window_pings: u64,
    pub window_us: u64,
}

impl Counters {
    /// Adds `other` to these.
    pub fn add(&mut self, o: &Counters) {
        self.connected += o.connected;
        self.failed += o.failed;
        self.finished += o.finished;
        self.sent += o.sent;
        self.refused += o.refused;
        self.delivered += o.delivered;
        self.drops += o.drops;
        self.resumed += o.resumed;
        self.sessions_lost += o.sessions_lost;
        self.attempts += o.attempts;
        self.failed_attempts += o.failed_attempts;
        self.replayed += o.replayed;
        self.resent += o.resent;
        self.pings += o.pings;
        self.window_pings += o.window_pings;
        self.window_us += o.window_us;
    }

    /// Clients that connected or failed.
    pub fn settled(&self) -> u64 {
        self.connected + self.failed
    }
}

/// One checked stream direction, added up over sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamTotals {
    /// Messages the sending ends sent.
    pub sent: u64,
    /// Distinct ones that arrived.
    pub received: u64,
    /// Sent and never arrived.
    pub lost: u64,
    /// Arrived more than once.
    pub duplicated: u64,
    /// Arrived after a later one.
    pub reordered: u64,
}

impl StreamTotals {
    /// Adds one session's stream: `sent` by the sender, `counts` seen by the receiver.
    pub fn add_session(&mut self, sent: u64, counts: SeqCounts) {
        self.sent += sent;
        self.received += counts.received;
        self.lost += counts.lost(sent);
        self.duplicated += counts.duplicated;
        self.reordered += counts.reordered;
    }

    /// Adds another total.
    pub fn add(&mut self, o: &StreamTotals) {
        self.sent += o.sent;
        self.received += o.received;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
    }
}

/// Everything a worker measured; added up over workers, everything a run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub counters: Counters,
    /// Latency histograms by name (`connect`, `delivery`, ...).
    pub histograms: BTreeMap<String, Histogram>,
    /// Checked streams by name (`fanout`, `c2s`, `s2c`, `inputs`).
    pub streams: BTreeMap<String, StreamTotals>,
    /// Unix time of the first and the last delivery, 0 if none.
    pub first_delivery_us: u64,
    pub last_delivery_us: u64,
    /// The first problems seen (client errors, drops), and how many there were.
    pub problems: Vec<String>,
    pub problem_count: u64,
    /// CPU seconds of the worker process (added up: of all workers).
    pub cpu_seconds: f64,
    /// Failed reconnection attempts by what went wrong (at most
    /// [`ATTEMPT_ERRORS_KEPT`] kinds; the rest under "other").
    pub attempt_errors: BTreeMap<String, u64>,
}

/// Kinds of failed reconnection attempts counted apart.
pub const ATTEMPT_ERRORS_KEPT: usize = 8;

/// Problems each worker reports in full; the rest are only counted.
pub const PROBLEMS_KEPT: usize = 10;

impl Outcome {
    /// Adds another worker's outcome to this one.
    pub fn add(&mut self, o: &Outcome) {
        self.counters.add(&o.counters);
        for (name, h) in &o.histograms {
            self.histograms.entry(name.clone()).or_default().merge(h);
        }
        for (name, s) in &o.streams {
            self.streams.entry(name.clone()).or_default().add(s);
        }
        if o.first_delivery_us > 0 {
            self.first_delivery_us = match self.first_delivery_us {
                0 => o.first_delivery_us,
                t => t.min(o.first_delivery_us),
            };
        }
        self.last_delivery_us = self.last_delivery_us.max(o.last_delivery_us);
        self.problems
            .extend(o.problems.iter().take(PROBLEMS_KEPT).cloned());
        self.problem_count += o.problem_count;
        self.cpu_seconds += o.cpu_seconds;
        for (error, n) in &o.attempt_errors {
            self.attempt_failed(error, *n);
        }
    }

    /// Counts `n` failed reconnection attempts that ended with `error`.
    pub fn attempt_failed(&mut self, error: &str, n: u64) {
        let kept = self.attempt_errors.len() < ATTEMPT_ERRORS_KEPT;
        let key = if kept || self.attempt_errors.contains_key(error) {
            error
        } else {
            "other"
        };
        *self.attempt_errors.entry(key.to_owned()).or_default() += n;
    }

    /// The failed attempts' errors, most frequent first, as one line.
    pub fn attempt_errors_line(&self) -> Option<String> {
        let mut kinds: Vec<_> = self.attempt_errors.iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(a.1));
        let parts: Vec<String> = kinds.iter().map(|(e, n)| format!("{n} × {e}")).collect();
        (!parts.is_empty()).then(|| format!("failed reconnection attempts: {}", parts.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_json_line_each_and_read_back() {
        let msg = Message::Progress {
            counters: Counters {
                connected: 3,
                ..Counters::default()
            },
        };
        let line = serde_json::to_string(&msg).unwrap();
        assert!(!line.contains('\n'));
        assert!(line.starts_with(r#"{"msg":"progress""#), "{line}");
        let back: Message = serde_json::from_str(&line).unwrap();
        assert!(matches!(back, Message::Progress { counters } if counters.connected == 3));
        let cmd: Command = serde_json::from_str(r#"{"cmd":"finish","expected":7}"#).unwrap();
        assert!(matches!(cmd, Command::Finish { expected: 7 }));
    }

    #[test]
    fn outcomes_add_up() {
        let mut one = Outcome::default();
        one.counters.connected = 2;
        one.streams.entry("s2c".into()).or_default().add_session(
            10,
            SeqCounts {
                received: 9,
                duplicated: 1,
                reordered: 0,
            },
        );
        one.first_delivery_us = 500;
        one.last_delivery_us = 900;
        let mut two = one.clone();
        two.first_delivery_us = 400;
        two.last_delivery_us = 1_000;
        let mut tally = Outcome::default();
        tally.add(&one);
        tally.add(&two);
        assert_eq!(tally.counters.connected, 4);
        let all = tally.streams["s2c"];
        assert_eq!((all.sent, all.lost, all.duplicated), (20, 2, 2));
        assert_eq!(
            (tally.first_delivery_us, tally.last_delivery_us),
            (400, 1_000)
        );
    }
}
