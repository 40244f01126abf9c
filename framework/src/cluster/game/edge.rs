//! The edge's side: players of this node seated in rooms of other nodes.
//!
//! The seat is in this node's seat table with an input gate of its own (its inputs
//! leave every [`INPUT_FLUSH`](super::INPUT_FLUSH), one message per room node) and
//! an [`EdgeSeat`] actor as its leave recipient, which also follows the player's
//! session and tells the room's node. The room's frames come back in batches and
//! are framed once here for all their players.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use bytes::Buf;
use serde_json::Value;
use tokio::sync::oneshot;

use super::{gather, lock, place, GameHub, NodeRooms, SeatNews, INPUTS, NEWS};
use crate::cluster::control::{GameReply, GameRequest, Outbound, Reply, Request, REPLY_TIMEOUT};
use crate::cluster::{ClusterError, ClusterNode, NodeId};
use crate::game::messages::LeavePlayer;
use crate::game::seats::{InputGate, Inputs, Seat};
use crate::game::{GameRooms, JoinError, JoinRequest, Joined, RoomId};
use crate::namespace::{Socket, SocketEvent, SocketEventKind};
use crate::protocol::WireFrame;
use crate::room::{Deliver, Mailbox};
use crate::{DisconnectReason, SessionId};

/// Most inputs of one player that leave its node per [`INPUT_FLUSH`] (more are
/// dropped there, and `GameRooms::input` says so); on arrival the room's own
/// `max_inputs_per_tick` applies as to any player, and counts what it drops.
const MAX_INPUTS_PER_FLUSH: usize = 32;

/// A player of this node seated in a room of another node.
pub(super) struct RemoteSeat {
    pub owner: NodeId,
    /// `None` while the join is under way (the room's first frames may come first).
    room: Option<RoomId>,
    mailbox: Mailbox,
    gate: Arc<InputGate>,
    edge: Addr<EdgeSeat>,
}

impl GameHub {
    /// One message per owner node with every input its guests from here sent.
    pub(crate) fn flush_inputs(&self) {
        let mut by_owner: HashMap<NodeId, Vec<(u64, Inputs)>> = HashMap::new();
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

    /// Edge: frames for this node's players, each framed once here.
    pub(super) fn on_states(&self, mut body: &[u8]) {
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
                        mark: None,
                    });
                }
            }
        }
    }

    /// Edge: the room let go of `sid`'s seat.
    pub(super) fn freed(&self, sid: SessionId) {
        let Some(seat) = lock(&self.remote).remove(&sid) else {
            return;
        };
        if let (Some(rooms), Some(room)) = (self.rooms(), seat.room) {
            rooms.seats().vacate(sid, room);
        }
        seat.edge.do_send(Unwatch);
    }
}

impl GameHub {
    /// Edge: the seat of `socket`'s player in `room` (`None`: its join is under way)
    /// of node `owner`, where the room's frames for it arrive; its input gate and
    /// its [`EdgeSeat`].
    pub(super) fn remote_seat(
        self: &Arc<Self>,
        socket: &Socket,
        owner: NodeId,
        room: Option<RoomId>,
    ) -> (Arc<InputGate>, Addr<EdgeSeat>) {
        let gate = Arc::new(InputGate::new(MAX_INPUTS_PER_FLUSH));
        let edge = EdgeSeat {
            sid: socket.id(),
            owner,
            hub: self.clone(),
            socket: socket.clone(),
        }
        .start();
        let seat = RemoteSeat {
            owner,
            room,
            mailbox: socket.mailbox(),
            gate: gate.clone(),
            edge: edge.clone(),
        };
        lock(&self.remote).insert(socket.id(), seat);
        (gate, edge)
    }

    /// Edge: the player sits in `room` of another node: its inputs go to `gate`, its
    /// leave and its session's news to `edge`.
    pub(super) fn seated_remote(
        &self,
        rooms: &GameRooms,
        socket: &Socket,
        room: RoomId,
        gate: Arc<InputGate>,
        edge: Addr<EdgeSeat>,
    ) {
        let leave = edge.clone().recipient();
        rooms
            .seats()
            .seat(socket.id(), Seat::Seated { room, leave, gate });
        socket.watch(edge.recipient());
    }

    /// Edge: the room and node of `sid`'s seat, if it sits in another node's room.
    pub(super) fn remote_room(&self, sid: SessionId) -> Option<(NodeId, Option<RoomId>)> {
        lock(&self.remote).get(&sid).map(|r| (r.owner, r.room))
    }
}

/// [`GameRooms::join`] in a cluster (the seat is reserved by the caller).
pub(crate) async fn join(
    node: &ClusterNode,
    rooms: &GameRooms,
    socket: &Socket,
    request: &JoinRequest,
) -> Result<Joined, JoinError> {
    let Some(hub) = node.relays.game.get() else {
        return Err(JoinError::Unavailable);
    };
    // A room named by id may be of any type.
    let room_type = request.room.is_none().then_some(request.room_type.as_str());
    // The rooms a join-or-create was refused by, passed by when it looks again.
    let mut passed_by: Vec<RoomId> = Vec::new();
    let placed = |mut nodes: Vec<(NodeId, NodeRooms)>, passed_by: &[RoomId]| {
        for (_, r) in &mut nodes {
            r.rooms.retain(|l| !passed_by.contains(&l.id));
        }
        let (owner, room) = place(node.id(), request, &nodes)?;
        let mut placed = request.clone();
        placed.room = room.or(request.room);
        Ok::<_, JoinError>((owner, placed))
    };
    loop {
        let (owner, placed_request) = placed(gather(node, rooms, room_type).await, &passed_by)?;
        let joined = if placed_request.room.is_some() {
            seat_at(node, hub, rooms, socket, owner, placed_request).await
        } else {
            // A new room: one node at a time makes one for these filters, so that
            // two join-or-creates at once on two nodes share it. Whoever waited
            // looks again.
            let what = format!(
                "{}:{}",
                request.room_type,
                Value::Object(request.filters.clone())
            );
            let key = hub.names.game_create(&what);
            let locked = hub.lock(&key).await;
            let placement = placed(gather(node, rooms, room_type).await, &passed_by);
            let joined = match placement {
                Ok((owner, placed_request)) => {
                    seat_at(node, hub, rooms, socket, owner, placed_request).await
                }
                Err(e) => Err(e),
            };
            if locked {
                hub.unlock(&key).await;
            }
            joined
        };
        // The registry lags a room's node (up to `REGISTRY_EVERY`): a room it
        // listed as open may have filled up or locked itself meanwhile, and its
        // node refuses. A join-or-create looks again without it.
        match joined {
            Err(JoinError::Full { room, .. } | JoinError::Locked(room))
                if request.room.is_none() && passed_by.len() < MAX_PASSED_BY =>
            {
                passed_by.push(room);
            }
            joined => return joined,
        }
    }
}

/// Rooms a join-or-create passes by (full or locked when it got there) before it
/// gives up with the last refusal.
const MAX_PASSED_BY: usize = 4;

/// Seats the player at `owner` (this node or another), as `request` says.
async fn seat_at(
    node: &ClusterNode,
    hub: &Arc<GameHub>,
    rooms: &GameRooms,
    socket: &Socket,
    owner: NodeId,
    request: JoinRequest,
) -> Result<Joined, JoinError> {
    if owner == node.id() {
        let joined = rooms.join_here(socket, &request).await;
        // The next join-or-create, on any node, sees this seat (and a new room).
        hub.write_registry(true).await;
        return joined;
    }
    let id = socket.id();
    // The seat here first: the room's first frames (its full state, the game's
    // greeting) may arrive before the answer to the join.
    let (gate, edge) = hub.remote_seat(socket, owner, None);
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
    hub.seated_remote(rooms, socket, joined.room, gate, edge);
    tracing::debug!(sid = id.0, room = %joined.room, %owner, "cluster: seated in another node's room");
    Ok(joined)
}

/// Edge: a player of this node seated on another node. It tells the owner about
/// the session (detach, resume, end) and carries the player's leave.
pub(super) struct EdgeSeat {
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
                let expired = matches!(
                    reason,
                    DisconnectReason::Expired(_) | DisconnectReason::Evicted(_)
                );
                SeatNews::Left(sid, expired)
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
            let left = match (sent, tokio::time::timeout(REPLY_TIMEOUT, rx).await) {
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
