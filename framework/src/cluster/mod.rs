//! Several Volley nodes behind one load balancer, sharing broadcasts through Redis
//! (feature `cluster`).
//!
//! A single node needs none of this and keeps everything in memory. With
//! [`VolleyBuilder::cluster`](crate::VolleyBuilder::cluster) each node joins a
//! cluster named by its Redis URL (and key prefix):
//!
//! - **Broadcasts cross nodes by interest.** A node subscribes to a room's sharded
//!   channel (Redis 7 `SSUBSCRIBE`) only while it has local members in the room, and
//!   to a namespace's channel while it has local sockets there. A broadcast is
//!   published once per target room (`SPUBLISH`); each node that has members takes
//!   it once, whichever of the rooms' channels brought it first, frames it once and
//!   fans it out to its own members as a local broadcast.
//! - **Any node serves any client.** A session stays on the node that opened it; a
//!   client that resumes on another node is relayed to it through Redis
//!   (exactly-once as ever), and a polling request (native or Engine.IO) that
//!   lands on another node is answered by the node that holds its connection.
//! - **Rolling restarts.** A node that stops (`SIGTERM`, or
//!   [`ClusterNode::drain`]) first moves each session to another node, with its
//!   game seat; its clients resume there (see `drain.rs`). Its game rooms run on
//!   for their players until empty or [`RedisCluster::drain_deadline`].
//! - **Cluster-wide operations.** [`ClusterNode::sessions`],
//!   [`ClusterNode::room_size`], [`ClusterNode::kick`] and
//!   [`ClusterNode::drop_connection`] ask the other nodes on their control channels.
//!   A [`SessionId`] names one session cluster-wide (each node takes a number from
//!   Redis for its ids' high bits), so a kick or an `except` needs no node.
//! - **Registry.** Each live node refreshes a key (`<prefix>:node:<id>`) that
//!   expires after [`RedisCluster::node_ttl`] once the node stops.
//! - **Game rooms** shared with [`GameRooms::share_in`](crate::GameRooms::share_in):
//!   each node lists its rooms in Redis; join-or-create and listings span the nodes,
//!   and a player of any node plays in a room of any node (`game/`).
//! - **Faults stay local.** Without Redis a node serves its own clients as a single
//!   node would; it reconnects with back-off, says so in its logs and in
//!   `volley_cluster_redis_up`, and cross-node broadcasts resume.
//!
//! Who owns what, the messages and what is not there yet: `docs/architecture.md`
//! ("The cluster") and the guide's "Running several nodes".
//!
//! ```no_run
//! use volley::cluster::RedisCluster;
//! use volley::{Namespace, Volley};
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let cluster = RedisCluster::new("redis://10.0.0.5:6379")
//!         .expect("a redis:// URL")
//!         .prefix("mygame"); // keys and channels start with `mygame:` (default `volley`)
//!     let volley = Volley::builder()
//!         .namespace("/chat", Namespace::new())
//!         .cluster(cluster)
//!         .build(); // connects in the background, and keeps reconnecting
//!     volley.serve(("0.0.0.0", 8080)).await
//! }
//! ```

mod control;
mod drain;
mod envelope;
pub(crate) mod game;
mod interest;
mod link;
mod nodes;
mod ops;
mod relay;
mod stats;
pub mod testbed;

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use actix::Arbiter;
use tokio::sync::{mpsc, oneshot, watch};

pub use control::ClusterSession;
pub(crate) use control::PollAnswer;
use control::{Attached, Local, Outbound, Reply, Request, REPLY_TIMEOUT};
pub(crate) use drain::drain_on_signal;
pub use drain::DrainReport;
use envelope::Names;
use interest::Interest;
pub(crate) use interest::NamespaceLink;
use link::Link;
use relay::{EdgeRelay, Relays};
use stats::ClusterMetrics;
pub use stats::ClusterStats;

// Defined beside the sessions, which see the other nodes through `session::Nodes`.
pub use crate::session::nodes::NodeId;

use crate::node::NodeNumber;
use crate::protocol::ResumeToken;
use crate::session::{
    resume_here, ClientLimit, FromTransport, ResumeError, Shared, Supervisor, TransportKind,
    TransportLink,
};
use crate::SessionId;

/// How long a resume waits for a move of its session to land (a `MoveIn`'s wait,
/// a cancel's, and a margin).
const MOVE_WAIT: Duration = Duration::from_secs(5);
/// How often a waiting resume asks again.
const MOVE_POLL: Duration = Duration::from_millis(50);

impl NodeId {
    fn from_key(key: &str) -> Option<NodeId> {
        let hex = key.rsplit(':').next()?;
        u64::from_str_radix(hex, 16).ok().map(NodeId)
    }
}

/// What went wrong with the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The Redis URL does not parse: give `redis://host:port` (optionally with
    /// `/db`, a username and a password).
    #[error("invalid Redis URL: {0}")]
    BadUrl(String),
    /// Redis is unreachable right now; the node retries on its own.
    #[error("Redis is unreachable; the node is reconnecting")]
    RedisDown,
    /// The server was stopped.
    #[error("the server is stopped")]
    Stopped,
    /// The node did not answer in time: it is gone or cut from Redis (a dead node
    /// leaves the registry within the node TTL).
    #[error("node {0} did not answer")]
    NoAnswer(NodeId),
    /// A drain found no other live node to move the sessions to: start another
    /// node first (or stop this one and let its clients start new sessions).
    #[error("no other live node to move the sessions to")]
    NoOtherNode,
}

/// How a node joins a cluster: the Redis it shares and the settings of its link.
///
/// ```
/// use std::time::Duration;
/// use volley::cluster::RedisCluster;
///
/// let cluster = RedisCluster::new("redis://10.0.0.5:6379")?
///     .prefix("mygame") // keys and channels start with `mygame:` (default `volley`)
///     .node_ttl(Duration::from_secs(10)); // a dead node leaves the registry after it
/// // Volley::builder().cluster(cluster) ... .build()
/// # Ok::<(), volley::cluster::ClusterError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RedisCluster {
    client: redis::Client,
    prefix: String,
    node_ttl: Duration,
    reconnect: (Duration, Duration),
    drain_deadline: Duration,
    move_on_resume: bool,
}

impl RedisCluster {
    /// A cluster on the Redis at `url` (`redis://host:port`, Redis 7 or later for
    /// sharded pub/sub). Nothing connects before the server is built.
    pub fn new(url: &str) -> Result<Self, ClusterError> {
        use redis::IntoConnectionInfo;
        let info = url
            .into_connection_info()
            .map_err(|e| ClusterError::BadUrl(e.to_string()))?;
        // RESP3: pub/sub messages arrive on the same connection as commands.
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))
            .map_err(|e| ClusterError::BadUrl(e.to_string()))?;
        Ok(RedisCluster {
            client,
            prefix: "volley".to_owned(),
            node_ttl: Duration::from_secs(10),
            reconnect: (Duration::from_millis(100), Duration::from_secs(5)),
            drain_deadline: Duration::from_secs(60),
            move_on_resume: false,
        })
    }

    /// The start of every key and channel name (default `volley`), so that several
    /// applications can share one Redis.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// How long a node's registry entry outlives its last refresh (default 10 s; it
    /// is refreshed every third of it). A node that dies leaves the registry within
    /// this time.
    pub fn node_ttl(mut self, ttl: Duration) -> Self {
        self.node_ttl = ttl.max(Duration::from_millis(300));
        self
    }

    /// Reconnection back-off: the first wait and the longest (defaults 100 ms and
    /// 5 s), doubling in between, each moved by up to ±20%.
    pub fn reconnect(mut self, initial: Duration, max: Duration) -> Self {
        self.reconnect = (initial, max.max(initial));
        self
    }

    /// How long a node stopping on `SIGTERM` keeps its game rooms running for their
    /// players once its sessions have moved (default 60 s): it stops when no player
    /// sits in them any more, or at this deadline, and the rooms stop with it (see
    /// [`ClusterNode::wait_rooms_empty`]). Give your orchestrator's stop timeout a
    /// margin over it.
    pub fn drain_deadline(mut self, deadline: Duration) -> Self {
        self.drain_deadline = deadline;
        self
    }

    /// Whether a session whose client resumes on another node moves there (with
    /// its game seat), as a drain moves it, instead of staying on its node behind
    /// a relay (default `false`: relayed). A moved session's frames no longer cross
    /// Redis; each such resume costs a move (a round trip to find the session, its
    /// state through Redis, the namespaces' middleware again), and a room broadcast
    /// sent during the move misses it. When the move fails, the client is relayed.
    pub fn move_on_resume(mut self, on: bool) -> Self {
        self.move_on_resume = on;
        self
    }
}

/// This node's place in its cluster: its id, its Redis link's state and figures.
/// From [`Volley::cluster`](crate::Volley::cluster).
#[derive(Clone)]
pub struct ClusterNode {
    id: NodeId,
    names: Names,
    interest: Arc<Interest>,
    outbound: mpsc::Sender<Outbound>,
    up: watch::Receiver<bool>,
    metrics: ClusterMetrics,
    /// The server this node answers for (set once built).
    local: Local,
    /// Sessions resumed across nodes, both ends.
    relays: Arc<Relays>,
    /// This node's number in session ids, from Redis (see `session/ids.rs`).
    number: Arc<NodeNumber>,
    /// Set by [`ClusterNode::drain`]: sessions moved here are refused.
    draining: Arc<AtomicBool>,
    /// How long a stopping node's game rooms run on ([`RedisCluster::drain_deadline`]).
    pub(crate) drain_deadline: Duration,
    /// [`RedisCluster::move_on_resume`].
    move_on_resume: bool,
    /// Numbers this node's broadcasts (their [`Mark`](crate::room::Mark)s), shared
    /// by its namespaces.
    broadcasts: Arc<AtomicU64>,
}

/// The live nodes of the cluster, from the registry, asked through the link's
/// queue `outbound`.
async fn nodes_via(outbound: &mpsc::Sender<Outbound>) -> Result<Vec<NodeId>, ClusterError> {
    let (tx, rx) = oneshot::channel();
    outbound
        .send(Outbound::Nodes(tx))
        .await
        .map_err(|_| ClusterError::Stopped)?;
    rx.await.map_err(|_| ClusterError::Stopped)?
}

/// Asks node `to` (another one) through the link's queue `outbound`: its answer, or
/// `None` if none came within `patience`.
async fn ask_via(
    outbound: &mpsc::Sender<Outbound>,
    to: NodeId,
    request: Request,
    patience: Duration,
) -> Result<Option<Reply>, ClusterError> {
    let (answer, rx) = oneshot::channel();
    let ask = Outbound::Ask {
        to,
        request,
        answer,
    };
    outbound
        .send(ask)
        .await
        .map_err(|_| ClusterError::Stopped)?;
    Ok(tokio::time::timeout(patience, rx)
        .await
        .ok()
        .and_then(Result::ok))
}

/// Asks every live node but `me` at once, through the link's queue `outbound`: the
/// answers of those that gave one in time (the others are left out).
pub(crate) async fn ask_others(
    outbound: &mpsc::Sender<Outbound>,
    me: NodeId,
    request: Request,
) -> Vec<Reply> {
    let nodes = match nodes_via(outbound).await {
        Ok(nodes) => nodes,
        Err(e) => {
            tracing::debug!(error = %e, "cluster: no node list, other nodes left out");
            return Vec::new();
        }
    };
    let asks = nodes.into_iter().filter(|node| *node != me).map(|node| {
        let request = request.clone();
        async move { (node, ask_via(outbound, node, request, REPLY_TIMEOUT).await) }
    });
    let mut replies = Vec::new();
    for (node, reply) in futures_util::future::join_all(asks).await {
        match reply {
            Ok(Some(reply)) => replies.push(reply),
            _ => tracing::debug!(%node, "cluster: node left out (no answer)"),
        }
    }
    replies
}

impl ClusterNode {
    /// Starts the link to Redis on a thread of its own; it connects in the
    /// background and keeps reconnecting.
    pub(crate) fn start(
        config: RedisCluster,
        config_limits: (usize, usize),
        registry: &mut prometheus_client::registry::Registry,
    ) -> ClusterNode {
        let (queue, max_backlog) = config_limits;
        let (drain_deadline, move_on_resume) = (config.drain_deadline, config.move_on_resume);
        let id = NodeId(rand::random());
        let names = Names::new(&config.prefix);
        let interest = Arc::new(Interest::default());
        let (outbound_tx, outbound_rx) = mpsc::channel(queue.max(1));
        let (up_tx, up_rx) = watch::channel(false);
        let relays = Arc::new(Relays::new(outbound_tx.downgrade(), max_backlog));
        let metrics = ClusterMetrics::default();
        metrics.register(registry);
        let local = Local::default();
        let number = NodeNumber::provisional();
        // Questions from other nodes, and relayed sessions, come on this node's own
        // channels, always.
        interest.want(names.control(id.0), true);
        interest.want(names.relay(id.0), true);
        let link = Link::new(
            config.client,
            id,
            names.clone(),
            config.node_ttl,
            config.reconnect,
            interest.clone(),
            outbound_rx,
            metrics.clone(),
            up_tx,
            local.clone(),
            relays.clone(),
            number.clone(),
        );
        let game = game::GameHub::new(id, names.clone(), config.node_ttl, outbound_tx.downgrade());
        let game = Arc::new(game);
        let _ = relays.game.set(game.clone());
        let thread = Arbiter::new();
        crate::threads::name_thread(&thread.handle(), "volley-cluster".into());
        thread.spawn(link.run());
        thread.spawn(game.run());
        tracing::info!(node = %id, "cluster: node started");
        ClusterNode {
            id,
            names,
            interest,
            outbound: outbound_tx,
            up: up_rx,
            metrics,
            local,
            relays,
            number,
            draining: Arc::default(),
            drain_deadline,
            move_on_resume,
            broadcasts: Arc::default(),
        }
    }

    /// This node's number in session ids, shared with its supervisor.
    pub(crate) fn node_number(&self) -> Arc<NodeNumber> {
        self.number.clone()
    }

    /// Names the server this node answers for, once it is built, and how it answers
    /// polling requests for its connections.
    pub(crate) fn attach(self: &Arc<Self>, shared: &Arc<Shared>, poll: PollAnswer) {
        let attached = Attached {
            shared: Arc::downgrade(shared),
            node: Arc::downgrade(self),
            poll,
            draining: self.draining.clone(),
        };
        let _ = self.local.set(attached);
    }

    /// Shares `rooms` with the other nodes (see [`crate::GameRooms::share_in`]).
    pub(crate) fn share_rooms(&self, rooms: &crate::GameRooms) {
        if let Some(game) = self.relays.game.get() {
            game.share(rooms, self.local.get().map(|l| l.shared.clone()));
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Whether the link to Redis is up right now.
    pub fn is_connected(&self) -> bool {
        *self.up.borrow()
    }

    /// Waits until the link to Redis is up (`true`) or down (`false`).
    pub async fn wait_connected(&self, up: bool) {
        let mut rx = self.up.clone();
        let _ = rx.wait_for(|now| *now == up).await;
    }

    /// This node's cluster figures.
    pub fn stats(&self) -> ClusterStats {
        self.metrics.snapshot()
    }

    /// The live nodes of the cluster (this one included), from the registry.
    pub async fn nodes(&self) -> Result<Vec<NodeId>, ClusterError> {
        nodes_via(&self.outbound).await
    }

    /// Asks node `to` (this one without Redis).
    async fn ask(&self, to: NodeId, request: Request) -> Result<Reply, ClusterError> {
        self.ask_within(to, request, REPLY_TIMEOUT).await
    }

    /// Asks node `to`, waiting at most `patience` for the answer.
    async fn ask_within(
        &self,
        to: NodeId,
        request: Request,
        patience: Duration,
    ) -> Result<Reply, ClusterError> {
        if to == self.id {
            return Ok(ops::answer(&self.local, &self.relays, self.id, request).await);
        }
        match ask_via(&self.outbound, to, request, patience).await? {
            Some(reply) => Ok(reply),
            None if !self.is_connected() => Err(ClusterError::RedisDown),
            None => Err(ClusterError::NoAnswer(to)),
        }
    }

    /// Asks every live node at once; the nodes that do not answer are left out.
    async fn ask_all(&self, request: Request) -> Result<Vec<(NodeId, Reply)>, ClusterError> {
        let nodes = self.nodes().await?;
        let asks = nodes.into_iter().map(|node| {
            let request = request.clone();
            async move { (node, self.ask(node, request).await) }
        });
        let mut replies = Vec::new();
        for (node, reply) in futures_util::future::join_all(asks).await {
            match reply {
                Ok(reply) => replies.push((node, reply)),
                Err(e) => tracing::debug!(%node, error = %e, "cluster: node left out"),
            }
        }
        Ok(replies)
    }

    /// The live sessions of every node of the cluster. A node that does not answer
    /// within 2 s is left out.
    pub async fn sessions(&self) -> Result<Vec<ClusterSession>, ClusterError> {
        let replies = self.ask_all(Request::Sessions).await?;
        Ok(replies
            .into_iter()
            .flat_map(|(node, reply)| reply.sessions(node))
            .collect())
    }

    /// Members of `room` in namespace `ns` on every node.
    pub async fn room_size(&self, ns: &str, room: &str) -> Result<usize, ClusterError> {
        let request = Request::RoomSize {
            ns: ns.to_owned(),
            room: room.to_owned(),
        };
        let replies = self.ask_all(request).await?;
        Ok(replies.into_iter().map(|(_, reply)| reply.size()).sum())
    }

    /// Ends session `id`, on whichever node holds it, with a reason its client
    /// receives, as [`Volley::kick`](crate::Volley::kick) does on its own node.
    /// Whether it existed (a [`SessionId`] names one session cluster-wide).
    pub async fn kick(&self, id: SessionId, reason: &str) -> Result<bool, ClusterError> {
        let request = Request::Kick {
            id: id.0,
            reason: reason.to_owned(),
        };
        self.ask_holder(request).await
    }

    /// Asks every node to act on a session; whether one held it.
    async fn ask_holder(&self, request: Request) -> Result<bool, ClusterError> {
        let replies = self.ask_all(request).await?;
        Ok(replies.into_iter().any(|(_, reply)| reply.done()))
    }

    /// A polling request for a connection that is not here (an Engine.IO one when
    /// `socketio`): when `pid` names another node (its first 16 hex digits), that
    /// node answers it. `None` when it
    /// names no other node, or that node does not answer (the client then hears of
    /// an unknown connection and resumes).
    async fn poll_for_another_node(
        &self,
        pid: &str,
        body: Option<bytes::Bytes>,
        hold: Duration,
        socketio: bool,
    ) -> Option<Result<bytes::Bytes, (u16, String)>> {
        let node = NodeId(u64::from_str_radix(pid.get(..16)?, 16).ok()?);
        if node == self.id || pid.len() != 48 {
            return None;
        }
        let request = Request::Poll {
            pid: pid.to_owned(),
            body: body.map(|b| b.to_vec()),
            socketio,
        };
        // A long-poll is held up to `hold` by its node.
        let patience = hold + REPLY_TIMEOUT;
        match self.ask_within(node, request, patience).await {
            Ok(Reply::Polled(answer)) => Some(answer.map(bytes::Bytes::from)),
            _ => None,
        }
    }

    /// A resume that found no session here: asks the other nodes for it and, when
    /// one holds it, relays `link`'s connection to it (see `relay.rs`). `local` is
    /// why this node refused it, answered (and counted) when no node has it. While
    /// the session is moving between nodes (a drain), the question is asked again,
    /// here too, until the move lands or is undone (at most [`MOVE_WAIT`]).
    async fn resume_on_another_node(
        &self,
        shared: &Arc<Shared>,
        (sid, token, last_seq, limit): (SessionId, ResumeToken, u64, ClientLimit),
        mut link: TransportLink,
        mut local: String,
    ) -> Result<actix::Recipient<FromTransport>, ResumeError> {
        if self.pulled(sid, token).await {
            // The session is here now: resume it as any local one.
            return match resume_here(shared, sid, token, last_seq, limit, link, true).await {
                Ok(session) => Ok(session.recipient()),
                Err((reason, _)) => Err(ResumeError::Refused(reason)),
            };
        }
        let relay: u64 = rand::random();
        self.relays
            .open_edge(relay, link.recipient.clone(), link.sending.clone());
        let request = Request::Resume {
            sid: sid.0,
            token,
            last_seq,
            max_frame_size: limit.announced_limit(),
            websocket: link.kind == TransportKind::WebSocket,
            relay,
        };
        let deadline = tokio::time::Instant::now() + MOVE_WAIT;
        let (found, silent) = loop {
            let Owner {
                found,
                moving,
                silent,
            } = self.find_owner(&request).await;
            // A node that did not answer may hold the session: ask again, as for a
            // session on the move, rather than tell the client it is gone.
            let moving = moving || local == crate::session::MOVING;
            if found.is_some() || !(moving || silent) || tokio::time::Instant::now() >= deadline {
                break (found, silent);
            }
            tokio::time::sleep(MOVE_POLL).await;
            // The move may land here, or be undone on a node that is this one.
            match resume_here(shared, sid, token, last_seq, limit, link, true).await {
                Ok(session) => {
                    self.relays.close_edge(relay);
                    return Ok(session.recipient());
                }
                Err((reason, Some(back))) => (link, local) = (back, reason),
                Err((reason, None)) => {
                    self.relays.close_edge(relay);
                    return Err(ResumeError::Refused(reason));
                }
            }
        };
        match found {
            Some((owner, None)) => {
                let edge = EdgeRelay {
                    relay,
                    owner,
                    relays: self.relays.clone(),
                    inbound: link.inbound.clone(),
                    transport: link.recipient.clone(),
                };
                tracing::debug!(sid = sid.0, %owner, "cluster: resumed through a relay");
                Ok(actix::Actor::start(edge).recipient())
            }
            Some((_, Some(refused))) => {
                self.relays.close_edge(relay);
                Err(ResumeError::Refused(refused))
            }
            None if silent => {
                self.relays.close_edge(relay);
                shared.metrics.resumed("unavailable");
                tracing::warn!(
                    sid = sid.0,
                    "cluster: a node that may hold the session did not answer; the client will try again"
                );
                Err(ResumeError::Unavailable(
                    "cluster busy: a node did not answer, try again".into(),
                ))
            }
            None => {
                self.relays.close_edge(relay);
                shared.metrics.resumed(Supervisor::refusal_label(&local));
                Err(ResumeError::Refused(local))
            }
        }
    }

    /// With [`RedisCluster::move_on_resume`]: asks every other node to move session
    /// `sid` here (the one that holds it with `token` does); whether it is here now.
    async fn pulled(&self, sid: SessionId, token: ResumeToken) -> bool {
        if !self.move_on_resume || self.draining.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        let Ok(nodes) = self.nodes().await else {
            return false;
        };
        let others = nodes.into_iter().filter(|node| *node != self.id);
        let asks = others.map(|node| {
            let request = Request::Pull { sid: sid.0, token };
            async move { self.ask(node, request).await }
        });
        let replies = futures_util::future::join_all(asks).await;
        let pulled = replies.iter().any(|r| matches!(r, Ok(Reply::Done(true))));
        if pulled {
            self.metrics.resumes_moved.inc();
            tracing::debug!(sid = sid.0, "cluster: resumed session moved here");
        }
        pulled
    }

    /// The node that holds a resumed session (with its refusal, if it refused),
    /// and whether a node said the session is moving.
    async fn find_owner(&self, request: &Request) -> Owner {
        let mut owner = Owner::default();
        let Ok(nodes) = self.nodes().await else {
            // Redis down: no node can be asked, none can be ruled out.
            owner.silent = true;
            return owner;
        };
        let others = nodes.into_iter().filter(|node| *node != self.id);
        let asks = others.map(|node| {
            let request = request.clone();
            async move { (node, self.ask(node, request).await) }
        });
        for (node, reply) in futures_util::future::join_all(asks).await {
            match reply {
                Ok(Reply::Resumed { here: true, error }) => owner.found = Some((node, error)),
                Ok(Reply::Resumed {
                    here: false,
                    error: Some(_),
                }) => owner.moving = true,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(%node, error = %e, "cluster: no answer to a resume");
                    owner.silent = true;
                }
            }
        }
        owner
    }

    /// Drops the connection of session `id`, on whichever node holds it, as a
    /// network failure would, as [`Volley::drop_connection`](crate::Volley::drop_connection)
    /// does on its own node. Whether it existed.
    pub async fn drop_connection(&self, id: SessionId) -> Result<bool, ClusterError> {
        self.ask_holder(Request::DropConnection { id: id.0 }).await
    }
}

/// What the other nodes said to a resume ([`ClusterNode::find_owner`]).
#[derive(Default)]
struct Owner {
    /// The node that holds the session, and its refusal if it refused.
    found: Option<(NodeId, Option<String>)>,
    /// A node said the session is on the move.
    moving: bool,
    /// A node did not answer (or Redis could not be reached).
    silent: bool,
}
