//! The other nodes of a cluster as this node's sessions see them (feature
//! `cluster`), and the transports that reach the sessions through [`Shared`]: what
//! a moved session asks of them (whether its old node kept it, its game seat, the
//! window's figures), a namespace's link to them, and where a resume or a polling
//! request for a session of another node goes. The cluster's `ClusterNode`
//! implements [`Nodes`] (`cluster/nodes.rs`) and `server.rs` stores it in
//! [`Shared::cluster`]; this module knows nothing of Redis, and nothing under the
//! cluster imports it.
//!
//! Every call here is on a rare path (a move, a namespace started, a resume or a
//! polling request that found nothing here, a polling connection opened), never on
//! a delivery's.

use std::sync::Arc;
use std::time::Duration;

use actix::Recipient;
use bytes::Bytes;
use futures_util::future::LocalBoxFuture;

use super::{ClientLimit, FromTransport, MovedSeat, ResumeError, Shared, TransportLink};
use crate::namespace::{Remote, Socket};
use crate::protocol::ResumeToken;
use crate::room::Gauge;
use crate::SessionId;

// Public as `volley::cluster::NodeId`.
/// The identity of one running node: random at each start, so that a restarted node
/// is a new node to the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A resume of a session this node does not hold: its id, the client's token and
/// last sequence number, and its frame limit.
pub(crate) type ResumeRequest = (SessionId, ResumeToken, u64, ClientLimit);

/// What this node's sessions and transports ask of the other nodes of its cluster.
pub(crate) trait Nodes: Send + Sync + 'static {
    /// This node's id (a polling connection's id starts with it).
    fn id(&self) -> NodeId;

    /// The link of namespace `ns` to the other nodes (`gauge` bounds its broadcasts
    /// waiting), for its actor.
    fn namespace(&self, ns: Arc<str>, gauge: Arc<Gauge>) -> Box<dyn Remote>;

    /// Whether node `node` holds session `id` with `token` (`None`: no answer).
    fn holds(
        &self,
        node: NodeId,
        id: SessionId,
        token: ResumeToken,
    ) -> LocalBoxFuture<'_, Option<bool>>;

    /// A session moved here took `broadcasts` from its old node's window.
    fn window_merged(&self, broadcasts: u64);

    /// A session moved here never got its old node's window.
    fn window_missed(&self);

    /// A moved session's socket arrived here with its game seat (`moving.rs`).
    fn seat_moved_in(&self, socket: &Socket, seat: MovedSeat);

    /// A polling request for a connection that is not here (an Engine.IO one when
    /// `socketio`), answered by the node that `pid` names; `None` when it names no
    /// other node, or that node does not answer. A long-poll is held up to `hold`.
    fn poll_elsewhere<'a>(
        &'a self,
        pid: &'a str,
        body: Option<Bytes>,
        hold: Duration,
        socketio: bool,
    ) -> LocalBoxFuture<'a, Option<Result<Bytes, (u16, String)>>>;

    /// A resume that found no session here (`local`: why this node refused it):
    /// the session's recipient once another node holds it, or why not
    /// ([`ResumeError::Unavailable`] when a node that might hold it did not answer).
    fn resume_elsewhere<'a>(
        &'a self,
        shared: &'a Arc<Shared>,
        resume: ResumeRequest,
        link: TransportLink,
        local: String,
    ) -> LocalBoxFuture<'a, Result<Recipient<FromTransport>, ResumeError>>;
}
