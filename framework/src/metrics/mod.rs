//! Server metrics in the Prometheus text format, served at `GET /metrics` when
//! [`Config::metrics`](crate::Config::metrics) is set (see [`MetricsRoute`]).
//!
//! Built on `prometheus-client` with one registry per server, so several servers in
//! one process (tests, a load tester) never share figures. The counters on paths that
//! already exist are atomics updated where the event happens (no lock, no
//! allocation; per-thread shards on the delivery path, see [`sharded`]); figures that
//! are already kept elsewhere (game rooms, frames over a client's limit) are read
//! when a scrape comes, not counted twice ([`scrape_time`]). Labels are bounded: a
//! transport, a reason, a result, a room *type*; never a session or room id.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry, Unit};

mod route;
mod scrape_time;
mod sharded;

pub(crate) use route::scrape;
pub use route::MetricsRoute;
use scrape_time::ScrapeTime;
use sharded::ShardedCounter;

use crate::game::GameRooms;
use crate::DisconnectReason;

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
    resumes: ResumeResults,
    namespace_connects: Family<One, Counter>,
    pub frames_replayed: Counter,
    pub ping_rtt: Histogram,
    outbox_frames: Histogram,
    outbox_bytes: Histogram,
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
            resumes: ResumeResults::default(),
            namespace_connects: Family::default(),
            frames_replayed: Counter::default(),
            ping_rtt,
            // Up to the default max_outbox_frames (4096) and max_outbox_bytes (2 MiB).
            outbox_frames: Histogram::new(exponential_buckets(1.0, 4.0, 7)),
            outbox_bytes: Histogram::new(exponential_buckets(256.0, 4.0, 8)),
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
            ("resumes", "Session resumes, by result", &m.resumes.0),
            (
                "refused",
                "Client input and requests refused, by reason",
                &m.refused,
            ),
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
        let rtt = [("ping_rtt", "Heartbeat round-trip time", &m.ping_rtt)];
        register_all(&mut r, Some(Unit::Seconds), &rtt);
        // What sessions keep until their clients confirm it; the bytes registered
        // with their unit: volley_outbox_bytes.
        let help = "Reliable frames a session's client has not confirmed, at each confirmation";
        register_all(&mut r, None, &[("outbox_frames", help, &m.outbox_frames)]);
        let help = "Bytes of those frames, at each confirmation";
        register_all(
            &mut r,
            Some(Unit::Bytes),
            &[("outbox", help, &m.outbox_bytes)],
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

    /// Counts one resume by its result (see [`ResumeResults::count`]).
    pub fn resumed(&self, result: &'static str) {
        self.resumes.count(result);
    }

    /// Where the session registry counts the resumes it refuses.
    pub fn resume_results(&self) -> ResumeResults {
        self.resumes.clone()
    }

    /// Counts one namespace connect: `"ok"`, `"unauthorized"` (the middleware said
    /// no) or `"refused"` (unknown namespace, already joined, too many).
    pub fn namespace_connect(&self, result: &'static str) {
        self.namespace_connects
            .get_or_create(&[("result", result)])
            .inc();
    }

    /// A client confirmed frames: what its session's outbox still holds. Called once
    /// per confirmation (`Received`, `Pong`: about once a second), never per frame.
    pub fn outbox(&self, frames: usize, bytes: usize) {
        self.outbox_frames.observe(frames as f64);
        self.outbox_bytes.observe(bytes as f64);
    }

    /// The registry, for figures registered by an optional part (the cluster).
    #[cfg(feature = "cluster")]
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Counts one refused client input.
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&[("reason", reason)]).inc();
    }

    /// Also reports the rooms of `rooms` at each scrape.
    pub fn watch(&self, rooms: GameRooms) {
        self.scrape.watch(rooms);
    }

    /// The scrape's body: the figures kept elsewhere read now, then everything
    /// encoded in the text format.
    pub async fn encode(&self, over_client_limit: u64) -> Result<String, std::fmt::Error> {
        self.scrape.refresh(over_client_limit).await;
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, &self.registry)?;
        Ok(body)
    }
}

/// Resumes by result; clones count into the same family.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResumeResults(Family<One, Counter>);

impl ResumeResults {
    /// Counts one resume: `"ok"`, or why it failed: `"unknown_session"` (never
    /// existed, expired or ended), `"bad_token"`, `"cannot_replay"` (the client's
    /// position is outside the outbox, or a frame to replay is over its limit),
    /// `"unavailable"` (a cluster node that may hold it did not answer: the client
    /// tries again).
    pub fn count(&self, result: &'static str) {
        self.0.get_or_create(&[("result", result)]).inc();
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
        DisconnectReason::Evicted(_) => "evicted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
