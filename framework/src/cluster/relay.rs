//! Resuming on another node: the session stays where it is and its new connection
//! is relayed to it through Redis.
//!
//! A client whose connection lands on node B with a session of node A (the *owner*)
//! resumes it through B (the *edge*): B asks the other nodes whether one holds the
//! session with that token, and A attaches a relay in place of a connection. From
//! then on the client's frames go B → A and the session's frames A → B, each on the
//! other node's relay channel (`<prefix>:relay:<node>`), in order. Everything that
//! makes a session exactly-once (outbox, sequence numbers, acks pending on either
//! side, namespaces and rooms, the heartbeat) stays in A's `Session`, untouched: the
//! relay is only a longer wire. Its cost is two Redis hops per frame, and the
//! session dies with its owner node.
//!
//! A relay message is a kind byte, the relay's number (chosen by the edge) and the
//! payload: an encoded frame, or a close reason.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::control::Outbound;
use super::envelope::{
    message, CLIENT_CLOSED, CLIENT_FRAME, GAME, SERVER_CLOSE, SERVER_DROP, SERVER_FRAME,
};
use super::NodeId;
use crate::protocol::{self, WireFrame};
use crate::room::Gauge;
use crate::session::{queued_size, Backlog, FromTransport, Sending, ToTransport, TransportId};
use crate::DisconnectReason;

/// Transport ids of relays, apart from the transports' own (which count from 0).
static NEXT_RELAY_TRANSPORT: AtomicU64 = AtomicU64::new(1 << 63);

/// The relays of this node, as edge and as owner.
pub(crate) struct Relays {
    /// Relays whose client is connected here, by relay number.
    edges: Mutex<HashMap<u64, Edge>>,
    /// Relays to sessions of this node, by relay number.
    owners: Mutex<HashMap<u64, Owner>>,
    /// The link's queue, weak: relays do not keep a stopped server's link alive.
    outbound: mpsc::WeakSender<Outbound>,
    /// `Config::max_send_backlog`: a relayed client that reads slower is dropped
    /// here (and resumes), as a local one would be by its session.
    max_backlog: usize,
    /// Game seats across nodes, which share the relay channel.
    pub game: std::sync::OnceLock<Arc<super::game::GameHub>>,
}

struct Edge {
    transport: Recipient<ToTransport>,
    /// What counts the connection's backlog.
    sending: Sending,
}

struct Owner {
    session: Recipient<FromTransport>,
    transport: TransportId,
    inbound: Arc<Gauge>,
    edge: NodeId,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Relays {
    pub fn new(outbound: mpsc::WeakSender<Outbound>, max_backlog: usize) -> Self {
        Relays {
            edges: Mutex::default(),
            owners: Mutex::default(),
            outbound,
            max_backlog,
            game: std::sync::OnceLock::new(),
        }
    }

    /// The link's queue (weak), for answers to go behind the broadcasts.
    pub(crate) fn queue(&self) -> mpsc::WeakSender<Outbound> {
        self.outbound.clone()
    }

    /// Sends a relay message to `to`; `false` when the link's queue is full or gone.
    pub(crate) fn publish(&self, to: NodeId, kind: u8, relay: u64, payload: &[u8]) -> bool {
        let Some(outbound) = self.outbound.upgrade() else {
            return false;
        };
        let relay = Outbound::Relay {
            to,
            message: message(kind, relay, payload),
        };
        outbound.try_send(relay).is_ok()
    }

    /// Edge: the connection `transport` waits for relay `relay`'s frames.
    pub fn open_edge(&self, relay: u64, transport: Recipient<ToTransport>, sending: Sending) {
        lock(&self.edges).insert(relay, Edge { transport, sending });
    }

    /// Edge: no node took relay `relay`.
    pub fn close_edge(&self, relay: u64) {
        lock(&self.edges).remove(&relay);
    }

    /// Owner: the session behind `session` is attached to relay `relay` of `edge`.
    pub fn open_owner(
        &self,
        relay: u64,
        edge: NodeId,
        session: Recipient<FromTransport>,
        transport: TransportId,
        inbound: Arc<Gauge>,
    ) {
        let owner = Owner {
            session,
            transport,
            inbound,
            edge,
        };
        lock(&self.owners).insert(relay, owner);
    }

    /// Ends every relay of this node, as a cut connection would: its clients resume
    /// (anywhere) and its sessions detach, so that a frame lost with the link is
    /// replayed rather than skipped. The other ends hear of it if the link can still
    /// tell them (their own heartbeat notices otherwise).
    pub fn cut_all(&self, reason: &str) {
        let edges: Vec<(u64, Edge)> = lock(&self.edges).drain().collect();
        for (_, edge) in edges {
            let reason = reason.to_owned();
            // Its transport reports the close to its `EdgeRelay`, which tells the owner.
            edge.transport.do_send(ToTransport::Drop { reason });
        }
        let owners: Vec<(u64, Owner)> = lock(&self.owners).drain().collect();
        for (relay, owner) in owners {
            owner.session.do_send(FromTransport::Closed {
                transport: owner.transport,
                reason: DisconnectReason::TransportClosed,
            });
            self.publish(owner.edge, SERVER_DROP, relay, reason.as_bytes());
        }
    }

    /// Node `node` left: the relays with it end as a cut connection would (its
    /// clients resume elsewhere, its sessions' clients resume here or elsewhere).
    pub fn node_left(&self, node: NodeId) {
        let owners: Vec<Owner> = {
            let mut owners = lock(&self.owners);
            let gone: Vec<u64> = (owners.iter())
                .filter(|(_, o)| o.edge == node)
                .map(|(relay, _)| *relay)
                .collect();
            gone.iter().filter_map(|r| owners.remove(r)).collect()
        };
        for owner in owners {
            owner.session.do_send(FromTransport::Closed {
                transport: owner.transport,
                reason: DisconnectReason::TransportClosed,
            });
        }
    }

    /// A relay message from Redis.
    pub fn on_message(&self, raw: Bytes) {
        if raw.len() < 9 {
            return;
        }
        let kind = raw[0];
        let mut number = [0; 8];
        number.copy_from_slice(&raw[1..9]);
        let relay = u64::from_be_bytes(number);
        let payload = raw.slice(9..);
        let reason = || String::from_utf8_lossy(&payload).into_owned();
        match kind {
            GAME => {
                if let Some(game) = self.game.get() {
                    game.on_message(NodeId(relay), &payload);
                }
            }
            CLIENT_FRAME => self.client_frame(relay, payload.clone()),
            CLIENT_CLOSED => {
                if let Some(owner) = lock(&self.owners).remove(&relay) {
                    owner.session.do_send(FromTransport::Closed {
                        transport: owner.transport,
                        reason: DisconnectReason::TransportClosed,
                    });
                }
            }
            SERVER_FRAME => {
                let edges = lock(&self.edges);
                let Some(edge) = edges.get(&relay) else {
                    return;
                };
                let size = queued_size(&payload);
                let backlog = edge.sending.backlog();
                let queued = backlog.fetch_add(size, Ordering::Relaxed) + size;
                if queued > self.max_backlog {
                    backlog.fetch_sub(size, Ordering::Relaxed);
                    let reason = "slow consumer: send backlog over its limit".to_owned();
                    edge.transport.do_send(ToTransport::Drop { reason });
                } else {
                    // Framed once here, for whichever transport the client is on.
                    let frame = WireFrame::new(&payload);
                    edge.transport.do_send(ToTransport::Frame(frame));
                }
            }
            SERVER_CLOSE | SERVER_DROP => {
                if let Some(edge) = lock(&self.edges).remove(&relay) {
                    let reason = reason();
                    edge.transport.do_send(if kind == SERVER_CLOSE {
                        ToTransport::Close { reason }
                    } else {
                        ToTransport::Drop { reason }
                    });
                }
            }
            _ => {}
        }
    }

    /// Owner: a client frame for a relayed session, bounded as a connection's are.
    fn client_frame(&self, relay: u64, payload: Bytes) {
        let mut owners = lock(&self.owners);
        let Some(owner) = owners.get(&relay) else {
            return;
        };
        let frame = match protocol::decode(&payload) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!(relay, error = %e, "cluster: bad relayed frame dropped");
                return;
            }
        };
        if !owner.inbound.admit() {
            // As a connection would: too many frames waiting, the connection goes.
            let limit = owner.inbound.limit();
            let why = crate::session::too_many_frames(limit);
            owner.session.do_send(FromTransport::Closed {
                transport: owner.transport,
                reason: DisconnectReason::Protocol(why.clone()),
            });
            let edge = owner.edge;
            owners.remove(&relay);
            self.publish(edge, SERVER_DROP, relay, why.as_bytes());
            return;
        }
        owner.session.do_send(FromTransport::Frame {
            transport: owner.transport,
            frame,
            size: payload.len(),
        });
    }
}

/// Edge: where the connection's transport sends its client's frames, instead of a
/// session: on to the owner node.
pub(crate) struct EdgeRelay {
    pub relay: u64,
    pub owner: NodeId,
    pub relays: Arc<Relays>,
    pub inbound: Arc<Gauge>,
    pub transport: Recipient<ToTransport>,
}

impl Actor for EdgeRelay {
    type Context = Context<Self>;
}

impl Handler<FromTransport> for EdgeRelay {
    type Result = ();

    fn handle(&mut self, msg: FromTransport, ctx: &mut Context<Self>) {
        match msg {
            FromTransport::Frame { frame, .. } => {
                self.inbound.taken();
                let bytes = protocol::encode(&frame);
                if !self
                    .relays
                    .publish(self.owner, CLIENT_FRAME, self.relay, &bytes)
                {
                    // A frame that cannot go on must not be skipped: the connection
                    // goes, and the client resumes from what the session confirmed.
                    let reason = "cluster link overloaded".to_owned();
                    self.transport.do_send(ToTransport::Drop { reason });
                }
            }
            FromTransport::Closed { reason, .. } => {
                self.relays.close_edge(self.relay);
                let why = reason.to_string();
                self.relays
                    .publish(self.owner, CLIENT_CLOSED, self.relay, why.as_bytes());
                ctx.stop();
            }
        }
    }
}

/// Owner: the connection a relayed session is attached to; what the session writes
/// goes on to the edge node.
pub(crate) struct OwnerRelay {
    pub relay: u64,
    pub edge: NodeId,
    pub relays: Arc<Relays>,
    pub backlog: Backlog,
}

impl OwnerRelay {
    /// A fresh transport id for a relay.
    pub fn transport_id() -> TransportId {
        NEXT_RELAY_TRANSPORT.fetch_add(1, Ordering::Relaxed)
    }

    fn end(&mut self, kind: u8, reason: &str, ctx: &mut Context<Self>) {
        lock(&self.relays.owners).remove(&self.relay);
        self.relays
            .publish(self.edge, kind, self.relay, reason.as_bytes());
        ctx.stop();
    }
}

impl Actor for OwnerRelay {
    type Context = Context<Self>;
}

impl Handler<ToTransport> for OwnerRelay {
    type Result = ();

    fn handle(&mut self, msg: ToTransport, ctx: &mut Context<Self>) {
        match msg {
            ToTransport::Frame(frame) => {
                let bytes = frame.payload();
                self.backlog
                    .fetch_sub(queued_size(&bytes), Ordering::Relaxed);
                if !self
                    .relays
                    .publish(self.edge, SERVER_FRAME, self.relay, &bytes)
                {
                    // Not skipped silently: the session detaches, keeps the frame in
                    // its outbox (if reliable) and the client resumes.
                    let owner = lock(&self.relays.owners).remove(&self.relay);
                    if let Some(owner) = owner {
                        owner.session.do_send(FromTransport::Closed {
                            transport: owner.transport,
                            reason: DisconnectReason::TransportClosed,
                        });
                    }
                    ctx.stop();
                }
            }
            ToTransport::Close { reason } => self.end(SERVER_CLOSE, &reason, ctx),
            ToTransport::Drop { reason } => self.end(SERVER_DROP, &reason, ctx),
        }
    }
}
