//! Server metrics in the Prometheus text format, served at `GET /metrics` when
//! [`Config::metrics`](crate::Config::metrics) is set (see [`MetricsRoute`]).
//!
//! Built on `prometheus-client` with one registry per server, so several servers in
//! one process (tests, a load tester) never share figures. The counters on paths that
//! already exist are plain atomics updated where the event happens (no lock, no
//! allocation); figures that are already kept elsewhere (game rooms, frames over a
//! client's limit) are read when a scrape comes, not counted twice. Labels are
//! bounded: a transport, a reason, a room *type*; never a session or room id.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry, Unit};

mod sharded;

use sharded::ShardedCounter;

use crate::game::metrics::{Summary, BOUNDS_US};
use crate::game::{GameRooms, RoomMetrics};
use crate::session::Shared;
use crate::DisconnectReason;

/// Who may read `GET /metrics`, and where it is served. Set it with
/// [`crate::VolleyBuilder::metrics`]; without it there is no metrics route.
///
/// A request must pass every check that is set: its TCP peer address must be listed
/// in `allowed` (else `403`), and it must carry `Authorization: Bearer <token>` (else
/// `401`; compared in constant time). With neither set, only loopback peers are
/// served. The peer is the TCP peer: behind a reverse proxy, use the token.
///
/// ```
/// use volley::{MetricsRoute, Volley};
///
/// let builder = Volley::builder().metrics(MetricsRoute::token("s3cret-scrape-token"));
/// ```
#[derive(Clone, Default)]
pub struct MetricsRoute {
    /// Path of the route. Default `/metrics`.
    pub path: String,
    /// The bearer token a scrape must carry. Default: none.
    pub token: Option<String>,
    /// Peer addresses allowed to scrape. Default: none (any peer, when a token is
    /// set; loopback only, when not).
    pub allowed: Vec<IpAddr>,
}

impl MetricsRoute {
    /// `/metrics`, for scrapes that carry `Authorization: Bearer <token>`.
    pub fn token(token: &str) -> Self {
        MetricsRoute {
            path: "/metrics".to_owned(),
            token: Some(token.to_owned()),
            allowed: Vec::new(),
        }
    }

    /// `/metrics`, for scrapes from these peer addresses only.
    pub fn from_addresses(allowed: &[IpAddr]) -> Self {
        MetricsRoute {
            path: "/metrics".to_owned(),
            token: None,
            allowed: allowed.to_vec(),
        }
    }

    /// Why `req` may not scrape, if it may not: the status and a text body.
    fn refusal(&self, req: &HttpRequest) -> Option<HttpResponse> {
        let peer = req.peer_addr().map(|a| a.ip().to_canonical());
        let listed = match (&self.token, self.allowed.is_empty()) {
            (_, false) => peer.is_some_and(|p| self.allowed.contains(&p)),
            (Some(_), true) => true,
            (None, true) => peer.is_some_and(|p| p.is_loopback()),
        };
        if !listed {
            return Some(HttpResponse::Forbidden().body("metrics: address not allowed\n"));
        }
        let Some(token) = &self.token else {
            return None;
        };
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if same_secret(given.as_bytes(), token.as_bytes()) {
            None
        } else {
            Some(
                HttpResponse::Unauthorized()
                    .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
                    .body("metrics: missing or wrong bearer token\n"),
            )
        }
    }
}

impl std::fmt::Debug for MetricsRoute {
    // The token is a secret: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsRoute")
            .field("path", &self.path)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("allowed", &self.allowed)
            .finish()
    }
}

/// Compares two secrets in time that depends on their lengths only.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let differ = given
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    given.len() == expected.len() && differ == 0
}

/// A counter of events, shared by the places that count them (a relaxed atomic add).
pub(crate) type EventCounter = Counter;

/// A label set of one bounded label.
type One = [(&'static str, &'static str); 1];

/// The figures of one server, and the registry they are exported from.
pub(crate) struct Metrics {
    registry: Registry,
    /// Figures read at scrape time (see [`ScrapeTime`]).
    scrape: Arc<ScrapeTime>,
    pub frames_in: ShardedCounter,
    pub bytes_in: ShardedCounter,
    pub frames_out: ShardedCounter,
    pub bytes_out: ShardedCounter,
    pub deliveries: ShardedCounter,
    pub broadcasts: Counter,
    pub acks_timed_out: Counter,
    pub volatile_dropped: Counter,
    pub sessions_opened: Counter,
    pub sessions_attached: Gauge,
    pub sessions_detached: Gauge,
    pub detaches: Counter,
    pub disconnects: Family<One, Counter>,
    pub connections_opened: Family<One, Counter>,
    connections: Family<One, Gauge>,
    pub resumes: Family<One, Counter>,
    namespace_connects: Family<One, Counter>,
    pub frames_replayed: Counter,
    pub ping_rtt: Histogram,
    pub refused: Family<One, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("volley");
        let scrape = Arc::new(ScrapeTime::default());
        r.register_collector(Box::new(scrape.clone()));
        let ping_rtt = Histogram::new(exponential_buckets(0.000_5, 2.0, 14));
        let m = Metrics {
            scrape,
            frames_in: ShardedCounter::default(),
            bytes_in: ShardedCounter::default(),
            frames_out: ShardedCounter::default(),
            bytes_out: ShardedCounter::default(),
            deliveries: ShardedCounter::default(),
            broadcasts: Counter::default(),
            acks_timed_out: Counter::default(),
            volatile_dropped: Counter::default(),
            sessions_opened: Counter::default(),
            sessions_attached: Gauge::default(),
            sessions_detached: Gauge::default(),
            detaches: Counter::default(),
            disconnects: Family::default(),
            connections_opened: Family::default(),
            connections: Family::default(),
            resumes: Family::default(),
            namespace_connects: Family::default(),
            frames_replayed: Counter::default(),
            ping_rtt,
            refused: Family::default(),
            registry: Registry::default(),
        };
        let counters: [(&str, &str, &Counter); 6] = [
            (
                "broadcasts",
                "Broadcasts emitted (room, rooms or namespace)",
                &m.broadcasts,
            ),
            (
                "acks_timed_out",
                "Server-to-client acknowledgements that timed out",
                &m.acks_timed_out,
            ),
            (
                "volatile_frames_dropped",
                "Volatile frames dropped: connection behind or absent",
                &m.volatile_dropped,
            ),
            ("sessions_opened", "Sessions opened", &m.sessions_opened),
            (
                "session_detaches",
                "Connections lost by sessions that stayed resumable",
                &m.detaches,
            ),
            (
                "frames_replayed",
                "Reliable frames replayed on resume",
                &m.frames_replayed,
            ),
        ];
        register_all(&mut r, None, &counters);
        // The delivery path's counters, one shard per thread.
        let hot = [
            (
                "frames_received",
                "Frames received from clients",
                &m.frames_in,
            ),
            (
                "frames_sent",
                "Frames handed to client connections",
                &m.frames_out,
            ),
            (
                "broadcast_deliveries",
                "Broadcast frames delivered to a session",
                &m.deliveries,
            ),
        ];
        register_all(&mut r, None, &hot);
        // With their unit appended: volley_received_bytes_total, volley_sent_bytes_total.
        let bytes = [
            (
                "received",
                "Bytes of frames received from clients",
                &m.bytes_in,
            ),
            ("sent", "Bytes handed to client connections", &m.bytes_out),
        ];
        register_all(&mut r, Some(Unit::Bytes), &bytes);
        let families: [(&str, &str, &Family<One, Counter>); 5] = [
            (
                "namespace_connects",
                "Namespace connects, by result (ok, unauthorized, refused)",
                &m.namespace_connects,
            ),
            ("disconnects", "Sessions ended, by reason", &m.disconnects),
            (
                "connections_opened",
                "Connections accepted, by transport",
                &m.connections_opened,
            ),
            ("resumes", "Session resumes, by result", &m.resumes),
            ("refused", "Client input refused, by reason", &m.refused),
        ];
        register_all(&mut r, None, &families);
        let sessions = [
            (
                "sessions_attached",
                "Sessions with a connection",
                &m.sessions_attached,
            ),
            (
                "sessions_detached",
                "Sessions without a connection, resumable",
                &m.sessions_detached,
            ),
        ];
        register_all(&mut r, None, &sessions);
        r.register(
            "connections",
            "Open connections, by transport",
            m.connections.clone(),
        );
        r.register_with_unit(
            "ping_rtt",
            "Heartbeat round-trip time",
            Unit::Seconds,
            m.ping_rtt.clone(),
        );
        Metrics { registry: r, ..m }
    }
}

/// Registers each `(name, help, metric)` of `table`, with `unit` appended to names.
fn register_all<M: Metric + Clone>(
    r: &mut Registry,
    unit: Option<Unit>,
    table: &[(&str, &str, &M)],
) {
    for (name, help, metric) in table {
        let metric = (*metric).clone();
        match &unit {
            Some(unit) => r.register_with_unit(*name, *help, unit.clone(), metric),
            None => r.register(*name, *help, metric),
        }
    }
}

impl Metrics {
    /// A connection of `transport` (`"websocket"`, `"polling"`) was accepted; it
    /// counts as open until the value returned is dropped.
    pub fn connection_opened(&self, transport: &'static str) -> OpenConnection {
        self.connections_opened
            .get_or_create(&[("transport", transport)])
            .inc();
        let open = self
            .connections
            .get_or_create(&[("transport", transport)])
            .clone();
        open.inc();
        OpenConnection(open)
    }

    /// A session ended for `reason`.
    pub fn disconnected(&self, reason: &DisconnectReason) {
        self.disconnects
            .get_or_create(&[("reason", reason_label(reason))])
            .inc();
    }

    /// Counts one resume, `"ok"` or `"failed"`.
    pub fn resumed(&self, result: &'static str) {
        self.resumes.get_or_create(&[("result", result)]).inc();
    }

    /// Counts one namespace connect: `"ok"`, `"unauthorized"` (the middleware said
    /// no) or `"refused"` (unknown namespace, already joined, too many).
    pub fn namespace_connect(&self, result: &'static str) {
        self.namespace_connects
            .get_or_create(&[("result", result)])
            .inc();
    }

    /// Counts one refused client input.
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&[("reason", reason)]).inc();
    }

    /// Also reports the rooms of `rooms` at each scrape.
    pub fn watch(&self, rooms: GameRooms) {
        lock(&self.scrape.sources).push(rooms);
    }
}

/// One open connection in `volley_connections{transport}`, for as long as it lives.
pub(crate) struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A bounded label for a disconnect reason: its kind, never its free text.
fn reason_label(reason: &DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::ClientLeft => "client_left",
        DisconnectReason::TransportClosed => "transport_closed",
        DisconnectReason::PingTimeout => "ping_timeout",
        DisconnectReason::SlowConsumer => "slow_consumer",
        DisconnectReason::Protocol(_) => "protocol_error",
        DisconnectReason::Kicked(_) => "kicked",
        DisconnectReason::OutboxOverflow => "outbox_overflow",
        DisconnectReason::RateLimited => "rate_limited",
        DisconnectReason::Expired(_) => "expired",
    }
}

/// Figures kept elsewhere, copied in just before each scrape is encoded.
#[derive(Default)]
struct ScrapeTime {
    snapshot: Mutex<Snapshot>,
    sources: Mutex<Vec<GameRooms>>,
}

impl std::fmt::Debug for ScrapeTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScrapeTime").finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Snapshot {
    over_client_limit: u64,
    /// Per room type, summed over its live rooms.
    rooms: BTreeMap<String, RoomTotals>,
}

#[derive(Debug, Default)]
struct RoomTotals {
    rooms: i64,
    players: i64,
    held_seats: i64,
    ticks: u64,
    skipped_ticks: u64,
    inputs_dropped: u64,
    inputs_invalid: u64,
    lateness: Merged,
    duration: Merged,
}

/// One room type's tick histogram: its rooms' buckets added up.
#[derive(Debug, Default)]
struct Merged {
    counts: [u64; BOUNDS_US.len() + 1],
    sum: f64,
    count: u64,
}

impl Merged {
    fn add(&mut self, s: &Summary) {
        for (mine, theirs) in self.counts.iter_mut().zip(s.counts) {
            *mine += theirs;
        }
        self.sum += s.sum.as_secs_f64();
        self.count += s.count;
    }

    /// `(upper bound in seconds, count)` per bucket, the last one `+Inf`.
    fn buckets(&self) -> Vec<(f64, u64)> {
        let bounds = BOUNDS_US.iter().map(|&us| us as f64 / 1e6);
        let bounds = bounds.chain(std::iter::once(f64::INFINITY));
        bounds.zip(self.counts).collect()
    }
}

impl RoomTotals {
    fn add(&mut self, m: &RoomMetrics) {
        self.rooms += 1;
        self.players += m.players as i64;
        self.held_seats += m.held_seats as i64;
        self.ticks += m.ticks;
        self.skipped_ticks += m.skipped_ticks;
        self.inputs_dropped += m.inputs_dropped;
        self.inputs_invalid += m.inputs_invalid;
        self.lateness.add(&m.lateness);
        self.duration.add(&m.tick_duration);
    }
}

impl Collector for ScrapeTime {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = lock(&self.snapshot);
        let over = ConstCounter::new(snapshot.over_client_limit);
        let help = "Broadcast deliveries skipped: frame over the client's limit";
        over.encode(encoder.encode_descriptor(
            "frames_over_client_limit",
            help,
            None,
            over.metric_type(),
        )?)?;
        type Field = fn(&RoomTotals) -> f64;
        let gauges: [(&str, &str, Option<Unit>, Field); 3] = [
            ("game_rooms", "Live game rooms, by type", None, |t| {
                t.rooms as f64
            }),
            ("game_players", "Seated players, by room type", None, |t| {
                t.players as f64
            }),
            (
                "game_seats_held",
                "Seats held for dropped players, by room type",
                None,
                |t| t.held_seats as f64,
            ),
        ];
        for (name, help, unit, field) in gauges {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                unit.as_ref(),
                ConstGauge::new(0.0).metric_type(),
            )?;
            for (room_type, totals) in &snapshot.rooms {
                let labels = [("room_type", room_type.as_str())];
                ConstGauge::new(field(totals)).encode(family.encode_family(&labels)?)?;
            }
        }
        type Tick = fn(&RoomTotals) -> &Merged;
        let histograms: [(&str, &str, Tick); 2] = [
            (
                "game_tick_lateness",
                "How late ticks started, by room type",
                |t| &t.lateness,
            ),
            (
                "game_tick_duration",
                "How long ticks took, by room type",
                |t| &t.duration,
            ),
        ];
        for (name, help, field) in histograms {
            let kind = prometheus_client::metrics::MetricType::Histogram;
            let mut family = encoder.encode_descriptor(name, help, Some(&Unit::Seconds), kind)?;
            for (room_type, totals) in &snapshot.rooms {
                let labels = [("room_type", room_type.as_str())];
                let merged = field(totals);
                family
                    .encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(
                        merged.sum,
                        merged.count,
                        &merged.buckets(),
                        None,
                    )?;
            }
        }
        type Count = fn(&RoomTotals) -> u64;
        let counters: [(&str, &str, Count); 4] = [
            ("game_ticks", "Ticks run by live rooms, by room type", |t| {
                t.ticks
            }),
            (
                "game_ticks_skipped",
                "Ticks skipped by live rooms (too far behind), by room type",
                |t| t.skipped_ticks,
            ),
            (
                "game_inputs_dropped",
                "Inputs dropped (over max_inputs_per_tick), by room type",
                |t| t.inputs_dropped,
            ),
            (
                "game_inputs_invalid",
                "Inputs that did not decode, by room type",
                |t| t.inputs_invalid,
            ),
        ];
        for (name, help, field) in counters {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                ConstCounter::new(0u64).metric_type(),
            )?;
            for (room_type, totals) in &snapshot.rooms {
                let labels = [("room_type", room_type.as_str())];
                ConstCounter::new(field(totals)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// `GET /metrics`: checks the caller, reads the figures kept elsewhere, encodes.
pub(crate) async fn scrape(req: HttpRequest, shared: web::Data<Arc<Shared>>) -> HttpResponse {
    let Some(route) = &shared.config.metrics else {
        return HttpResponse::NotFound().finish();
    };
    if let Some(refused) = route.refusal(&req) {
        return refused;
    }
    let metrics = &shared.metrics;
    let sources = lock(&metrics.scrape.sources).clone();
    let mut rooms: BTreeMap<String, RoomTotals> = BTreeMap::new();
    for source in sources {
        for room in source.all_metrics().await {
            rooms.entry(room.room_type.clone()).or_default().add(&room);
        }
    }
    *lock(&metrics.scrape.snapshot) = Snapshot {
        over_client_limit: shared
            .over_client_limit
            .load(std::sync::atomic::Ordering::Relaxed),
        rooms,
    };
    let mut body = String::new();
    if prometheus_client::encoding::text::encode(&mut body, &metrics.registry).is_err() {
        return HttpResponse::InternalServerError().body("metrics: encoding failed\n");
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"", b"abc"));
    }

    #[test]
    fn encodes_with_units_and_bounded_labels() {
        let m = Metrics::default();
        m.frames_in.inc();
        m.disconnected(&DisconnectReason::Kicked("free text".into()));
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, &m.registry).expect("encode");
        assert!(body.contains("volley_frames_received_total 1"), "{body}");
        assert!(
            body.contains("volley_disconnects_total{reason=\"kicked\"} 1"),
            "{body}"
        );
        assert!(body.contains("volley_received_bytes_total 0"), "{body}");
        assert!(!body.contains("free text"));
    }
}
