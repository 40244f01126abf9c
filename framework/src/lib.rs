//! Volley: an actor-based multiplayer game server framework.
//!
//! The data path, module by module: a [`transport`](crate::transport) decodes frames
//! from a connection and hands them to the client's [`session`](crate::session); the
//! session runs the event handlers of the [`namespace`](crate::namespace)s it joined;
//! handlers emit to one socket or broadcast to [`room`](crate::room)s, which fan the
//! already-encoded bytes out to their members' sessions. [`game`] rooms run a
//! fixed-rate tick loop and push game state to subsets of their players. The
//! [`protocol`](crate::protocol) module defines the bytes on the wire.
//!
//! Start with [`Volley::builder`] and [`Namespace`]; `docs/guide.md` walks through it.

mod config;
mod error;
pub mod game;
mod http;
pub mod namespace;
pub mod protocol;
pub mod room;
mod server;
pub mod session;
mod transport;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "tls")]
pub mod tls;

pub use config::{Config, RateLimit};
pub use error::{AckError, DisconnectReason, EmitError};
pub use game::{
    Game, GameRooms, GameRoomsBuilder, InputError, JoinError, JoinRequest, Joined, LeaveReason,
    RoomContext, RoomId, RoomListing, RoomMetrics, RoomOptions, RoomSetup,
};
pub use http::HttpServer;
pub use namespace::{
    AckReply, Broadcast, Handshake, Namespace, NamespaceStats, Socket, SocketEvent, SocketEventKind,
};
pub use server::{NamespaceRef, Volley, VolleyBuilder};
pub use session::SessionInfo;

/// A session's id: the same in every namespace the client joins, and stable across
/// reconnections of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}", self.0)
    }
}
