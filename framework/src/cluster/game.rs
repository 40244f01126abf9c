//! Game rooms shared by the nodes of a cluster: one registry, rooms on one node
//! each, players from any node.
//!
//! - **The registry is in Redis.** Each node writes its rooms (type, players with
//!   held seats, seats, metadata) and its load (seated players) to its key
//!   `<prefix>:game:<node>`, with the node TTL: at once after a join or a leave
//!   through it, within [`REGISTRY_EVERY`] of any other change, and every third of
//!   the TTL. A listing reads the keys of the live nodes (one `MGET`), so a node
//!   that dies or stops leaves the listings with its registry entry. Seats are
//!   still counted by the room's own node: its matchmaker holds each join's seat
//!   until the room answers, and refuses a join to a full room.
//! - **Placement.** Join-or-create picks the fullest matching room with a free seat
//!   on any node; with none, the least loaded node (fewest players, then fewest
//!   rooms) makes one. Room ids carry a tag of their node, so they are cluster-wide.
//! - **A player from another node** (the *edge*, which holds its session) sits in a
//!   room of the *owner* node as a guest: the owner gives the room a [`Socket`] whose
//!   deliveries and watch go to a [`GuestSeat`] actor instead of a session. The
//!   edge keeps the seat in its own seat table with an input gate of its own:
//!   inputs are gathered there and sent to each owner once per [`INPUT_FLUSH`], one
//!   message for all of that node's players. The room's states reach the guests'
//!   seats on the owner's cluster thread as they reach any thread, one fan-out per
//!   subset; they are gathered per edge node and sent once per frame, with the list
//!   of players it is for, so a state crosses Redis once per subset per node and
//!   the edge frames it once for its players. The session's detach, resume and end
//!   go from the edge to the room, and a seat the room frees goes back to the edge.
//!
//! A join in another node's room and a leave are questions on the control channels
//! (`ops.rs`, `Request::Game`). Inputs, states and seat news ride the nodes' relay
//! channels (`relay.rs`, kind `GAME`): a sub-kind byte, then the states (binary:
//! the frames with their players) or JSON.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix::WeakAddr;
use bytes::{Buf, BufMut, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::envelope::Names;
use super::link::Outbound;
use super::ops::{Reply, Request};
use super::relay::GAME;
use super::{ClusterError, ClusterNode, NodeId};
use crate::game::messages::LeavePlayer;
use crate::game::rooms::Inner;
use crate::game::seats::{InputGate, Reservation, Seat};
use crate::game::{GameRooms, JoinError, JoinRequest, Joined, RoomId, RoomListing};
use crate::namespace::{SessionLink, Socket, SocketCommand, SocketEvent, SocketEventKind};
use crate::protocol::WireFrame;
use crate::room::local::{self, LocalKey, LocalSink};
use crate::room::{Deliver, Mailbox};
use crate::session::Shared;
use crate::{AckError, DisconnectReason, SessionId};

/// How often an edge sends its players' inputs to the rooms' nodes (one message per
/// node each time, if there are any).
pub(crate) const INPUT_FLUSH: Duration = Duration::from_millis(10);

/// Most inputs of one player that leave its node per [`INPUT_FLUSH`] (more are
/// dropped there, and `GameRooms::input` says so); on arrival the room's own
/// `max_inputs_per_tick` applies as to any player, and counts what it drops.
const MAX_INPUTS_PER_FLUSH: usize = 32;

/// How often a node looks for changes of its rooms to write to the registry.
pub(crate) const REGISTRY_EVERY: Duration = Duration::from_millis(100);

const STATES: u8 = 1;
const INPUTS: u8 = 2;
const NEWS: u8 = 3;

/// The high bits of the ids of the rooms node `node` makes: 20 bits of its id, odd
/// (never 0, the single node's tag), so that ids stay below 2^53 (exact in JSON).
pub(crate) fn room_tag(node: NodeId) -> u64 {
    (node.0 >> 44) | 1
}

/// What one node tells the others about its rooms.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct NodeRooms {
    pub rooms: Vec<RoomListing>,
    /// Seated players (held seats included) on the node: its load.
    pub players: usize,
}

/// A question about game rooms.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum GameRequest {
    /// Seat player `sid` of the asking node, in namespace `ns`.
    Join {
        sid: u64,
        ns: String,
        request: JoinRequest,
    },
    /// Free the seat of player `sid` of the asking node.
    Leave { sid: u64 },
}

/// The answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum GameReply {
    Joined(Result<Joined, JoinError>),
    Left(bool),
}

impl GameReply {
    /// The answer of a node without game rooms.
    pub fn none(request: &GameRequest) -> Self {
        match request {
            GameRequest::Join { .. } => GameReply::Joined(Err(JoinError::Unavailable)),
            GameRequest::Leave { .. } => GameReply::Left(false),
        }
    }
}

/// What happened to a seat, told to the other end.
#[derive(Debug, Serialize, Deserialize)]
enum SeatNews {
    /// Edge → owner: the player's connection dropped (the seat is held).
    Detached(u64),
    /// Edge → owner: the player's session resumed.
    Resumed(u64),
    /// Edge → owner: the player's socket is gone (`true`: its grace window ran out).
    Left(u64, bool),
    /// Owner → edge: the room freed the seat.
    Freed(u64),
}

/// A player of this node seated in a room of another node.
struct RemoteSeat {
    owner: NodeId,
    /// `None` while the join is under way (the room's first frames may come first).
    room: Option<RoomId>,
    mailbox: Mailbox,
    gate: Arc<InputGate>,
    edge: Addr<EdgeSeat>,
}

/// A player of another node seated in a room of this node.
struct Guest {
    edge: NodeId,
    seat: WeakAddr<GuestSeat>,
}

/// This node's side of the game rooms shared across the cluster.
pub(crate) struct GameHub {
    node: NodeId,
    names: Names,
    ttl: Duration,
    /// What this node last wrote to the registry, and when. Held across a write, so
    /// that a write never overtakes a newer one with older rooms.
    written: tokio::sync::Mutex<(Vec<u8>, Option<Instant>)>,
    rooms: OnceLock<Weak<Inner>>,
    outbound: mpsc::WeakSender<Outbound>,
    remote: Mutex<HashMap<SessionId, RemoteSeat>>,
    guests: Mutex<HashMap<SessionId, Guest>>,
    /// Deliveries to guests, by edge node, until the next flush.
    pending: Mutex<HashMap<NodeId, Vec<(SessionId, Deliver)>>>,
    flush_due: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl GameHub {
    pub fn new(
        node: NodeId,
        names: Names,
        ttl: Duration,
        outbound: mpsc::WeakSender<Outbound>,
    ) -> Self {
        GameHub {
            node,
            names,
            ttl,
            written: tokio::sync::Mutex::default(),
            rooms: OnceLock::new(),
            outbound,
            remote: Mutex::default(),
            guests: Mutex::default(),
            pending: Mutex::default(),
            flush_due: AtomicBool::new(false),
        }
    }

    /// The game rooms this node shares (one per node).
    pub fn share(&self, rooms: &GameRooms) {
        let _ = self.rooms.set(rooms.downgrade());
    }

    fn rooms(&self) -> Option<GameRooms> {
        GameRooms::upgrade(self.rooms.get()?)
    }

    /// Sends `payload` of sub-kind `sub` to node `to`; `false` when the link's queue
    /// is full (the message is dropped) or the server stopped.
    fn send(&self, to: NodeId, sub: u8, payload: &[u8]) -> bool {
        let Some(outbound) = self.outbound.upgrade() else {
            return false;
        };
        let mut body = Vec::with_capacity(1 + payload.len());
        body.push(sub);
        body.extend_from_slice(payload);
        let message = super::relay::message(GAME, self.node.0, &body);
        let sent = outbound.try_send(Outbound::Relay { to, message }).is_ok();
        if !sent {
            tracing::debug!(%to, "cluster: game message dropped (link queue full)");
        }
        sent
    }

    fn send_json<T: Serialize>(&self, to: NodeId, sub: u8, value: &T) -> bool {
        match serde_json::to_vec(value) {
            Ok(json) => self.send(to, sub, &json),
            Err(_) => false,
        }
    }

    /// Runs on the cluster's thread until the server stops: sends the edge's inputs
    /// every [`INPUT_FLUSH`], keeps the registry up to date, and lets go of seats
    /// whose other node died.
    pub async fn run(self: Arc<Self>) {
        use tokio::time::{interval, MissedTickBehavior};
        let mut inputs = interval(INPUT_FLUSH);
        let mut registry = interval(REGISTRY_EVERY);
        let mut check = interval(self.ttl / 3);
        for timer in [&mut inputs, &mut registry, &mut check] {
            timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                _ = inputs.tick() => self.flush_inputs(),
                _ = registry.tick() => self.write_registry(false).await,
                _ = check.tick() => self.forget_dead_nodes().await,
            }
            if self.outbound.upgrade().is_none() {
                return;
            }
        }
    }

    /// One message per owner node with every input its guests from here sent.
    fn flush_inputs(&self) {
        let mut by_owner: HashMap<NodeId, Vec<(u64, VecDeque<Value>)>> = HashMap::new();
        for (sid, seat) in lock(&self.remote).iter() {
            let inputs = seat.gate.take();
            if inputs.is_empty() {
                continue;
            }
            seat.gate.release(inputs.len());
            by_owner
                .entry(seat.owner)
                .or_default()
                .push((sid.0, inputs));
        }
        for (owner, batch) in by_owner {
            self.send_json(owner, INPUTS, &batch);
        }
    }

    /// Seats whose other node left the registry: a guest's edge is gone (its
    /// session with it), or a remote room's node is gone (the room with it).
    async fn forget_dead_nodes(&self) {
        let Some(live) = self.live_nodes().await else {
            return;
        };
        let dead_guests: Vec<(SessionId, Guest)> = {
            let mut guests = lock(&self.guests);
            let dead: Vec<SessionId> = (guests.iter())
                .filter(|(_, g)| !live.contains(&g.edge))
                .map(|(sid, _)| *sid)
                .collect();
            dead.into_iter()
                .filter_map(|sid| guests.remove(&sid).map(|g| (sid, g)))
                .collect()
        };
        for (sid, guest) in dead_guests {
            tracing::info!(sid = sid.0, edge = %guest.edge, "cluster: guest's node is gone; seat freed");
            if let Some(seat) = guest.seat.upgrade() {
                seat.do_send(News(SocketEventKind::Left(
                    DisconnectReason::TransportClosed,
                )));
            }
        }
        let dead_remote: Vec<SessionId> = (lock(&self.remote).iter())
            .filter(|(_, r)| !live.contains(&r.owner))
            .map(|(sid, _)| *sid)
            .collect();
        for sid in dead_remote {
            tracing::info!(sid = sid.0, "cluster: the room's node is gone; seat freed");
            self.freed(sid);
        }
    }

    /// Writes this node's rooms and load to its registry key, if they changed (or
    /// `now`, or a third of the TTL went by), and waits until Redis has them.
    pub async fn write_registry(&self, now: bool) {
        let Some(rooms) = self.rooms() else {
            return;
        };
        let mut written = self.written.lock().await;
        let Ok(json) = serde_json::to_vec(&here(&rooms, None).await) else {
            return;
        };
        let fresh = written.1.is_some_and(|at| at.elapsed() < self.ttl / 3);
        if !now && fresh && written.0 == json {
            return;
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.names.game(self.node.0))
            .arg(&json)
            .arg("PX")
            .arg(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX));
        if self.command(cmd).await.is_ok() {
            *written = (json, Some(Instant::now()));
        }
    }

    /// The registered rooms of `nodes` (a node without a key has none).
    async fn read_registry(
        &self,
        nodes: &[NodeId],
    ) -> Result<Vec<(NodeId, NodeRooms)>, ClusterError> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        for node in nodes {
            cmd.arg(self.names.game(node.0));
        }
        let values: Vec<Option<Vec<u8>>> = match self.command(cmd).await? {
            redis::Value::Array(values) => values
                .into_iter()
                .map(|v| match v {
                    redis::Value::BulkString(raw) => Some(raw),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(nodes
            .iter()
            .zip(values)
            .map(|(node, raw)| {
                let rooms = raw.and_then(|raw| serde_json::from_slice(&raw).ok());
                (*node, rooms.unwrap_or_default())
            })
            .collect())
    }

    async fn command(&self, cmd: redis::Cmd) -> Result<redis::Value, ClusterError> {
        let outbound = self.outbound.upgrade().ok_or(ClusterError::Stopped)?;
        let (answer, rx) = oneshot::channel();
        (outbound.send(Outbound::Command { cmd, answer }).await)
            .map_err(|_| ClusterError::Stopped)?;
        drop(outbound);
        rx.await.map_err(|_| ClusterError::Stopped)?
    }

    async fn live_nodes(&self) -> Option<Vec<NodeId>> {
        let outbound = self.outbound.upgrade()?;
        let (tx, rx) = oneshot::channel();
        outbound.send(Outbound::Nodes(tx)).await.ok()?;
        drop(outbound);
        rx.await.ok()?.ok()
    }

    /// A game message from node `from`.
    pub fn on_message(&self, from: NodeId, raw: &[u8]) {
        let Some((&sub, body)) = raw.split_first() else {
            return;
        };
        match sub {
            STATES => self.on_states(body),
            INPUTS => {
                if let Ok(batch) = serde_json::from_slice::<Vec<(u64, Vec<Value>)>>(body) {
                    self.on_inputs(from, batch);
                }
            }
            NEWS => {
                if let Ok(news) = serde_json::from_slice::<SeatNews>(body) {
                    self.on_news(from, news);
                }
            }
            _ => tracing::debug!(sub, "cluster: unknown game message"),
        }
    }

    /// Edge: frames for this node's players, each framed once here.
    fn on_states(&self, mut body: &[u8]) {
        let remote = lock(&self.remote);
        while body.remaining() >= 9 {
            let reliable = body.get_u8() == 1;
            let n = body.get_u32() as usize;
            if body.remaining() < n * 8 + 4 {
                return;
            }
            let sids: Vec<u64> = (0..n).map(|_| body.get_u64()).collect();
            let len = body.get_u32() as usize;
            if body.remaining() < len {
                return;
            }
            let frame = WireFrame::new(&body[..len]);
            body.advance(len);
            for sid in sids {
                if let Some(seat) = remote.get(&SessionId(sid)) {
                    seat.mailbox.post(Deliver {
                        frame: frame.clone(),
                        reliable,
                    });
                }
            }
        }
    }

    /// Owner: inputs of guests, queued as a local player's would be.
    fn on_inputs(&self, from: NodeId, batch: Vec<(u64, Vec<Value>)>) {
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

    fn on_news(&self, from: NodeId, news: SeatNews) {
        let (sid, kind) = match news {
            SeatNews::Freed(sid) => {
                let owner = lock(&self.remote).get(&SessionId(sid)).map(|r| r.owner);
                if owner == Some(from) {
                    self.freed(SessionId(sid));
                }
                return;
            }
            SeatNews::Detached(sid) => (sid, SocketEventKind::Detached),
            SeatNews::Resumed(sid) => (sid, SocketEventKind::Resumed),
            SeatNews::Left(sid, expired) => {
                let reason = if expired {
                    DisconnectReason::Expired(Box::new(DisconnectReason::TransportClosed))
                } else {
                    DisconnectReason::ClientLeft
                };
                (sid, SocketEventKind::Left(reason))
            }
        };
        let guests = lock(&self.guests);
        if let Some(guest) = guests.get(&SessionId(sid)).filter(|g| g.edge == from) {
            if let Some(seat) = guest.seat.upgrade() {
                seat.do_send(News(kind));
            }
        }
    }

    /// Edge: the room let go of `sid`'s seat.
    fn freed(&self, sid: SessionId) {
        let Some(seat) = lock(&self.remote).remove(&sid) else {
            return;
        };
        if let (Some(rooms), Some(room)) = (self.rooms(), seat.room) {
            rooms.seats().vacate(sid, room);
        }
        seat.edge.do_send(Unwatch);
    }

    /// Owner: a delivery for a guest, sent with the others of its edge node once the
    /// fan-out under way is done.
    fn queue(self: &Arc<Self>, edge: NodeId, sid: SessionId, deliver: Deliver) {
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
    fn flush_states(&self) {
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

    /// Owner: answers another node's question about this node's rooms.
    pub async fn answer(
        self: &Arc<Self>,
        from: NodeId,
        shared: &Shared,
        request: GameRequest,
    ) -> GameReply {
        let Some(rooms) = self.rooms() else {
            return GameReply::none(&request);
        };
        match request {
            GameRequest::Leave { sid } => {
                let left = rooms.leave_id(SessionId(sid)).await;
                self.write_registry(true).await;
                GameReply::Left(left)
            }
            GameRequest::Join { sid, ns, request } => GameReply::Joined(
                self.seat_guest(from, shared, &rooms, sid, &ns, &request)
                    .await,
            ),
        }
    }

    /// Owner: seats player `sid` of node `edge` in a room here, as a guest.
    async fn seat_guest(
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
        let link = SessionLink {
            id: sid,
            deliver: Mailbox::new(seat.clone().recipient(), shared.config.max_mailbox, route),
            command: seat.clone().recipient(),
            rtt_us: AtomicU64::new(0),
            transport: AtomicU8::new(1),
            next_ack: AtomicU64::new(0),
            max_frame: AtomicUsize::new(usize::MAX),
        };
        let socket = Socket::new(&handle, Arc::new(link), None);
        lock(&self.guests).insert(
            sid,
            Guest {
                edge,
                seat: seat.downgrade(),
            },
        );
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

fn same_bytes(a: &WireFrame, b: &WireFrame) -> bool {
    let (a, b) = (a.message(), b.message());
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

/// This node's rooms and load.
async fn here(rooms: &GameRooms, room_type: Option<&str>) -> NodeRooms {
    let all = rooms.list_here(None).await;
    let players = all.iter().map(|r| r.players).sum();
    let rooms = all
        .into_iter()
        .filter(|r| room_type.is_none_or(|t| t == r.room_type))
        .collect();
    NodeRooms { rooms, players }
}

/// The rooms of every live node, with their node: this node's from its matchmaker,
/// the others' from the registry (without Redis: this node's only).
async fn gather(
    node: &ClusterNode,
    rooms: &GameRooms,
    room_type: Option<&str>,
) -> Vec<(NodeId, NodeRooms)> {
    let mut all = vec![(node.id(), here(rooms, None).await)];
    if let (Ok(live), Some(hub)) = (node.nodes().await, node.relays.game.get()) {
        let others: Vec<NodeId> = live.into_iter().filter(|n| *n != node.id()).collect();
        match hub.read_registry(&others).await {
            Ok(theirs) => all.extend(theirs),
            Err(e) => tracing::debug!(error = %e, "cluster: game registry unreadable"),
        }
    }
    for (_, r) in &mut all {
        r.rooms
            .retain(|l| room_type.is_none_or(|t| t == l.room_type));
    }
    all
}

/// [`GameRooms::list`] in a cluster.
pub(crate) async fn list(
    node: &ClusterNode,
    rooms: &GameRooms,
    room_type: Option<&str>,
) -> Vec<RoomListing> {
    let mut all: Vec<RoomListing> = (gather(node, rooms, room_type).await)
        .into_iter()
        .flat_map(|(_, r)| r.rooms)
        .collect();
    all.sort_by_key(|r| r.id);
    all
}

/// Where a join goes: a room's node (with the room), or the node to make one on.
fn place(
    me: NodeId,
    request: &JoinRequest,
    nodes: &[(NodeId, NodeRooms)],
) -> Result<(NodeId, Option<RoomId>), JoinError> {
    if let Some(room) = request.room {
        let owner = nodes
            .iter()
            .find(|(_, r)| r.rooms.iter().any(|l| l.id == room))
            .map(|(id, _)| *id);
        return owner
            .map(|o| (o, Some(room)))
            .ok_or(JoinError::NoSuchRoom(room));
    }
    let matches = |l: &RoomListing| {
        l.room_type == request.room_type
            && l.players < l.max_players
            && (request.filters.iter()).all(|(k, v)| l.metadata.get(k) == Some(v))
    };
    let fullest = nodes
        .iter()
        .flat_map(|(id, r)| r.rooms.iter().map(move |l| (*id, l)))
        .filter(|(_, l)| matches(l))
        .max_by_key(|(_, l)| (l.players, std::cmp::Reverse(l.id)));
    if let Some((owner, room)) = fullest {
        return Ok((owner, Some(room.id)));
    }
    let least = nodes
        .iter()
        .min_by_key(|(id, r)| (r.players, r.rooms.len(), *id != me, *id))
        .map_or(me, |(id, _)| *id);
    Ok((least, None))
}

/// [`GameRooms::join`] in a cluster (the seat is reserved by the caller).
pub(crate) async fn join(
    node: &ClusterNode,
    rooms: &GameRooms,
    socket: &Socket,
    request: &JoinRequest,
) -> Result<Joined, JoinError> {
    // A room named by id may be of any type.
    let room_type = request.room.is_none().then_some(request.room_type.as_str());
    let nodes = gather(node, rooms, room_type).await;
    let (owner, room) = place(node.id(), request, &nodes)?;
    let mut request = request.clone();
    request.room = room.or(request.room);
    let Some(hub) = node.relays.game.get() else {
        return Err(JoinError::Unavailable);
    };
    if owner == node.id() {
        let joined = rooms.join_here(socket, &request).await;
        // The next join-or-create, on any node, sees this seat (and a new room).
        hub.write_registry(true).await;
        return joined;
    }
    let id = socket.id();
    // The seat here first: the room's first frames (its full state, the game's
    // greeting) may arrive before the answer to the join.
    let gate = Arc::new(InputGate::new(MAX_INPUTS_PER_FLUSH));
    let edge = EdgeSeat {
        sid: id,
        owner,
        hub: hub.clone(),
        socket: socket.clone(),
    }
    .start();
    let seat = RemoteSeat {
        owner,
        room: None,
        mailbox: socket.mailbox(),
        gate: gate.clone(),
        edge: edge.clone(),
    };
    lock(&hub.remote).insert(id, seat);
    let ask = Request::Game(GameRequest::Join {
        sid: id.0,
        ns: socket.namespace().to_owned(),
        request,
    });
    let joined = match node.ask(owner, ask).await {
        Ok(Reply::Game(GameReply::Joined(joined))) => joined,
        unanswered => {
            // The owner may still seat the guest: tell it that the player is gone.
            hub.send_json(owner, NEWS, &SeatNews::Left(id.0, false));
            match unanswered {
                Ok(_) | Err(ClusterError::Stopped) => Err(JoinError::Unavailable),
                Err(e) => Err(JoinError::Refused(e.to_string())),
            }
        }
    };
    let joined = match joined {
        Ok(joined) => joined,
        Err(e) => {
            hub.freed(id);
            return Err(e);
        }
    };
    if let Some(seat) = lock(&hub.remote).get_mut(&id) {
        seat.room = Some(joined.room);
    }
    rooms.seats().seat(
        id,
        Seat::Seated {
            room: joined.room,
            leave: edge.clone().recipient(),
            gate,
        },
    );
    socket.watch(edge.recipient());
    tracing::debug!(sid = id.0, room = %joined.room, %owner, "cluster: seated in another node's room");
    Ok(joined)
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
struct GuestSeat {
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
struct News(SocketEventKind);

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

/// Edge: a player of this node seated on another node. It tells the owner about
/// the session (detach, resume, end) and carries the player's leave.
struct EdgeSeat {
    sid: SessionId,
    owner: NodeId,
    hub: Arc<GameHub>,
    socket: Socket,
}

impl Actor for EdgeSeat {
    type Context = Context<Self>;
}

impl Handler<SocketEvent> for EdgeSeat {
    type Result = ();

    fn handle(&mut self, msg: SocketEvent, ctx: &mut Context<Self>) {
        let sid = self.sid.0;
        let news = match msg.kind {
            SocketEventKind::Detached => SeatNews::Detached(sid),
            SocketEventKind::Resumed => SeatNews::Resumed(sid),
            SocketEventKind::Left(reason) => {
                SeatNews::Left(sid, matches!(reason, DisconnectReason::Expired(_)))
            }
        };
        let gone = matches!(news, SeatNews::Left(..));
        self.hub.send_json(self.owner, NEWS, &news);
        if gone {
            // The owner frees the seat and says so; until then inputs stop here.
            self.hub.freed(self.sid);
            ctx.stop();
        }
    }
}

impl Handler<LeavePlayer> for EdgeSeat {
    type Result = ResponseFuture<bool>;

    fn handle(&mut self, msg: LeavePlayer, _: &mut Context<Self>) -> Self::Result {
        let (hub, owner) = (self.hub.clone(), self.owner);
        let ask = Request::Game(GameRequest::Leave { sid: msg.player.0 });
        Box::pin(async move {
            let Some(outbound) = hub.outbound.upgrade() else {
                return false;
            };
            let (answer, rx) = oneshot::channel();
            let sent = outbound
                .send(Outbound::Ask {
                    to: owner,
                    request: ask,
                    answer,
                })
                .await;
            drop(outbound);
            let left = match (
                sent,
                tokio::time::timeout(super::ops::REPLY_TIMEOUT, rx).await,
            ) {
                (Ok(()), Ok(Ok(Reply::Game(GameReply::Left(left))))) => left,
                _ => false,
            };
            hub.freed(msg.player);
            left
        })
    }
}

/// Edge: the seat is gone; stop following the session.
#[derive(Message)]
#[rtype(result = "()")]
struct Unwatch;

impl Handler<Unwatch> for EdgeSeat {
    type Result = ();

    fn handle(&mut self, _: Unwatch, ctx: &mut Context<Self>) {
        self.socket.unwatch(ctx.address().recipient());
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(id: u64, players: usize) -> RoomListing {
        RoomListing {
            id: RoomId(id),
            room_type: "arena".into(),
            players,
            max_players: 4,
            metadata: Value::Null,
        }
    }

    #[test]
    fn joins_go_to_the_fullest_room_then_the_least_loaded_node() {
        let (a, b) = (NodeId(1), NodeId(2));
        let request = JoinRequest::new("arena");
        let nodes = vec![
            (
                a,
                NodeRooms {
                    rooms: vec![listing(10, 1)],
                    players: 1,
                },
            ),
            (
                b,
                NodeRooms {
                    rooms: vec![listing(20, 3), listing(21, 4)],
                    players: 7,
                },
            ),
        ];
        assert_eq!(place(a, &request, &nodes), Ok((b, Some(RoomId(20)))));
        let empty = vec![
            (
                a,
                NodeRooms {
                    rooms: vec![],
                    players: 5,
                },
            ),
            (
                b,
                NodeRooms {
                    rooms: vec![],
                    players: 2,
                },
            ),
        ];
        assert_eq!(place(a, &request, &empty), Ok((b, None)));
        let to_room = JoinRequest::to_room(RoomId(10));
        assert_eq!(place(b, &to_room, &nodes), Ok((a, Some(RoomId(10)))));
        let gone = JoinRequest::to_room(RoomId(99));
        assert_eq!(
            place(b, &gone, &nodes),
            Err(JoinError::NoSuchRoom(RoomId(99)))
        );
    }

    #[test]
    fn room_tags_are_odd_and_keep_ids_exact_in_json() {
        let tag = room_tag(NodeId(u64::MAX));
        assert_eq!(tag % 2, 1);
        assert!((tag << 32 | u64::from(u32::MAX)) < 1 << 53);
    }
}
