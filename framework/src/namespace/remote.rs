//! The other nodes of a cluster as a namespace actor sees them (feature `cluster`):
//! what it tells them (its rooms' and its own interest, the broadcasts emitted here)
//! and the wait of an ack for its socket's joins to be effective everywhere. The
//! cluster's link implements [`Remote`]; this module knows nothing of Redis.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use futures_util::future::LocalBoxFuture;

use super::{FoundSocket, NamespaceActor, Socket, SocketsOp, Target};
use crate::room::local::{Flushed, PassedBy};
use crate::room::{Deliver, Mailbox, Mark};
use crate::SessionId;

/// What a namespace actor tells the other nodes of its cluster.
pub(crate) trait Remote: Send + Unpin + 'static {
    /// The actor started: broadcasts from other nodes go to `addr`.
    fn started(&self, addr: Addr<NamespaceActor>);
    /// The actor stopped (it has let go of its rooms and sockets' interest first).
    fn stopped(&self);
    /// A room got its first local member (`true`) or lost its last (`false`).
    fn room(&self, room: &str, has_members: bool);
    /// Tells `done` once the other nodes send this node `room`'s broadcasts.
    fn when_subscribed(&self, room: &str, done: oneshot::Sender<()>);
    /// The namespace got its first local socket (`true`) or lost its last (`false`).
    fn namespace(&self, has_sockets: bool);
    /// Tells `done` once the other nodes send this node the namespace's broadcasts.
    fn when_namespace_subscribed(&self, done: oneshot::Sender<()>);
    /// A broadcast emitted on this node, for the other nodes' members of `target`;
    /// answers its mark, under which it fans out here too.
    fn publish(&self, target: &Target, deliver: &Deliver) -> Mark;
    /// An ack went after [`JOIN_WAIT`] without its joins confirmed (counted, logged).
    fn join_unconfirmed(&self);
    /// Does `op` to the other nodes' sockets of `target` in this namespace and
    /// answers them with their rooms (a node that does not answer in time is left
    /// out).
    fn sockets(&self, target: &Target, op: &SocketsOp)
        -> LocalBoxFuture<'static, Vec<FoundSocket>>;
    /// The other nodes' rooms of this namespace with their local member counts (a
    /// node that does not answer in time is left out).
    fn rooms(&self) -> LocalBoxFuture<'static, Vec<(String, usize)>>;
}

/// Sends a flush down the path this namespace's broadcasts take to session `id`
/// (this actor's fan-outs to its thread), see [`Flushed`]: for a session moving
/// between nodes (`session/window.rs`).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct FlushFor {
    pub id: SessionId,
    pub flushed: Arc<Flushed>,
}

impl Handler<FlushFor> for NamespaceActor {
    type Result = ();

    fn handle(&mut self, msg: FlushFor, _: &mut Context<Self>) {
        // Every broadcast of this namespace reaches the session's thread from here.
        if let Some(thread) = self.socket_thread(msg.id) {
            thread.post(PassedBy(msg.flushed));
        }
    }
}

/// How long an ack waits for its joins to take effect on the other nodes at most:
/// past it the ack goes (counted, logged) so that a slow Redis never stalls a client.
pub(crate) const JOIN_WAIT: Duration = Duration::from_secs(2);

/// An ack that waits for its socket's joins to be effective cluster-wide (see
/// `Socket::join`), held by the namespace actor.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct AckAfterJoins {
    joining: Vec<oneshot::Receiver<()>>,
    mailbox: Mailbox,
    deliver: Deliver,
}

impl AckAfterJoins {
    /// The wait for `deliver` (an ack on `socket`), or `deliver` back when no join of
    /// the socket is pending.
    pub fn new(socket: &Socket, deliver: Deliver) -> Result<Self, Deliver> {
        let joining = socket.take_joining();
        if joining.is_empty() {
            return Err(deliver);
        }
        Ok(AckAfterJoins {
            joining,
            mailbox: socket.mailbox(),
            deliver,
        })
    }
}

impl Handler<AckAfterJoins> for NamespaceActor {
    type Result = ();

    fn handle(&mut self, msg: AckAfterJoins, ctx: &mut Context<Self>) {
        if self.remote().is_none() {
            msg.mailbox.post(msg.deliver);
            return;
        }
        let all = futures_util::future::join_all(msg.joining);
        let wait = tokio::time::timeout(JOIN_WAIT, all).into_actor(self);
        ctx.spawn(wait.map(move |waited, act, _| {
            if waited.is_err() {
                if let Some(remote) = act.remote() {
                    remote.join_unconfirmed();
                }
            }
            msg.mailbox.post(msg.deliver);
        }));
    }
}
