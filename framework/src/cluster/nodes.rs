//! This node as the layers under the cluster see it: [`ClusterNode`] implements
//! the sessions' [`Nodes`] (`session/nodes.rs`), which `server.rs` stores in the
//! server's `Shared`. So a session, a namespace's actor or a transport reaches the
//! other nodes without importing anything of the cluster.

use std::sync::Arc;
use std::time::Duration;

use actix::Recipient;
use bytes::Bytes;
use futures_util::future::LocalBoxFuture;

use super::control::{Reply, Request};
use super::{ClusterNode, NamespaceLink, NodeId};
use crate::namespace::{Remote, Socket};
use crate::protocol::ResumeToken;
use crate::room::Gauge;
use crate::session::nodes::ResumeRequest;
use crate::session::{FromTransport, MovedSeat, Nodes, ResumeError, Shared, TransportLink};
use crate::SessionId;

impl Nodes for ClusterNode {
    fn id(&self) -> NodeId {
        self.id
    }

    fn namespace(&self, ns: Arc<str>, gauge: Arc<Gauge>) -> Box<dyn Remote> {
        Box::new(NamespaceLink {
            ns,
            node: self.id.0,
            broadcasts: self.broadcasts.clone(),
            names: self.names.clone(),
            interest: self.interest.clone(),
            outbound: self.outbound.clone(),
            metrics: self.metrics.clone(),
            gauge,
            actor: NamespaceLink::next_actor(),
        })
    }

    fn holds(
        &self,
        node: NodeId,
        id: SessionId,
        token: ResumeToken,
    ) -> LocalBoxFuture<'_, Option<bool>> {
        Box::pin(async move {
            let request = Request::Holds { sid: id.0, token };
            match self.ask(node, request).await {
                Ok(Reply::Done(holds)) => Some(holds),
                _ => None,
            }
        })
    }

    fn window_merged(&self, broadcasts: u64) {
        self.metrics.window_broadcasts.inc_by(broadcasts);
    }

    fn window_missed(&self) {
        self.metrics.windows_missed.inc();
    }

    fn seat_moved_in(&self, socket: &Socket, seat: MovedSeat) {
        if let Some(hub) = self.relays.game.get() {
            hub.seat_moved_in(socket, seat);
        }
    }

    fn poll_elsewhere<'a>(
        &'a self,
        pid: &'a str,
        body: Option<Bytes>,
        hold: Duration,
        socketio: bool,
    ) -> LocalBoxFuture<'a, Option<Result<Bytes, (u16, String)>>> {
        Box::pin(self.poll_for_another_node(pid, body, hold, socketio))
    }

    fn resume_elsewhere<'a>(
        &'a self,
        shared: &'a Arc<Shared>,
        resume: ResumeRequest,
        link: TransportLink,
        local: String,
    ) -> LocalBoxFuture<'a, Result<Recipient<FromTransport>, ResumeError>> {
        Box::pin(self.resume_on_another_node(shared, resume, link, local))
    }
}
