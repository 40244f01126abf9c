//! Who sits in a game room: seating a player, freeing a seat (on leave, or when the
//! player's socket is gone), holding a seat while the connection is down, and
//! asking to be disposed of while nobody sits.
//!
//! A player whose connection drops keeps its seat: the room watches its socket
//! ([`Socket::watch`](crate::Socket::watch)) and the session says when it
//! detaches, resumes or ends. No state is sent to a held seat; on resume the player
//! gets a full state at once; when the session ends (the grace window ran out) the
//! seat is freed and `Game::leave` runs.
//!
//! A player whose session moves to another node (a drain, feature `cluster`) keeps
//! its seat too: [`HoldPlayer`] stops its states and keeps its reliable events
//! ([`Held`], at most [`MAX_HELD`]) until [`ReseatPlayer`] names the socket that
//! reaches the session on its new node; the game sees nothing of it.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::{GameRoom, Player};
use crate::game::messages::{
    Accepted, HoldPlayer, JoinPlayer, LeavePlayer, ReseatPlayer, RoomReport,
};
use crate::game::seats::{InputGate, Seat};
use crate::game::{Game, JoinError, Joined, LeaveReason, RoomContext};
use crate::namespace::{SocketEvent, SocketEventKind};
use crate::room::Deliver;
use crate::SessionId;

/// Most reliable events kept for one player while its session moves; past it the
/// player has missed events, and its seat is freed when the session lands.
pub(super) const MAX_HELD: usize = 1024;

/// How long a seat is held for a moving session that does not land (its new node
/// refused it, or died): then it is freed (`LeaveReason::SessionGone`).
const HOLD_FOR: Duration = Duration::from_secs(30);

/// The reliable events of a player whose session is moving, in order.
pub(super) struct Held {
    events: Vec<Deliver>,
    overflowed: bool,
    since: std::time::Instant,
    /// Holds not yet answered by a reseat: a session that moves on again at once
    /// may be held again before the room hears where it landed the first time
    /// (the two come by different nodes), and only the last landing releases it.
    holds: u32,
}

impl Held {
    fn new() -> Self {
        Held {
            events: Vec::new(),
            overflowed: false,
            since: std::time::Instant::now(),
            holds: 0,
        }
    }

    pub(super) fn keep(&mut self, deliver: Deliver) {
        if self.events.len() < MAX_HELD {
            self.events.push(deliver);
        } else {
            self.overflowed = true;
        }
    }
}

impl<G: Game> GameRoom<G> {
    /// Frees a seat: the game's `leave` runs and the matchmaker is told.
    pub(super) fn free_seat(
        &mut self,
        id: SessionId,
        reason: LeaveReason,
        ctx: &mut Context<Self>,
    ) {
        let Some(player) = self.players.remove(&id) else {
            return;
        };
        self.counters.inputs_dropped_gone += player.gate.dropped();
        self.seats.vacate(id, self.id);
        tracing::debug!(room = %self.id, sid = id.0, %reason, "seat freed");
        let mut rctx = RoomContext::new(self.id, self.last_tick());
        self.game.leave(&mut rctx, id, &reason);
        self.apply(rctx);
        self.report_status();
        if self.players.is_empty() {
            self.arm_empty_timer(ctx);
        }
    }

    /// While the room is empty, asks the matchmaker every `dispose_after_empty` to
    /// dispose of it; the matchmaker refuses while a join is on its way here.
    pub(super) fn arm_empty_timer(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.empty_timer.take() {
            ctx.cancel_future(timer);
        }
        let after = self.options.dispose_after_empty;
        self.empty_timer = Some(ctx.run_interval(after, |room, _| {
            if room.players.is_empty() {
                // Once per `dispose_after_empty`: a timer sets the rate.
                room.lobby.do_send(RoomReport::Idle {
                    room: room.id,
                    version: room.version,
                });
            }
        }));
    }

    /// Frees the seats of players whose session no longer exists (a session that
    /// ended before the room's watch reached it never says so).
    pub(super) fn sweep(&mut self, ctx: &mut Context<Self>) {
        let gone: Vec<SessionId> = self
            .players
            .iter()
            // A moving player's old session is gone: its hold decides.
            .filter(|(_, p)| p.held.is_none() && !p.deliver.connected())
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.free_seat(id, LeaveReason::SessionGone, ctx);
        }
    }
}

impl<G: Game> Handler<JoinPlayer> for GameRoom<G> {
    type Result = Result<Accepted, JoinError>;

    fn handle(&mut self, msg: JoinPlayer, ctx: &mut Context<Self>) -> Self::Result {
        let id = msg.socket.id();
        if !self.players.contains_key(&id) {
            if self.players.len() >= self.options.max_players {
                let max = self.options.max_players;
                return Err(JoinError::Full { room: self.id, max });
            }
            let mut rctx = RoomContext::new(self.id, self.last_tick());
            if let Err(reason) = self.game.join(&mut rctx, id, &msg.options) {
                self.apply(rctx);
                return Err(JoinError::Refused(reason));
            }
            let gate = Arc::new(InputGate::new(self.options.max_inputs_per_tick));
            msg.socket.watch(ctx.address().recipient());
            self.seats.seat(
                id,
                Seat::Seated {
                    room: self.id,
                    leave: ctx.address().recipient(),
                    gate: gate.clone(),
                },
            );
            self.players.insert(
                id,
                Player {
                    deliver: msg.socket.mailbox(),
                    socket: msg.socket,
                    connected: true,
                    gate,
                    inputs: 0,
                    held: None,
                },
            );
            if let Some(timer) = self.empty_timer.take() {
                ctx.cancel_future(timer);
            }
            self.version += 1;
            tracing::debug!(room = %self.id, sid = id.0, "player seated");
            self.send_full_state(id);
            // After the seat exists, so that the game can greet the player.
            self.apply(rctx);
        }
        Ok(Accepted {
            joined: Joined {
                room: self.id,
                room_type: self.room_type.to_string(),
                players: self.players.len(),
                max_players: self.options.max_players,
            },
            status: self.status(),
        })
    }
}

impl<G: Game> Handler<LeavePlayer> for GameRoom<G> {
    type Result = bool;

    fn handle(&mut self, msg: LeavePlayer, ctx: &mut Context<Self>) -> bool {
        let Some(player) = self.players.get(&msg.player) else {
            return false;
        };
        player.socket.unwatch(ctx.address().recipient());
        self.free_seat(msg.player, LeaveReason::Left, ctx);
        true
    }
}

impl<G: Game> Handler<SocketEvent> for GameRoom<G> {
    type Result = ();

    fn handle(&mut self, msg: SocketEvent, ctx: &mut Context<Self>) {
        let Some(player) = self.players.get_mut(&msg.id) else {
            return;
        };
        if player.held.is_some() {
            // News of the socket the session is leaving; its new one says the rest.
            return;
        }
        match msg.kind {
            SocketEventKind::Detached => {
                tracing::debug!(room = %self.id, sid = msg.id.0, "seat held");
                player.connected = false;
            }
            SocketEventKind::Resumed => {
                player.connected = true;
                self.send_full_state(msg.id);
            }
            SocketEventKind::Left(reason) => {
                self.free_seat(msg.id, LeaveReason::Disconnected(reason), ctx);
            }
        }
    }
}

impl<G: Game> Handler<HoldPlayer> for GameRoom<G> {
    type Result = Option<String>;

    fn handle(&mut self, msg: HoldPlayer, ctx: &mut Context<Self>) -> Option<String> {
        let player = self.players.get_mut(&msg.player)?;
        player.connected = false;
        let held = player.held.get_or_insert_with(Held::new);
        held.holds += 1;
        held.since = std::time::Instant::now();
        let ns = player.socket.namespace().to_owned();
        tracing::debug!(room = %self.id, sid = msg.player.0, "seat held for a moving session");
        let id = msg.player;
        ctx.run_later(HOLD_FOR, move |room, ctx| {
            // This hold, not a later one of the same player.
            let held = room.players.get(&id).and_then(|p| p.held.as_ref());
            if held.is_some_and(|h| h.since.elapsed() >= HOLD_FOR) {
                tracing::info!(room = %room.id, sid = id.0, "moving session never landed: seat freed");
                room.free_seat(id, LeaveReason::SessionGone, ctx);
            }
        });
        Some(ns)
    }
}

impl<G: Game> Handler<ReseatPlayer> for GameRoom<G> {
    type Result = bool;

    fn handle(&mut self, msg: ReseatPlayer, ctx: &mut Context<Self>) -> bool {
        let id = msg.player;
        let Some(player) = self.players.get_mut(&id) else {
            return false;
        };
        let Some(held) = player.held.as_mut() else {
            return false;
        };
        held.holds = held.holds.saturating_sub(1);
        if held.holds > 0 && !held.overflowed {
            // Held again meanwhile: the socket it landed on is moving on already.
            if let Some(socket) = msg.socket {
                player.socket.unwatch(ctx.address().recipient());
                player.deliver = socket.mailbox();
                player.socket = socket;
            }
            return true;
        }
        let Some(held) = player.held.take() else {
            return false;
        };
        if held.overflowed {
            tracing::info!(room = %self.id, sid = id.0, "more events than a move holds: seat freed");
            self.free_seat(id, LeaveReason::SessionGone, ctx);
            return false;
        }
        if let Some(socket) = msg.socket {
            player.socket.unwatch(ctx.address().recipient());
            socket.watch(ctx.address().recipient());
            player.deliver = socket.mailbox();
            player.socket = socket;
        }
        for deliver in held.events {
            player.deliver.post(deliver);
        }
        // As on a resume: the player may be detached still (the next resume sends a
        // full state again), which costs a few states at most.
        player.connected = true;
        self.send_full_state(id);
        tracing::debug!(room = %self.id, sid = id.0, "moved player seated again");
        true
    }
}
