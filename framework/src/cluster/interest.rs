//! A namespace's side of the cluster: which channels this node wants (its interest),
//! publishing its broadcasts, and taking the other nodes' broadcasts in.
//!
//! Interest is state, not a queue: the namespace actors write the channels they want
//! into [`Interest`] (a room's channel while the room has local members, the
//! namespace's channel while it has local sockets) and wake the link, which makes its
//! Redis subscriptions match, now or after a reconnection. Nothing is lost when the
//! link is slow or Redis is away, and nothing grows past the number of local rooms.
//!
//! A channel is wanted by count, not as a set: a namespace the dynamic factory made
//! is dropped once unused and made again on demand, and the old actor's "no longer"
//! may come after the new one's "wanted" (two actors, two mailboxes). Counted, the
//! channel stays wanted until both have let go; each actor lets go of what it still
//! holds as it stops, and takes its inbox with it.
//!
//! A join waits on interest too: the link tells [`Interest`] which channels its
//! connection is subscribed to, and a join whose room channel is not among them yet
//! is effective once it is (see [`Interest::when_subscribed`]). While Redis is away
//! nothing is subscribed and a join does not wait.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use actix::prelude::*;
use actix::WeakAddr;
use tokio::sync::{mpsc, oneshot, Notify};

use futures_util::future::LocalBoxFuture;

use super::control::{Outbound, Reply, Request};
use super::envelope::{Body, Envelope, Names};
use super::stats::{ClusterMetrics, Dropped};
use super::NodeId;
use crate::namespace::{FoundSocket, NamespaceActor, Remote, SocketsOp, Target, JOIN_WAIT};
use crate::protocol::WireFrame;
use crate::room::{Deliver, Gauge, Mark, Ticket};
use crate::SessionId;

/// Where a namespace takes broadcasts from other nodes. Weak: the registry holds the
/// namespace, not its inbox; the actor takes the inbox out as it stops.
#[derive(Clone)]
pub(crate) struct Inbox {
    addr: WeakAddr<NamespaceActor>,
    gauge: Arc<Gauge>,
    /// Which actor of the name (see [`NamespaceLink::actor`]): one stopping leaves its
    /// successor's inbox in place.
    actor: u64,
}

/// The channels this node wants, and the namespaces that take what arrives.
#[derive(Default)]
pub(crate) struct Interest {
    state: Mutex<InterestState>,
    /// Wakes the link when `wanted` changed.
    pub changed: Notify,
}

#[derive(Default)]
struct InterestState {
    /// The channels wanted, each with how many holders want it (at least one).
    wanted: HashMap<String, usize>,
    /// What the link's connection is subscribed to (confirmed by Redis); empty while
    /// the link is down.
    subscribed: HashSet<String>,
    /// Whether the link is connected: joins wait for a subscription only then.
    linked: bool,
    /// Joins waiting for their channel's subscription, told when it is in place (or
    /// when the link is lost). At most one entry per wanted channel.
    waiting: HashMap<String, Vec<oneshot::Sender<()>>>,
    inboxes: HashMap<Arc<str>, Inbox>,
}

impl Interest {
    fn lock(&self) -> MutexGuard<'_, InterestState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One holder wants `channel` (`on`) or no longer does: the channel is wanted
    /// while any holder wants it. A holder says each only once in turn.
    pub fn want(&self, channel: String, on: bool) {
        let changed = {
            let mut state = self.lock();
            if on {
                let holders = state.wanted.entry(channel).or_insert(0);
                *holders += 1;
                *holders == 1
            } else {
                match state.wanted.get_mut(&channel) {
                    Some(holders) if *holders > 1 => {
                        *holders -= 1;
                        false
                    }
                    Some(_) => {
                        // Being unsubscribed from now: a join coming back waits for
                        // the next subscription.
                        state.subscribed.remove(&channel);
                        state.waiting.remove(&channel);
                        state.wanted.remove(&channel);
                        true
                    }
                    None => false,
                }
            }
        };
        if changed {
            self.changed.notify_one();
        }
    }

    /// The channels wanted right now.
    pub fn wanted(&self) -> HashSet<String> {
        self.lock().wanted.keys().cloned().collect()
    }

    /// Tells `done` once `channel` is subscribed on Redis, so that a broadcast any
    /// node publishes after that reaches this node. At once if it already is, or if
    /// the link is down (the join counts locally; nothing from other nodes arrives
    /// until the link is back anyway).
    ///
    /// Returns `false` if the link is down: the join is effective here only.
    fn when_subscribed(&self, channel: String, done: oneshot::Sender<()>) -> bool {
        let mut state = self.lock();
        if !state.linked || state.subscribed.contains(&channel) {
            let _ = done.send(());
        } else if state.wanted.contains_key(&channel) {
            state.waiting.entry(channel).or_default().push(done);
        }
        // Not wanted (the room emptied meanwhile): dropping `done` releases the join.
        state.linked
    }

    /// The link's connection is subscribed to exactly `subscribed`: the joins waiting
    /// on those channels are effective.
    pub fn subscribed(&self, subscribed: &HashSet<String>) {
        let mut state = self.lock();
        state.linked = true;
        // Only what is still wanted: a channel given up meanwhile is being
        // unsubscribed by the next reconciliation.
        let still_wanted = subscribed
            .iter()
            .filter(|channel| state.wanted.contains_key(*channel))
            .cloned()
            .collect();
        state.subscribed = still_wanted;
        let done: Vec<String> = state
            .waiting
            .keys()
            .filter(|channel| state.subscribed.contains(*channel))
            .cloned()
            .collect();
        for channel in done {
            for waiter in state.waiting.remove(&channel).into_iter().flatten() {
                let _ = waiter.send(());
            }
        }
    }

    /// The link lost Redis: nothing is subscribed, and no join waits for it. Returns
    /// how many joins were waiting.
    pub fn unlinked(&self) -> usize {
        let mut state = self.lock();
        state.linked = false;
        state.subscribed.clear();
        state
            .waiting
            .drain()
            .map(|(_, waiters)| waiters.len())
            .sum()
    }

    /// Hands a broadcast from another node to its namespace, if it runs here. The
    /// namespace's gauge bounds what waits for it: past `max_mailbox` the broadcast is
    /// dropped and counted.
    pub fn dispatch(&self, env: Envelope, metrics: &ClusterMetrics) {
        let Some(inbox) = self.lock().inboxes.get(&env.ns).cloned() else {
            return;
        };
        let Some(addr) = inbox.addr.upgrade() else {
            return; // the server is stopping
        };
        let Some(ticket) = inbox.gauge.ticket() else {
            metrics.dropped(Dropped::Busy);
            tracing::warn!(ns = %env.ns, "namespace busy: broadcast from another node dropped");
            return;
        };
        addr.do_send(FromCluster {
            target: Target {
                rooms: env.rooms,
                except_rooms: env.except_rooms,
                except_ids: env.except_ids.into_iter().map(SessionId).collect(),
            },
            // Framed here, once for all the members on this node.
            deliver: Deliver {
                frame: WireFrame::new(&env.frame),
                reliable: env.reliable,
                mark: Some(Mark {
                    origin: env.origin,
                    n: env.n,
                }),
            },
            ticket,
        });
    }
}

/// What a namespace actor keeps of the cluster.
pub(crate) struct NamespaceLink {
    pub(super) ns: Arc<str>,
    /// This node's id, the origin of its broadcasts' marks.
    pub(super) node: u64,
    /// Numbers the node's broadcasts (one counter for all its namespaces).
    pub(super) broadcasts: Arc<AtomicU64>,
    pub(super) names: Names,
    pub(super) interest: Arc<Interest>,
    pub(super) outbound: mpsc::Sender<Outbound>,
    pub(super) metrics: ClusterMetrics,
    /// Bounds the namespace's broadcasts waiting, from here and from other nodes.
    pub(super) gauge: Arc<Gauge>,
    /// This namespace actor among those of its name this node has had (a namespace
    /// the dynamic factory made is made again after it was dropped).
    pub(super) actor: u64,
}

impl NamespaceLink {
    /// Asks every other node `request` and gathers what `part` takes of each answer.
    fn ask_others<T: 'static>(
        &self,
        request: Request,
        part: fn(Reply) -> Vec<T>,
    ) -> LocalBoxFuture<'static, Vec<T>> {
        let outbound = self.outbound.clone();
        let me = NodeId(self.node);
        Box::pin(async move {
            let replies = super::ask_others(&outbound, me, request).await;
            replies.into_iter().flat_map(part).collect()
        })
    }

    /// A number for a namespace actor, unique in the process.
    pub(super) fn next_actor() -> u64 {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }
}

impl Remote for NamespaceLink {
    /// Asks every other node for its rooms of this namespace.
    fn rooms(&self) -> LocalBoxFuture<'static, Vec<(String, usize)>> {
        let request = Request::Rooms {
            ns: self.ns.to_string(),
        };
        self.ask_others(request, Reply::rooms)
    }

    /// Asks every other node to do `op` to its sockets of `target`.
    fn sockets(
        &self,
        target: &Target,
        op: &SocketsOp,
    ) -> LocalBoxFuture<'static, Vec<FoundSocket>> {
        let names = |rooms: &[Arc<str>]| rooms.iter().map(|r| r.to_string()).collect();
        let request = Request::Sockets {
            ns: self.ns.to_string(),
            rooms: names(&target.rooms),
            except_rooms: names(&target.except_rooms),
            except_ids: target.except_ids.iter().map(|id| id.0).collect(),
            op: op.clone(),
        };
        self.ask_others(request, Reply::found)
    }

    /// The namespace actor started: broadcasts from other nodes go to `addr`.
    fn started(&self, addr: Addr<NamespaceActor>) {
        let inbox = Inbox {
            addr: addr.downgrade(),
            gauge: self.gauge.clone(),
            actor: self.actor,
        };
        self.interest.lock().inboxes.insert(self.ns.clone(), inbox);
    }

    /// The namespace actor stopped: its inbox goes, unless a newer actor of the same
    /// name has put its own in place.
    fn stopped(&self) {
        let mut state = self.interest.lock();
        if state
            .inboxes
            .get(&self.ns)
            .is_some_and(|inbox| inbox.actor == self.actor)
        {
            state.inboxes.remove(&self.ns);
        }
    }

    /// A room got its first local member (`true`) or lost its last (`false`).
    fn room(&self, room: &str, has_members: bool) {
        self.interest
            .want(self.names.room(&self.ns, room), has_members);
    }

    /// Tells `done` once `room`'s channel is subscribed on Redis (see
    /// [`Interest::when_subscribed`]).
    fn when_subscribed(&self, room: &str, done: oneshot::Sender<()>) {
        let channel = self.names.room(&self.ns, room);
        if !self.interest.when_subscribed(channel, done) {
            self.metrics.joins_unconfirmed.inc();
        }
    }

    /// The namespace got its first local socket (`true`) or lost its last (`false`).
    fn namespace(&self, has_sockets: bool) {
        self.interest
            .want(self.names.namespace(&self.ns), has_sockets);
    }

    /// Tells `done` once the namespace's channel is subscribed on Redis.
    fn when_namespace_subscribed(&self, done: oneshot::Sender<()>) {
        let channel = self.names.namespace(&self.ns);
        if !self.interest.when_subscribed(channel, done) {
            self.metrics.joins_unconfirmed.inc();
        }
    }

    /// Publishes a broadcast emitted on this node for the other nodes: one message per
    /// target room (the nodes with members there), or one on the namespace's channel.
    /// Numbered here, not by the link, so that it fans out here with its mark.
    fn publish(&self, target: &Target, deliver: &Deliver) -> Mark {
        let mark = Mark {
            origin: self.node,
            n: self.broadcasts.fetch_add(1, Ordering::Relaxed) + 1,
        };
        let channels: Vec<String> = if target.rooms.is_empty() {
            vec![self.names.namespace(&self.ns)]
        } else {
            target
                .rooms
                .iter()
                .map(|room| self.names.room(&self.ns, room))
                .collect()
        };
        let except_ids: Vec<u64> = target.except_ids.iter().map(|id| id.0).collect();
        let body = Body::new(
            deliver.reliable,
            mark.n,
            &self.ns,
            &target.rooms,
            &target.except_rooms,
            &except_ids,
            &deliver.frame.payload(),
        );
        let publish = Outbound::Publish { channels, body };
        if self.outbound.try_send(publish).is_err() {
            self.metrics.dropped(Dropped::QueueFull);
            tracing::warn!(ns = %self.ns, "cluster queue full: broadcast not published");
        }
        mark
    }

    fn join_unconfirmed(&self) {
        self.metrics.joins_unconfirmed.inc();
        tracing::warn!(ns = %self.ns, "join not yet effective on other nodes after {JOIN_WAIT:?}: ack sent anyway");
    }
}

/// A broadcast from another node, for this node's members of its target.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct FromCluster {
    target: Target,
    deliver: Deliver,
    ticket: Ticket,
}

impl Handler<FromCluster> for NamespaceActor {
    type Result = ();

    fn handle(&mut self, msg: FromCluster, _: &mut Context<Self>) {
        self.fan_out(msg.target, msg.deliver, msg.ticket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscribed(channels: &[&str]) -> HashSet<String> {
        channels.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn a_join_waits_for_its_channel_while_linked() {
        let interest = Interest::default();
        interest.subscribed(&subscribed(&[]));
        interest.want("r".into(), true);
        let (tx, mut rx) = oneshot::channel();
        assert!(interest.when_subscribed("r".into(), tx));
        assert!(rx.try_recv().is_err());
        interest.subscribed(&subscribed(&["r"]));
        assert_eq!(rx.try_recv(), Ok(()));
        // Subscribed already: at once.
        let (tx, mut rx) = oneshot::channel();
        interest.when_subscribed("r".into(), tx);
        assert_eq!(rx.try_recv(), Ok(()));
    }

    #[test]
    fn a_channel_given_up_is_not_subscribed_for_a_join_that_comes_back() {
        let interest = Interest::default();
        interest.want("r".into(), true);
        interest.subscribed(&subscribed(&["r"]));
        interest.want("r".into(), false);
        interest.want("r".into(), true);
        // A reconciliation that began before the room emptied ends now.
        interest.subscribed(&subscribed(&["r"]));
        interest.want("r".into(), false);
        interest.subscribed(&subscribed(&["r"]));
        interest.want("r".into(), true);
        let (tx, mut rx) = oneshot::channel();
        interest.when_subscribed("r".into(), tx);
        assert!(
            rx.try_recv().is_err(),
            "the unsubscription may be on its way"
        );
    }

    /// Two actors of one namespace name (the old one stopping, the new one made
    /// for the next client): the old one's "no longer" after the new one's
    /// "wanted" leaves the channel wanted and subscribed, with its joins waiting.
    #[test]
    fn a_channel_is_wanted_while_any_holder_wants_it() {
        let interest = Interest::default();
        interest.want("ns".into(), true);
        interest.subscribed(&subscribed(&["ns"]));
        interest.want("ns".into(), true);
        interest.want("ns".into(), false);
        assert_eq!(interest.wanted(), subscribed(&["ns"]));
        let (tx, mut rx) = oneshot::channel();
        interest.when_subscribed("ns".into(), tx);
        assert_eq!(rx.try_recv(), Ok(()), "still subscribed");
        // The last holder lets go: unsubscribed from now, and a stray "no longer"
        // does not count below nothing.
        interest.want("ns".into(), false);
        interest.want("ns".into(), false);
        assert!(interest.wanted().is_empty());
        interest.want("ns".into(), true);
        assert_eq!(interest.wanted(), subscribed(&["ns"]));
        let (tx, mut rx) = oneshot::channel();
        interest.when_subscribed("ns".into(), tx);
        assert!(rx.try_recv().is_err(), "waits for the next subscription");
    }

    #[test]
    fn no_join_waits_while_unlinked() {
        let interest = Interest::default();
        interest.want("r".into(), true);
        let (tx, mut rx) = oneshot::channel();
        assert!(
            !interest.when_subscribed("r".into(), tx),
            "never linked yet"
        );
        assert_eq!(rx.try_recv(), Ok(()));
        interest.subscribed(&subscribed(&[]));
        let (tx, mut rx) = oneshot::channel();
        interest.when_subscribed("r".into(), tx);
        assert_eq!(interest.unlinked(), 1);
        assert!(rx
            .try_recv()
            .is_err_and(|e| e == oneshot::error::TryRecvError::Closed));
    }
}
