//! A moving session's window of broadcasts (feature `cluster`): how a session that
//! moves to another node gets every broadcast of its rooms exactly once, including
//! those handled while it was on its way.
//!
//! A broadcast in a cluster carries its [`Mark`] (origin node, number). From its
//! freeze, the session on the old node keeps the marked reliable broadcasts that
//! reach it in a [`Window`] instead of dropping them; from its start, the session
//! on the new node holds the ones that reach it there in a window of its own
//! instead of delivering them. The new node answers the move only once the session
//! is in its namespaces and rooms and the node is subscribed to their channels, so
//! every broadcast published after that answer reaches it. The old node hears the
//! answer after every broadcast published before it (one Redis connection delivers
//! in the order Redis took the messages), flushes its own paths to the session
//! ([`Flushed`]) and sends what its window took ([`TakeWindow`], `MoveWindow`). The
//! new node flushes its paths too, then [`MergeWindow`]: the old node's broadcasts
//! first, then its own that the old node's did not have. Per namespace of each
//! origin, everything of the old node's window was published before everything it
//! lacks, so each sender's order holds, and the marks keep each broadcast once.
//!
//! Both windows are bounded like the outbox; one that overflows ends the session
//! as an outbox overflow would.

use std::collections::HashSet;
use std::time::Duration;

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::{NodeId, Session};
use crate::namespace::FlushFor;
use crate::protocol::ResumeToken;
use crate::protocol::WireFrame;
use crate::room::local::Flushed;
use crate::room::{Deliver, Mark};
use crate::DisconnectReason;

/// How long a flush of a session's paths may take at most (a few actor hops; the
/// bound is for an actor stopping in between).
const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// How long a session moved here waits for its old node's window after answering
/// the move (the old node sends it a flush after the answer).
pub(super) const WINDOW_WAIT: Duration = Duration::from_secs(5);

/// Marked reliable broadcasts kept for a move, at most the outbox's limits.
pub(super) struct Window {
    /// The move this window belongs to (`SessionState::move_id`).
    move_id: u64,
    /// On the new node: the node the session came from, and its token (to ask that
    /// node whether it kept the session after all, see [`Session::window_late`]).
    pub origin: Option<(u64, ResumeToken)>,
    entries: Vec<(Mark, WireFrame)>,
    bytes: usize,
    max_frames: usize,
    max_bytes: usize,
    /// Some did not fit: the session cannot go on exactly-once.
    overflowed: bool,
}

impl Window {
    pub fn new(move_id: u64, max_frames: usize, max_bytes: usize) -> Box<Self> {
        Box::new(Window {
            move_id,
            origin: None,
            entries: Vec::new(),
            bytes: 0,
            max_frames,
            max_bytes,
            overflowed: false,
        })
    }

    /// Keeps a marked reliable broadcast; `false` for anything else (delivered, or
    /// dropped, as ever).
    pub fn take(&mut self, deliver: &Deliver) -> bool {
        let (true, Some(mark)) = (deliver.reliable, deliver.mark) else {
            return false;
        };
        let len = deliver.frame.len();
        if self.entries.len() >= self.max_frames || self.bytes + len > self.max_bytes {
            self.overflowed = true;
        } else {
            self.bytes += len;
            self.entries.push((mark, deliver.frame.clone()));
        }
        true
    }

    /// What it kept, in order; `Err` when some did not fit.
    fn into_entries(self) -> Result<Vec<(Mark, WireFrame)>, ()> {
        if self.overflowed {
            return Err(());
        }
        Ok(self.entries)
    }

    /// What crosses to the new node.
    fn moved(self) -> MovedWindow {
        let broadcasts = (self.entries.into_iter())
            .map(|(mark, frame)| MovedBroadcast {
                origin: mark.origin,
                n: mark.n,
                frame: ByteBuf::from(frame.payload().to_vec()),
            })
            .collect();
        MovedWindow {
            broadcasts,
            complete: !self.overflowed,
        }
    }
}

/// The old node's window, as it crosses to the new one (JSON, with the move).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MovedWindow {
    pub broadcasts: Vec<MovedBroadcast>,
    /// `false`: some did not fit in the window.
    pub complete: bool,
}

/// One broadcast of a window: its mark and its encoded frame.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MovedBroadcast {
    pub origin: u64,
    pub n: u64,
    pub frame: ByteBuf,
}

/// Old node, once the new one answered the move: flushes the session's paths and
/// answers what its window took (`None`: no window, the session is not moving).
#[derive(Message)]
#[rtype(result = "Option<MovedWindow>")]
pub(crate) struct TakeWindow;

/// New node: the old node's window for the move `move_id`; answers whether the
/// session took it (it is here, that move brought it, and it was still waiting).
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct MergeWindow {
    pub move_id: u64,
    pub window: MovedWindow,
}

impl Handler<TakeWindow> for Session {
    type Result = ResponseActFuture<Self, Option<MovedWindow>>;

    fn handle(&mut self, _: TakeWindow, _: &mut Context<Self>) -> Self::Result {
        Box::pin(self.flushed().into_actor(self).map(|(), act, _| {
            let window = act.sink.outlet.borrow_mut().window.take()?;
            Some(window.moved())
        }))
    }
}

impl Handler<MergeWindow> for Session {
    type Result = ResponseActFuture<Self, bool>;

    fn handle(&mut self, msg: MergeWindow, _: &mut Context<Self>) -> Self::Result {
        let waiting = self.sink.outlet.borrow().window.as_ref().map(|w| w.move_id);
        if waiting != Some(msg.move_id) {
            return Box::pin(fut::ready(false));
        }
        // What this node already dispatched towards the session lands in its window
        // first, so that nothing of the old node's arrives after the merge.
        Box::pin(self.flushed().into_actor(self).map(move |(), act, ctx| {
            act.merge(msg.window, ctx);
            true
        }))
    }
}

impl Session {
    /// Sends a flush down every path of this node's broadcasts to the session, and
    /// ends when it has come through (at most [`FLUSH_WAIT`]).
    fn flushed(&self) -> impl std::future::Future<Output = ()> + 'static {
        let (flushed, done) = Flushed::start();
        let id = self.id();
        for joined in self.sink.sockets.borrow().joined.values() {
            joined.namespace.addr.do_send(FlushFor {
                id,
                flushed: flushed.clone(),
            });
        }
        drop(flushed);
        async move {
            let _ = tokio::time::timeout(FLUSH_WAIT, done).await;
        }
    }

    /// Delivers what the window kept here and ends it: a move that did not happen
    /// (the session thaws), or whose old node's window never came.
    pub(super) fn release_window(&mut self, ctx: &mut Context<Self>) {
        let Some(window) = self.sink.outlet.borrow_mut().window.take() else {
            return;
        };
        self.window_closed();
        match window.into_entries() {
            Ok(entries) => {
                for (_, frame) in entries {
                    self.deliver(frame, true, ctx);
                }
            }
            Err(()) => self.window_overflow(ctx),
        }
    }

    /// The move is settled: a resume of the session is taken here again (see
    /// `Adopt`, which registers a moved session as moving).
    fn window_closed(&self) {
        let id = self.id();
        let settled = super::SetMoving { id, moving: false };
        self.shared.supervisor.do_send(settled);
    }

    fn window_overflow(&mut self, ctx: &mut Context<Self>) {
        tracing::warn!(
            sid = self.id().0,
            "moving session: more broadcasts during the move than its outbox holds"
        );
        self.end(DisconnectReason::OutboxOverflow, true, ctx);
    }

    /// The old node's window did not come within [`WINDOW_WAIT`]. Either it was
    /// lost (Redis cut in that moment), or the old node never heard that the move
    /// was taken: the move's answer and its cancel both lost, the session thawed
    /// there and carries on. So the old node is asked whether it holds the session:
    /// if it does, this copy goes (unless its client attached here meanwhile: then
    /// this one is the client's); if not, or without an answer, the session carries
    /// on here without the window.
    pub(super) fn window_late(&mut self, ctx: &mut Context<Self>) {
        let origin = self
            .sink
            .outlet
            .borrow()
            .window
            .as_ref()
            .and_then(|w| w.origin);
        let (Some((node, token)), Some(cluster)) = (origin, self.shared.cluster.clone()) else {
            return self.window_missed(ctx);
        };
        let id = self.id();
        let asked = async move { cluster.holds(NodeId(node), id, token).await };
        ctx.spawn(asked.into_actor(self).map(|kept, act, ctx| {
            if kept == Some(true)
                && act.transport().is_none()
                && act.sink.outlet.borrow().window.is_some()
            {
                tracing::warn!(
                    sid = act.id().0,
                    "moved session: its old node kept it (the move's answer and cancel \
                     were lost); this copy goes"
                );
                act.sink.outlet.borrow_mut().window = None;
                return act.leave(ctx);
            }
            act.window_missed(ctx);
        }));
    }

    /// The old node's window never came (Redis cut in that moment): the session
    /// carries on with what reached this node, said in the log and the metrics.
    fn window_missed(&mut self, ctx: &mut Context<Self>) {
        if self.sink.outlet.borrow().window.is_none() {
            return;
        }
        tracing::warn!(
            sid = self.id().0,
            "moved session: its old node's window of broadcasts never came; \
             broadcasts of the move may be missing"
        );
        if let Some(cluster) = &self.shared.cluster {
            cluster.window_missed();
        }
        self.release_window(ctx);
    }

    /// Delivers the old node's window, then what this node held that the window
    /// lacks, and ends the holding.
    fn merge(&mut self, old: MovedWindow, ctx: &mut Context<Self>) {
        let Some(held) = self.sink.outlet.borrow_mut().window.take() else {
            return;
        };
        self.window_closed();
        let (Ok(held), true) = (held.into_entries(), old.complete) else {
            return self.window_overflow(ctx);
        };
        let taken: HashSet<Mark> = (old.broadcasts.iter())
            .map(|b| Mark {
                origin: b.origin,
                n: b.n,
            })
            .collect();
        let here: HashSet<Mark> = held.iter().map(|(mark, _)| *mark).collect();
        if let Some(cluster) = &self.shared.cluster {
            cluster.window_merged(taken.difference(&here).count() as u64);
        }
        for broadcast in old.broadcasts {
            self.deliver(WireFrame::new(&broadcast.frame), true, ctx);
        }
        for (mark, frame) in held {
            if !taken.contains(&mark) {
                self.deliver(frame, true, ctx);
            }
        }
    }
}
