//! The cluster's figures: what crossed Redis, what was dropped and why, and whether
//! Redis is reachable. Registered in the server's `/metrics` as `volley_cluster_*`;
//! [`ClusterStats`] is the same figures read from code (tests, the admin page).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A label set of one bounded label (`reason`).
type Reason = [(&'static str, &'static str); 1];

/// Why a broadcast did not cross between nodes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dropped {
    /// Redis was unreachable when the broadcast was to be published.
    RedisDown,
    /// More broadcasts waited for Redis than `Config::max_mailbox`.
    QueueFull,
    /// A broadcast from another node found its namespace at `Config::max_mailbox`.
    Busy,
    /// A message on a cluster channel that this release cannot read.
    Malformed,
    /// Pushed by Redis faster than the link could take them.
    Backlog,
}

impl Dropped {
    fn label(self) -> &'static str {
        match self {
            Dropped::RedisDown => "redis_down",
            Dropped::QueueFull => "queue_full",
            Dropped::Busy => "busy",
            Dropped::Malformed => "malformed",
            Dropped::Backlog => "backlog",
        }
    }
}

/// The live counters, shared by the link and the namespaces (atomics).
#[derive(Clone, Default)]
pub(crate) struct ClusterMetrics {
    pub up: Gauge,
    pub broadcasts_published: Counter,
    pub messages_published: Counter,
    pub messages_received: Counter,
    pub duplicates: Counter,
    pub connects: Counter,
    pub relayed: Counter,
    pub joins_unconfirmed: Counter,
    /// Resumes whose session moved here from another node (`move_on_resume`).
    pub resumes_moved: Counter,
    /// Sessions frozen for a move (a drain) and not yet landed or thawed.
    pub moving: Gauge,
    /// Broadcasts a moved session took from its old node's window (not received
    /// here in time).
    pub window_broadcasts: Counter,
    /// Moved sessions whose old node's window never came.
    pub windows_missed: Counter,
    dropped: Family<Reason, Counter>,
}

impl ClusterMetrics {
    pub fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("cluster");
        r.register("redis_up", "1 while Redis is reachable", self.up.clone());
        r.register(
            "sessions_moving",
            "Sessions frozen for a move to another node (a drain), not yet moved or thawed",
            self.moving.clone(),
        );
        let counters: [(&str, &str, &Counter); 10] = [
            (
                "broadcasts_published",
                "Broadcasts published for other nodes",
                &self.broadcasts_published,
            ),
            (
                "messages_published",
                "Redis messages published (one per target room)",
                &self.messages_published,
            ),
            (
                "messages_received",
                "Redis messages received from other nodes",
                &self.messages_received,
            ),
            (
                "duplicates",
                "Copies of one broadcast received on several channels, dropped",
                &self.duplicates,
            ),
            (
                "redis_connects",
                "Connections made to Redis",
                &self.connects,
            ),
            (
                "relayed",
                "Frames relayed to or from sessions of another node",
                &self.relayed,
            ),
            (
                "joins_unconfirmed",
                "Joins completed without their room's subscription on Redis (Redis away or slow)",
                &self.joins_unconfirmed,
            ),
            (
                "resumes_moved",
                "Resumes whose session moved here from another node (move_on_resume)",
                &self.resumes_moved,
            ),
            (
                "window_broadcasts",
                "Broadcasts a session moved here took from its old node's window",
                &self.window_broadcasts,
            ),
            (
                "windows_missed",
                "Sessions moved here whose old node's window of broadcasts never came",
                &self.windows_missed,
            ),
        ];
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
        r.register(
            "dropped",
            "Broadcasts that did not cross between nodes, by reason",
            self.dropped.clone(),
        );
    }

    pub fn dropped(&self, why: Dropped) {
        self.dropped.get_or_create(&[("reason", why.label())]).inc();
    }

    fn dropped_count(&self, why: Dropped) -> u64 {
        self.dropped.get_or_create(&[("reason", why.label())]).get()
    }

    pub fn snapshot(&self) -> ClusterStats {
        ClusterStats {
            redis_up: self.up.get() == 1,
            broadcasts_published: self.broadcasts_published.get(),
            messages_published: self.messages_published.get(),
            messages_received: self.messages_received.get(),
            duplicates: self.duplicates.get(),
            redis_connects: self.connects.get(),
            relayed: self.relayed.get(),
            joins_unconfirmed: self.joins_unconfirmed.get(),
            resumes_moved: self.resumes_moved.get(),
            sessions_moving: u64::try_from(self.moving.get()).unwrap_or(0),
            window_broadcasts: self.window_broadcasts.get(),
            windows_missed: self.windows_missed.get(),
            dropped_redis_down: self.dropped_count(Dropped::RedisDown),
            dropped_other: [
                Dropped::QueueFull,
                Dropped::Busy,
                Dropped::Malformed,
                Dropped::Backlog,
            ]
            .into_iter()
            .map(|why| self.dropped_count(why))
            .sum(),
        }
    }
}

/// The cluster figures of one node since it started (`volley_cluster_*` in
/// `/metrics`, with the drops by reason).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// Whether the node's Redis connection is up right now.
    pub redis_up: bool,
    /// Broadcasts this node published for the other nodes.
    pub broadcasts_published: u64,
    /// Redis messages those broadcasts took: one per target room (one for a
    /// namespace-wide broadcast).
    pub messages_published: u64,
    /// Redis messages received from other nodes (copies included).
    pub messages_received: u64,
    /// Copies of a broadcast already received through another of its rooms' channels.
    pub duplicates: u64,
    /// Connections made to Redis (the first, then one per reconnection).
    pub redis_connects: u64,
    /// Relay messages sent and received: frames (and closes) between a client
    /// connected here and its session on another node, or the other way round.
    pub relayed: u64,
    /// Joins completed (their ack sent) before this node was subscribed to their
    /// room's channel on Redis: Redis was away, or slower than the wait's bound.
    /// Broadcasts from other nodes may miss such a member until the subscription is in.
    pub joins_unconfirmed: u64,
    /// Resumes whose session moved here from another node
    /// ([`RedisCluster::move_on_resume`](super::RedisCluster::move_on_resume)); the
    /// others were relayed.
    pub resumes_moved: u64,
    /// Sessions frozen for a move to another node (a drain) right now: their
    /// resumes wait until the move lands or is undone.
    pub sessions_moving: u64,
    /// Broadcasts that sessions moved here took from their old node's *window*:
    /// handled there between the move's freeze and the moment this node received
    /// the rooms' broadcasts itself (see the guide's "Running several nodes").
    pub window_broadcasts: u64,
    /// Sessions moved here whose old node's window never came (Redis cut in that
    /// moment): they carried on with what reached this node, and may have missed
    /// broadcasts of the move.
    pub windows_missed: u64,
    /// Broadcasts not published because Redis was unreachable.
    pub dropped_redis_down: u64,
    /// Broadcasts dropped for the other reasons (queue full, namespace busy,
    /// malformed, backlog): see `volley_cluster_dropped_total` by reason.
    pub dropped_other: u64,
}
