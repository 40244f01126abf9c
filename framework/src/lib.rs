//! Volley: an actor-based multiplayer game server framework, on actix and actix-web.
//!
//! It gives a game backend what Socket.IO gives a web app: named events with typed
//! JSON payloads, namespaces multiplexed over one connection, connect middleware,
//! rooms and broadcasting (each broadcast encoded once for all its recipients),
//! acknowledgements with timeouts, heartbeats, and two transports (WebSocket, and HTTP
//! long-polling for networks that block WebSocket). On top of that, what games need:
//! session resumption (a dropped connection reconnects to the same session and
//! reliable events arrive exactly once and in order across the cut) and game rooms
//! that run a fixed-rate tick loop and push state to subsets of their players.
//!
//! Start with [`Volley::builder`] and [`Namespace`]:
//!
//! ```no_run
//! use actix_web::App;
//! use volley::{Namespace, Volley};
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let chat = Namespace::new()
//!         .on_ack("join", |socket, room: String, ack| {
//!             socket.join(&room);
//!             let _ = ack.send(&room);
//!         })
//!         .on("say", |socket, (room, text): (String, String)| {
//!             // Every member of the room but the sender, encoded once for all.
//!             let _ = socket.to(&room).emit("said", &text);
//!         });
//!     let volley = Volley::builder().namespace("/chat", chat).build();
//!     volley
//!         .http_server(App::new) // your own routes go in the App
//!         .bind(("127.0.0.1", 8080))?
//!         .run()
//!         .await
//! }
//! ```
//!
//! # The modules
//!
//! The data path, module by module: a transport decodes frames from a connection
//! (WebSocket or long-polling) and hands them to the client's [`session`]; the
//! session runs the event handlers of the [`namespace`]s it joined; handlers emit to
//! one socket or broadcast to [`room`]s, which fan the already-encoded bytes out to
//! their members' sessions. [`game`] rooms run a fixed-rate tick loop and push game
//! state to subsets of their players. The [`protocol`] module defines the bytes on
//! the wire. `client` is the Rust client and `tls` serves `https`/`wss` (see the
//! features below).
//!
//! The repository's `docs/guide.md` walks through the server API, the client, what
//! reconnection guarantees and the transports; `docs/protocol.md` specifies the wire
//! protocol, with test vectors, for clients in other languages.
//!
//! # Cargo features
//!
//! | feature  | default | what it adds |
//! |----------|---------|--------------|
//! | `client` | on      | `volley::client`: the Rust client (on awc), with automatic reconnection, session resume and long-polling fallback. The tests, the examples and the load tester use it. A server alone can turn it off (`default-features = false`). |
//! | `tls`    | off     | `volley::tls`: serving `https` and `wss` with rustls (ring provider), `HttpServer::bind_rustls` and `Volley::serve_tls`. Not needed behind a proxy that terminates TLS. |
//! | `cluster` | off    | `volley::cluster`: several nodes sharing broadcasts through Redis 7 (`VolleyBuilder::cluster`). A single node needs no Redis. |
//!
//! ```toml
//! [dependencies]
//! volley = { version = "0.1", features = ["tls"] }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod config;
mod error;
mod fd_limit;
pub mod game;
mod grid;
mod http;
mod log_gate;
mod metrics;
pub mod namespace;
mod node;
mod pacing;
pub mod protocol;
pub mod room;
mod server;
pub mod session;
mod threads;
mod transport;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "cluster")]
pub mod cluster;
#[cfg(feature = "tls")]
pub mod tls;

pub use config::{Config, ConnectRate, RateLimit, SocketIo};
pub use error::{AckError, DisconnectReason, EmitError};
pub use game::{
    Game, GameRooms, GameRoomsBuilder, InputError, JoinError, JoinRequest, Joined, LeaveReason,
    PlayerMetrics, RoomContext, RoomId, RoomListing, RoomMetrics, RoomOptions, RoomSetup,
};
pub use http::HttpServer;
pub use metrics::MetricsRoute;
pub use namespace::{
    AckReply, Broadcast, ConnectRequest, FoundSocket, Handshake, Namespace, NamespaceRef,
    NamespaceStats, Socket, SocketEvent, SocketEventKind,
};
pub use server::{Volley, VolleyBuilder};
pub use session::{SessionInfo, TransportKind};

/// A session's id: the same in every namespace the client joins, and stable across
/// reconnections of the session. Serializes as its number.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct SessionId(pub u64);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}", self.0)
    }
}
