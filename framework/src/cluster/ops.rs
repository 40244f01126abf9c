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

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;

use super::control::{FoundRow, GameReply, Local, Reply, Request, SessionRow};
use super::relay::{OwnerRelay, Relays};
use super::NodeId;
use crate::namespace::{ListRooms, NamespaceActor, Sockets, SocketsOp, Target};
use crate::room::Gauge;
use crate::session::{
    resume_here, ClientLimit, DropSessionConnection, KickSession, ListSessions, Shared,
    TransportKind, TransportLink,
};
use crate::SessionId;

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
                sending: crate::session::Sending::messages(backlog),
                inbound: inbound.clone(),
                // The client's address is the other node's to count.
                address: None,
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
        Request::Pull { sid, token } => {
            // Boxed: a move asks nodes, and a question to this node is answered here.
            let pull: futures_util::future::LocalBoxFuture<'_, bool> = Box::pin(
                super::drain::pull(&attached.node, &shared, from, SessionId(sid), token),
            );
            Reply::Done(pull.await)
        }
        Request::MoveIn { state } => {
            let draining = attached.draining.load(Ordering::Relaxed);
            Reply::Done(super::drain::move_in(&shared, draining, *state, from).await)
        }
        Request::Holds { sid, token } => {
            let holds = crate::session::Holds {
                id: SessionId(sid),
                token,
            };
            Reply::Done(shared.supervisor.send(holds).await.unwrap_or(false))
        }
        Request::MoveWindow {
            sid,
            token,
            move_id,
            window,
        } => {
            let here = crate::session::MovedHere {
                id: SessionId(sid),
                token,
                moved_in: move_id,
            };
            let merged = match shared.supervisor.send(here).await {
                Ok(Some(session)) => {
                    let merge = crate::session::MergeWindow { move_id, window };
                    session.send(merge).await.unwrap_or(false)
                }
                _ => false,
            };
            Reply::Done(merged)
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
            let Some(addr) = running(&shared, &ns) else {
                return Reply::Size(0);
            };
            Reply::Size(addr.send(RoomSize { room }).await.unwrap_or(0))
        }
        Request::Rooms { ns } => {
            let Some(addr) = running(&shared, &ns) else {
                return Reply::Rooms(Vec::new());
            };
            let rooms = addr.send(ListRooms { here_only: true }).await;
            Reply::Rooms(rooms.unwrap_or_default().into_iter().collect())
        }
        Request::Sockets {
            ns,
            rooms,
            except_rooms,
            except_ids,
            op,
        } => {
            // Never made here for the question: a namespace this node does not run
            // has no sockets here.
            let Some(addr) = running(&shared, &ns) else {
                return Reply::Ids(Vec::new());
            };
            let names = |rooms: Vec<String>| rooms.into_iter().map(Arc::from).collect();
            let target = Target {
                rooms: names(rooms),
                except_rooms: names(except_rooms),
                except_ids: except_ids.into_iter().map(SessionId).collect(),
            };
            let fetch = op == SocketsOp::Fetch;
            let ask = Sockets {
                target,
                op,
                here_only: true,
            };
            let found = addr.send(ask).await.unwrap_or_default();
            if fetch {
                Reply::FoundShared(found.into_iter().map(FoundRow::from).collect())
            } else {
                Reply::Ids(found.into_iter().map(|s| s.id.0).collect())
            }
        }
    }
}

/// The actor of namespace `ns` if it runs on this node (never made on demand).
fn running(shared: &Shared, ns: &str) -> Option<Arc<Addr<NamespaceActor>>> {
    (shared.namespaces.read())
        .unwrap_or_else(|e| e.into_inner())
        .get(ns)
        .map(|handle| handle.addr.clone())
}

/// Whether a refused resume met a session moving (or just moved) off this node.
fn moving_away(reason: &str) -> bool {
    use crate::session::{MOVING, SESSION_ENDED, SESSION_GONE};
    [MOVING, SESSION_ENDED, SESSION_GONE].contains(&reason)
}

fn empty(request: &Request) -> Reply {
    match request {
        Request::Sessions => Reply::Sessions(Vec::new()),
        Request::Kick { .. }
        | Request::DropConnection { .. }
        | Request::MoveIn { .. }
        | Request::MoveWindow { .. }
        | Request::Holds { .. }
        | Request::Pull { .. } => Reply::Done(false),
        // No server here, so no session either.
        Request::MoveCancel { .. } => Reply::Done(true),
        Request::RoomSize { .. } => Reply::Size(0),
        Request::Sockets { .. } => Reply::Ids(Vec::new()),
        Request::Rooms { .. } => Reply::Rooms(Vec::new()),
        Request::Poll { .. } => Reply::Polled(Err((400, "unknown or expired polling id".into()))),
        Request::Resume { .. } => Reply::Resumed {
            here: false,
            error: None,
        },
        Request::Game(request) => Reply::Game(GameReply::none(request)),
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
