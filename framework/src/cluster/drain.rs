//! Draining a node: every session moves to another live node before this one stops,
//! so a rolling restart loses no session.
//!
//! [`ClusterNode::drain`] takes each session of the node in turn (a few at once):
//! freezes it (`session/moving.rs`), sends its state to the next live node in a
//! `MoveIn` question on that node's control channel, and once that node answers that
//! the session is there, drops the client's connection. The client resumes as after
//! any cut, on whichever node its reconnection reaches: the new owner resumes it
//! locally, any other node relays it there (the resume asks every node). A node
//! that refuses (it is draining too, or the id is in use there) leaves the session
//! here, thawed, and the next node is tried. A node that does not answer in time
//! may have taken it all the same: it gets a `MoveCancel` for that move (its copy
//! goes, or the `MoveIn` is refused if it arrives later), so that exactly one node
//! holds the session; when the cancel goes unanswered too, the session stays here.
//!
//! A session's game seat moves with it (`game/moving.rs`): its room holds the seat
//! from just before the freeze until the session lands on its new node.
//!
//! A draining node refuses sessions moved to it, and keeps answering resumes and
//! relays until it stops; sessions opened on it while it drains are moved on the
//! next pass. Its game rooms take no new players and run on for theirs (see
//! [`ClusterNode::wait_rooms_empty`]).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Instant, UNIX_EPOCH};

use actix::prelude::*;
use futures_util::stream::{self, StreamExt};
use prometheus_client::metrics::gauge::Gauge;

use super::control::{Reply, Request};
use super::{ClusterError, ClusterNode, NodeId};
use crate::protocol::ResumeToken;
use crate::session::{
    CancelMove, Freeze, Movable, MovedOut, MovedSeat, MovedWindow, Session, SessionState,
    SetMoving, Shared, TakeWindow, Thaw, Unmove, Unregister,
};
use crate::SessionId;

/// Sessions moved at once.
const AT_ONCE: usize = 16;
/// Passes over the node's sessions (those opened during a pass move on the next).
const PASSES: usize = 3;

/// What a drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Sessions now on another node.
    pub moved: usize,
    /// Sessions still here: no other node took them (they end with this node).
    pub stayed: usize,
    /// How long it took, in milliseconds.
    pub millis: u64,
}

impl ClusterNode {
    /// Moves every session of this node to the other live nodes (round-robin) and
    /// tells their clients to reconnect; they resume on any node, exactly once. Call
    /// it before stopping the node (the server does on `SIGTERM`, see
    /// [`HttpServer::run`](crate::HttpServer::run)). From then on this node refuses
    /// sessions moved to it. [`ClusterError::NoOtherNode`] when there is nowhere to
    /// move them.
    pub async fn drain(&self) -> Result<DrainReport, ClusterError> {
        let started = Instant::now();
        self.draining.store(true, Ordering::Relaxed);
        let shared = self
            .local
            .get()
            .and_then(|attached| attached.shared.upgrade())
            .ok_or(ClusterError::Stopped)?;
        let others: Vec<NodeId> = (self.nodes().await?.into_iter())
            .filter(|node| *node != self.id)
            .collect();
        if others.is_empty() {
            return Err(ClusterError::NoOtherNode);
        }
        if let Some(hub) = self.relays.game.get() {
            // No new rooms here from now on, on any node's join-or-create.
            hub.set_draining().await;
        }
        let mut report = DrainReport::default();
        for _ in 0..PASSES {
            let sessions = shared
                .supervisor
                .send(Movable)
                .await
                .map_err(|_| ClusterError::Stopped)?;
            if sessions.is_empty() {
                break;
            }
            let shared = &shared;
            let moves = sessions.into_iter().enumerate().map(|(i, session)| {
                // Each session starts with its own node of the list, so the load
                // spreads; then tries the others.
                let order: Vec<NodeId> = (0..others.len())
                    .map(|k| others[(i + k) % others.len()])
                    .collect();
                self.move_one(shared, session, order)
            });
            let results: Vec<bool> = stream::iter(moves)
                .buffer_unordered(AT_ONCE)
                .collect()
                .await;
            report.moved += results.iter().filter(|moved| **moved).count();
        }
        report.stayed = (shared.supervisor.send(Movable).await)
            .map_err(|_| ClusterError::Stopped)?
            .len();
        report.millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(
            node = %self.id, moved = report.moved, stayed = report.stayed,
            millis = report.millis, "cluster: node drained"
        );
        Ok(report)
    }

    /// Waits until no player sits in this node's game rooms, at most `within`, and
    /// answers how many still do. After [`ClusterNode::drain`] the rooms of this
    /// node run on for their players, whose sessions are on other nodes now (they
    /// play as guests): call it before stopping the node so that their games can
    /// end (the server does on `SIGTERM`, for [`RedisCluster::drain_deadline`]).
    /// Without shared game rooms it answers 0 at once.
    ///
    /// [`RedisCluster::drain_deadline`]: super::RedisCluster::drain_deadline
    pub async fn wait_rooms_empty(&self, within: std::time::Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let players = match self.relays.game.get() {
                Some(hub) => hub.players_here().await,
                None => 0,
            };
            if players == 0 || Instant::now() >= deadline {
                return players;
            }
            // A game lasts minutes: a look every 100 ms is plenty.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Moves one session to the first of `order` that takes it.
    async fn move_one(
        &self,
        shared: &Shared,
        (id, addr, token, opened_at): (SessionId, Addr<Session>, [u8; 16], std::time::SystemTime),
        order: Vec<NodeId>,
    ) -> bool {
        // A game seat moves with it: its room holds it from now on.
        let hub = self.relays.game.get();
        let seat = match hub {
            Some(hub) => hub.hold_seat(id).await,
            None => None,
        };
        let release = |seat: &Option<(String, MovedSeat)>| {
            if let (Some(hub), Some((_, seat))) = (hub, seat) {
                hub.release_seat(id, *seat);
            }
        };
        // `None`: it ended, or waits for a namespace's middleware (next pass).
        let Ok(Some(mut state)) = addr.send(Freeze).await else {
            release(&seat);
            return false;
        };
        if let (Some(hub), Some((ns, moved))) = (hub, &seat) {
            // The inputs the session took before the freeze reach the room before
            // the new node's (it sends them after the move).
            hub.flush_inputs();
            let socket = state.namespaces.iter_mut().find(|n| n.ns == *ns);
            if let Some(socket) = socket {
                socket.seat = Some(*moved);
            }
        }
        // Counted while frozen, whichever way the move ends.
        let _moving = Moving::start(&self.metrics.moving);
        // A resume meanwhile (here, or relayed) waits for the move's outcome.
        let _ = shared.supervisor.send(SetMoving { id, moving: true }).await;
        state.token = token;
        state.opened_ms = opened_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
        for node in order {
            // A number per attempt: a cancel of this one never refuses the next.
            state.move_id = rand::random::<u64>().max(1);
            let move_id = state.move_id;
            let request = Request::MoveIn {
                state: Box::new(state.clone()),
            };
            let taken = match self.ask(node, request).await {
                Ok(Reply::Done(taken)) => taken,
                Ok(_) => false,
                // The answer was lost (or late): the session may be there. Cancel
                // it there, so that exactly one node holds it.
                Err(e) => match self.cancel_move(node, id, token, move_id).await {
                    Some(there) => there,
                    None => {
                        tracing::warn!(
                            sid = id.0, to = %node, error = %e,
                            "cluster: a move and its cancel went unanswered; the session stays \
                             here, a copy there expires unclaimed"
                        );
                        break;
                    }
                },
            };
            if taken {
                tracing::debug!(sid = id.0, to = %node, "cluster: session moved");
                // Every broadcast published before the answer has reached this
                // node: what the session kept of them goes to the new node. Taken
                // while the registry still says "moving" (a resume meanwhile waits
                // for the move rather than finding the session gone).
                let window = addr.send(TakeWindow).await.ok().flatten();
                // Out of the registry before the next pass lists it.
                let _ = shared.supervisor.send(Unregister { id }).await;
                addr.do_send(MovedOut);
                if let Some(hub) = hub {
                    hub.moved_out(id, seat.map(|(_, seat)| seat));
                }
                if let Some(window) = window {
                    self.send_window(node, (id, token, move_id), window).await;
                }
                return true;
            }
        }
        tracing::warn!(sid = id.0, "cluster: no node took the session; it stays");
        addr.do_send(Thaw);
        release(&seat);
        shared.supervisor.do_send(SetMoving { id, moving: false });
        false
    }

    /// Sends the broadcasts a moved session kept during its move to the node that
    /// took it (see `session/window.rs`); that node waits for them a while, then
    /// carries on without (said in its log and metrics).
    async fn send_window(
        &self,
        node: NodeId,
        (id, token, move_id): (SessionId, ResumeToken, u64),
        window: MovedWindow,
    ) {
        let request = Request::MoveWindow {
            sid: id.0,
            token,
            move_id,
            window,
        };
        match self.ask(node, request).await {
            Ok(Reply::Done(true)) => {}
            answer => tracing::warn!(
                sid = id.0, to = %node, ?answer,
                "cluster: a moved session's window of broadcasts was not taken"
            ),
        }
    }

    /// Cancels a move to `node` whose answer was lost: `Some(false)` when the session
    /// is not there (it never arrived, or went), `Some(true)` when it stays there (its
    /// client attached to it there already), `None` when the cancel went unanswered
    /// too.
    async fn cancel_move(
        &self,
        node: NodeId,
        id: SessionId,
        token: ResumeToken,
        move_id: u64,
    ) -> Option<bool> {
        let cancel = Request::MoveCancel {
            sid: id.0,
            token,
            move_id,
        };
        match self.ask(node, cancel).await {
            Ok(Reply::Done(gone)) => Some(!gone),
            _ => None,
        }
    }
}

/// Answers a `Pull`: moves session `id`, if it is here with `token`, to node `to`,
/// where its client is resuming; whether it is there now.
pub(crate) async fn pull(
    node: &Weak<ClusterNode>,
    shared: &Shared,
    to: NodeId,
    id: SessionId,
    token: ResumeToken,
) -> bool {
    let Some(cluster) = node.upgrade() else {
        return false;
    };
    if cluster.draining.load(Ordering::Relaxed) {
        // The drain moves it (one move at a time); the client is relayed meanwhile.
        return false;
    }
    let Ok(sessions) = shared.supervisor.send(Movable).await else {
        return false;
    };
    let found = sessions.into_iter().find(|(sid, ..)| *sid == id);
    match found {
        // A session already moving (a drain) is frozen: `move_one` leaves it.
        Some(session) if session.2 == token => cluster.move_one(shared, session, vec![to]).await,
        _ => false,
    }
}

/// Answers a `MoveIn` from node `from`: starts the session here, unless this node
/// drains too.
pub(crate) async fn move_in(
    shared: &Arc<Shared>,
    draining: bool,
    state: SessionState,
    from: NodeId,
) -> bool {
    if draining {
        return false;
    }
    let (settled, answer) = tokio::sync::oneshot::channel();
    let shared_for_session = shared.clone();
    // On a room thread: the moved session has no connection of its own yet (its
    // client's next connection, on any thread, attaches to it).
    let thread = (shared.place_room)();
    Session::start_in_arbiter(&thread, move |_| {
        Session::arriving(shared_for_session, state, from.0, settled)
    });
    answer.await.unwrap_or(false)
}

/// Answers a `MoveCancel`: whether the session that move would have brought is not
/// here now.
pub(crate) async fn cancel_move(shared: &Shared, cancel: CancelMove) -> bool {
    match shared.supervisor.send(cancel).await {
        Ok(Some(session)) => session.send(Unmove).await.unwrap_or(true),
        // Not here (remembered, so that a late `MoveIn` is refused), or no registry.
        Ok(None) | Err(_) => true,
    }
}

/// Waits for `SIGTERM` (or Ctrl-C), drains `node` (if its server still runs:
/// only a weak reference is held, so a server dropped meanwhile stops as ever),
/// then stops the server gracefully.
pub(crate) async fn drain_on_signal(node: Weak<ClusterNode>, server: actix_web::dev::ServerHandle) {
    stop_signal().await;
    if let Some(cluster) = node.upgrade() {
        tracing::info!(node = %cluster.id, "cluster: stop signal; draining");
        if let Err(e) = cluster.drain().await {
            tracing::warn!(node = %cluster.id, error = %e, "cluster: drain failed; stopping anyway");
        }
        let players = cluster.wait_rooms_empty(cluster.drain_deadline).await;
        if players > 0 {
            tracing::warn!(
                node = %cluster.id, players,
                "cluster: drain deadline; stopping with players in this node's game rooms"
            );
        }
    }
    server.stop(true).await;
}

/// The first of `SIGTERM` and Ctrl-C (`SIGINT`).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// One session frozen for a move, in the `sessions_moving` gauge until dropped.
struct Moving<'a>(&'a Gauge);

impl<'a> Moving<'a> {
    fn start(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Moving(gauge)
    }
}

impl Drop for Moving<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
