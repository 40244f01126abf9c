//! The owner's side: players of other nodes seated in this node's rooms as guests.
//!
//! A guest is a [`Socket`] whose session link leads to a [`GuestSeat`] actor instead
//! of a session: its deliveries, and the room's fan-outs through its [`GuestSink`]
//! on the cluster thread, are gathered per edge node and sent once the pass is
//! done, each frame once with its players; its watch carries the edge's news.

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use actix::WeakAddr;
use bytes::{BufMut, BytesMut};
use serde_json::value::RawValue;

use super::{lock, GameHub, SeatNews, NEWS, STATES};
use crate::cluster::NodeId;
use crate::game::seats::Reservation;
use crate::game::{GameRooms, JoinError, JoinRequest, Joined};
use crate::namespace::{
    NamespaceHandle, SessionLink, Socket, SocketCommand, SocketEvent, SocketEventKind,
};
use crate::protocol::WireFrame;
use crate::room::local::{self, LocalKey, LocalSink};
use crate::room::{Deliver, Mailbox};
use crate::session::Shared;
use crate::{AckError, SessionId};

/// A player of another node seated in a room of this node.
pub(super) struct Guest {
    pub edge: NodeId,
    pub seat: WeakAddr<GuestSeat>,
}

impl GameHub {
    /// Owner: inputs of guests, queued as a local player's would be.
    pub(super) fn on_inputs(&self, from: NodeId, batch: Vec<(u64, Vec<&RawValue>)>) {
        let Some(rooms) = self.rooms() else {
            return;
        };
        let guests = lock(&self.guests);
        for (sid, inputs) in batch {
            let sid = SessionId(sid);
            // Only the node that seated a guest speaks for it.
            if guests.get(&sid).is_none_or(|g| g.edge != from) {
                continue;
            }
            for input in inputs {
                let _ = rooms.seats().input(sid, input);
            }
        }
    }

    /// Owner: a delivery for a guest, sent with the others of its edge node once the
    /// fan-out under way is done.
    pub(super) fn queue(self: &Arc<Self>, edge: NodeId, sid: SessionId, deliver: Deliver) {
        lock(&self.pending)
            .entry(edge)
            .or_default()
            .push((sid, deliver));
        if !self.flush_due.swap(true, Ordering::AcqRel) {
            let hub = self.clone();
            // After the fan-outs already in this thread's queue: one batch for them.
            actix::spawn(async move {
                tokio::task::yield_now().await;
                hub.flush_states();
            });
        }
    }

    /// Sends each edge node its guests' deliveries: each frame once, with its players.
    pub(super) fn flush_states(&self) {
        self.flush_due.store(false, Ordering::Release);
        let batches = std::mem::take(&mut *lock(&self.pending));
        for (edge, items) in batches {
            let mut groups: Vec<(WireFrame, bool, Vec<u64>)> = Vec::new();
            for (sid, deliver) in items {
                let same = |g: &&mut (WireFrame, bool, Vec<u64>)| {
                    g.1 == deliver.reliable && same_bytes(&g.0, &deliver.frame)
                };
                match groups.iter_mut().find(same) {
                    Some(group) => group.2.push(sid.0),
                    None => groups.push((deliver.frame, deliver.reliable, vec![sid.0])),
                }
            }
            let mut out = BytesMut::new();
            for (frame, reliable, sids) in groups {
                let payload = frame.payload();
                out.put_u8(u8::from(reliable));
                out.put_u32(u32::try_from(sids.len()).unwrap_or(u32::MAX));
                sids.iter().for_each(|sid| out.put_u64(*sid));
                out.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
                out.put_slice(&payload);
            }
            self.send(edge, STATES, &out);
        }
    }

    /// Owner: seats player `sid` of node `edge` in a room here, as a guest.
    pub(super) async fn seat_guest(
        self: &Arc<Self>,
        edge: NodeId,
        shared: &Shared,
        rooms: &GameRooms,
        sid: u64,
        ns: &str,
        request: &JoinRequest,
    ) -> Result<Joined, JoinError> {
        let sid = SessionId(sid);
        let handle = (shared.namespaces.read())
            .unwrap_or_else(|e| e.into_inner())
            .get(ns)
            .cloned()
            .ok_or_else(|| JoinError::Refused(format!("no namespace {ns} on the room's node")))?;
        rooms.seats().reserve(sid)?;
        let _reservation = Reservation(rooms.seats(), sid);
        let socket = self.guest(edge, sid, &handle, shared.config.max_mailbox);
        let joined = rooms.join_here(&socket, request).await;
        if joined.is_err() {
            lock(&self.guests).remove(&sid);
        }
        // Before the answer: the next join-or-create, on any node, sees this seat.
        self.write_registry(true).await;
        tracing::debug!(sid = sid.0, %edge, ok = joined.is_ok(), "cluster: guest seated");
        joined
    }
}

impl GameHub {
    /// The socket a room here holds for player `sid` of node `edge`, recorded as
    /// that node's guest (a seat it had from another node is replaced).
    pub(super) fn guest(
        self: &Arc<Self>,
        edge: NodeId,
        sid: SessionId,
        handle: &NamespaceHandle,
        max_mailbox: usize,
    ) -> Socket {
        let sink = Rc::new(GuestSink {
            hub: self.clone(),
            edge,
            sid,
        });
        let route = local::register(sink);
        let key = route.key;
        let seat = GuestSeat {
            sid,
            edge,
            ns: handle.name.clone(),
            hub: self.clone(),
            watchers: Vec::new(),
            key,
        }
        .start();
        let seat = Arc::new(seat);
        let link = SessionLink {
            id: sid,
            deliver: Mailbox::new(seat.clone(), max_mailbox, route),
            session: seat.clone(),
            rtt_us: AtomicU64::new(0),
            transport: AtomicU8::new(1),
            next_ack: AtomicU64::new(0),
            max_frame: AtomicUsize::new(usize::MAX),
        };
        let socket = Socket::new(handle, Arc::new(link), None);
        lock(&self.guests).insert(
            sid,
            Guest {
                edge,
                seat: seat.downgrade(),
            },
        );
        socket
    }
}

fn same_bytes(a: &WireFrame, b: &WireFrame) -> bool {
    let (a, b) = (a.message(), b.message());
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

/// Owner: a guest's delivery end on this node's thread, for the room's fan-outs.
struct GuestSink {
    hub: Arc<GameHub>,
    edge: NodeId,
    sid: SessionId,
}

impl LocalSink for GuestSink {
    fn deliver(&self, deliver: &Deliver) {
        self.hub.queue(self.edge, self.sid, deliver.clone());
    }
}

/// Owner: what a room takes for a guest's session. It forwards deliveries to the
/// edge node and the edge's news to the room's watch; it stops when the room lets
/// go of the guest's socket, and then tells the edge that the seat is free.
pub(super) struct GuestSeat {
    sid: SessionId,
    edge: NodeId,
    ns: Arc<str>,
    hub: Arc<GameHub>,
    watchers: Vec<Recipient<SocketEvent>>,
    key: LocalKey,
}

impl Actor for GuestSeat {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        local::unregister(self.key);
        let mut guests = lock(&self.hub.guests);
        // A newer seat of the same player (it joined again) stays.
        if guests
            .get(&self.sid)
            .is_some_and(|g| g.seat.upgrade().is_none())
        {
            guests.remove(&self.sid);
        }
        drop(guests);
        self.hub
            .send_json(self.edge, NEWS, &SeatNews::Freed(self.sid.0));
    }
}

impl Handler<Deliver> for GuestSeat {
    type Result = ();

    fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
        self.hub.queue(self.edge, self.sid, msg);
    }
}

impl Handler<SocketCommand> for GuestSeat {
    type Result = ();

    fn handle(&mut self, msg: SocketCommand, _: &mut Context<Self>) {
        match msg {
            SocketCommand::Watch { recipient, on, .. } => {
                self.watchers.retain(|w| *w != recipient);
                if on {
                    self.watchers.push(recipient);
                }
            }
            // A game answers its players with reliable events, not acks.
            SocketCommand::ExpectAck { tx, .. } => {
                let _ = tx.send(Err(AckError::Disconnected));
            }
            SocketCommand::Leave { reason, .. } => {
                tracing::debug!(sid = self.sid.0, %reason, "cluster: a guest cannot be disconnected from its room's node");
            }
        }
    }
}

/// Owner: news of a guest's session, for the room.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct News(pub SocketEventKind);

impl Handler<News> for GuestSeat {
    type Result = ();

    fn handle(&mut self, msg: News, _: &mut Context<Self>) {
        let event = SocketEvent {
            id: self.sid,
            namespace: self.ns.clone(),
            kind: msg.0,
        };
        for watcher in &self.watchers {
            watcher.do_send(event.clone());
        }
    }
}

/// Owner: sends what the guest's mailbox holds now to its edge (the room's events
/// queued before a hold go out before the hold is answered).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Flush;

impl Handler<Flush> for GuestSeat {
    type Result = ();

    fn handle(&mut self, _: Flush, _: &mut Context<Self>) {
        self.hub.flush_states();
    }
}
