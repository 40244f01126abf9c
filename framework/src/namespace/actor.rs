//! The namespace actor: who is connected to a namespace and which rooms they are in.
//!
//! It owns the rooms index (room name → room actor and members) and resolves
//! broadcast targets: a plain room broadcast is handed to the room actor, which fans
//! out on its own core; a broadcast to several rooms, with exclusions, or to the whole
//! namespace is resolved here so that every recipient gets the frame exactly once.
//!
//! A broadcast carries a [`Ticket`] of its namespace's gauge from `Broadcast::emit`
//! until it is fanned out (here or by the room), so that a burst cannot queue here or
//! in a room without limit. The membership messages (add/remove socket, join/leave)
//! are not counted: each comes from one client frame (bounded by that session's
//! mailbox) or one session's end, and costs a map update to handle.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;

#[cfg(feature = "cluster")]
use super::remote::Remote;
use crate::metrics::EventCounter;
use crate::room::local::Scatter;
use crate::room::{self, Deliver, Mailbox, Room, Ticket};
use crate::SessionId;

/// Picks the arbiter a new room is started on.
pub(crate) type RoomPlacer = Arc<dyn Fn() -> ArbiterHandle + Send + Sync>;

struct RoomEntry {
    addr: Addr<Room>,
    members: HashSet<SessionId>,
}

struct SocketEntry {
    recipient: Mailbox,
    /// The rooms joined: a list, not a set (24 bytes in an entry of the namespace's
    /// table for every socket, where a set is 48; a socket is in a few rooms).
    rooms: Vec<Arc<str>>,
}

/// One namespace's membership state.
pub struct NamespaceActor {
    name: Arc<str>,
    sockets: HashMap<SessionId, SocketEntry>,
    rooms: HashMap<Arc<str>, RoomEntry>,
    place_room: RoomPlacer,
    /// Broadcasts handled, for the server's metrics.
    emitted: EventCounter,
    /// Publishes to and subscribes for the other nodes of a cluster.
    #[cfg(feature = "cluster")]
    remote: Option<Box<dyn Remote>>,
}

impl NamespaceActor {
    pub(crate) fn new(name: Arc<str>, place_room: RoomPlacer, emitted: EventCounter) -> Self {
        NamespaceActor {
            name,
            sockets: HashMap::new(),
            rooms: HashMap::new(),
            place_room,
            emitted,
            #[cfg(feature = "cluster")]
            remote: None,
        }
    }

    /// Shares this namespace's broadcasts with the other nodes of a cluster.
    #[cfg(feature = "cluster")]
    pub(crate) fn with_remote(mut self, remote: Box<dyn Remote>) -> Self {
        self.remote = Some(remote);
        self
    }

    /// The other nodes of the cluster, if any.
    #[cfg(feature = "cluster")]
    pub(crate) fn remote(&self) -> Option<&dyn Remote> {
        self.remote.as_deref()
    }

    /// How many local members `room` has.
    #[cfg(feature = "cluster")]
    pub(crate) fn room_members(&self, room: &str) -> usize {
        self.rooms.get(room).map_or(0, |r| r.members.len())
    }

    /// The thread a local socket's broadcasts reach it on, and its rooms' actors.
    #[cfg(feature = "cluster")]
    pub(crate) fn socket_paths(
        &self,
        id: SessionId,
    ) -> Option<(crate::room::local::ThreadAddr, Vec<Addr<Room>>)> {
        let socket = self.sockets.get(&id)?;
        let rooms = (socket.rooms.iter())
            .filter_map(|room| self.rooms.get(room).map(|r| r.addr.clone()))
            .collect();
        Some((socket.recipient.route().thread.clone(), rooms))
    }

    fn leave(&mut self, id: SessionId, room: &str) {
        let Some(entry) = self.rooms.get_mut(room) else {
            return;
        };
        if entry.members.remove(&id) {
            entry.addr.do_send(room::RemoveMember { id });
        }
        if entry.members.is_empty() {
            self.rooms.remove(room);
            #[cfg(feature = "cluster")]
            if let Some(remote) = &self.remote {
                remote.room(room, false);
            }
        }
    }
}

impl Actor for NamespaceActor {
    type Context = Context<Self>;

    #[cfg(feature = "cluster")]
    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(remote) = &self.remote {
            remote.started(ctx.address());
        }
    }
}

/// A socket joined the namespace.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddSocket {
    pub id: SessionId,
    pub recipient: Mailbox,
    /// Told once the namespace's broadcasts from other nodes reach this node (a
    /// session moved here waits for it; dropped: it does, or never will).
    #[cfg(feature = "cluster")]
    pub effective: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Handler<AddSocket> for NamespaceActor {
    type Result = ();

    fn handle(&mut self, msg: AddSocket, _: &mut Context<Self>) {
        #[cfg(feature = "cluster")]
        if let Some(remote) = &self.remote {
            if self.sockets.is_empty() {
                remote.namespace(true);
            }
            if let Some(effective) = msg.effective {
                remote.when_namespace_subscribed(effective);
            }
        }
        self.sockets.insert(
            msg.id,
            SocketEntry {
                recipient: msg.recipient,
                rooms: Vec::new(),
            },
        );
    }
}

/// A socket left the namespace; it leaves all its rooms.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoveSocket {
    pub id: SessionId,
}

impl Handler<RemoveSocket> for NamespaceActor {
    type Result = ();

    fn handle(&mut self, msg: RemoveSocket, _: &mut Context<Self>) {
        if let Some(entry) = self.sockets.remove(&msg.id) {
            for room in entry.rooms {
                self.leave(msg.id, &room);
            }
        }
        #[cfg(feature = "cluster")]
        if let (Some(remote), true) = (&self.remote, self.sockets.is_empty()) {
            remote.namespace(false);
        }
    }
}

/// Puts a socket in a room, creating the room on first join.
#[derive(Message)]
#[rtype(result = "()")]
pub struct JoinRoom {
    pub id: SessionId,
    pub room: Arc<str>,
    /// Told once the join is effective on every node (dropped: it is, or never will
    /// be).
    #[cfg(feature = "cluster")]
    pub effective: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Handler<JoinRoom> for NamespaceActor {
    type Result = ();

    fn handle(&mut self, msg: JoinRoom, _: &mut Context<Self>) {
        let Some(socket) = self.sockets.get_mut(&msg.id) else {
            return; // the socket left before its join arrived
        };
        #[cfg(feature = "cluster")]
        if let (Some(remote), Some(effective)) = (&self.remote, msg.effective) {
            // Wanted below if the room is new here: the subscription is then ahead.
            remote.room(&msg.room, true);
            remote.when_subscribed(&msg.room, effective);
        }
        if socket.rooms.contains(&msg.room) {
            return;
        }
        socket.rooms.push(msg.room.clone());
        let recipient = socket.recipient.clone();
        let entry = self.rooms.entry(msg.room.clone()).or_insert_with(|| {
            #[cfg(feature = "cluster")]
            if let Some(remote) = &self.remote {
                remote.room(&msg.room, true);
            }
            let room = Room::new(msg.room.clone());
            RoomEntry {
                addr: Room::start_in_arbiter(&(self.place_room)(), |_| room),
                members: HashSet::new(),
            }
        });
        entry.members.insert(msg.id);
        entry.addr.do_send(room::AddMember {
            id: msg.id,
            recipient,
        });
        tracing::trace!(ns = %self.name, room = %msg.room, sid = msg.id.0, "joined room");
    }
}

/// Takes a socket out of a room.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeaveRoom {
    pub id: SessionId,
    pub room: Arc<str>,
}

impl Handler<LeaveRoom> for NamespaceActor {
    type Result = ();

    fn handle(&mut self, msg: LeaveRoom, _: &mut Context<Self>) {
        if let Some(socket) = self.sockets.get_mut(&msg.id) {
            if let Some(at) = socket.rooms.iter().position(|r| *r == msg.room) {
                socket.rooms.swap_remove(at);
                self.leave(msg.id, &msg.room);
            }
        }
    }
}

/// Who a broadcast goes to. Empty `rooms` means the whole namespace.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub rooms: Vec<Arc<str>>,
    pub except_rooms: Vec<Arc<str>>,
    pub except_ids: Vec<SessionId>,
}

/// Sends an encoded frame to a target; every recipient gets it once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Emit {
    pub target: Target,
    pub deliver: Deliver,
    /// Its place in the namespace's broadcast gauge, given back once fanned out.
    pub ticket: Ticket,
}

impl Handler<Emit> for NamespaceActor {
    type Result = ();

    fn handle(&mut self, msg: Emit, _: &mut Context<Self>) {
        let Emit {
            target,
            deliver,
            ticket,
        } = msg;
        self.emitted.inc();
        #[cfg(feature = "cluster")]
        let deliver = match &self.remote {
            Some(remote) => Deliver {
                mark: Some(remote.publish(&target, &deliver)),
                ..deliver
            },
            None => deliver,
        };
        self.fan_out(target, deliver, ticket);
    }
}

impl NamespaceActor {
    /// Delivers a broadcast to this node's members of its target, each once.
    pub(crate) fn fan_out(&mut self, target: Target, deliver: Deliver, ticket: Ticket) {
        // The common case, one room with at most one socket excluded, is fanned out by
        // the room actor itself, on its own core.
        if target.rooms.len() == 1 && target.except_rooms.is_empty() && target.except_ids.len() <= 1
        {
            if let Some(room) = self.rooms.get(&target.rooms[0]) {
                room.addr.do_send(room::Fanout {
                    deliver,
                    except: target.except_ids.first().copied(),
                    ticket,
                });
            }
            return;
        }
        let excluded = |id: &SessionId, rooms: &[Arc<str>]| {
            target.except_ids.contains(id) || target.except_rooms.iter().any(|r| rooms.contains(r))
        };
        let mut scatter = Scatter::default();
        if target.rooms.is_empty() {
            for (id, socket) in &self.sockets {
                if !excluded(id, &socket.rooms) {
                    scatter.add(*id, &socket.recipient);
                }
            }
            return scatter.send(&deliver, &Arc::new(ticket));
        }
        let mut sent: HashSet<SessionId> = HashSet::new();
        for room in &target.rooms {
            let Some(entry) = self.rooms.get(room) else {
                continue;
            };
            for id in &entry.members {
                let Some(socket) = self.sockets.get(id) else {
                    continue;
                };
                if !excluded(id, &socket.rooms) && sent.insert(*id) {
                    scatter.add(*id, &socket.recipient);
                }
            }
        }
        scatter.send(&deliver, &Arc::new(ticket));
    }
}

/// The rooms a socket is in.
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct RoomsOf {
    pub id: SessionId,
}

impl Handler<RoomsOf> for NamespaceActor {
    type Result = MessageResult<RoomsOf>;

    fn handle(&mut self, msg: RoomsOf, _: &mut Context<Self>) -> Self::Result {
        let mut rooms: Vec<String> = self
            .sockets
            .get(&msg.id)
            .map(|s| s.rooms.iter().map(|r| r.to_string()).collect())
            .unwrap_or_default();
        rooms.sort();
        MessageResult(rooms)
    }
}

/// Counts of a namespace, for metrics and admin views.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NamespaceStats {
    /// Sockets connected to the namespace.
    pub sockets: usize,
    /// Rooms with at least one member.
    pub rooms: usize,
}

/// Asks for [`NamespaceStats`].
#[derive(Message)]
#[rtype(result = "NamespaceStats")]
pub struct Stats;

impl Handler<Stats> for NamespaceActor {
    type Result = MessageResult<Stats>;

    fn handle(&mut self, _: Stats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(NamespaceStats {
            sockets: self.sockets.len(),
            rooms: self.rooms.len(),
        })
    }
}
