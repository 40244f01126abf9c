//! [`Broadcast`]: the operator that picks recipients (rooms, exclusions) and sends
//! one encoded frame to all of them.

use std::sync::Arc;

use actix::Addr;
use serde::Serialize;

use super::{encode_event, Emit, NamespaceActor, Sockets, SocketsOp, Target};
use crate::protocol::EventKind;
use crate::room::{Deliver, Gauge};
use crate::{EmitError, SessionId};

/// A broadcast being built. Start one from [`crate::Socket::to`],
/// [`crate::Socket::broadcast`] or [`crate::NamespaceRef`]; chain `to`/`except`;
/// finish with [`Broadcast::emit`]. Without any `to`, it goes to the whole namespace.
///
/// The payload is serialized and the frame encoded exactly once; every recipient gets
/// the same bytes, and a recipient in several target rooms gets them once.
///
/// ```
/// use volley::Namespace;
///
/// let arena = Namespace::new().on("shout", |socket, text: String| {
///     // Both teams but whoever is also a spectator; `socket.to`/`broadcast` leave
///     // the sender out. A player in both teams gets it once.
///     let _ = socket
///         .to("red")
///         .to("blue")
///         .except("spectators")
///         .emit("shout", &text);
///     // Latest-wins: a client that is away gets the next one, not a backlog.
///     let _ = socket.to("red").volatile().emit("radar", &[1.0_f32, 2.0]);
/// });
/// ```
#[derive(Debug, Clone)]
#[must_use = "a broadcast does nothing until `emit` (or a socket operation) is called"]
pub struct Broadcast {
    ns: Arc<str>,
    addr: Addr<NamespaceActor>,
    /// The namespace's broadcasts not yet fanned out.
    pending: Arc<Gauge>,
    target: Target,
    volatile: bool,
}

impl Broadcast {
    pub(crate) fn new(
        ns: Arc<str>,
        addr: Addr<NamespaceActor>,
        pending: Arc<Gauge>,
        target: Target,
    ) -> Self {
        Broadcast {
            ns,
            addr,
            pending,
            target,
            volatile: false,
        }
    }

    /// Adds a target room; several rooms reach the union of their members.
    pub fn to(mut self, room: &str) -> Self {
        self.target.rooms.push(room.into());
        self
    }

    /// Excludes every member of `room`.
    pub fn except(mut self, room: &str) -> Self {
        self.target.except_rooms.push(room.into());
        self
    }

    /// Excludes one socket.
    pub fn except_socket(mut self, id: SessionId) -> Self {
        self.target.except_ids.push(id);
        self
    }

    /// Makes the event latest-wins: never buffered or replayed (game state).
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }

    /// Serializes `payload` once and sends the event to every recipient.
    ///
    /// [`EmitError::Busy`] when the namespace already has `Config::max_mailbox`
    /// broadcasts waiting to be fanned out: nothing is sent.
    pub fn emit<T: Serialize>(self, event: &str, payload: &T) -> Result<(), EmitError> {
        let ticket = self
            .pending
            .ticket()
            .ok_or(EmitError::Busy(self.pending.limit()))?;
        let kind = if self.volatile {
            EventKind::Volatile
        } else {
            EventKind::Reliable
        };
        let frame = encode_event(kind, &self.ns, event, payload)?;
        self.addr.do_send(Emit {
            target: self.target,
            deliver: Deliver {
                frame,
                reliable: !self.volatile,
                mark: None,
            },
            ticket,
        });
        Ok(())
    }

    /// The sockets the broadcast would reach, each with its rooms and what it shared
    /// of itself ([`crate::Socket::share_data`]), sorted by id: on every node of a
    /// cluster (a node that does not answer within 2 s is left out). Socket.IO's
    /// `fetchSockets`.
    ///
    /// ```
    /// use volley::NamespaceRef;
    ///
    /// /// Who sits at `table`, and which other rooms (teams, spectators) each is in.
    /// async fn seating(lobby: &NamespaceRef, table: &str) -> Vec<(u64, Vec<String>)> {
    ///     let found = lobby.to(table).fetch_sockets().await;
    ///     found.into_iter().map(|s| (s.id.0, s.rooms)).collect()
    /// }
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Player {
    ///     name: String,
    /// }
    ///
    /// /// The names the players at `table` gave themselves (see `Socket::share_data`).
    /// async fn names(lobby: &NamespaceRef, table: &str) -> Vec<String> {
    ///     let found = lobby.to(table).fetch_sockets().await;
    ///     (found.iter())
    ///         .filter_map(|s| s.data_as::<Player>()?.ok())
    ///         .map(|p| p.name)
    ///         .collect()
    /// }
    /// ```
    pub async fn fetch_sockets(self) -> Vec<FoundSocket> {
        self.sockets(SocketsOp::Fetch).await
    }

    /// Puts every socket the broadcast would reach in `room` (Socket.IO's
    /// `socketsJoin`) and answers their ids. On a cluster, every node's sockets, and
    /// the join is effective everywhere when this returns, as after an acknowledged
    /// `Socket::join`: a broadcast to `room` from any node after it reaches them.
    ///
    /// ```
    /// use volley::NamespaceRef;
    ///
    /// /// Everyone at the table goes to the match's room, on every node.
    /// async fn start_match(lobby: &NamespaceRef, table: &str, game: &str) {
    ///     let players = lobby.to(table).sockets_join(game).await;
    ///     lobby.to(table).sockets_leave(table).await;
    ///     let _ = lobby.to(game).emit("start", &players.len());
    /// }
    /// ```
    pub async fn sockets_join(self, room: &str) -> Vec<SessionId> {
        ids(self.sockets(SocketsOp::Join(room.to_owned())).await)
    }

    /// Takes every socket the broadcast would reach out of `room` (Socket.IO's
    /// `socketsLeave`) and answers their ids; on every node of a cluster.
    pub async fn sockets_leave(self, room: &str) -> Vec<SessionId> {
        ids(self.sockets(SocketsOp::Leave(room.to_owned())).await)
    }

    /// Disconnects every socket the broadcast would reach from the namespace, as
    /// [`Socket::disconnect`](crate::Socket::disconnect) does (Socket.IO's
    /// `disconnectSockets`), and answers their ids; on every node of a cluster. Each
    /// client gets a `Disconnect` with `reason`; its session and other namespaces
    /// stay.
    pub async fn disconnect_sockets(self, reason: &str) -> Vec<SessionId> {
        ids(self.sockets(SocketsOp::Disconnect(reason.to_owned())).await)
    }

    async fn sockets(self, op: SocketsOp) -> Vec<FoundSocket> {
        let ask = Sockets {
            target: self.target,
            op,
            here_only: false,
        };
        self.addr.send(ask).await.unwrap_or_default()
    }
}

/// A socket as [`Broadcast::fetch_sockets`] found it, on this node or another of the
/// cluster: Socket.IO's `RemoteSocket` without its methods (act on the sockets of a
/// target with [`Broadcast::sockets_join`] and the other operations). Its `data` is
/// what the socket shared of itself with [`crate::Socket::share_data`] (Socket.IO's
/// `socket.data`), as JSON; the typed [`crate::Socket::data`] its middleware
/// attached is a Rust value of the node it is on, and stays there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FoundSocket {
    /// Its session's id.
    pub id: SessionId,
    /// The rooms of the namespace it is in, sorted.
    pub rooms: Vec<String>,
    /// What it shared with [`crate::Socket::share_data`], as JSON text; `None` if
    /// nothing.
    pub data: Option<String>,
}

impl FoundSocket {
    /// Its shared [`data`](FoundSocket::data) as a `T`: `None` if it shared nothing,
    /// an error if what it shared is not a `T`.
    ///
    /// ```
    /// use volley::{FoundSocket, SessionId};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Player {
    ///     name: String,
    /// }
    ///
    /// let found = FoundSocket {
    ///     id: SessionId(7),
    ///     rooms: vec!["lobby".into()],
    ///     data: Some(r#"{"name":"ann"}"#.into()),
    /// };
    /// let player: Player = found.data_as().unwrap().unwrap();
    /// assert_eq!(player.name, "ann");
    /// ```
    pub fn data_as<T: serde::de::DeserializeOwned>(&self) -> Option<serde_json::Result<T>> {
        self.data.as_deref().map(serde_json::from_str)
    }
}

fn ids(found: Vec<FoundSocket>) -> Vec<SessionId> {
    found.into_iter().map(|s| s.id).collect()
}
