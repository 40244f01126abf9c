//! What the parts of a node hand its Redis link and ask other nodes: the outbound
//! queue's messages ([`Outbound`]), the control plane's questions and answers
//! ([`Request`], [`Reply`], [`Control`]; see `ops.rs` for who answers what) and the
//! game rooms' ([`GameRequest`], [`GameReply`]). Types only: every part of the
//! cluster uses them, and they use none of its parts.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use redis::Value;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::envelope::Body;
use super::{ClusterError, ClusterNode, NodeId};
use crate::game::{JoinError, JoinRequest, Joined};
use crate::namespace::{FoundSocket, SocketsOp};
use crate::protocol::ResumeToken;
use crate::session::{MovedWindow, SessionInfo, SessionState, Shared, TransportKind};
use crate::SessionId;

/// What the node asks of its link.
pub(crate) enum Outbound {
    /// A broadcast, to every channel of its target.
    Publish { channels: Vec<String>, body: Body },
    /// The live nodes of the registry.
    Nodes(oneshot::Sender<Result<Vec<NodeId>, ClusterError>>),
    /// A relay message (see `relay.rs`) for node `to`.
    Relay { to: NodeId, message: Bytes },
    /// A plain Redis command (the game room registry's `SET` and `MGET`), answered
    /// with Redis's reply.
    Command {
        cmd: redis::Cmd,
        answer: oneshot::Sender<Result<Value, ClusterError>>,
    },
    /// A question to another node; the answer comes back on this node's control
    /// channel.
    Ask {
        to: NodeId,
        request: Request,
        answer: oneshot::Sender<Reply>,
    },
    /// This node's answer to another node's question (`from`: the asker). On this
    /// queue, behind the broadcasts handed over before it, so that a node that hears
    /// an answer has heard every broadcast this node published before answering
    /// (a moved session's window relies on it, `session/window.rs`).
    Answer(Control),
}

/// How long an asker waits for another node's answer.
pub(crate) const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// The server a node answers for, set once it is built.
pub(crate) type Local = Arc<OnceLock<Attached>>;

/// Answers a polling request for a connection of this node (`body` none: a
/// long-poll; the flag: an Engine.IO connection), with the bytes of the answer or its status and text. Made by the
/// server (`server.rs`), which knows the polling transport.
pub(crate) type PollAnswer = Arc<
    dyn Fn(String, Option<Bytes>, bool) -> LocalBoxFuture<'static, Result<Bytes, (u16, String)>>
        + Send
        + Sync,
>;

/// What the node answers other nodes' questions with.
pub(crate) struct Attached {
    pub shared: Weak<Shared>,
    /// The node itself, as its server holds it (weak: the node holds this).
    pub node: Weak<ClusterNode>,
    pub poll: PollAnswer,
    /// The node is draining: sessions moved to it are refused.
    pub draining: Arc<AtomicBool>,
}

/// A question to one node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Request {
    Sessions,
    Kick {
        id: u64,
        reason: String,
    },
    DropConnection {
        id: u64,
    },
    RoomSize {
        ns: String,
        room: String,
    },
    /// Do `op` to this node's sockets of namespace `ns` that a broadcast to `rooms`
    /// (all of the namespace if empty) but `except_rooms` and `except_ids` reaches:
    /// `Ids` of them (see `namespace::Sockets`).
    Sockets {
        ns: String,
        rooms: Vec<String>,
        except_rooms: Vec<String>,
        except_ids: Vec<u64>,
        op: SocketsOp,
    },
    /// This node's rooms of namespace `ns` with their members: `Rooms`.
    Rooms {
        ns: String,
    },
    /// A polling request for connection `pid` of the asked node (`body` none: a
    /// long-poll).
    Poll {
        pid: String,
        body: Option<Vec<u8>>,
        /// An Engine.IO connection of the Socket.IO endpoint, not a native one.
        #[serde(default)]
        socketio: bool,
    },
    /// Attach relay `relay` of the asking node to session `sid`, if it is here and
    /// `token` is its own.
    Resume {
        sid: u64,
        token: ResumeToken,
        last_seq: u64,
        max_frame_size: Option<u32>,
        websocket: bool,
        relay: u64,
    },
    /// Game rooms across nodes: see `game/`.
    Game(GameRequest),
    /// Move session `sid` (if it is here and `token` is its own) to the asking node,
    /// where its client is resuming (`RedisCluster::move_on_resume`): `Done(true)`
    /// once it is there.
    Pull {
        sid: u64,
        token: ResumeToken,
    },
    /// Take this session, moved from the asking node (see `drain.rs`).
    MoveIn {
        state: Box<SessionState>,
    },
    /// The broadcasts session `sid`'s old node (the asking one) handled for it during
    /// move `move_id`, for the session to merge (see `session/window.rs`):
    /// `Done(true)` once it did.
    MoveWindow {
        sid: u64,
        token: ResumeToken,
        move_id: u64,
        window: MovedWindow,
    },
    /// Whether session `sid` (with `token`) is registered here: asked by the node a
    /// move of it was sent to and whose window never came (`Done(true)`: it is, the
    /// move did not happen, the copy there goes).
    Holds {
        sid: u64,
        token: ResumeToken,
    },
    /// The asking node never heard the answer to its `MoveIn` of session `sid`:
    /// drop it here unless its client attached to it already (`Done(true)`: it is
    /// not here, and a `MoveIn` arriving late is refused; `Done(false)`: it stays
    /// here, the asking node lets its copy go).
    MoveCancel {
        sid: u64,
        token: ResumeToken,
        /// The cancelled move's number (`SessionState::move_id`).
        move_id: u64,
    },
}

/// A node's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Reply {
    Sessions(Vec<SessionRow>),
    Done(bool),
    Size(usize),
    /// To `Sockets` other than a fetch: the session ids (a node of an earlier
    /// version answers a fetch so too).
    Ids(Vec<u64>),
    /// To `Rooms`: room names with their members.
    Rooms(Vec<(String, usize)>),
    /// To `Poll`: the body of the answer, or its status and text.
    Polled(Result<Vec<u8>, (u16, String)>),
    /// To `Resume`: not here (`here` false), resumed (`error` none), or here but
    /// refused (the session cannot replay what the client missed). `here` false
    /// with an error: here, but moving to another node (ask again).
    Resumed {
        here: bool,
        error: Option<String>,
    },
    /// To `Game`.
    Game(GameReply),
    /// To a `Sockets` fetch, from a node of an earlier version: each socket's
    /// session id and rooms.
    Found(Vec<(u64, Vec<String>)>),
    /// To a `Sockets` fetch: each socket's session id, rooms and shared data (last,
    /// so that the variants before it keep their numbers on the wire).
    FoundShared(Vec<FoundRow>),
}

/// A [`FoundSocket`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FoundRow {
    id: u64,
    rooms: Vec<String>,
    data: Option<String>,
}

impl From<FoundSocket> for FoundRow {
    fn from(found: FoundSocket) -> Self {
        FoundRow {
            id: found.id.0,
            rooms: found.rooms,
            data: found.data,
        }
    }
}

/// What crosses the control channels.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Control {
    /// The node that sent it (the one to answer to).
    pub from: u64,
    /// Pairs an answer with its request.
    pub id: u64,
    pub body: ControlBody,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ControlBody {
    Request(Request),
    Reply(Reply),
    /// The sending node is stopping: nothing it was asked will be answered, and its
    /// relays are gone (see `Link::leave`).
    Left,
}

/// A [`SessionInfo`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SessionRow {
    id: u64,
    opened_ms: u64,
    namespaces: Vec<String>,
    websocket: Option<bool>,
    rtt_us: Option<u64>,
}

impl SessionRow {
    pub fn from_info(info: &SessionInfo) -> Self {
        SessionRow {
            id: info.id.0,
            opened_ms: info
                .opened_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            namespaces: info.namespaces.clone(),
            websocket: info.transport.map(|t| t == TransportKind::WebSocket),
            rtt_us: info
                .rtt
                .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        }
    }

    fn into_info(self) -> SessionInfo {
        SessionInfo {
            id: SessionId(self.id),
            opened_at: UNIX_EPOCH + Duration::from_millis(self.opened_ms),
            namespaces: self.namespaces,
            transport: self.websocket.map(|ws| {
                if ws {
                    TransportKind::WebSocket
                } else {
                    TransportKind::Polling
                }
            }),
            rtt: self.rtt_us.map(Duration::from_micros),
        }
    }
}

/// A session somewhere in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterSession {
    /// The node that holds it now (its id is unique cluster-wide; the node is where
    /// it lives, for operations and dashboards).
    pub node: NodeId,
    /// The session, as its node lists it.
    pub info: SessionInfo,
}

impl Reply {
    /// The rooms of a `Rooms` answer (none of another).
    pub fn rooms(self) -> Vec<(String, usize)> {
        match self {
            Reply::Rooms(rooms) => rooms,
            _ => Vec::new(),
        }
    }

    /// The sockets of a `FoundShared` answer; of a `Found` one without their data,
    /// of an `Ids` one without their rooms either (none of another).
    pub fn found(self) -> Vec<FoundSocket> {
        let found = |id, rooms, data| FoundSocket {
            id: SessionId(id),
            rooms,
            data,
        };
        match self {
            Reply::FoundShared(rows) => (rows.into_iter())
                .map(|row| found(row.id, row.rooms, row.data))
                .collect(),
            Reply::Found(rows) => (rows.into_iter())
                .map(|(id, rooms)| found(id, rooms, None))
                .collect(),
            Reply::Ids(ids) => (ids.into_iter())
                .map(|id| found(id, Vec::new(), None))
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn sessions(self, node: NodeId) -> Vec<ClusterSession> {
        match self {
            Reply::Sessions(rows) => rows
                .into_iter()
                .map(|row| ClusterSession {
                    node,
                    info: row.into_info(),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn done(self) -> bool {
        matches!(self, Reply::Done(true))
    }

    pub fn size(self) -> usize {
        match self {
            Reply::Size(n) => n,
            _ => 0,
        }
    }
}

/// A question about game rooms.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum GameRequest {
    /// Seat player `sid` of the asking node, in namespace `ns`.
    Join {
        sid: u64,
        ns: String,
        request: JoinRequest,
    },
    /// Free the seat of player `sid` of the asking node.
    Leave { sid: u64 },
}

/// The answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum GameReply {
    Joined(Result<Joined, JoinError>),
    Left(bool),
}

impl GameReply {
    /// The answer of a node without game rooms.
    pub fn none(request: &GameRequest) -> Self {
        match request {
            GameRequest::Join { .. } => GameReply::Joined(Err(JoinError::Unavailable)),
            GameRequest::Leave { .. } => GameReply::Left(false),
        }
    }
}
