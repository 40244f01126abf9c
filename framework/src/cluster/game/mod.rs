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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use futures_util::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

mod edge;
mod guest;
mod moving;

pub(crate) use edge::join;
use edge::RemoteSeat;
use guest::{Guest, News};

use super::control::{GameReply, GameRequest, Outbound};
use super::envelope::Names;
use super::envelope::{message, GAME};
use super::{ClusterError, ClusterNode, NodeId};
use crate::game::directory::Directory;
use crate::game::rooms::Inner;
use crate::game::{GameRooms, JoinError, JoinRequest, Joined, RoomId, RoomListing};
use crate::namespace::{Socket, SocketEventKind};
use crate::room::Deliver;
use crate::session::Shared;
use crate::{DisconnectReason, SessionId};

/// How often an edge sends its players' inputs to the rooms' nodes (one message per
/// node each time, if there are any).
pub(crate) const INPUT_FLUSH: Duration = Duration::from_millis(10);

/// How long one node may hold the making of a room for some filters (see
/// [`edge::join`]); others wait for it at most as long.
const CREATE_LOCK: Duration = Duration::from_secs(2);

/// How often a node looks for changes of its rooms to write to the registry.
pub(crate) const REGISTRY_EVERY: Duration = Duration::from_millis(100);

const STATES: u8 = 1;
const INPUTS: u8 = 2;
const NEWS: u8 = 3;

/// What one node tells the others about its rooms.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct NodeRooms {
    pub rooms: Vec<RoomListing>,
    /// Seated players (held seats included) on the node: its load.
    pub players: usize,
    /// The node drains: join-or-create places nothing there.
    #[serde(default)]
    pub draining: bool,
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
    /// Draining edge → owner: the player's session is about to move; hold its seat.
    Hold(u64),
    /// Owner → draining edge: held (with the socket's namespace), once what was
    /// queued for the player is sent; `None`: not seated there.
    Held(u64, Option<String>),
    /// Draining edge → owner: the move was undone; carry on as before.
    Unhold(u64),
    /// New edge → owner: the moved session is here, in namespace `.1`.
    Moved(u64, String),
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
    /// Draining: seats of moving sessions waiting for their room's node to hold them.
    holding: Mutex<HashMap<SessionId, oneshot::Sender<Option<String>>>>,
    /// The server (for a moved guest's namespace).
    shared: OnceLock<Weak<Shared>>,
    /// This node drains: join-or-create places nothing here (see `place`).
    draining: AtomicBool,
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
            holding: Mutex::default(),
            shared: OnceLock::new(),
            draining: AtomicBool::new(false),
        }
    }

    /// The game rooms this node shares (one per node), on the server `shared`.
    pub fn share(&self, rooms: &GameRooms, shared: Option<Weak<Shared>>) {
        let _ = self.rooms.set(rooms.downgrade());
        if let Some(shared) = shared {
            let _ = self.shared.set(shared);
        }
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
        let message = message(GAME, self.node.0, &body);
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
        let mut mine = here(&rooms, None).await;
        mine.draining = self.draining.load(Ordering::Relaxed);
        let Ok(json) = serde_json::to_vec(&mine) else {
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

    /// Takes the lock `key` (it expires after [`CREATE_LOCK`]), waiting for it at most
    /// that long; whether it was taken (not: it was free by then, or Redis is away).
    async fn lock(&self, key: &str) -> bool {
        let deadline = Instant::now() + CREATE_LOCK;
        loop {
            let mut cmd = redis::cmd("SET");
            cmd.arg(key)
                .arg(self.node.to_string())
                .arg("NX")
                .arg("PX")
                .arg(u64::try_from(CREATE_LOCK.as_millis()).unwrap_or(u64::MAX));
            match self.command(cmd).await {
                Ok(redis::Value::Okay) => return true,
                Ok(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                _ => return false,
            }
        }
    }

    async fn unlock(&self, key: &str) {
        let _ = self.command(redis::cmd("DEL").arg(key).clone()).await;
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
    pub fn on_message(self: &Arc<Self>, from: NodeId, raw: &[u8]) {
        let Some((&sub, body)) = raw.split_first() else {
            return;
        };
        match sub {
            STATES => self.on_states(body),
            INPUTS => {
                if let Ok(batch) = serde_json::from_slice::<Vec<(u64, Vec<&RawValue>)>>(body) {
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

    fn on_news(self: &Arc<Self>, from: NodeId, news: SeatNews) {
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
            news => return self.on_move_news(from, news),
        };
        let guests = lock(&self.guests);
        if let Some(guest) = guests.get(&SessionId(sid)).filter(|g| g.edge == from) {
            if let Some(seat) = guest.seat.upgrade() {
                seat.do_send(News(kind));
            }
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
}

/// This node's rooms and load.
async fn here(rooms: &GameRooms, room_type: Option<&str>) -> NodeRooms {
    let all = rooms.list_here(None).await;
    let players = all.iter().map(|r| r.players).sum();
    let rooms = all
        .into_iter()
        .filter(|r| room_type.is_none_or(|t| t == r.room_type))
        .collect();
    NodeRooms {
        rooms,
        players,
        draining: false,
    }
}

/// The rooms of every live node, with their node: this node's from its matchmaker,
/// the others' from the registry (without Redis: this node's only).
async fn gather(
    node: &ClusterNode,
    rooms: &GameRooms,
    room_type: Option<&str>,
) -> Vec<(NodeId, NodeRooms)> {
    let mut mine = here(rooms, None).await;
    if let Some(hub) = node.relays.game.get() {
        mine.draining = hub.draining.load(Ordering::Relaxed);
    }
    let mut all = vec![(node.id(), mine)];
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
    // A draining node takes no one new (unless every node drains).
    let open: Vec<&(NodeId, NodeRooms)> = nodes.iter().filter(|(_, r)| !r.draining).collect();
    let nodes: Vec<&(NodeId, NodeRooms)> = match open.is_empty() {
        true => nodes.iter().collect(),
        false => open,
    };
    let matches = |l: &RoomListing| {
        l.room_type == request.room_type
            && l.players < l.max_players
            && !l.locked
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

/// The rooms of a cluster, as `GameRooms` asks for them.
impl Directory for ClusterNode {
    fn join<'a>(
        &'a self,
        rooms: &'a GameRooms,
        socket: &'a Socket,
        request: &'a JoinRequest,
    ) -> LocalBoxFuture<'a, Result<Joined, JoinError>> {
        Box::pin(join(self, rooms, socket, request))
    }

    fn list<'a>(
        &'a self,
        rooms: &'a GameRooms,
        room_type: Option<&'a str>,
    ) -> LocalBoxFuture<'a, Vec<RoomListing>> {
        Box::pin(list(self, rooms, room_type))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn listing(id: u64, players: usize) -> RoomListing {
        RoomListing {
            id: RoomId(id),
            room_type: "arena".into(),
            players,
            max_players: 4,
            metadata: Value::Null,
            locked: false,
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
                    draining: false,
                },
            ),
            (
                b,
                NodeRooms {
                    rooms: vec![listing(20, 3), listing(21, 4)],
                    players: 7,
                    draining: false,
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
                    draining: false,
                },
            ),
            (
                b,
                NodeRooms {
                    rooms: vec![],
                    players: 2,
                    draining: false,
                },
            ),
        ];
        assert_eq!(place(a, &request, &empty), Ok((b, None)));
        let to_room = JoinRequest::to_room(RoomId(10));
        assert_eq!(place(b, &to_room, &nodes), Ok((a, Some(RoomId(10)))));
        // B drains: its fuller room and its lighter load no longer count, but a
        // join to one of its rooms by id still goes there.
        let mut draining = nodes.clone();
        draining[1].1.draining = true;
        assert_eq!(place(b, &request, &draining), Ok((a, Some(RoomId(10)))));
        assert_eq!(
            place(a, &JoinRequest::to_room(RoomId(20)), &draining),
            Ok((b, Some(RoomId(20))))
        );
        let mut empty_draining = empty.clone();
        empty_draining[1].1.draining = true;
        assert_eq!(place(b, &request, &empty_draining), Ok((a, None)));
        // B's room 20 locked: passed by (21 is full), A's room takes the player; a
        // join to it by id still goes to B, whose matchmaker refuses it.
        let mut locked = nodes.clone();
        locked[1].1.rooms[0].locked = true;
        assert_eq!(place(a, &request, &locked), Ok((a, Some(RoomId(10)))));
        assert_eq!(
            place(a, &JoinRequest::to_room(RoomId(20)), &locked),
            Ok((b, Some(RoomId(20))))
        );
        let gone = JoinRequest::to_room(RoomId(99));
        assert_eq!(
            place(b, &gone, &nodes),
            Err(JoinError::NoSuchRoom(RoomId(99)))
        );
    }
}
