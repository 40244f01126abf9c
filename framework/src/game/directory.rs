//! The rooms of other nodes, as a [`GameRooms`] of a cluster sees them (feature
//! `cluster`): where a join-or-create seats a player and what a listing shows. The
//! cluster implements [`Directory`] (`cluster/game/`) and hands it over in
//! `GameRooms::share_in`; this module knows nothing of Redis.

use futures_util::future::LocalBoxFuture;

use super::{GameRooms, JoinError, JoinRequest, Joined, RoomListing};
use crate::namespace::Socket;

/// The cluster's rooms, for [`GameRooms::join`] and [`GameRooms::list`].
pub(crate) trait Directory: Send + Sync + 'static {
    /// Seats the socket's player (its seat reserved by the caller) in the fullest
    /// matching room of any node, or a new room on the least loaded node.
    fn join<'a>(
        &'a self,
        rooms: &'a GameRooms,
        socket: &'a Socket,
        request: &'a JoinRequest,
    ) -> LocalBoxFuture<'a, Result<Joined, JoinError>>;

    /// The rooms of every live node, of `room_type` or of every type.
    fn list<'a>(
        &'a self,
        rooms: &'a GameRooms,
        room_type: Option<&'a str>,
    ) -> LocalBoxFuture<'a, Vec<RoomListing>>;
}
