//! Cluster-wide operations: asking another node about its sessions and rooms, and
//! kicking or cutting one of its sessions.
//!
//! Each node listens on a control channel of its own (`<prefix>:ctl:<node>`); a
//! request names the node to answer to and a number, the answer comes back on the
//! asker's control channel. The control plane is JSON (rare, small, readable in
//! `redis-cli MONITOR`); broadcasts keep their binary envelope. A request to this
//! node is answered here without Redis; a node that does not answer within
//! [`REPLY_TIMEOUT`] is left out of lists and counts (it is dead, or cut from
//! Redis, and leaves the registry within the node TTL).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, UNIX_EPOCH};

use actix::prelude::*;
use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};

use super::relay::{OwnerRelay, Relays};
use super::NodeId;
use crate::namespace::NamespaceActor;
use crate::protocol::ResumeToken;
use crate::room::Gauge;
use crate::session::{
    resume_here, ClientLimit, DropSessionConnection, KickSession, ListSessions, SessionInfo,
    SessionState, Shared, TransportKind, TransportLink,
};
use crate::SessionId;

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
    Game(super::game::GameRequest),
    /// Take this session, moved from the asking node (see `drain.rs`).
    MoveIn {
        state: Box<SessionState>,
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
    Game(super::game::GameReply),
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
    fn from_info(info: &SessionInfo) -> Self {
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

/// Answers `request` of node `from` for the server in `local` (none yet: the empty
/// answer).
pub(crate) async fn answer(
    local: &Local,
    relays: &Arc<Relays>,
    from: NodeId,
    request: Request,
) -> Reply {
    let Some(attached) = local.get() else {
        return empty(&request);
    };
    let Some(shared) = attached.shared.upgrade() else {
        return empty(&request);
    };
    match request {
        Request::Game(request) => match relays.game.get() {
            Some(game) => Reply::Game(game.answer(from, &shared, request).await),
            None => empty(&Request::Game(request)),
        },
        Request::Poll {
            pid,
            body,
            socketio,
        } => {
            let answer = (attached.poll)(pid, body.map(Bytes::from), socketio).await;
            Reply::Polled(answer.map(|bytes| bytes.to_vec()))
        }
        Request::Resume {
            sid,
            token,
            last_seq,
            max_frame_size,
            websocket,
            relay,
        } => {
            let backlog = crate::session::Backlog::default();
            let inbound = Arc::new(Gauge::new(shared.config.max_mailbox));
            let owner = OwnerRelay {
                relay,
                edge: from,
                relays: relays.clone(),
                backlog: backlog.clone(),
            }
            .start();
            let transport = OwnerRelay::transport_id();
            let link = TransportLink {
                id: transport,
                kind: if websocket {
                    TransportKind::WebSocket
                } else {
                    TransportKind::Polling
                },
                recipient: owner.recipient(),
                queue: None,
                pulse: Arc::default(),
                backlog,
                inbound: inbound.clone(),
            };
            let limit = ClientLimit::announced(max_frame_size);
            let sid = SessionId(sid);
            match resume_here(&shared, sid, token, last_seq, limit, link, true).await {
                Ok(session) => {
                    relays.open_owner(relay, from, session.recipient(), transport, inbound);
                    tracing::debug!(sid = sid.0, edge = %from, "cluster: session relayed");
                    Reply::Resumed {
                        here: true,
                        error: None,
                    }
                }
                // Here but on its way to another node, or gone from here as it was
                // found (a move cancelled or done meanwhile): ask again.
                Err((reason, _)) if moving_away(&reason) => Reply::Resumed {
                    here: false,
                    error: Some(reason),
                },
                // Not here: the relay actor, unreferenced, stops.
                Err((_, Some(_))) => Reply::Resumed {
                    here: false,
                    error: None,
                },
                Err((reason, None)) => Reply::Resumed {
                    here: true,
                    error: Some(reason),
                },
            }
        }
        Request::MoveIn { state } => {
            let draining = attached.draining.load(Ordering::Relaxed);
            Reply::Done(super::drain::move_in(&shared, draining, *state).await)
        }
        Request::MoveCancel {
            sid,
            token,
            move_id,
        } => {
            let cancel = crate::session::CancelMove {
                id: SessionId(sid),
                token,
                moved_in: move_id,
            };
            Reply::Done(super::drain::cancel_move(&shared, cancel).await)
        }
        Request::Sessions => {
            let list = shared.supervisor.send(ListSessions).await;
            Reply::Sessions(
                list.unwrap_or_default()
                    .iter()
                    .map(SessionRow::from_info)
                    .collect(),
            )
        }
        Request::Kick { id, reason } => {
            let kick = KickSession {
                id: SessionId(id),
                reason,
            };
            Reply::Done(shared.supervisor.send(kick).await.unwrap_or(false))
        }
        Request::DropConnection { id } => {
            let cut = DropSessionConnection { id: SessionId(id) };
            Reply::Done(shared.supervisor.send(cut).await.unwrap_or(false))
        }
        Request::RoomSize { ns, room } => {
            let addr = (shared.namespaces.read())
                .unwrap_or_else(|e| e.into_inner())
                .get(&ns)
                .map(|handle| handle.addr.clone());
            let Some(addr) = addr else {
                return Reply::Size(0);
            };
            Reply::Size(addr.send(RoomSize { room }).await.unwrap_or(0))
        }
    }
}

/// Whether a refused resume met a session moving (or just moved) off this node.
fn moving_away(reason: &str) -> bool {
    use crate::session::{MOVING, SESSION_ENDED, SESSION_GONE};
    [MOVING, SESSION_ENDED, SESSION_GONE].contains(&reason)
}

fn empty(request: &Request) -> Reply {
    match request {
        Request::Sessions => Reply::Sessions(Vec::new()),
        Request::Kick { .. } | Request::DropConnection { .. } | Request::MoveIn { .. } => {
            Reply::Done(false)
        }
        // No server here, so no session either.
        Request::MoveCancel { .. } => Reply::Done(true),
        Request::RoomSize { .. } => Reply::Size(0),
        Request::Poll { .. } => Reply::Polled(Err((400, "unknown or expired polling id".into()))),
        Request::Resume { .. } => Reply::Resumed {
            here: false,
            error: None,
        },
        Request::Game(request) => Reply::Game(super::game::GameReply::none(request)),
    }
}

/// How many local members a room has.
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct RoomSize {
    room: String,
}

impl Handler<RoomSize> for NamespaceActor {
    type Result = usize;

    fn handle(&mut self, msg: RoomSize, _: &mut Context<Self>) -> usize {
        self.room_members(&msg.room)
    }
}
