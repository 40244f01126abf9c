//! Game rooms: authoritative rooms that run a fixed-rate tick loop and push state to
//! subsets of their players.
//!
//! The application implements [`Game`] (create, join, leave, input, tick, and the
//! state each subset of players sees) and registers it under a room type with
//! [`GameRooms::builder`]. At run time:
//!
//! - [`GameRooms`] is the handle handlers use: join-or-create, inputs, leave, the
//!   room listing and metrics. It keeps who sits where, so that an input goes from
//!   the player's session straight to its room (the seat table, `seats.rs`).
//! - the `Matchmaker` actor (`matchmaker.rs`) owns the registry of rooms: it picks or
//!   creates a room for a join, places new rooms on the least loaded game thread,
//!   lists rooms for lobbies, and disposes of rooms that stayed empty.
//! - each room is a `GameRoom` actor (`room/`) on one of the game threads (one per
//!   core by default): its players, their bounded input queues, the tick loop on an
//!   absolute clock (`tick.rs`), the state fan-out encoded once per subset
//!   (`subset.rs`), seat hold across reconnections, and its metrics (`metrics.rs`).
//!
//! `docs/guide.md`, "Game rooms and the tick loop", walks through it.

mod clock;
#[cfg(feature = "cluster")]
pub(crate) mod directory;
mod matchmaker;
pub(crate) mod messages;
pub(crate) mod metrics;
mod options;
mod room;
pub(crate) mod rooms;
pub(crate) mod seats;
mod subset;
pub(crate) mod tick;

use std::hash::Hash;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use metrics::{PlayerMetrics, RoomMetrics, Summary};
pub use options::RoomOptions;
pub use rooms::{events, GameRooms, GameRoomsBuilder};

use crate::{DisconnectReason, EmitError, SessionId};

/// A game: the simulation one room runs. The room calls it from one thread, one call
/// at a time; nothing here needs locking.
///
/// Each tick, the inputs queued since the last tick are given to [`Game::input`] (in
/// arrival order per player), then [`Game::tick`] advances the simulation by one fixed
/// step. At the broadcast rate the room groups its connected players by
/// [`Game::subset`], calls [`Game::state`] **once per distinct subset**, encodes it
/// once, and sends the same bytes to every player of that subset as a volatile
/// (latest-wins) event.
///
/// A room where each player moves a dot and everyone sees every dot:
///
/// ```no_run
/// use std::collections::HashMap;
/// use std::time::Duration;
/// use actix_web::App;
/// use serde::{Deserialize, Serialize};
/// use volley::{
///     Game, GameRooms, Namespace, RoomContext, RoomOptions, RoomSetup, SessionId, Volley,
/// };
///
/// #[derive(Default)]
/// struct Dots {
///     dots: HashMap<SessionId, (f32, f32)>,
///     speeds: HashMap<SessionId, (f32, f32)>,
/// }
///
/// #[derive(Deserialize)]
/// struct Steer { dx: f32, dy: f32 }
///
/// #[derive(Serialize)]
/// struct View { dots: Vec<(f32, f32)> }
///
/// impl Game for Dots {
///     type Input = Steer;
///     type Subset = (); // everyone sees the same
///     type State = View;
///
///     fn create(_: &RoomSetup<'_>) -> Result<Self, String> {
///         Ok(Dots::default())
///     }
///     fn join(
///         &mut self,
///         _: &mut RoomContext,
///         player: SessionId,
///         _: &serde_json::Value,
///     ) -> Result<(), String> {
///         self.dots.insert(player, (0.0, 0.0));
///         Ok(())
///     }
///     fn input(&mut self, _: &mut RoomContext, player: SessionId, steer: Steer) {
///         self.speeds.insert(player, (steer.dx, steer.dy));
///     }
///     fn tick(&mut self, _: &mut RoomContext, dt: Duration) {
///         for (player, dot) in &mut self.dots {
///             let (dx, dy) = self.speeds.get(player).copied().unwrap_or_default();
///             dot.0 += dx * dt.as_secs_f32();
///             dot.1 += dy * dt.as_secs_f32();
///         }
///     }
///     fn subset(&self, _: SessionId) {}
///     fn state(&self, _: &()) -> View {
///         View { dots: self.dots.values().copied().collect() }
///     }
/// }
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     let rooms = GameRooms::builder()
///         .game::<Dots>("dots", RoomOptions { max_players: 8, ..RoomOptions::default() })
///         .build();
///     // join_game, leave_game, input and list_games, handled by the game rooms.
///     let game = rooms.with_events(Namespace::new());
///     let volley = Volley::builder().namespace("/game", game).build();
///     volley.http_server(App::new).bind(("127.0.0.1", 8080))?.run().await
/// }
/// ```
pub trait Game: Send + 'static {
    /// What a player sends (decoded from the JSON of its input events).
    type Input: DeserializeOwned;
    /// Which part of the state a player sees: a team, an area of interest, a
    /// spectator view. `()` if everyone sees the same.
    type Subset: Hash + Eq + Clone;
    /// The state sent to one subset.
    type State: Serialize;

    /// Builds the room's game. `Err(reason)` refuses the join that asked for it.
    /// Runs on the matchmaker's thread: keep it quick.
    fn create(setup: &RoomSetup<'_>) -> Result<Self, String>
    where
        Self: Sized;

    /// A player asks to sit. `Err(reason)` refuses it (wrong password, wrong
    /// team...); the client receives the reason. A full room never gets here.
    fn join(
        &mut self,
        ctx: &mut RoomContext,
        player: SessionId,
        options: &Value,
    ) -> Result<(), String> {
        let _ = (ctx, player, options);
        Ok(())
    }

    /// A player's seat is freed: it left, or its session ended (after the seat hold,
    /// if its connection dropped).
    fn leave(&mut self, ctx: &mut RoomContext, player: SessionId, reason: &LeaveReason) {
        let _ = (ctx, player, reason);
    }

    /// One input from a player, given just before the tick it belongs to.
    fn input(&mut self, ctx: &mut RoomContext, player: SessionId, input: Self::Input);

    /// Advances the simulation by one fixed step `dt` (one tick period).
    fn tick(&mut self, ctx: &mut RoomContext, dt: Duration);

    /// The subset `player` belongs to.
    fn subset(&self, player: SessionId) -> Self::Subset;

    /// The state the players of `subset` see.
    fn state(&self, subset: &Self::Subset) -> Self::State;

    /// The room is being disposed of (it stayed empty for `dispose_after_empty`).
    fn dispose(&mut self, ctx: &mut RoomContext) {
        let _ = ctx;
    }
}

/// What [`Game::create`] is told about the new room.
#[derive(Debug)]
pub struct RoomSetup<'a> {
    /// The room's id.
    pub id: RoomId,
    /// The room type it was registered under.
    pub room_type: &'a str,
    /// The `options` of the join (or create) request that made the room.
    pub options: &'a Value,
    /// The room's settings.
    pub settings: &'a RoomOptions,
}

/// A room's id: never reused by one [`GameRooms`] (the low 32 bits count its rooms)
/// and, in a cluster, unique across nodes (the bits above are the node's number, as
/// in a [`SessionId`]). Below 2^53, so exact in JSON; shown in
/// decimal, as clients see it (listings, join answers, refusal reasons).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct RoomId(pub u64);

impl std::fmt::Display for RoomId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a player's seat was freed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaveReason {
    /// The player asked to leave ([`GameRooms::leave`]).
    Left,
    /// The player's socket is gone: it left the namespace or its session ended.
    /// `Expired(..)` means the seat was held for the resume grace window and the
    /// client did not come back.
    Disconnected(DisconnectReason),
    /// The session vanished without telling the room (it had already ended when the
    /// room asked to follow it).
    SessionGone,
}

impl std::fmt::Display for LeaveReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeaveReason::Left => f.write_str("left"),
            LeaveReason::Disconnected(why) => write!(f, "disconnected: {why}"),
            LeaveReason::SessionGone => f.write_str("session gone"),
        }
    }
}

/// Why a player could not join a room. The `Display` text is what a client is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum JoinError {
    /// No game was registered under this room type.
    #[error("unknown room type '{0}'")]
    UnknownType(String),
    /// The room asked for does not exist (any more).
    #[error("no room {0}: it does not exist or was disposed of")]
    NoSuchRoom(RoomId),
    /// Every seat of the room is taken (held seats count).
    #[error("room {room} is full ({max}/{max} players)")]
    Full {
        /// The room.
        room: RoomId,
        /// Its seats.
        max: usize,
    },
    /// The game refused the player (or could not create a room for it).
    #[error("refused: {0}")]
    Refused(String),
    /// The game locked the room ([`RoomContext::lock`]): it takes no new players.
    #[error("room {0} is locked: it takes no new players")]
    Locked(RoomId),
    /// The player already sits in a room of these game rooms: leave it first.
    #[error("already in room {0}: leave it first")]
    AlreadySeated(RoomId),
    /// Another join of the same player is under way.
    #[error("a join is already under way for this player")]
    JoinInProgress,
    /// The game rooms are shutting down.
    #[error("game rooms unavailable (shutting down)")]
    Unavailable,
}

/// Why an input was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The player does not sit in a room.
    #[error("not in a game room: join one first")]
    NotSeated,
    /// The player already has `max_inputs_per_tick` inputs waiting for the next
    /// tick; this one was dropped (and counted).
    #[error("too many inputs for one tick: dropped")]
    Dropped,
}

/// What a join request asks for. It is also the payload of the standard
/// `join_game` event (see [`GameRooms::with_events`]), in JSON:
/// `{"type": "arena", "filters": {"mode": "duel"}, "options": {...}}` or
/// `{"room": 12}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JoinRequest {
    /// The room type; needed unless `room` is given.
    #[serde(rename = "type")]
    pub room_type: String,
    /// A particular room (from the listing): join it or fail, no matchmaking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<RoomId>,
    /// Only rooms whose metadata has these values are picked; a room created for
    /// the request starts with them as its metadata.
    pub filters: serde_json::Map<String, Value>,
    /// Given to [`Game::create`] (for a new room) and [`Game::join`].
    pub options: Value,
}

impl JoinRequest {
    /// Join-or-create a room of `room_type`.
    pub fn new(room_type: &str) -> Self {
        JoinRequest {
            room_type: room_type.to_owned(),
            ..JoinRequest::default()
        }
    }

    /// Join room `room` only.
    pub fn to_room(room: RoomId) -> Self {
        JoinRequest {
            room: Some(room),
            ..JoinRequest::default()
        }
    }

    /// Adds a filter on the rooms' metadata.
    pub fn filter(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.filters.insert(key.to_owned(), value.into());
        self
    }

    /// Sets the options given to the game.
    pub fn options(mut self, options: Value) -> Self {
        self.options = options;
        self
    }
}

/// The answer to a successful join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    /// The room.
    pub room: RoomId,
    /// Its type.
    pub room_type: String,
    /// Seated players, this one included.
    pub players: usize,
    /// Seats.
    pub max_players: usize,
}

/// A room as a lobby lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomListing {
    /// The room (join it with [`JoinRequest::to_room`]).
    pub id: RoomId,
    /// Its type.
    pub room_type: String,
    /// Seated players, held seats included.
    pub players: usize,
    /// Seats.
    pub max_players: usize,
    /// What the game published ([`RoomContext::set_metadata`]), or the filters the
    /// room was created with.
    pub metadata: Value,
    /// The game locked the room ([`RoomContext::lock`]): join-or-create passes it
    /// by and a join by its id is refused.
    #[serde(default)]
    pub locked: bool,
}

/// What a [`Game`] can do besides changing its own state: send reliable events and
/// publish metadata. Effects are applied when the call returns.
#[derive(Debug)]
pub struct RoomContext {
    room: RoomId,
    tick: u64,
    pub(crate) outgoing: Vec<Outgoing>,
    pub(crate) metadata: Option<Value>,
    pub(crate) locked: Option<bool>,
}

/// A reliable event a game asked to send: to one player, or (`to: None`) to all.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub to: Option<SessionId>,
    pub event: String,
    pub json: Bytes,
}

impl RoomContext {
    pub(crate) fn new(room: RoomId, tick: u64) -> Self {
        RoomContext {
            room,
            tick,
            outgoing: Vec::new(),
            metadata: None,
            locked: None,
        }
    }

    /// The room's id.
    pub fn room(&self) -> RoomId {
        self.room
    }

    /// The number of the tick being run (or the last one, outside ticks).
    pub fn tick(&self) -> u64 {
        self.tick
    }

    /// Sends a reliable event to one player (buffered while its connection is down).
    pub fn emit_to<T: Serialize>(
        &mut self,
        player: SessionId,
        event: &str,
        payload: &T,
    ) -> Result<(), EmitError> {
        self.push(Some(player), event, payload)
    }

    /// Sends a reliable event to every seated player, encoded once.
    pub fn emit_all<T: Serialize>(&mut self, event: &str, payload: &T) -> Result<(), EmitError> {
        self.push(None, event, payload)
    }

    fn push<T: Serialize>(
        &mut self,
        to: Option<SessionId>,
        event: &str,
        payload: &T,
    ) -> Result<(), EmitError> {
        self.outgoing.push(Outgoing {
            to,
            event: event.to_owned(),
            json: serde_json::to_vec(payload)?.into(),
        });
        Ok(())
    }

    /// Replaces the metadata shown in the room listing (and matched by filters).
    pub fn set_metadata(&mut self, metadata: Value) {
        self.metadata = Some(metadata);
    }

    /// Locks the room: from now on join-or-create passes it by, a join by its id
    /// is refused with [`JoinError::Locked`], and listings show it locked; its
    /// players play on, and a join already on its way still reaches
    /// [`Game::join`]. For a match that has started, a room being torn down, or a
    /// private game. Across a cluster too (the registry carries it).
    ///
    /// ```
    /// # use volley::game::RoomContext;
    /// fn on_match_start(ctx: &mut RoomContext) {
    ///     ctx.lock(); // latecomers go to another room
    ///     let _ = ctx.emit_all("start", &());
    /// }
    /// ```
    pub fn lock(&mut self) {
        self.locked = Some(true);
    }

    /// Unlocks a room locked with [`RoomContext::lock`]: it takes players again.
    pub fn unlock(&mut self) {
        self.locked = Some(false);
    }
}
