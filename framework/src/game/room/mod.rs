//! The game room actor: one per room, on one of the game threads.
//!
//! It owns the [`Game`], the players' seats and input queues, and the tick loop. The
//! loop is scheduled on an absolute clock ([`TickSchedule`]): after each tick the
//! actor sleeps until the next deadline `start + n * period`, or, when that deadline
//! has already passed, only yields to the other rooms of its thread before catching
//! up. No room ever runs two ticks without letting its neighbours run theirs.
//!
//! This file is the loop: inputs, tick, the state fan-out (encoded once per subset)
//! and the metrics. `players.rs` seats players and holds their seats.

mod outbound;
mod players;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde_json::Value;

use super::clock;
use super::messages::{Dispose, GetMetrics, RoomHandle, RoomReport, RoomStatus};
use super::metrics::{Histogram, PlayerMetrics, RoomMetrics};
use super::seats::{InputGate, Inputs, Seats};
use super::subset::group_by_subset;
use super::tick::{broadcast_due, on_process_grid, TickSchedule};
use super::{Game, RoomContext, RoomId, RoomOptions};
use crate::namespace::Socket;
use crate::protocol::{EventKind, WireFrame};
use crate::room::local::Scatter;
use crate::room::{Deliver, Gauge, Mailbox};
use crate::SessionId;

/// How often a room checks that its players' sessions still exist (a safety net for
/// a session that ended before the room could watch it).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Everything a new room needs besides its game.
pub(crate) struct Spawn {
    pub id: RoomId,
    pub room_type: Arc<str>,
    pub options: Arc<RoomOptions>,
    pub metadata: Value,
    pub arbiter: ArbiterHandle,
    pub lobby: Recipient<RoomReport>,
    pub seats: Arc<Seats>,
}

struct Player {
    socket: Socket,
    /// Bounded: a player that cannot keep up with the states ends as a slow consumer.
    deliver: Mailbox,
    /// False while the seat is held for a dropped connection.
    connected: bool,
    /// The player's inputs waiting for the next tick (queued by the seat table).
    gate: Arc<InputGate>,
    /// Inputs taken from `gate` since the player sat down (applied or invalid).
    inputs: u64,
    /// While its session moves to another node: the reliable events kept for it.
    held: Option<players::Held>,
}

#[derive(Default)]
struct Counters {
    ticks: u64,
    broadcasts: u64,
    state_encodes: u64,
    full_states: u64,
    frames_sent: u64,
    bytes_sent: u64,
    inputs_applied: u64,
    inputs_invalid: u64,
    /// Dropped inputs of players who have left (the others' are in their gates).
    inputs_dropped_gone: u64,
}

/// One running game room.
pub(crate) struct GameRoom<G: Game> {
    id: RoomId,
    room_type: Arc<str>,
    options: Arc<RoomOptions>,
    game: Box<G>,
    /// Ordered by session id, so that inputs are applied in a stable order.
    players: BTreeMap<SessionId, Player>,
    schedule: TickSchedule,
    started: Instant,
    counters: Counters,
    tick_duration: Histogram,
    lateness: Histogram,
    /// A broadcast fell due during catch-up; it is sent after the last catch-up tick.
    broadcast_pending: bool,
    metadata: Value,
    /// Locked by the game ([`crate::game::RoomContext::lock`]).
    locked: bool,
    /// Bumped on every change the matchmaker sees (players, metadata, lock).
    version: u64,
    lobby: Recipient<RoomReport>,
    seats: Arc<Seats>,
    empty_timer: Option<SpawnHandle>,
    /// State broadcasts posted to the players' threads and not handled yet.
    in_flight: Arc<Gauge>,
    /// The buffer swapped with each player's gate at a tick (see [`InputGate::swap`]).
    spare_inputs: Inputs,
    /// The size of the last state encoded (see `encode_state`).
    state_size: Cell<usize>,
}

/// State broadcasts a room may have on their way to its players' threads: 2 s at 30
/// Hz. Past it a thread has fallen far behind, and the states it has not taken yet
/// are stale anyway (latest wins): the next one is skipped.
const MAX_STATES_IN_FLIGHT: usize = 64;

impl<G: Game> GameRoom<G> {
    /// Starts the room on its thread; its clock starts now.
    pub(crate) fn start(spawn: Spawn, game: G) -> RoomHandle {
        let Spawn {
            id,
            room_type,
            options,
            metadata,
            arbiter,
            lobby,
            seats,
        } = spawn;
        let addr = GameRoom::start_in_arbiter(&arbiter, move |_| {
            let started = Instant::now();
            // On the process's grid: the thread's rooms of one rate tick together
            // (in a few phases per period).
            let origin = on_process_grid(started, options.tick_rate);
            GameRoom {
                id,
                room_type,
                schedule: TickSchedule::new(origin, options.tick_rate, options.max_catch_up),
                options,
                game: Box::new(game),
                players: BTreeMap::new(),
                started,
                counters: Counters::default(),
                tick_duration: Histogram::default(),
                lateness: Histogram::default(),
                broadcast_pending: false,
                metadata,
                locked: false,
                version: 0,
                lobby,
                seats,
                empty_timer: None,
                in_flight: Arc::new(Gauge::new(MAX_STATES_IN_FLIGHT)),
                spare_inputs: Inputs::default(),
                state_size: Cell::new(128),
            }
        });
        RoomHandle {
            join: addr.clone().recipient(),
            dispose: addr.clone().recipient(),
            metrics: addr.clone().recipient(),
            hold: addr.clone().recipient(),
            reseat: addr.recipient(),
        }
    }

    /// Sleeps until the next tick's deadline on the absolute schedule; if it has
    /// passed already, only yields to the other actors of the thread first.
    fn arm(&mut self, ctx: &mut Context<Self>) {
        let deadline = self.schedule.next_deadline();
        let wait = async move {
            if deadline <= Instant::now() {
                tokio::task::yield_now().await;
            } else {
                clock::sleep_until(deadline).await;
            }
        };
        ctx.spawn(
            wait.into_actor(self)
                .map(|(), room, ctx| room.on_timer(ctx)),
        );
    }

    fn on_timer(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        if let Some(due) = self.schedule.poll(now) {
            self.lateness.record(due.lateness);
            let mut rctx = RoomContext::new(self.id, due.tick);
            self.apply_inputs(&mut rctx);
            self.game.tick(&mut rctx, self.schedule.period());
            self.counters.ticks += 1;
            self.apply(rctx);
            let (rate, brate) = (self.options.tick_rate, self.options.broadcast_rate);
            self.broadcast_pending |= broadcast_due(due.tick, rate, brate);
            // Catching up: only the state after the last overdue tick is worth sending.
            if self.broadcast_pending && !self.schedule.is_behind(Instant::now()) {
                self.broadcast();
                self.broadcast_pending = false;
            }
            self.tick_duration.record(now.elapsed());
        }
        self.arm(ctx);
    }

    /// Gives each player's queued inputs to the game, in arrival order; an input that
    /// is not the game's `Input` is counted and skipped.
    fn apply_inputs(&mut self, rctx: &mut RoomContext) {
        let mut inputs = std::mem::take(&mut self.spare_inputs);
        for (id, player) in &mut self.players {
            player.gate.swap(&mut inputs);
            let n = inputs.len();
            player.inputs += n as u64;
            for text in inputs.iter() {
                // Parsed once, from its text, into the game's own type.
                match serde_json::from_str::<G::Input>(text) {
                    Ok(input) => {
                        self.game.input(rctx, *id, input);
                        self.counters.inputs_applied += 1;
                    }
                    Err(e) => {
                        self.counters.inputs_invalid += 1;
                        tracing::debug!(room = %self.id, sid = id.0, error = %e, "invalid input");
                    }
                }
            }
            inputs.clear();
            player.gate.release(n);
        }
        self.spare_inputs = inputs;
    }

    /// Sends the state to every connected player: computed and encoded once per
    /// distinct subset, the same bytes for every player of the subset, posted once
    /// per subset to each thread its players run on (see [`crate::room::local`]).
    fn broadcast(&mut self) {
        let Some(ticket) = self.in_flight.ticket() else {
            tracing::debug!(room = %self.id, "players' threads behind: state skipped");
            return;
        };
        let ticket = Arc::new(ticket);
        let game = &self.game;
        let connected = self.players.iter().filter(|(_, p)| p.connected);
        let groups = group_by_subset(connected.map(|(id, _)| (game.subset(*id), *id)));
        for (subset, ids) in groups {
            let Some(json) = self.encode_state(&subset) else {
                continue;
            };
            let recipients = ids.len();
            self.counters.state_encodes += 1;
            // One frame per namespace the players are in (normally one), and its
            // recipients by thread.
            let mut frames: Vec<(Arc<str>, WireFrame)> = Vec::with_capacity(1);
            let mut scatters: Vec<Scatter> = Vec::with_capacity(1);
            for id in ids {
                if let Some(player) = self.players.get(&id) {
                    let frame = frame_for(&mut frames, &player.socket, &self.options, &json);
                    self.counters.frames_sent += 1;
                    self.counters.bytes_sent += frame.len() as u64;
                    let ns = player.socket.namespace();
                    let at = frames.iter().position(|(n, _)| &**n == ns).unwrap_or(0);
                    scatters.resize_with(frames.len(), || Scatter::with_capacity(recipients));
                    scatters[at].add(id, &player.deliver);
                }
            }
            for ((_, frame), scatter) in frames.into_iter().zip(scatters) {
                let deliver = Deliver {
                    frame,
                    reliable: false,
                    mark: None,
                };
                scatter.send_via(&deliver, &ticket, outbound::post);
            }
        }
        self.counters.broadcasts += 1;
    }

    /// Sends one player the full state of its subset now (on join, on resume).
    fn send_full_state(&mut self, id: SessionId) {
        let Some(player) = self.players.get(&id) else {
            return;
        };
        let subset = self.game.subset(id);
        let Some(json) = self.encode_state(&subset) else {
            return;
        };
        let frame = frame_for(&mut Vec::new(), &player.socket, &self.options, &json);
        self.counters.full_states += 1;
        self.counters.frames_sent += 1;
        self.counters.bytes_sent += frame.len() as u64;
        player.deliver.post(Deliver {
            frame,
            reliable: false,
            mark: None,
        });
    }

    fn encode_state(&self, subset: &G::Subset) -> Option<Vec<u8>> {
        // As large as the last state at once: a state is about as large every tick.
        let mut json = Vec::with_capacity(self.state_size.get());
        match serde_json::to_writer(&mut json, &self.game.state(subset)) {
            Ok(()) => {
                self.state_size
                    .set(json.len().max(self.state_size.get() / 2));
                Some(json)
            }
            Err(e) => {
                tracing::warn!(room = %self.id, error = %e, "game state did not serialize");
                None
            }
        }
    }

    /// Applies what a game call asked for: new metadata and lock, then reliable
    /// events. The matchmaker hears of the first before any player hears of the
    /// events, so that a join a player makes on the news finds the room as it is.
    fn apply(&mut self, rctx: RoomContext) {
        let locked = rctx.locked.filter(|l| *l != self.locked);
        let changed = locked.is_some() || rctx.metadata.is_some();
        if let Some(locked) = locked {
            self.locked = locked;
        }
        if let Some(metadata) = rctx.metadata {
            self.metadata = metadata;
        }
        if changed {
            self.report_status();
        }
        for out in rctx.outgoing {
            let mut frames: Vec<(Arc<str>, WireFrame)> = Vec::with_capacity(1);
            let mut send = |player: &mut Player| {
                let (kind, name) = (EventKind::Reliable, &out.event);
                let frame = event_frame(&mut frames, &player.socket, kind, name, &out.json);
                let deliver = Deliver {
                    frame,
                    reliable: true,
                    mark: None,
                };
                match &mut player.held {
                    Some(held) => held.keep(deliver),
                    None => player.deliver.post(deliver),
                }
            };
            match out.to {
                Some(id) => self.players.get_mut(&id).into_iter().for_each(&mut send),
                None => self.players.values_mut().for_each(&mut send),
            }
        }
    }

    fn status(&self) -> RoomStatus {
        RoomStatus {
            version: self.version,
            players: self.players.len(),
            metadata: self.metadata.clone(),
            locked: self.locked,
        }
    }

    /// At most once per tick (from `apply`) and once per join or leave.
    fn report_status(&mut self) {
        self.version += 1;
        self.lobby.do_send(RoomReport::Status {
            room: self.id,
            status: self.status(),
        });
    }

    fn last_tick(&self) -> u64 {
        self.schedule.last_run()
    }

    fn metrics(&self) -> RoomMetrics {
        let c = &self.counters;
        let dropped: u64 = self.players.values().map(|p| p.gate.dropped()).sum();
        RoomMetrics {
            room: self.id,
            room_type: self.room_type.to_string(),
            uptime: self.started.elapsed(),
            tick_rate: self.options.tick_rate,
            broadcast_rate: self.options.broadcast_rate,
            ticks: c.ticks,
            skipped_ticks: self.schedule.skipped(),
            tick_duration: self.tick_duration.summary(),
            lateness: self.lateness.summary(),
            broadcasts: c.broadcasts,
            state_encodes: c.state_encodes,
            full_states: c.full_states,
            frames_sent: c.frames_sent,
            bytes_sent: c.bytes_sent,
            players: self.players.len(),
            held_seats: self.players.values().filter(|p| !p.connected).count(),
            inputs_applied: c.inputs_applied,
            inputs_dropped: c.inputs_dropped_gone + dropped,
            inputs_invalid: c.inputs_invalid,
            seated: self
                .players
                .iter()
                .map(|(&session, p)| PlayerMetrics {
                    session,
                    connected: p.connected,
                    inputs: p.inputs,
                    inputs_dropped: p.gate.dropped(),
                })
                .collect(),
        }
    }
}

/// The state frame for `socket`'s namespace, encoded on first use.
fn frame_for(
    frames: &mut Vec<(Arc<str>, WireFrame)>,
    socket: &Socket,
    options: &RoomOptions,
    json: &[u8],
) -> WireFrame {
    event_frame(
        frames,
        socket,
        EventKind::Volatile,
        &options.state_event,
        json,
    )
}

/// The frame of event `name` for `socket`'s namespace, encoded on first use: the
/// players of one room normally share a namespace, so this encodes once.
fn event_frame(
    frames: &mut Vec<(Arc<str>, WireFrame)>,
    socket: &Socket,
    kind: EventKind,
    name: &str,
    json: &[u8],
) -> WireFrame {
    let ns = socket.namespace();
    if let Some((_, frame)) = frames.iter().find(|(n, _)| &**n == ns) {
        return frame.clone();
    }
    let frame = WireFrame::event(kind, ns, name, json);
    frames.push((ns.into(), frame.clone()));
    frame
}

impl<G: Game> Actor for GameRoom<G> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        tracing::debug!(room = %self.id, room_type = %self.room_type, "game room started");
        self.arm(ctx);
        self.arm_empty_timer(ctx);
        ctx.run_interval(SWEEP_EVERY, |room, ctx| room.sweep(ctx));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        tracing::debug!(room = %self.id, ticks = self.counters.ticks, "game room disposed of");
    }
}

impl<G: Game> Handler<Dispose> for GameRoom<G> {
    type Result = ();

    fn handle(&mut self, _: Dispose, ctx: &mut Context<Self>) {
        let mut rctx = RoomContext::new(self.id, self.last_tick());
        self.game.dispose(&mut rctx);
        self.apply(rctx);
        ctx.stop();
    }
}

impl<G: Game> Handler<GetMetrics> for GameRoom<G> {
    type Result = MessageResult<GetMetrics>;

    fn handle(&mut self, _: GetMetrics, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.metrics())
    }
}
