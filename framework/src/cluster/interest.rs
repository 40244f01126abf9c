//! A namespace's side of the cluster: which channels this node wants (its interest),
//! publishing its broadcasts, and taking the other nodes' broadcasts in.
//!
//! Interest is state, not a queue: the namespace actors write the channels they want
//! into [`Interest`] (a room's channel while the room has local members, the
//! namespace's channel while it has local sockets) and wake the link, which makes its
//! Redis subscriptions match, now or after a reconnection. Nothing is lost when the
//! link is slow or Redis is away, and nothing grows past the number of local rooms.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use actix::prelude::*;
use actix::WeakAddr;
use tokio::sync::{mpsc, Notify};

use super::envelope::{Body, Envelope, Names};
use super::link::Outbound;
use super::stats::{ClusterMetrics, Dropped};
use crate::namespace::{NamespaceActor, Target};
use crate::protocol::WireFrame;
use crate::room::{Deliver, Gauge, Ticket};
use crate::SessionId;

/// Where a namespace takes broadcasts from other nodes. Weak: the namespace lives as
/// long as its server, and the link ends when every namespace has (see `Link::run`).
#[derive(Clone)]
pub(crate) struct Inbox {
    addr: WeakAddr<NamespaceActor>,
    gauge: Arc<Gauge>,
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
    wanted: HashSet<String>,
    inboxes: HashMap<Arc<str>, Inbox>,
}

impl Interest {
    fn lock(&self) -> MutexGuard<'_, InterestState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn want(&self, channel: String, on: bool) {
        let changed = {
            let mut state = self.lock();
            if on {
                state.wanted.insert(channel)
            } else {
                state.wanted.remove(&channel)
            }
        };
        if changed {
            self.changed.notify_one();
        }
    }

    /// The channels wanted right now.
    pub fn wanted(&self) -> HashSet<String> {
        self.lock().wanted.clone()
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
            },
            ticket,
        });
    }
}

/// What a namespace actor keeps of the cluster.
pub(crate) struct NamespaceLink {
    pub(super) ns: Arc<str>,
    pub(super) names: Names,
    pub(super) interest: Arc<Interest>,
    pub(super) outbound: mpsc::Sender<Outbound>,
    pub(super) metrics: ClusterMetrics,
    /// Bounds the namespace's broadcasts waiting, from here and from other nodes.
    pub(super) gauge: Arc<Gauge>,
}

impl NamespaceLink {
    /// The namespace actor started: broadcasts from other nodes go to `addr`.
    pub fn started(&self, addr: Addr<NamespaceActor>) {
        let inbox = Inbox {
            addr: addr.downgrade(),
            gauge: self.gauge.clone(),
        };
        self.interest.lock().inboxes.insert(self.ns.clone(), inbox);
    }

    /// A room got its first local member (`true`) or lost its last (`false`).
    pub fn room(&self, room: &str, has_members: bool) {
        self.interest
            .want(self.names.room(&self.ns, room), has_members);
    }

    /// The namespace got its first local socket (`true`) or lost its last (`false`).
    pub fn namespace(&self, has_sockets: bool) {
        self.interest
            .want(self.names.namespace(&self.ns), has_sockets);
    }

    /// Publishes a broadcast emitted on this node for the other nodes: one message per
    /// target room (the nodes with members there), or one on the namespace's channel.
    pub fn publish(&self, target: &Target, deliver: &Deliver) {
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
