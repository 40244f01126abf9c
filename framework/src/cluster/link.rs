//! The link: this node's one connection to Redis, kept up with back-off.
//!
//! One task on the cluster's own thread owns the connection (a multiplexed RESP3
//! connection: commands and sharded pub/sub messages on one socket). It
//! - makes the subscriptions match the node's [`Interest`] (after every reconnection
//!   too),
//! - publishes the node's broadcasts in the order the namespaces handed them over,
//!   numbering them (origin, seq), several per round trip,
//! - hands each broadcast from another node to its namespace once, whichever of its
//!   rooms' channels brought it first,
//! - refreshes the node's registry key, which expires when the node stops doing so.
//!
//! While Redis is unreachable the node keeps serving its own clients: broadcasts for
//! other nodes are dropped and counted (`redis_down`), the link retries with
//! exponential back-off and logs each state change once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};
use tokio::sync::{mpsc, oneshot, watch};

use super::control::{Control, ControlBody, Local, Outbound, Reply};
use super::envelope::{Envelope, Names};
use super::interest::Interest;
use super::ops;
use super::relay::Relays;
use super::stats::{ClusterMetrics, Dropped};
use super::{ClusterError, NodeId};
use crate::node::NodeNumber;

/// Most publishes sent in one round trip.
const BATCH: u64 = 256;
/// Most pushes from Redis waiting for the link; past it they are dropped (`backlog`).
const PUSH_BACKLOG: usize = 8192;

/// How long an origin may stay quiet before its last number is forgotten. The
/// copies of one broadcast arrive back to back, so forgetting cannot let a copy in.
const FORGET_ORIGIN: Duration = Duration::from_secs(600);

/// Most questions to other nodes waiting for their answers at once.
const MAX_ASKING: usize = 1024;

/// Why a connection ended.
type Lost = redis::RedisError;

/// What Redis pushes on one connection, and whether some of it had to be dropped.
struct Pushes {
    rx: mpsc::Receiver<PushInfo>,
    overflowed: Arc<AtomicBool>,
}

pub(crate) struct Link {
    pub client: redis::Client,
    pub node: NodeId,
    pub names: Names,
    pub ttl: Duration,
    pub backoff: (Duration, Duration),
    pub interest: Arc<Interest>,
    pub outbound: mpsc::Receiver<Outbound>,
    pub metrics: ClusterMetrics,
    pub up: watch::Sender<bool>,
    /// Numbers this node's broadcasts; never reset, so a reconnection cannot make a
    /// new broadcast look like an old one.
    seq: u64,
    /// The last broadcast taken from each origin, and when: a copy at or below it is
    /// a duplicate (one Redis delivers one publisher's messages in order). Origins
    /// quiet for [`FORGET_ORIGIN`] are forgotten, so that nodes come and go without
    /// this growing.
    seen: HashMap<u64, (u64, Instant)>,
    /// The server this node answers for.
    local: Local,
    /// Questions asked, by number, waiting for their answers, with the node asked.
    asking: HashMap<u64, (NodeId, oneshot::Sender<Reply>)>,
    /// Nodes that said they left, and when: a question to one fails at once.
    /// Forgotten after [`FORGET_ORIGIN`] (node ids are never reused).
    departed: HashMap<NodeId, Instant>,
    next_ask: u64,
    /// This node's control channel, as Redis names it in a push.
    control_channel: String,
    /// This node's relay channel, likewise.
    relay_channel: String,
    relays: Arc<Relays>,
    /// This node's number in session ids, taken from Redis on the first connection.
    number: Arc<NodeNumber>,
}

impl Link {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: redis::Client,
        node: NodeId,
        names: Names,
        ttl: Duration,
        backoff: (Duration, Duration),
        interest: Arc<Interest>,
        outbound: mpsc::Receiver<Outbound>,
        metrics: ClusterMetrics,
        up: watch::Sender<bool>,
        local: Local,
        relays: Arc<Relays>,
        number: Arc<NodeNumber>,
    ) -> Self {
        Link {
            client,
            node,
            ttl,
            backoff,
            interest,
            outbound,
            metrics,
            up,
            seq: 0,
            seen: HashMap::new(),
            local,
            asking: HashMap::new(),
            departed: HashMap::new(),
            next_ask: 0,
            control_channel: names.control(node.0),
            relay_channel: names.relay(node.0),
            relays,
            number,
            names,
        }
    }

    /// Runs until the server is dropped (every sender of `outbound` gone: the
    /// `ClusterNode`s and the namespaces), then stops its thread.
    pub async fn run(self) {
        let node = self.node;
        self.serve_until_stopped().await;
        tracing::info!(%node, "cluster: node left");
        actix::Arbiter::current().stop();
    }

    async fn serve_until_stopped(mut self) {
        let mut failures: u32 = 0;
        loop {
            match self.connect().await {
                Ok((conn, pushes)) => {
                    failures = 0;
                    self.metrics.connects.inc();
                    let lost = self.serve(conn, pushes).await;
                    let released = self.interest.unlinked();
                    if released > 0 {
                        self.metrics.joins_unconfirmed.inc_by(released as u64);
                        tracing::warn!(
                            node = %self.node, joins = released,
                            "cluster: Redis lost before joins took effect on it; they count locally"
                        );
                    }
                    self.metrics.up.set(0);
                    let _ = self.up.send(false);
                    // A relay cannot tell which of its frames were lost with the
                    // connection: its clients resume, and their sessions replay.
                    self.relays.cut_all("cluster link to Redis lost");
                    match lost {
                        Some(e) => tracing::warn!(
                            node = %self.node, error = %e,
                            "cluster: lost Redis; serving local clients, reconnecting"
                        ),
                        None => return,
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 {
                        tracing::warn!(node = %self.node, error = %e, "cluster: Redis unreachable");
                    } else {
                        tracing::debug!(node = %self.node, attempt = failures, error = %e, "cluster: Redis still unreachable");
                    }
                }
            }
            let delay = reconnect_delay(failures, self.backoff.0, self.backoff.1);
            if !self.wait_down(delay).await {
                return;
            }
        }
    }

    async fn connect(&self) -> redis::RedisResult<(MultiplexedConnection, Pushes)> {
        let (tx, rx) = mpsc::channel(PUSH_BACKLOG);
        let metrics = self.metrics.clone();
        let overflowed = Arc::new(AtomicBool::new(false));
        let dropping = overflowed.clone();
        let push = move |info: PushInfo| -> Result<(), redis::aio::SendError> {
            if tx.try_send(info).is_err() {
                metrics.dropped(Dropped::Backlog);
                dropping.store(true, Ordering::Relaxed);
            }
            Ok(())
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_push_sender(push);
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        self.register(&mut conn).await?;
        Ok((conn, Pushes { rx, overflowed }))
    }

    /// While Redis is away: drops what would be published (the clients of this node
    /// are served meanwhile) until `delay` has passed. `false` when the server is gone.
    async fn wait_down(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return true,
                out = self.outbound.recv() => match out {
                    None => return false,
                    Some(Outbound::Publish { .. }) => self.metrics.dropped(Dropped::RedisDown),
                    Some(Outbound::Nodes(answer)) => { let _ = answer.send(Err(ClusterError::RedisDown)); }
                    Some(Outbound::Command { answer, .. }) => { let _ = answer.send(Err(ClusterError::RedisDown)); }
                    // Dropping the answer's sender tells the asker at once.
                    Some(Outbound::Ask { .. }) => {}
                    // The asker gives up after its wait.
                    Some(Outbound::Answer(_)) => {}
                    // The relay's connection notices by its heartbeat, and resumes.
                    Some(Outbound::Relay { .. }) => {}
                },
            }
        }
    }

    /// Serves one connection until it fails (`Some`) or the server is gone (`None`).
    async fn serve(&mut self, mut conn: MultiplexedConnection, pushes: Pushes) -> Option<Lost> {
        let Pushes {
            rx: mut pushes,
            overflowed,
        } = pushes;
        let mut subscribed: HashSet<String> = HashSet::new();
        let mut heartbeat = tokio::time::interval(self.ttl / 3);
        heartbeat.reset();
        let interest = self.interest.clone();
        // Subscribed to everything wanted (its control channel too) before the node
        // counts as connected.
        if let Err(e) = reconcile(&mut conn, &mut subscribed, interest.wanted()).await {
            return Some(e);
        }
        interest.subscribed(&subscribed);
        self.metrics.up.set(1);
        let _ = self.up.send(true);
        tracing::info!(node = %self.node, "cluster: connected to Redis");
        loop {
            // Unbiased: a stream of messages from other nodes must not starve this
            // node's own publishing or its registry refresh.
            let step = tokio::select! {
                push = pushes.recv() => match push {
                    Some(push) => self.on_push(push),
                    None => Err(lost("push channel closed")),
                },
                _ = interest.changed.notified() => {
                    let done = reconcile(&mut conn, &mut subscribed, interest.wanted()).await;
                    if done.is_ok() {
                        interest.subscribed(&subscribed);
                    }
                    done
                }
                out = self.outbound.recv() => match out {
                    None => {
                        self.leave(&mut conn).await;
                        return None;
                    }
                    Some(first) => self.send(&mut conn, first).await,
                },
                _ = heartbeat.tick() => {
                    if let Some(quiet_since) = Instant::now().checked_sub(FORGET_ORIGIN) {
                        self.seen.retain(|_, (_, at)| *at > quiet_since);
                    }
                    self.register(&mut conn).await
                }
            };
            if let Err(e) = step {
                return Some(e);
            }
            if overflowed.swap(false, Ordering::Relaxed) {
                // Broadcasts were dropped (and counted); relayed frames must not be.
                self.relays.cut_all("cluster link overloaded");
            }
        }
    }

    /// Publishes `first` and whatever else is waiting, in order, in one round trip.
    async fn send(
        &mut self,
        conn: &mut MultiplexedConnection,
        first: Outbound,
    ) -> Result<(), Lost> {
        let mut pipe = redis::pipe();
        let mut broadcasts: u64 = 0;
        let mut messages: u64 = 0;
        // Relay and control messages: not broadcasts.
        let mut others: u64 = 0;
        let mut next = Some(first);
        while let Some(out) = next.take() {
            match out {
                Outbound::Publish { channels, body } => {
                    self.seq += 1;
                    let sealed = body.seal(self.node.0, self.seq);
                    for channel in channels {
                        pipe.cmd("SPUBLISH")
                            .arg(channel)
                            .arg(sealed.as_ref())
                            .ignore();
                        messages += 1;
                    }
                    broadcasts += 1;
                }
                Outbound::Nodes(answer) => {
                    let _ = answer.send(self.nodes(conn).await);
                }
                Outbound::Command { cmd, answer } => {
                    let reply = cmd.query_async(conn).await;
                    let _ = answer.send(reply.map_err(|_| ClusterError::RedisDown));
                }
                Outbound::Relay { to, message } => {
                    pipe.cmd("SPUBLISH")
                        .arg(self.names.relay(to.0))
                        .arg(message.as_ref())
                        .ignore();
                    self.metrics.relayed.inc();
                    others += 1;
                }
                Outbound::Ask {
                    to,
                    request,
                    answer,
                } => {
                    // Questions whose askers gave up are forgotten first.
                    self.asking.retain(|_, (_, waiting)| !waiting.is_closed());
                    // A node that left answers nothing: dropping `answer` tells
                    // the asker now rather than at its patience's end.
                    if self.asking.len() < MAX_ASKING && !self.departed.contains_key(&to) {
                        self.next_ask += 1;
                        self.asking.insert(self.next_ask, (to, answer));
                        let body = ControlBody::Request(request);
                        let ask = Control {
                            from: self.node.0,
                            id: self.next_ask,
                            body,
                        };
                        self.control_to(&mut pipe, to, &ask);
                        others += 1;
                    }
                }
                Outbound::Answer(answer) => {
                    let to = NodeId(answer.from);
                    let reply = Control {
                        from: self.node.0,
                        ..answer
                    };
                    self.control_to(&mut pipe, to, &reply);
                    others += 1;
                }
            }
            if broadcasts < BATCH {
                next = self.outbound.try_recv().ok();
            }
        }
        if messages + others > 0 {
            if let Err(e) = pipe.exec_async(conn).await {
                self.metrics.dropped(Dropped::RedisDown);
                return Err(e);
            }
            self.metrics.broadcasts_published.inc_by(broadcasts);
            self.metrics.messages_published.inc_by(messages);
        }
        Ok(())
    }

    /// The server is gone: out of the registry now rather than at its TTL, and the
    /// other nodes told, so that what they asked this node or relay through it
    /// fails at once (a long-poll relayed here would otherwise wait out its hold,
    /// and a relayed client its heartbeat).
    async fn leave(&mut self, conn: &mut MultiplexedConnection) {
        let key = self.names.node(self.node.0);
        let _ = redis::cmd("DEL").arg(key).exec_async(conn).await;
        let Ok(nodes) = self.nodes(conn).await else {
            return;
        };
        let mut pipe = redis::pipe();
        for node in nodes.into_iter().filter(|n| *n != self.node) {
            let left = Control {
                from: self.node.0,
                id: 0,
                body: ControlBody::Left,
            };
            self.control_to(&mut pipe, node, &left);
        }
        let _ = pipe.exec_async(conn).await;
    }

    /// Node `node` said it left: its questions fail, its relays end.
    fn departed(&mut self, node: NodeId) {
        let now = Instant::now();
        if let Some(quiet_since) = now.checked_sub(FORGET_ORIGIN) {
            self.departed.retain(|_, at| *at > quiet_since);
        }
        self.departed.insert(node, now);
        // Dropping the answers' senders tells the askers.
        self.asking.retain(|_, (to, _)| *to != node);
        self.relays.node_left(node);
        tracing::info!(%node, "cluster: a node left");
    }

    /// Appends a control message for node `to` to `pipe`.
    fn control_to(&self, pipe: &mut redis::Pipeline, to: NodeId, message: &Control) {
        match serde_json::to_vec(message) {
            Ok(json) => {
                pipe.cmd("SPUBLISH")
                    .arg(self.names.control(to.0))
                    .arg(json)
                    .ignore();
            }
            Err(e) => tracing::error!(error = %e, "cluster: control message not encoded"),
        }
    }

    /// A question or an answer from another node.
    fn on_control(&mut self, raw: &[u8]) {
        let Ok(message) = serde_json::from_slice::<Control>(raw) else {
            self.metrics.dropped(Dropped::Malformed);
            return;
        };
        match message.body {
            ControlBody::Left => self.departed(NodeId(message.from)),
            ControlBody::Reply(reply) => {
                if let Some((_, waiting)) = self.asking.remove(&message.id) {
                    let _ = waiting.send(reply);
                }
            }
            ControlBody::Request(request) => {
                let local = self.local.clone();
                let relays = self.relays.clone();
                let queue = relays.queue();
                let (from, id) = (message.from, message.id);
                // Answered off the link's loop: the answer may wait on the supervisor.
                // It goes on the link's queue, behind what this node published before.
                actix::spawn(async move {
                    let reply = ops::answer(&local, &relays, NodeId(from), request).await;
                    let body = ControlBody::Reply(reply);
                    if let Some(queue) = queue.upgrade() {
                        let _ = queue
                            .send(Outbound::Answer(Control { from, id, body }))
                            .await;
                    }
                });
            }
        }
    }

    /// A message pushed by Redis: a broadcast from another node, a control message,
    /// or the news that the connection is gone.
    fn on_push(&mut self, push: PushInfo) -> Result<(), Lost> {
        match push.kind {
            PushKind::Disconnection => Err(lost("disconnected")),
            PushKind::SMessage | PushKind::Message => {
                let mut data = push.data.into_iter();
                let channel = data.next();
                let Some(Value::BulkString(raw)) = data.next() else {
                    self.metrics.dropped(Dropped::Malformed);
                    return Ok(());
                };
                if let Some(Value::BulkString(channel)) = channel {
                    if channel == self.control_channel.as_bytes() {
                        self.on_control(&raw);
                        return Ok(());
                    }
                    if channel == self.relay_channel.as_bytes() {
                        self.metrics.relayed.inc();
                        self.relays.on_message(Bytes::from(raw));
                        return Ok(());
                    }
                }
                let env = match Envelope::decode(Bytes::from(raw)) {
                    Ok(env) => env,
                    Err(why) => {
                        self.metrics.dropped(Dropped::Malformed);
                        tracing::warn!(?why, "cluster: unreadable message dropped");
                        return Ok(());
                    }
                };
                if env.origin == self.node.0 {
                    return Ok(()); // our own broadcast, delivered locally already
                }
                self.metrics.messages_received.inc();
                let now = Instant::now();
                let last = self.seen.entry(env.origin).or_insert((0, now));
                if env.seq <= last.0 {
                    self.metrics.duplicates.inc();
                    return Ok(());
                }
                *last = (env.seq, now);
                self.interest.dispatch(env, &self.metrics);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Writes (or refreshes) this node's registry key, which lives `ttl`.
    async fn register(&self, conn: &mut MultiplexedConnection) -> Result<(), Lost> {
        if !self.number.is_assigned() {
            // Two live nodes never get one number (it wraps after 2^20 starts).
            let counter: u64 = redis::cmd("INCR")
                .arg(self.names.node_numbers())
                .query_async(conn)
                .await?;
            self.number.assign(counter);
            tracing::info!(node = %self.node, number = self.number.get(), "cluster: node number taken");
        }
        redis::cmd("SET")
            .arg(self.names.node(self.node.0))
            .arg(self.node.to_string())
            .arg("PX")
            .arg(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX))
            .exec_async(conn)
            .await
    }

    /// The nodes whose registry key has not expired.
    async fn nodes(&self, conn: &mut MultiplexedConnection) -> Result<Vec<NodeId>, ClusterError> {
        let mut cursor: u64 = 0;
        let mut nodes = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(self.names.nodes())
                .arg("COUNT")
                .arg(1000)
                .query_async(conn)
                .await
                .map_err(|_| ClusterError::RedisDown)?;
            nodes.extend(keys.iter().filter_map(|k| NodeId::from_key(k)));
            if next == 0 {
                break;
            }
            cursor = next;
        }
        nodes.sort();
        nodes.dedup();
        Ok(nodes)
    }
}

/// Makes the connection's subscriptions match `wanted`, one channel per command (the
/// client pairs each confirmation with its command).
async fn reconcile(
    conn: &mut MultiplexedConnection,
    subscribed: &mut HashSet<String>,
    wanted: HashSet<String>,
) -> Result<(), Lost> {
    for channel in wanted.difference(subscribed) {
        redis::cmd("SSUBSCRIBE")
            .arg(channel)
            .query_async::<Value>(conn)
            .await?;
        tracing::debug!(%channel, "cluster: subscribed");
    }
    for channel in subscribed.difference(&wanted) {
        redis::cmd("SUNSUBSCRIBE")
            .arg(channel)
            .query_async::<Value>(conn)
            .await?;
        tracing::debug!(%channel, "cluster: unsubscribed");
    }
    *subscribed = wanted;
    Ok(())
}

fn lost(what: &'static str) -> Lost {
    redis::RedisError::from((redis::ErrorKind::Io, what))
}

/// The wait before reconnection attempt `failures` + 1: `initial` doubled per failure
/// so far, at most `max`, moved by up to a fifth either way so that the nodes of a
/// cluster cut at once do not come back at the same instant.
pub(crate) fn reconnect_delay(failures: u32, initial: Duration, max: Duration) -> Duration {
    let base = initial
        .saturating_mul(1u32 << failures.min(16))
        .min(max)
        .as_secs_f64();
    let spread = rand::random::<f64>() * 0.4 - 0.2;
    Duration::from_secs_f64(base * (1.0 + spread))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_its_cap() {
        let (initial, max) = (Duration::from_millis(100), Duration::from_secs(5));
        let within =
            |d: Duration, base: f64| d.as_secs_f64() >= base * 0.8 && d.as_secs_f64() <= base * 1.2;
        assert!(within(reconnect_delay(0, initial, max), 0.1));
        assert!(within(reconnect_delay(1, initial, max), 0.2));
        assert!(within(reconnect_delay(3, initial, max), 0.8));
        assert!(within(reconnect_delay(30, initial, max), 5.0));
    }
}
