//! The namespace actor: who is connected to a namespace and which rooms they are in.
//!
//! It owns the rooms (room name → members, grouped by thread) and fans every
//! broadcast out itself: one message per thread with recipients (see
//! `room::local`), a room's groups kept between broadcasts, several rooms, exclusions
//! and the whole namespace resolved per broadcast so that every recipient gets the
//! frame exactly once. Every broadcast of the namespace thus reaches a thread along
//! one path (this actor's mailbox, then the thread's): each member gets one
//! sender's broadcasts in the order sent, whichever rooms they target. (Fanning out
//! from per-room actors let a broadcast to one room overtake an earlier one to
//! another room of the same member.)
//!
//! A broadcast carries a [`Ticket`] of its namespace's gauge from `Broadcast::emit`
//! until its threads have handled it, so that a burst cannot queue here or on a
//! thread without limit. The membership messages (add/remove socket, join/leave)
//! are not counted: each comes from one client frame (bounded by that session's
//! mailbox) or one session's end, and costs a map update to handle.

mod sockets;

#[cfg(feature = "cluster")]
pub(crate) use sockets::SharedOf;
pub(crate) use sockets::{LeaveSockets, RoomsOf, ShareData, Sockets, SocketsOp};

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;

#[cfg(feature = "cluster")]
use super::remote::Remote;
use crate::metrics::EventCounter;
use crate::room::local::Scatter;
use crate::room::{Deliver, Mailbox, Room, Ticket};
use crate::SessionId;

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
    rooms: HashMap<Arc<str>, Room>,
    /// What sockets shared of themselves (`Socket::share_data`, JSON), for
    /// `fetch_sockets`: a map of its own, so that a namespace whose sockets share
    /// nothing keeps nothing per socket for it.
    shared: HashMap<SessionId, Arc<str>>,
    /// Broadcasts handled, for the server's metrics.
    emitted: EventCounter,
    /// Where [`Sockets`] sends the sessions it disconnects (the server's registry).
    leaver: Option<Recipient<LeaveSockets>>,
    /// Publishes to and subscribes for the other nodes of a cluster.
    #[cfg(feature = "cluster")]
    remote: Option<Box<dyn Remote>>,
    /// Connects waiting for the namespace's channel before their socket is added
    /// (see [`Subscribe`]): the channel is wanted while there are sockets or these.
    #[cfg(feature = "cluster")]
    subscribing: usize,
}

impl NamespaceActor {
    pub(crate) fn new(name: Arc<str>, emitted: EventCounter) -> Self {
        NamespaceActor {
            name,
            sockets: HashMap::new(),
            rooms: HashMap::new(),
            shared: HashMap::new(),
            emitted,
            leaver: None,
            #[cfg(feature = "cluster")]
            remote: None,
            #[cfg(feature = "cluster")]
            subscribing: 0,
        }
    }

    /// Sends the sessions a [`Sockets`] disconnects to `leaver` (the registry).
    pub(crate) fn with_leaver(mut self, leaver: Recipient<LeaveSockets>) -> Self {
        self.leaver = Some(leaver);
        self
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
        self.rooms.get(room).map_or(0, |r| r.members().len())
    }

    /// Whether this actor wants the namespace's channel: while it has sockets, or
    /// connects wait for the channel (said to the interest once per change).
    #[cfg(feature = "cluster")]
    fn wants_namespace(&self) -> bool {
        !self.sockets.is_empty() || self.subscribing > 0
    }

    /// The thread a local socket's broadcasts reach it on.
    #[cfg(feature = "cluster")]
    pub(crate) fn socket_thread(&self, id: SessionId) -> Option<crate::room::local::ThreadAddr> {
        let socket = self.sockets.get(&id)?;
        Some(socket.recipient.route().thread.clone())
    }

    fn leave(&mut self, id: SessionId, room: &str, recipient: &Mailbox) {
        let Some(entry) = self.rooms.get_mut(room) else {
            return;
        };
        entry.remove(id, recipient.route());
        if entry.members().is_empty() {
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

    /// A namespace the dynamic factory made stops once unused, and a new actor of
    /// the name may already run: what this one still wants of the cluster is given
    /// back (nothing, normally: its last socket left first), and its inbox goes.
    #[cfg(feature = "cluster")]
    fn stopped(&mut self, _: &mut Context<Self>) {
        let Some(remote) = &self.remote else {
            return;
        };
        for room in self.rooms.keys() {
            remote.room(room, false);
        }
        if self.wants_namespace() {
            remote.namespace(false);
        }
        remote.stopped();
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
            if !self.wants_namespace() {
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
        let Some(entry) = self.sockets.remove(&msg.id) else {
            return;
        };
        self.shared.remove(&msg.id);
        for room in entry.rooms {
            self.leave(msg.id, &room, &entry.recipient);
        }
        // Said once per "wanted" (the interest is counted across actors).
        #[cfg(feature = "cluster")]
        if let (Some(remote), false) = (&self.remote, self.wants_namespace()) {
            remote.namespace(false);
        }
    }
}

/// A client's connect waits here, on a node of a cluster, for the namespace's
/// channel to be subscribed on Redis before its socket is added and the client
/// hears `Connected`: a namespace-wide broadcast any node sends after that reaches
/// it. The channel is wanted from now until the [`Subscribing`] the session holds
/// meanwhile is dropped (after its `AddSocket`, or when the connect is abandoned).
/// `ready` is told once subscribed, at once if it already is or Redis is away, and
/// after [`JOIN_WAIT`](super::remote::JOIN_WAIT) at most (counted and logged as an
/// unconfirmed join): a slow Redis never stalls a connect.
#[cfg(feature = "cluster")]
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Subscribe {
    pub ready: tokio::sync::oneshot::Sender<()>,
}

#[cfg(feature = "cluster")]
impl Handler<Subscribe> for NamespaceActor {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, ctx: &mut Context<Self>) {
        let Some(remote) = &self.remote else {
            let _ = msg.ready.send(());
            return;
        };
        if !self.wants_namespace() {
            remote.namespace(true);
        }
        self.subscribing += 1;
        let (done, subscribed) = tokio::sync::oneshot::channel();
        remote.when_namespace_subscribed(done);
        let wait = tokio::time::timeout(super::remote::JOIN_WAIT, subscribed).into_actor(self);
        ctx.spawn(wait.map(move |waited, act, _| {
            if waited.is_err() {
                if let Some(remote) = act.remote() {
                    remote.join_unconfirmed();
                }
            }
            let _ = msg.ready.send(());
        }));
    }
}

/// What a connect waiting in [`Subscribe`] holds: dropped, it gives its interest
/// in the namespace's channel back (its socket, added before, holds it from then).
#[cfg(feature = "cluster")]
pub(crate) struct Subscribing(pub Arc<Addr<NamespaceActor>>);

#[cfg(feature = "cluster")]
impl Drop for Subscribing {
    fn drop(&mut self) {
        self.0.do_send(Subscribed);
    }
}

/// A connect's wait in [`Subscribe`] is over (see [`Subscribing`]).
#[cfg(feature = "cluster")]
#[derive(Message)]
#[rtype(result = "()")]
struct Subscribed;

#[cfg(feature = "cluster")]
impl Handler<Subscribed> for NamespaceActor {
    type Result = ();

    fn handle(&mut self, _: Subscribed, _: &mut Context<Self>) {
        self.subscribing = self.subscribing.saturating_sub(1);
        if let (Some(remote), false) = (&self.remote, self.wants_namespace()) {
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
        // A socket that left before its join arrived drops `effective`: the ack
        // waiting on it goes.
        #[cfg_attr(not(feature = "cluster"), allow(unused_variables))]
        let joined = self.join_room(msg.id, &msg.room);
        #[cfg(feature = "cluster")]
        if let (true, Some(remote), Some(effective)) = (joined, &self.remote, msg.effective) {
            remote.when_subscribed(&msg.room, effective);
        }
    }
}

impl NamespaceActor {
    /// Puts socket `id` in `room`; whether the socket is here (it may have left
    /// before its join arrived). On a node of a cluster the room's channel is
    /// wanted by its first member here.
    fn join_room(&mut self, id: SessionId, room: &Arc<str>) -> bool {
        let Some(socket) = self.sockets.get_mut(&id) else {
            return false;
        };
        #[cfg(feature = "cluster")]
        if let Some(remote) = &self.remote {
            // Wanted once, by the room's first member here (the interest is counted),
            // and before any wait: the subscription is then ahead.
            if !self.rooms.contains_key(room) {
                remote.room(room, true);
            }
        }
        if socket.rooms.contains(room) {
            return true;
        }
        socket.rooms.push(room.clone());
        let members = self.rooms.entry(room.clone()).or_default();
        members.add(id, socket.recipient.route());
        tracing::trace!(ns = %self.name, %room, sid = id.0, "joined room");
        true
    }

    /// Takes socket `id` out of `room`, if it is in it.
    fn leave_room(&mut self, id: SessionId, room: &Arc<str>) {
        if let Some(socket) = self.sockets.get_mut(&id) {
            if let Some(at) = socket.rooms.iter().position(|r| r == room) {
                socket.rooms.swap_remove(at);
                let recipient = socket.recipient.clone();
                self.leave(id, room, &recipient);
            }
        }
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
        self.leave_room(msg.id, &msg.room);
    }
}

/// Who a broadcast goes to. Empty `rooms` means the whole namespace.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub rooms: Vec<Arc<str>>,
    pub except_rooms: Vec<Arc<str>>,
    pub except_ids: Vec<SessionId>,
}

impl Target {
    /// Whether socket `id`, in `rooms`, is left out by the exclusions.
    fn leaves_out(&self, id: &SessionId, rooms: &[Arc<str>]) -> bool {
        self.except_ids.contains(id) || self.except_rooms.iter().any(|r| rooms.contains(r))
    }
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
        // The common case, one room with at most one socket excluded, goes to the
        // room's groups as they are, one message per thread.
        if target.rooms.len() == 1 && target.except_rooms.is_empty() && target.except_ids.len() <= 1
        {
            if let Some(room) = self.rooms.get(&target.rooms[0]) {
                room.fan_out(&deliver, target.except_ids.first().copied(), ticket);
            }
            return;
        }
        let excluded = |id: &SessionId, rooms: &[Arc<str>]| target.leaves_out(id, rooms);
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
            for id in entry.members() {
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

/// The namespace's rooms with their member counts, by name: this node's, and on a
/// node of a cluster, unless `here_only`, every other node's added in.
#[derive(Message)]
#[rtype(result = "std::collections::BTreeMap<String, usize>")]
pub(crate) struct ListRooms {
    /// Asked by another node of the cluster: this node's rooms only.
    pub here_only: bool,
}

impl Handler<ListRooms> for NamespaceActor {
    type Result = ResponseFuture<std::collections::BTreeMap<String, usize>>;

    fn handle(&mut self, msg: ListRooms, _: &mut Context<Self>) -> Self::Result {
        let rooms: std::collections::BTreeMap<String, usize> = (self.rooms.iter())
            .map(|(name, room)| (name.to_string(), room.members().len()))
            .collect();
        #[cfg(feature = "cluster")]
        if let (Some(remote), false) = (&self.remote, msg.here_only) {
            let others = remote.rooms();
            return Box::pin(async move {
                let mut rooms = rooms;
                for (name, members) in others.await {
                    *rooms.entry(name).or_default() += members;
                }
                rooms
            });
        }
        let _ = msg.here_only;
        Box::pin(std::future::ready(rooms))
    }
}
