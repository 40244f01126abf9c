//! The matchmaker: the one registry of game rooms.
//!
//! Every join passes through here, so that seat counting is exact: a join reserves a
//! seat (`pending`) before it is forwarded to the room, and a room is only picked if
//! its seated plus pending players leave a seat free. Join-or-create picks, among the
//! rooms of the type whose metadata matches the filters, the fullest one with a free
//! seat (so rooms fill up before new ones open), and creates a room when there is
//! none. New rooms go to the game thread with the fewest rooms.
//!
//! Rooms report their player count and metadata (for the listing) and, while empty,
//! ask to be disposed of; the matchmaker agrees unless a join is on its way to them.
//! It is not on the path of inputs or state: those go between sessions and rooms.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use serde_json::Value;
use slotmap::SlotMap;

use super::messages::{Dispose, JoinPlayer, RoomHandle, RoomReport, RoomStatus};
use super::room::Spawn;
use super::seats::Seats;
use super::{JoinError, JoinRequest, Joined, RoomId, RoomListing, RoomOptions};
use crate::namespace::Socket;

slotmap::new_key_type! {
    /// Slot of a room in the registry.
    struct RoomKey;
}

/// The bits of a [`RoomId`] below the node's tag: the rooms this node has made.
const ID_BITS: u32 = 32;

/// Builds and starts a room of one game type: `Err` is the game's refusal.
pub(crate) type RoomFactory =
    Arc<dyn Fn(Spawn, &Value) -> Result<RoomHandle, String> + Send + Sync>;

/// A registered room type.
pub(crate) struct RoomType {
    pub factory: RoomFactory,
    pub options: Arc<RoomOptions>,
}

struct Entry {
    id: RoomId,
    room_type: Arc<str>,
    handle: RoomHandle,
    status: RoomStatus,
    /// Joins forwarded to the room and not answered yet: each holds a seat.
    pending: usize,
    max_players: usize,
    thread: usize,
}

impl Entry {
    fn free_seats(&self) -> usize {
        self.max_players
            .saturating_sub(self.status.players + self.pending)
    }

    fn update(&mut self, status: RoomStatus) {
        if status.version >= self.status.version {
            self.status = status;
        }
    }
}

/// The node number whose rooms these are: unset on a single node (tag 0); in a cluster
/// set by `GameRooms::share_in`, read at each room made (the number may come from Redis
/// after the rooms were shared).
pub(crate) type RoomTag = Arc<std::sync::OnceLock<Arc<crate::node::NodeNumber>>>;

/// Owns the registry of rooms.
pub(crate) struct Matchmaker {
    types: HashMap<Arc<str>, RoomType>,
    rooms: SlotMap<RoomKey, Entry>,
    /// The game threads, with the number of rooms on each.
    threads: Vec<(ArbiterHandle, usize)>,
    seats: Arc<Seats>,
    /// Room ids are `tag << 32 | n`, `n` counting the rooms made here from 1 (never
    /// reused, so that a stale id names no room). The tag is 0 on a single node; in a
    /// cluster it is the node's number from Redis (as in session ids, set once the
    /// rooms are shared), so that no two nodes make the same id.
    tag: RoomTag,
    made: u64,
    by_id: HashMap<RoomId, RoomKey>,
}

impl Matchmaker {
    pub(crate) fn new(
        types: HashMap<Arc<str>, RoomType>,
        threads: Vec<ArbiterHandle>,
        seats: Arc<Seats>,
        tag: RoomTag,
    ) -> Self {
        Matchmaker {
            types,
            rooms: SlotMap::with_key(),
            threads: threads.into_iter().map(|a| (a, 0)).collect(),
            seats,
            tag,
            made: 0,
            by_id: HashMap::new(),
        }
    }

    fn key_of(&self, id: RoomId) -> Option<RoomKey> {
        self.by_id.get(&id).copied()
    }

    /// The room a join request goes to, reserving a seat in it.
    fn pick(&mut self, request: &JoinRequest, ctx: &Context<Self>) -> Result<RoomKey, JoinError> {
        let key = match request.room {
            Some(room) => {
                let key = self.key_of(room).ok_or(JoinError::NoSuchRoom(room))?;
                let entry = self.rooms.get(key).ok_or(JoinError::NoSuchRoom(room))?;
                if entry.status.locked {
                    return Err(JoinError::Locked(room));
                }
                if entry.free_seats() == 0 {
                    let max = entry.max_players;
                    return Err(JoinError::Full { room, max });
                }
                key
            }
            None => match self.find(request) {
                Some(key) => key,
                None => self.create(request, ctx)?,
            },
        };
        if let Some(entry) = self.rooms.get_mut(key) {
            entry.pending += 1;
        }
        Ok(key)
    }

    /// The fullest room of the type that matches the filters and has a free seat.
    fn find(&self, request: &JoinRequest) -> Option<RoomKey> {
        let matches = |entry: &Entry| {
            request
                .filters
                .iter()
                .all(|(k, v)| entry.status.metadata.get(k) == Some(v))
        };
        self.rooms
            .iter()
            .filter(|(_, e)| &*e.room_type == request.room_type.as_str())
            .filter(|(_, e)| e.free_seats() > 0 && !e.status.locked && matches(e))
            // Fullest first; among equals the oldest slot, for a stable choice.
            .max_by_key(|(_, e)| (e.status.players + e.pending, std::cmp::Reverse(e.id)))
            .map(|(key, _)| key)
    }

    /// Creates a room for `request` on the least loaded game thread.
    fn create(&mut self, request: &JoinRequest, ctx: &Context<Self>) -> Result<RoomKey, JoinError> {
        let Some((room_type, spec)) = self.types.get_key_value(request.room_type.as_str()) else {
            return Err(JoinError::UnknownType(request.room_type.clone()));
        };
        let thread = (0..self.threads.len())
            .min_by_key(|&i| self.threads[i].1)
            .unwrap_or(0);
        let arbiter = self.threads[thread].0.clone();
        let metadata = Value::Object(request.filters.clone());
        let tag = self.tag.get().map_or(0, |node| node.get());
        let id = RoomId(tag << ID_BITS | (self.made + 1));
        let key = self.rooms.try_insert_with_key(|_| {
            let spawn = Spawn {
                id,
                room_type: room_type.clone(),
                options: spec.options.clone(),
                metadata: metadata.clone(),
                arbiter,
                lobby: ctx.address().recipient(),
                seats: self.seats.clone(),
            };
            let handle = (spec.factory)(spawn, &request.options).map_err(JoinError::Refused)?;
            Ok::<_, JoinError>(Entry {
                id,
                room_type: room_type.clone(),
                handle,
                status: RoomStatus {
                    metadata,
                    ..RoomStatus::default()
                },
                pending: 0,
                max_players: spec.options.max_players,
                thread,
            })
        })?;
        self.made += 1;
        self.by_id.insert(id, key);
        self.threads[thread].1 += 1;
        tracing::info!(room = %id, room_type = %room_type, thread, "game room created");
        Ok(key)
    }

    fn listing(e: &Entry) -> RoomListing {
        RoomListing {
            id: e.id,
            room_type: e.room_type.to_string(),
            players: e.status.players,
            max_players: e.max_players,
            metadata: e.status.metadata.clone(),
            locked: e.status.locked,
        }
    }
}

impl Actor for Matchmaker {
    type Context = Context<Self>;
}

/// Seats a player: in `request.room`, or join-or-create by type and filters.
#[derive(Message)]
#[rtype(result = "Result<Joined, JoinError>")]
pub(crate) struct Join {
    pub socket: Socket,
    pub request: JoinRequest,
}

impl Handler<Join> for Matchmaker {
    type Result = ResponseActFuture<Self, Result<Joined, JoinError>>;

    fn handle(&mut self, msg: Join, ctx: &mut Context<Self>) -> Self::Result {
        let key = match self.pick(&msg.request, ctx) {
            Ok(key) => key,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let Some(entry) = self.rooms.get(key) else {
            return Box::pin(fut::ready(Err(JoinError::Unavailable)));
        };
        let asked = entry.handle.join.send(JoinPlayer {
            socket: msg.socket,
            options: msg.request.options,
        });
        // Other joins go on meanwhile; the pending seat keeps the count exact.
        Box::pin(asked.into_actor(self).map(move |answer, mm, _| {
            let entry = mm.rooms.get_mut(key);
            let answer = answer.unwrap_or(Err(JoinError::Unavailable));
            if let Some(entry) = entry {
                entry.pending -= 1;
                if let Ok(accepted) = &answer {
                    entry.update(accepted.status.clone());
                }
            }
            answer.map(|accepted| accepted.joined)
        }))
    }
}

/// Creates a room without seating anyone (a pre-made lobby, a tournament table).
#[derive(Message)]
#[rtype(result = "Result<RoomId, JoinError>")]
pub(crate) struct Create {
    pub request: JoinRequest,
}

impl Handler<Create> for Matchmaker {
    type Result = Result<RoomId, JoinError>;

    fn handle(&mut self, msg: Create, ctx: &mut Context<Self>) -> Self::Result {
        let key = self.create(&msg.request, ctx)?;
        self.rooms
            .get(key)
            .map(|e| e.id)
            .ok_or(JoinError::Unavailable)
    }
}

/// Lists rooms, of one type or all, by id.
#[derive(Message)]
#[rtype(result = "Vec<RoomListing>")]
pub(crate) struct List {
    pub room_type: Option<String>,
}

impl Handler<List> for Matchmaker {
    type Result = MessageResult<List>;

    fn handle(&mut self, msg: List, _: &mut Context<Self>) -> Self::Result {
        let wanted = |e: &Entry| msg.room_type.as_deref().is_none_or(|t| t == &*e.room_type);
        let mut rooms: Vec<RoomListing> = self
            .rooms
            .iter()
            .filter(|(_, e)| wanted(e))
            .map(|(_, e)| Self::listing(e))
            .collect();
        rooms.sort_by_key(|r| r.id);
        MessageResult(rooms)
    }
}

/// The handle of one room (`None` if there is no such room), or of all.
#[derive(Message)]
#[rtype(result = "Vec<RoomHandle>")]
pub(crate) struct Handles {
    pub room: Option<RoomId>,
}

impl Handler<Handles> for Matchmaker {
    type Result = MessageResult<Handles>;

    fn handle(&mut self, msg: Handles, _: &mut Context<Self>) -> Self::Result {
        MessageResult(match msg.room {
            Some(room) => self
                .key_of(room)
                .and_then(|key| self.rooms.get(key))
                .map(|e| e.handle.clone())
                .into_iter()
                .collect(),
            None => self.rooms.values().map(|e| e.handle.clone()).collect(),
        })
    }
}

impl Handler<RoomReport> for Matchmaker {
    type Result = ();

    fn handle(&mut self, msg: RoomReport, _: &mut Context<Self>) {
        match msg {
            RoomReport::Status { room, status } => {
                if let Some(entry) = self.key_of(room).and_then(|k| self.rooms.get_mut(k)) {
                    entry.update(status);
                }
            }
            RoomReport::Idle { room, version } => {
                let Some(key) = self.key_of(room) else {
                    return;
                };
                // A join on its way, or one answered since the room sent this, keeps
                // the room; it will ask again while it stays empty.
                let idle = self
                    .rooms
                    .get(key)
                    .is_some_and(|e| e.pending == 0 && e.status.version <= version);
                if let (true, Some(entry)) = (idle, self.rooms.remove(key)) {
                    self.by_id.remove(&room);
                    self.threads[entry.thread].1 -= 1;
                    entry.handle.dispose.do_send(Dispose);
                    tracing::info!(%room, room_type = %entry.room_type, "game room disposed of");
                }
            }
        }
    }
}
