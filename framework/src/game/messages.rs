//! The messages between the game actors: what the matchmaker and the seat table ask
//! of a room, and what a room reports to the matchmaker.
//!
//! They sit here, below the three of them, rather than beside the actor that handles
//! them: the seat table posts inputs and leaves to rooms, the rooms write the seat
//! table and report to the matchmaker, and the matchmaker starts rooms. With the
//! messages in a file of their own, imports go one way: `rooms.rs` -> `matchmaker.rs`
//! -> `room/` -> `seats.rs` -> here. The handlers stay with their actors.

use actix::prelude::*;
use serde_json::Value;

use super::metrics::RoomMetrics;
use super::{JoinError, Joined, RoomId};
use crate::namespace::Socket;
use crate::SessionId;

/// A room as the matchmaker reaches it, whatever its game type. (Inputs and leaves
/// go through the seat table, which holds their recipients.)
#[derive(Clone)]
pub(crate) struct RoomHandle {
    pub join: Recipient<JoinPlayer>,
    pub dispose: Recipient<Dispose>,
    pub metrics: Recipient<GetMetrics>,
    /// A seat moving with its session (only a cluster's drain moves sessions).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub hold: Recipient<HoldPlayer>,
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub reseat: Recipient<ReseatPlayer>,
}

/// Seats a player (the matchmaker has checked that a seat is free).
#[derive(Message)]
#[rtype(result = "Result<Accepted, JoinError>")]
pub(crate) struct JoinPlayer {
    pub socket: Socket,
    pub options: Value,
}

/// A join that succeeded, with the room's status for the matchmaker.
pub(crate) struct Accepted {
    pub joined: Joined,
    pub status: RoomStatus,
}

/// A player leaves on its own. Answers whether it was seated in the room.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct LeavePlayer {
    pub player: SessionId,
}

/// The player's session is moving to another node (a drain): keep its seat, send it
/// no state, and keep its reliable events until [`ReseatPlayer`]. Answers the
/// namespace of the player's socket (`None`: not seated in the room).
#[derive(Message)]
#[rtype(result = "Option<String>")]
pub(crate) struct HoldPlayer {
    pub player: SessionId,
}

/// The held player's session has landed: `socket` is how the room reaches it now (a
/// guest socket, or a local one), or `None` when the move was undone and the old
/// socket stays. The events kept meanwhile go to it, in order, then a full state.
/// Answers whether the player was held in the room.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct ReseatPlayer {
    pub player: SessionId,
    pub socket: Option<Socket>,
}

/// The matchmaker has forgotten the room: stop.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Dispose;

/// Asks for the room's [`RoomMetrics`].
#[derive(Message)]
#[rtype(result = "RoomMetrics")]
pub(crate) struct GetMetrics;

/// What a room last told the matchmaker about itself.
#[derive(Debug, Clone, Default)]
pub(crate) struct RoomStatus {
    /// The room's change counter: a report older than the one kept is ignored.
    pub version: u64,
    pub players: usize,
    pub metadata: Value,
    /// Locked by the game: no new players.
    pub locked: bool,
}

/// What rooms tell the matchmaker.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) enum RoomReport {
    /// Players or metadata changed.
    Status { room: RoomId, status: RoomStatus },
    /// The room has been empty for `dispose_after_empty` (as of `version`).
    Idle { room: RoomId, version: u64 },
}
