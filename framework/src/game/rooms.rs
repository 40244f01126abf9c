//! [`GameRooms`]: the handle an application uses to seat players, pass their inputs,
//! list rooms and read metrics; its builder; and the standard game events.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use serde_json::Value;

#[cfg(feature = "cluster")]
use super::directory::Directory;
use super::matchmaker::{self, Matchmaker, RoomFactory, RoomTag, RoomType};
use super::messages::{GetMetrics, LeavePlayer};
#[cfg(feature = "cluster")]
use super::messages::{HoldPlayer, ReseatPlayer};
use super::room::GameRoom;
use super::seats::{InputGate, Reservation, Seats};
use super::{
    Game, InputError, JoinError, JoinRequest, Joined, RoomId, RoomListing, RoomMetrics,
    RoomOptions, RoomSetup,
};
use crate::namespace::{Namespace, Socket};
use crate::SessionId;

/// Names of the events [`GameRooms::with_events`] handles.
pub mod events {
    /// With ack: a [`crate::JoinRequest`]; answers `Result<Joined, String>` (JSON
    /// `{"Ok": {...}}` or `{"Err": "room 3 is full (4/4 players)"}`).
    pub const JOIN: &str = "join_game";
    /// With ack, no payload: leaves the room; answers whether the player was seated.
    pub const LEAVE: &str = "leave_game";
    /// The player's input, any JSON the game's `Input` type decodes.
    pub const INPUT: &str = "input";
    /// With ack: an optional room type; answers the room listing.
    pub const LIST: &str = "list_games";
}

/// Builds [`GameRooms`]: the game threads and the room types.
pub struct GameRoomsBuilder {
    threads: usize,
    types: HashMap<Arc<str>, RoomType>,
}

impl GameRoomsBuilder {
    /// Threads that run game rooms, one actix arbiter each (default: the number of
    /// cores). Rooms are spread over them, each new room on the one with the fewest.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Registers game `G` under `room_type`, with its settings.
    pub fn game<G: Game>(mut self, room_type: &str, options: RoomOptions) -> Self {
        let factory: RoomFactory = Arc::new(|spawn, options: &Value| {
            let setup = RoomSetup {
                id: spawn.id,
                room_type: &spawn.room_type,
                options,
                settings: &spawn.options,
            };
            let game = G::create(&setup)?;
            Ok(GameRoom::start(spawn, game))
        });
        let options = Arc::new(options.normalized());
        self.types
            .insert(room_type.into(), RoomType { factory, options });
        self
    }

    /// Starts the game threads and the matchmaker.
    ///
    /// # Panics
    /// When called outside a running actix `System` (use `#[actix_web::main]`).
    pub fn build(self) -> GameRooms {
        let threads: Vec<ArbiterHandle> = (0..self.threads)
            .map(|n| crate::threads::arbiter(format!("volley-game-{n}")))
            .collect();
        let control = crate::threads::arbiter("volley-match");
        let seats = Arc::new(Seats::default());
        let tag = RoomTag::default();
        let matchmaker = Matchmaker::new(self.types, threads.clone(), seats.clone(), tag.clone());
        let matchmaker = Matchmaker::start_in_arbiter(&control, |_| matchmaker);
        let mut arbiters = threads;
        arbiters.push(control);
        GameRooms {
            inner: Arc::new(Inner {
                matchmaker,
                seats,
                arbiters,
                #[cfg(feature = "cluster")]
                tag,
                #[cfg(feature = "cluster")]
                directory: std::sync::OnceLock::new(),
            }),
        }
    }
}

/// The game rooms of a server: seat players, pass their inputs, list rooms, read
/// metrics. Cheap to clone and `Send`: keep one in every handler that needs it. When
/// the last clone is dropped, the game threads stop and their rooms with them.
///
/// A session sits in at most one room of one `GameRooms`.
#[derive(Clone)]
pub struct GameRooms {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    matchmaker: Addr<Matchmaker>,
    seats: Arc<Seats>,
    arbiters: Vec<ArbiterHandle>,
    /// The high bits of this node's room ids (see `matchmaker.rs`).
    #[cfg(feature = "cluster")]
    tag: RoomTag,
    /// The cluster these rooms are shared in (see `GameRooms::share_in`).
    #[cfg(feature = "cluster")]
    directory: std::sync::OnceLock<Arc<dyn Directory>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

impl GameRooms {
    /// A builder with one game thread per core and no room types.
    pub fn builder() -> GameRoomsBuilder {
        GameRoomsBuilder {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            types: HashMap::new(),
        }
    }

    /// Seats the socket's player. With `request.room`, in that room or not at all;
    /// otherwise join-or-create: the fullest room of `request.room_type` whose
    /// metadata matches `request.filters` and has a free seat, or a new room. The
    /// player then receives the room's state at once and at the broadcast rate.
    ///
    /// In a cluster (`GameRooms::share_in`, feature `cluster`) the room may be on any
    /// node: the fullest matching room of the cluster, or a new room on the least
    /// loaded node.
    pub async fn join(&self, socket: &Socket, request: &JoinRequest) -> Result<Joined, JoinError> {
        let id = socket.id();
        self.inner.seats.reserve(id)?;
        let _reservation = Reservation(&self.inner.seats, id);
        #[cfg(feature = "cluster")]
        if let Some(directory) = self.inner.directory.get() {
            return directory.join(self, socket, request).await;
        }
        self.join_here(socket, request).await
    }

    /// Seats the player in a room of this node (its seat is reserved).
    pub(crate) async fn join_here(
        &self,
        socket: &Socket,
        request: &JoinRequest,
    ) -> Result<Joined, JoinError> {
        let join = matchmaker::Join {
            socket: socket.clone(),
            request: request.clone(),
        };
        let joined = self.inner.matchmaker.send(join).await;
        joined.unwrap_or(Err(JoinError::Unavailable))
    }

    /// Creates a room of `request.room_type` (metadata: `request.filters`; game
    /// options: `request.options`) without seating anyone.
    pub async fn create(&self, request: &JoinRequest) -> Result<RoomId, JoinError> {
        let create = matchmaker::Create {
            request: request.clone(),
        };
        let created = self.inner.matchmaker.send(create).await;
        created.unwrap_or(Err(JoinError::Unavailable))
    }

    /// Queues an input (any JSON the game's `Input` decodes) for the player's next
    /// tick. Never waits. Past `max_inputs_per_tick` waiting inputs it is dropped and
    /// counted in the room's metrics.
    ///
    /// An input that arrives as an event is cheaper handed over as its text, with
    /// [`GameRooms::input_json`]: the standard `input` handler does that.
    pub fn input(&self, socket: &Socket, input: Value) -> Result<(), InputError> {
        // A `Value` is JSON already: writing it as text cannot fail.
        let raw = serde_json::value::to_raw_value(&input).expect("a JSON value is JSON text");
        self.input_json(socket, raw)
    }

    /// Queues an input given as JSON text, as an event handler receives it from
    /// [`Namespace::on_json`] (or as a `Box<RawValue>` from [`Namespace::on`]):
    /// checked to be JSON, copied as text into the seat's input buffer, and parsed
    /// once, at the tick, straight into the game's `Input`. Nothing is allocated per
    /// input.
    ///
    /// ```
    /// use serde_json::value::RawValue;
    /// use volley::game::GameRooms;
    /// use volley::Namespace;
    ///
    /// fn arena(rooms: &GameRooms) -> Namespace {
    ///     let inputs = rooms.clone();
    ///     rooms.with_events(Namespace::new()).on_json("steer", move |socket, input: &RawValue| {
    ///         let _ = inputs.input_json(socket, input);
    ///     })
    /// }
    /// ```
    pub fn input_json(
        &self,
        socket: &Socket,
        input: impl std::borrow::Borrow<serde_json::value::RawValue>,
    ) -> Result<(), InputError> {
        // The seat's gate as this socket last found it: no table and no lock shared
        // by the threads on the input path. A freed or replaced seat closes its gate,
        // and the table is asked again.
        let input = input.borrow();
        let kept = socket.with_route(|gate: Option<&InputGate>| {
            gate.filter(|gate| gate.is_open())
                .map(|gate| gate.offer(input))
        });
        if let Some(offered) = kept {
            return offered;
        }
        let gate = self
            .inner
            .seats
            .gate(socket.id())
            .ok_or(InputError::NotSeated)?;
        socket.set_route(gate.clone());
        gate.offer(input)
    }

    /// Frees the player's seat (`Game::leave` runs with `LeaveReason::Left`).
    /// Returns whether it was seated.
    pub async fn leave(&self, socket: &Socket) -> bool {
        self.leave_id(socket.id()).await
    }

    /// The room the player sits in (a held seat counts).
    pub fn room_of(&self, player: SessionId) -> Option<RoomId> {
        self.inner.seats.room_of(player)
    }

    /// The rooms, of `room_type` or of every type, for a lobby. In a cluster, the
    /// rooms of every live node (see `GameRooms::share_in`, feature `cluster`).
    pub async fn list(&self, room_type: Option<&str>) -> Vec<RoomListing> {
        #[cfg(feature = "cluster")]
        if let Some(directory) = self.inner.directory.get() {
            return directory.list(self, room_type).await;
        }
        self.list_here(room_type).await
    }

    /// The rooms of this node.
    pub(crate) async fn list_here(&self, room_type: Option<&str>) -> Vec<RoomListing> {
        let list = matchmaker::List {
            room_type: room_type.map(str::to_owned),
        };
        self.inner.matchmaker.send(list).await.unwrap_or_default()
    }

    /// Shares these rooms through `directory` (once: whether this was the first),
    /// their ids carrying the node's number `tag` (see `GameRooms::share_in`).
    #[cfg(feature = "cluster")]
    pub(crate) fn share(
        &self,
        directory: Arc<dyn Directory>,
        tag: Arc<crate::node::NodeNumber>,
    ) -> bool {
        if self.inner.directory.set(directory).is_err() {
            return false;
        }
        let _ = self.inner.tag.set(tag);
        true
    }

    #[cfg(feature = "cluster")]
    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    #[cfg(feature = "cluster")]
    pub(crate) fn upgrade(inner: &std::sync::Weak<Inner>) -> Option<GameRooms> {
        inner.upgrade().map(|inner| GameRooms { inner })
    }

    #[cfg(feature = "cluster")]
    pub(crate) fn seats(&self) -> &Arc<Seats> {
        &self.inner.seats
    }

    /// Holds the seat of `player` in a room of this node while its session moves
    /// (see `HoldPlayer`): the room and the socket's namespace, `None` when the
    /// player sits in no room here.
    #[cfg(feature = "cluster")]
    pub(crate) async fn hold(&self, player: SessionId) -> Option<(RoomId, String)> {
        let room = self.inner.seats.room_of(player)?;
        let handle = self.handle(room).await?;
        let held = handle.hold.send(HoldPlayer { player }).await;
        held.ok().flatten().map(|ns| (room, ns))
    }

    /// Seats the held `player` again, reached through `socket` (`None`: as before).
    #[cfg(feature = "cluster")]
    pub(crate) async fn reseat(
        &self,
        room: RoomId,
        player: SessionId,
        socket: Option<Socket>,
    ) -> bool {
        let Some(handle) = self.handle(room).await else {
            return false;
        };
        let reseat = handle.reseat.send(ReseatPlayer { player, socket });
        reseat.await.unwrap_or(false)
    }

    #[cfg(feature = "cluster")]
    async fn handle(&self, room: RoomId) -> Option<super::messages::RoomHandle> {
        let handles = matchmaker::Handles { room: Some(room) };
        let mut handles = self.inner.matchmaker.send(handles).await.ok()?;
        handles.pop()
    }

    /// Frees the seat of `player` on this node, as [`GameRooms::leave`] does.
    pub(crate) async fn leave_id(&self, player: SessionId) -> bool {
        let Some(room) = self.inner.seats.leave_recipient(player) else {
            return false;
        };
        room.send(LeavePlayer { player }).await.unwrap_or(false)
    }

    /// Joins under way (asked of the matchmaker, not answered yet), for the
    /// server's metrics.
    pub(crate) fn joins_waiting(&self) -> usize {
        self.inner.seats.joining()
    }

    /// The metrics of one room (`None` if there is no such room).
    pub async fn metrics(&self, room: RoomId) -> Option<RoomMetrics> {
        self.collect_metrics(Some(room)).await.pop()
    }

    /// The metrics of every room, for an admin view.
    pub async fn all_metrics(&self) -> Vec<RoomMetrics> {
        let mut all = self.collect_metrics(None).await;
        all.sort_by_key(|m| m.room);
        all
    }

    async fn collect_metrics(&self, room: Option<RoomId>) -> Vec<RoomMetrics> {
        let handles = matchmaker::Handles { room };
        let handles = self
            .inner
            .matchmaker
            .send(handles)
            .await
            .unwrap_or_default();
        // Asked all at once: one after the other, each answer waited for its room's
        // busy thread in turn (500 rooms at 60 Hz on two cores: 6 s for all).
        let asked = handles.iter().map(|handle| handle.metrics.send(GetMetrics));
        futures_util::future::join_all(asked)
            .await
            .into_iter()
            // A room disposed of meanwhile has nothing to say.
            .filter_map(Result::ok)
            .collect()
    }

    /// Adds the standard game events (see [`events`]) to a namespace: `join_game`,
    /// `leave_game`, `input` and `list_games`. Add your own handlers beside them.
    pub fn with_events(&self, namespace: Namespace) -> Namespace {
        let (join, leave, input, list) = (self.clone(), self.clone(), self.clone(), self.clone());
        namespace
            .on_ack(events::JOIN, move |socket, request: JoinRequest, ack| {
                let (rooms, socket) = (join.clone(), socket.clone());
                actix::spawn(async move {
                    let joined = rooms.join(&socket, &request).await;
                    if let Err(e) = &joined {
                        tracing::debug!(sid = socket.id().0, reason = %e, "join refused");
                    }
                    let _ = ack.send(&joined.map_err(|e| e.to_string()));
                });
            })
            .on_ack(events::LEAVE, move |socket, (): (), ack| {
                let (rooms, socket) = (leave.clone(), socket.clone());
                actix::spawn(async move {
                    let _ = ack.send(&rooms.leave(&socket).await);
                });
            })
            .on_json(events::INPUT, move |socket, raw| {
                if let Err(e) = input.input_json(socket, raw) {
                    tracing::trace!(sid = socket.id().0, reason = %e, "input not queued");
                }
            })
            .on_ack(
                events::LIST,
                move |_socket, room_type: Option<String>, ack| {
                    let rooms = list.clone();
                    actix::spawn(async move {
                        let _ = ack.send(&rooms.list(room_type.as_deref()).await);
                    });
                },
            )
    }
}
