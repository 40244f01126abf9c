//! Seats that move with their sessions when a node drains.
//!
//! The seat stays where it is, in its room on whichever node runs it (the *owner*):
//! what changes is which node reaches the player (its *edge*). For each seated
//! session it moves, the draining node:
//!
//! 1. **Holds** the seat before the session freezes: the room stops sending it
//!    states and keeps its reliable events ([`HoldPlayer`](crate::game::messages)).
//!    A room of another node is asked with `Hold` (a game message on the relay
//!    channels, like the states); the owner flushes what it queued for the player
//!    before it answers `Held`, and since Redis keeps one node's messages in order,
//!    those events reach the session (and its outbox) before it freezes.
//! 2. Sends the player's last inputs (taken before the freeze) to the owner, then
//!    the session with its seat (`MovedNamespace::seat`) to the new node.
//! 3. On the new node, once the session's socket is there again and before it
//!    handles any frame, the seat is set up as any seat of that node: a remote seat
//!    (`Moved` tells the owner, which makes the player its guest from the new node,
//!    before any of that node's inputs arrive), or the room's own player when the
//!    room runs on the new node. The room then **reseats** the player on that
//!    socket: the events it kept go first, in order, then a full state.
//! 4. If the move is undone, the room reseats the player on the socket it had
//!    (`Unhold`). A hold that is never resolved (the namespace refused the session
//!    on its new node, or that node died) frees the seat after 30 s.
//!
//! So the room's reliable events to the player are each delivered once, and its
//! inputs all reach the room: those the old node took before the freeze go out
//! before the move, the rest the client resends to the new node.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::guest::Flush;
use super::{here, lock, GameHub, SeatNews, NEWS};
use crate::cluster::NodeId;
use crate::game::RoomId;
use crate::namespace::Socket;
use crate::session::MovedSeat;
use crate::SessionId;

/// How long a draining node waits for another node to hold a seat; without an
/// answer the session moves without its seat.
const HOLD_WAIT: Duration = Duration::from_secs(2);

impl GameHub {
    /// Draining node: from now on join-or-create places nothing here; the registry
    /// says so at once.
    pub(crate) async fn set_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.write_registry(true).await;
    }

    /// Players seated in this node's rooms (held seats and guests included).
    pub(crate) async fn players_here(&self) -> usize {
        match self.rooms() {
            Some(rooms) => here(&rooms, None).await.players,
            None => 0,
        }
    }

    /// Draining node: holds the seat of `sid` (if it has one) for its move, and
    /// answers where it is with the namespace of the player's socket.
    pub(crate) async fn hold_seat(&self, sid: SessionId) -> Option<(String, MovedSeat)> {
        let rooms = self.rooms()?;
        match self.remote_room(sid) {
            None => {
                let (room, ns) = rooms.hold(sid).await?;
                let seat = MovedSeat {
                    room: room.0,
                    owner: self.node.0,
                };
                Some((ns, seat))
            }
            Some((owner, Some(room))) => {
                let (tx, rx) = oneshot::channel();
                lock(&self.holding).insert(sid, tx);
                self.send_json(owner, NEWS, &SeatNews::Hold(sid.0));
                let held = tokio::time::timeout(HOLD_WAIT, rx).await;
                lock(&self.holding).remove(&sid);
                let ns = held.ok()?.ok()??;
                let seat = MovedSeat {
                    room: room.0,
                    owner: owner.0,
                };
                Some((ns, seat))
            }
            // A join under way: it does not move.
            Some((_, None)) => None,
        }
    }

    /// Draining node: the move of `sid` was undone; its room carries on with it.
    pub(crate) fn release_seat(&self, sid: SessionId, seat: MovedSeat) {
        if seat.owner != self.node.0 {
            self.send_json(NodeId(seat.owner), NEWS, &SeatNews::Unhold(sid.0));
            return;
        }
        if let Some(rooms) = self.rooms() {
            actix::spawn(async move {
                rooms.reseat(RoomId(seat.room), sid, None).await;
            });
        }
    }

    /// Draining node: the session of `sid` is on another node now, with `seat`. A
    /// seat in a room here stays (the room's own); a seat of this node in another's
    /// room goes without a word to the room: the new node speaks for the player
    /// now. A seat in another node's room that did not move (its node did not
    /// answer the hold) goes, and the room hears that the player left.
    pub(crate) fn moved_out(&self, sid: SessionId, seat: Option<MovedSeat>) {
        match (seat, self.remote_room(sid)) {
            (Some(seat), _) if seat.owner == self.node.0 => {}
            (Some(_), _) => self.freed(sid),
            (None, Some((owner, _))) => {
                self.send_json(owner, NEWS, &SeatNews::Left(sid.0, false));
                self.freed(sid);
            }
            (None, None) => {}
        }
    }

    /// New node: the moved session's socket is here, with its seat.
    pub(crate) fn seat_moved_in(self: &Arc<Self>, socket: &Socket, seat: MovedSeat) {
        let (sid, owner, room) = (socket.id(), NodeId(seat.owner), RoomId(seat.room));
        let Some(rooms) = self.rooms() else {
            // Its room's hold runs out and frees it.
            tracing::info!(
                sid = sid.0,
                "cluster: no game rooms shared here; the moved seat is lost"
            );
            return;
        };
        if owner == self.node {
            // The room runs here: the player is its own again, no longer a guest.
            lock(&self.guests).remove(&sid);
            let socket = socket.clone();
            actix::spawn(async move {
                rooms.reseat(room, sid, Some(socket)).await;
            });
            return;
        }
        let (gate, edge) = self.remote_seat(socket, owner, Some(room));
        self.seated_remote(&rooms, socket, room, gate, edge);
        // Before any of this node's inputs for the player.
        let ns = socket.namespace().to_owned();
        self.send_json(owner, NEWS, &SeatNews::Moved(sid.0, ns));
        tracing::debug!(sid = sid.0, %room, %owner, "cluster: moved seat set up here");
    }

    /// Owner: a seat news about a move, from node `from`.
    pub(super) fn on_move_news(self: &Arc<Self>, from: NodeId, news: SeatNews) {
        match news {
            SeatNews::Hold(sid) => self.hold_guest(from, SessionId(sid)),
            SeatNews::Held(sid, ns) => {
                if let Some(waiting) = lock(&self.holding).remove(&SessionId(sid)) {
                    let _ = waiting.send(ns);
                }
            }
            SeatNews::Unhold(sid) => {
                let sid = SessionId(sid);
                if !self.is_guest_of(sid, from) {
                    return;
                }
                if let Some((rooms, room)) = self.rooms().and_then(|r| {
                    let room = r.room_of(sid)?;
                    Some((r, room))
                }) {
                    actix::spawn(async move {
                        rooms.reseat(room, sid, None).await;
                    });
                }
            }
            SeatNews::Moved(sid, ns) => self.guest_moved(from, SessionId(sid), &ns),
            _ => {}
        }
    }

    fn is_guest_of(&self, sid: SessionId, edge: NodeId) -> bool {
        lock(&self.guests).get(&sid).is_some_and(|g| g.edge == edge)
    }

    /// Owner: the guest's edge drains; hold its seat, send it what was queued for
    /// it, then answer.
    fn hold_guest(self: &Arc<Self>, edge: NodeId, sid: SessionId) {
        let seat = lock(&self.guests)
            .get(&sid)
            .filter(|g| g.edge == edge)
            .map(|g| g.seat.clone());
        let (Some(seat), Some(rooms)) = (seat, self.rooms()) else {
            self.send_json(edge, NEWS, &SeatNews::Held(sid.0, None));
            return;
        };
        let hub = self.clone();
        actix::spawn(async move {
            let ns = rooms.hold(sid).await.map(|(_, ns)| ns);
            // The room's events posted before the hold are in the guest's mailbox.
            if let Some(seat) = seat.upgrade() {
                let _ = seat.send(Flush).await;
            }
            hub.flush_states();
            hub.send_json(edge, NEWS, &SeatNews::Held(sid.0, ns));
        });
    }

    /// Owner: the held player's session landed on node `edge`: seat it as that
    /// node's guest (at once, so that the inputs it sends next are taken).
    fn guest_moved(self: &Arc<Self>, edge: NodeId, sid: SessionId, ns: &str) {
        let handle = (self.shared.get().and_then(std::sync::Weak::upgrade)).and_then(|shared| {
            let handle = (shared.namespaces.read())
                .unwrap_or_else(|e| e.into_inner())
                .get(ns)
                .cloned();
            handle.map(|h| (h, shared.config.max_mailbox))
        });
        let room = self.rooms().and_then(|r| Some((r.room_of(sid)?, r)));
        let (Some((handle, max_mailbox)), Some((room, rooms))) = (handle, room) else {
            self.send_json(edge, NEWS, &SeatNews::Freed(sid.0));
            return;
        };
        let socket = self.guest(edge, sid, &handle, max_mailbox);
        actix::spawn(async move {
            // Not held (any more): the guest socket drops, and its seat says `Freed`.
            rooms.reseat(room, sid, Some(socket)).await;
        });
    }
}
