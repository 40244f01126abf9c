//! What the namespace answers about its sockets, and what it does to them: the rooms
//! a socket is in, what it shares of itself (`Socket::share_data`), and the
//! operations on the sockets of a broadcast's target (Socket.IO's `fetchSockets`,
//! `socketsJoin`, `socketsLeave`, `disconnectSockets`), on this node and, through
//! the cluster, on the others.

use std::collections::HashSet;
use std::sync::Arc;

use actix::prelude::*;

use super::{NamespaceActor, Target};
use crate::namespace::FoundSocket;
use crate::SessionId;

/// What a socket shares of itself ([`crate::Socket::share_data`]): JSON, shown by
/// `fetch_sockets` on every node; `None` takes it back.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ShareData {
    pub id: SessionId,
    pub data: Option<Arc<str>>,
}

impl Handler<ShareData> for NamespaceActor {
    type Result = ();

    fn handle(&mut self, msg: ShareData, _: &mut Context<Self>) {
        match msg.data {
            // Only a socket of the namespace: one that left keeps nothing here.
            Some(data) if self.sockets.contains_key(&msg.id) => {
                self.shared.insert(msg.id, data);
            }
            _ => {
                self.shared.remove(&msg.id);
            }
        }
    }
}

/// What a socket shared of itself, as [`ShareData`] left it (a session that moves
/// to another node takes it along).
#[cfg(feature = "cluster")]
#[derive(Message)]
#[rtype(result = "Option<Arc<str>>")]
pub struct SharedOf {
    pub id: SessionId,
}

#[cfg(feature = "cluster")]
impl Handler<SharedOf> for NamespaceActor {
    type Result = MessageResult<SharedOf>;

    fn handle(&mut self, msg: SharedOf, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.shared.get(&msg.id).cloned())
    }
}

/// The rooms a socket is in.
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct RoomsOf {
    pub id: SessionId,
}

impl Handler<RoomsOf> for NamespaceActor {
    type Result = MessageResult<RoomsOf>;

    fn handle(&mut self, msg: RoomsOf, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.rooms_of(msg.id))
    }
}

impl NamespaceActor {
    /// The rooms local socket `id` is in, sorted (none if it is not here).
    fn rooms_of(&self, id: SessionId) -> Vec<String> {
        let mut rooms: Vec<String> = self
            .sockets
            .get(&id)
            .map(|s| s.rooms.iter().map(|r| r.to_string()).collect())
            .unwrap_or_default();
        rooms.sort();
        rooms
    }
}

/// What [`Sockets`] does with the sockets of its target (the Socket.IO server's
/// `fetchSockets`, `socketsJoin`, `socketsLeave`, `disconnectSockets`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum SocketsOp {
    /// Nothing: only who they are.
    Fetch,
    /// Each joins this room.
    Join(String),
    /// Each leaves this room.
    Leave(String),
    /// Each is disconnected from the namespace with this reason.
    Disconnect(String),
}

/// Does `op` to the sockets of `target` and answers them with their rooms after it
/// (sorted by id): this node's, and on a node of a cluster, unless `here_only`,
/// every other node's too. A join answers once it is effective on every node (as an
/// ack after `Socket::join` is), 2 s at most.
#[derive(Message)]
#[rtype(result = "Vec<FoundSocket>")]
pub(crate) struct Sockets {
    pub target: Target,
    pub op: SocketsOp,
    /// Asked by another node of the cluster: this node's sockets only.
    pub here_only: bool,
}

impl Handler<Sockets> for NamespaceActor {
    type Result = ResponseFuture<Vec<FoundSocket>>;

    fn handle(&mut self, msg: Sockets, _: &mut Context<Self>) -> Self::Result {
        let ids = self.targeted(&msg.target);
        #[cfg(feature = "cluster")]
        let mut waits: Vec<tokio::sync::oneshot::Receiver<()>> = Vec::new();
        match &msg.op {
            SocketsOp::Fetch => {}
            SocketsOp::Join(room) => {
                let room: Arc<str> = room.as_str().into();
                for id in &ids {
                    self.join_room(*id, &room);
                }
                #[cfg(feature = "cluster")]
                if let (Some(remote), false) = (&self.remote, ids.is_empty()) {
                    let (effective, wait) = tokio::sync::oneshot::channel();
                    remote.when_subscribed(&room, effective);
                    waits.push(wait);
                }
            }
            SocketsOp::Leave(room) => {
                let room: Arc<str> = room.as_str().into();
                for id in &ids {
                    self.leave_room(*id, &room);
                }
            }
            SocketsOp::Disconnect(reason) => {
                if let (Some(leaver), false) = (&self.leaver, ids.is_empty()) {
                    leaver.do_send(LeaveSockets {
                        ids: ids.clone(),
                        ns: self.name.clone(),
                        reason: reason.clone(),
                    });
                }
            }
        }
        // A disconnected socket leaves its rooms once the supervisor has it leave:
        // found with them.
        let found: Vec<FoundSocket> = ids
            .into_iter()
            .map(|id| FoundSocket {
                id,
                rooms: self.rooms_of(id),
                data: self.shared.get(&id).map(|data| data.to_string()),
            })
            .collect();
        #[cfg(feature = "cluster")]
        if let Some(remote) = &self.remote {
            let others = (!msg.here_only).then(|| remote.sockets(&msg.target, &msg.op));
            return Box::pin(async move {
                let mut found = found;
                if !waits.is_empty() {
                    let all = futures_util::future::join_all(waits);
                    let _ = tokio::time::timeout(crate::namespace::remote::JOIN_WAIT, all).await;
                }
                if let Some(others) = others {
                    found.extend(others.await);
                    found.sort_unstable_by_key(|s| s.id);
                }
                found
            });
        }
        // A single node: nothing else to ask (nor to wait for).
        let _ = msg.here_only;
        Box::pin(std::future::ready(found))
    }
}

impl NamespaceActor {
    /// The local sockets a target reaches, each once, sorted.
    fn targeted(&self, target: &Target) -> Vec<SessionId> {
        let mut ids: Vec<SessionId> = if target.rooms.is_empty() {
            (self.sockets.iter())
                .filter(|(id, socket)| !target.leaves_out(id, &socket.rooms))
                .map(|(id, _)| *id)
                .collect()
        } else {
            let members = target.rooms.iter().filter_map(|room| self.rooms.get(room));
            let mut seen: HashSet<SessionId> = HashSet::new();
            for id in members.flat_map(|room| room.members().iter()) {
                let Some(socket) = self.sockets.get(id) else {
                    continue;
                };
                if !target.leaves_out(id, &socket.rooms) {
                    seen.insert(*id);
                }
            }
            seen.into_iter().collect()
        };
        ids.sort_unstable();
        ids
    }
}

/// Sessions to disconnect from namespace `ns` with `reason` (the server's registry
/// tells each, as `Socket::disconnect` would).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct LeaveSockets {
    pub ids: Vec<SessionId>,
    pub ns: Arc<str>,
    pub reason: String,
}
