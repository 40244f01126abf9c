//! Moving a session to another node (feature `cluster`): what it takes with it, how
//! it leaves this node and how it arrives on the other.
//!
//! A draining node moves each session in three steps (driven by `cluster/drain.rs`):
//!
//! 1. [`Freeze`]: the session notes its rooms, then, in one handler, stops: it
//!    takes no more client frames (the client resends them after its resume: they
//!    are after the `recv_seq` the state carries) and delivers nothing more, and
//!    answers its [`SessionState`]: the sequence numbers both ways, the outbox, the
//!    client's frame limit, the next ack id, and each namespace with the `auth`
//!    payload it joined with and its rooms.
//! 2. The other node starts a [`Session`] from that state ([`Session::arriving`]):
//!    registered under the same id and token, detached (resumable for the grace
//!    window), its namespaces joined again through their middleware (which runs
//!    again on the new node, with the same `auth`), and its rooms joined. No
//!    `Connected` frame and no connect hook: for the client and the application it
//!    is the same socket.
//! 3. [`MovedOut`]: this node drops the client's connection as a network failure
//!    would (the client resumes, on any node: the one that took the session has it)
//!    and lets the session go without disconnect hooks. If the other node refused,
//!    [`Thaw`] lets the session carry on here instead.
//!
//! What a move does not carry: emits waiting for the client's ack on this node fail
//! with `AckError::Disconnected`, and a broadcast handled by this node after the
//! freeze, or by the new node before the session arrived, does not reach it (the
//! window is the time of one move, a Redis round trip or two).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tokio::sync::oneshot;

use super::outlet::{Link, Outlet};
use super::supervisor::{Adopt, Unregister};
use super::window::WINDOW_WAIT;
use super::{ClientLimit, Outbox, Session, Shared, ToTransport};
use crate::namespace::{self, Authorization, NamespaceHandle, RoomsOf, SharedOf, Socket};
use crate::protocol::ResumeToken;
use crate::{AckError, DisconnectReason, SessionId};

use super::joined::Joined;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Everything a session takes to another node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SessionState {
    pub id: u64,
    pub token: ResumeToken,
    pub opened_ms: u64,
    /// Reliable frames processed from the client.
    pub recv_seq: u64,
    /// The client's last acknowledged frame; `frames` follow it, numbered from
    /// `acked + 1`.
    pub acked: u64,
    pub frames: Vec<ByteBuf>,
    pub max_frame_size: Option<u32>,
    /// The next id for an emit that waits for the client's ack (ids stay unique
    /// across the move, so a late answer to an old emit is never taken for a new).
    pub next_ack: u64,
    pub namespaces: Vec<MovedNamespace>,
    /// This move's number, drawn by the moving node for each `MoveIn` it sends, so
    /// that a `MoveCancel` names the move it cancels (0 in older nodes' states).
    #[serde(default)]
    pub move_id: u64,
}

/// A session on its way in, until it has landed: its state until its actor
/// starts, then the namespaces it is joining again.
pub(crate) struct Arrival {
    pub(super) state: Option<SessionState>,
    /// Answers the move (see [`Session::arriving`]).
    settled: Option<oneshot::Sender<bool>>,
    /// Namespaces whose middleware has not answered yet, plus one for the rejoins
    /// still being started (see [`Session::settle`]).
    joining: usize,
    /// Channels this node subscribes to for the session's namespaces and rooms.
    subscribing: Vec<oneshot::Receiver<()>>,
}

impl Arrival {
    /// One more thing landed (a namespace rejoined or refused, or the rejoins all
    /// begun), with the subscriptions it waits for. When it is the last one: every
    /// subscription to wait for before the move is answered; `None` before, and after
    /// (the move is answered once).
    fn landed(
        &mut self,
        subscribing: Vec<oneshot::Receiver<()>>,
    ) -> Option<Vec<oneshot::Receiver<()>>> {
        self.subscribing.extend(subscribing);
        if self.joining == 0 {
            return None;
        }
        self.joining -= 1;
        (self.joining == 0).then(|| std::mem::take(&mut self.subscribing))
    }
}

/// How long a landing session waits for its channels' subscriptions at most before
/// the move is answered: below the moving node's wait for the answer (2 s).
const SUBSCRIBE_WAIT: Duration = Duration::from_millis(1500);

/// What a namespace holds of a socket that moves: its rooms and its shared data.
type Held = (Vec<String>, Option<String>);

/// A namespace the session had joined.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MovedNamespace {
    pub ns: String,
    pub auth: ByteBuf,
    pub rooms: Vec<String>,
    /// The game seat of the socket, held by its room while the session moves.
    #[serde(default)]
    pub seat: Option<MovedSeat>,
    /// What the socket shared of itself (`Socket::share_data`), JSON.
    #[serde(default)]
    pub data: Option<String>,
}

/// A game seat that moves with its session (`cluster/game/moving.rs`): the room,
/// and the node it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MovedSeat {
    pub room: u64,
    pub owner: u64,
}

/// Stops the session for a move and answers its state (`None`: it ended, or is not
/// attached to a namespace registry yet). The registry's part (token, opening time)
/// is filled in by the caller.
#[derive(Message)]
#[rtype(result = "Option<SessionState>")]
pub(crate) struct Freeze;

/// The other node took the session: drop the client's connection and go.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct MovedOut;

/// The node that moved the session here cancels the move (it never heard that it
/// arrived): the session goes, without hooks, unless its client attached to it here
/// already. Answers whether it went.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct Unmove;

/// The other node did not take the session: carry on here.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Thaw;

impl Handler<Freeze> for Session {
    type Result = ResponseActFuture<Self, Option<SessionState>>;

    fn handle(&mut self, _: Freeze, _: &mut Context<Self>) -> Self::Result {
        let id = self.id();
        // The rooms first, while the session carries on: a join in between is not
        // taken along (rare: the drain asks all sessions at once).
        let asks: Vec<_> = self
            .sink
            .sockets
            .borrow()
            .joined
            .values()
            .map(|j| {
                let ns = j.namespace.name.to_string();
                let rooms = j.namespace.addr.send(RoomsOf { id });
                let data = j.namespace.addr.send(SharedOf { id });
                async move {
                    let rooms = rooms.await.unwrap_or_default();
                    let data = data.await.ok().flatten().map(|d| d.to_string());
                    (ns, (rooms, data))
                }
            })
            .collect();
        Box::pin(
            futures_util::future::join_all(asks)
                .into_actor(self)
                .map(|rooms, act, _| act.freeze(rooms)),
        )
    }
}

impl Session {
    /// Stops taking and delivering frames, and answers the state.
    fn freeze(&mut self, held: Vec<(String, Held)>) -> Option<SessionState> {
        // Not while it is still landing from another move (its window open): the
        // broadcasts held for it would be lost.
        let landing = self.sink.outlet.borrow().window.is_some();
        let authorizing = self.sink.sockets.borrow().authorizing.len() > 0;
        if self.ended() || self.ids.is_none() || authorizing || landing {
            return None;
        }
        self.set_ended(true);
        let mut out = self.sink.outlet.borrow_mut();
        out.closed = true;
        // From now on its rooms' broadcasts wait for the new node (`window.rs`).
        let window = out.new_window(0);
        out.window = Some(window);
        let (acked, frames) = out.outbox.parts();
        let frames = frames.map(|f| ByteBuf::from(f.to_vec())).collect();
        let namespaces = self
            .sink
            .sockets
            .borrow()
            .joined
            .values()
            .map(|j| {
                let (rooms, data) = (held.iter())
                    .find(|(ns, _)| *ns == *j.namespace.name)
                    .map(|(_, held)| held.clone())
                    .unwrap_or_default();
                MovedNamespace {
                    ns: j.namespace.name.to_string(),
                    auth: ByteBuf::from(j.auth.clone()),
                    rooms,
                    seat: None,
                    data,
                }
            })
            .collect();
        let next_ack = self
            .ids
            .as_ref()
            .map_or(1, |l| l.next_ack.load(Ordering::Relaxed));
        Some(SessionState {
            id: self.id().0,
            token: ResumeToken::default(),
            opened_ms: 0,
            recv_seq: out.recv_seq,
            acked,
            frames,
            max_frame_size: out.limit.announced_limit(),
            next_ack,
            namespaces,
            move_id: 0,
        })
    }
}

impl Handler<Thaw> for Session {
    type Result = ();

    fn handle(&mut self, _: Thaw, ctx: &mut Context<Self>) {
        self.set_ended(false);
        self.sink.outlet.borrow_mut().closed = false;
        // The broadcasts kept since the freeze are this node's to deliver after all.
        self.release_window(ctx);
    }
}

impl Handler<MovedOut> for Session {
    type Result = ();

    fn handle(&mut self, _: MovedOut, ctx: &mut Context<Self>) {
        tracing::debug!(sid = self.id().0, "session moved to another node");
        self.leave(ctx);
    }
}

impl Handler<Unmove> for Session {
    type Result = bool;

    fn handle(&mut self, _: Unmove, ctx: &mut Context<Self>) -> bool {
        if self.transport().is_some() {
            // Its client is here already: this copy is the session now.
            return false;
        }
        tracing::debug!(sid = self.id().0, "moved session cancelled by its old node");
        self.leave(ctx);
        true
    }
}

impl Session {
    /// Leaves this node without disconnect hooks: out of the registry and its
    /// namespaces, the client's connection (if any) dropped as a network failure.
    pub(super) fn leave(&mut self, ctx: &mut Context<Self>) {
        let id = self.id();
        self.set_ended(true);
        self.shared.supervisor.do_send(Unregister { id });
        let metrics = &self.shared.metrics;
        match self.transport() {
            Some(t) => {
                // As a network failure: the client resumes, wherever it lands.
                t.do_send(ToTransport::Drop {
                    reason: "node draining: resume on another node".to_owned(),
                });
                metrics.sessions_attached.dec();
            }
            None => {
                metrics.sessions_detached.dec();
            }
        }
        let joined: Vec<Joined> = self.sink.sockets.borrow_mut().joined.drain().collect();
        for joined in joined {
            joined
                .namespace
                .addr
                .do_send(namespace::RemoveSocket { id });
        }
        for (_, pending) in self.pending_acks.drain() {
            let _ = pending.tx.send(Err(AckError::Disconnected));
        }
        ctx.stop();
    }
}

impl Session {
    /// A session moved here from another node; it sets itself up when started and
    /// tells `settled` whether it could (its id may be in use here).
    pub(crate) fn arriving(
        shared: Arc<Shared>,
        state: SessionState,
        from: u64,
        settled: oneshot::Sender<bool>,
    ) -> Self {
        let config = &shared.config;
        let frames = state.frames.iter().map(|f| Bytes::from(f.to_vec()));
        let outbox = Outbox::restore(
            config.max_outbox_frames,
            config.max_outbox_bytes,
            state.acked,
            frames.collect(),
        );
        let limit = ClientLimit::announced(state.max_frame_size);
        let origin = (from, state.token);
        let mut out = Outlet::moved_in(shared.clone(), limit, outbox, state.move_id, origin);
        out.recv_seq = state.recv_seq;
        out.reported_seq = state.recv_seq;
        let mut session = Session::with_outlet(shared, out);
        session.arriving = Some(Box::new(Arrival {
            state: Some(state),
            settled: Some(settled),
            joining: 0,
            subscribing: Vec::new(),
        }));
        session
    }

    /// Registers under the session's own id and token, then joins its namespaces
    /// and rooms again; the move is answered once it has landed (see [`Landing`]).
    pub(super) fn arrive(&mut self, state: SessionState, ctx: &mut Context<Self>) {
        let opened_at = UNIX_EPOCH + Duration::from_millis(state.opened_ms);
        let adopt = Adopt {
            id: SessionId(state.id),
            token: state.token,
            opened_at: opened_at.min(SystemTime::now()),
            addr: ctx.address(),
            moved_in: state.move_id,
        };
        let register = self.shared.supervisor.send(adopt);
        ctx.wait(register.into_actor(self).map(move |res, act, ctx| {
            if res != Ok(true) {
                tracing::warn!(sid = state.id, "moved session refused: id in use");
                act.answer_move(false);
                act.set_ended(true);
                return ctx.stop();
            }
            act.settle(state, ctx);
        }));
    }

    fn settle(&mut self, state: SessionState, ctx: &mut Context<Self>) {
        let id = SessionId(state.id);
        self.link_up(id, ctx);
        if let Some(link) = &self.ids {
            link.next_ack.store(state.next_ack, Ordering::Relaxed);
            link.transport.store(0, Ordering::Relaxed);
        }
        let grace = self.shared.config.resume_grace;
        let expiry = ctx.run_later(grace, |act, ctx| {
            let expired = DisconnectReason::Expired(Box::new(DisconnectReason::TransportClosed));
            act.end(expired, false, ctx);
        });
        self.sink.outlet.borrow_mut().link = Link::Detached {
            expiry,
            since: 0,
            cause: DisconnectReason::TransportClosed,
        };
        self.shared.metrics.sessions_detached.inc();
        // One more than the namespaces: the loop below landing counts too, so that
        // the move is answered once, after the last namespace's joins, however many
        // of them answer within the loop (a namespace without middleware answers at
        // once). Counting only the namespaces answered twice: once with the joins to
        // wait for, and again, at once, with none, before the rooms were joined.
        if let Some(arrival) = &mut self.arriving {
            arrival.joining = state.namespaces.len() + 1;
        }
        for moved in state.namespaces {
            self.rejoin(moved, ctx);
        }
        self.landed_one(Vec::new(), ctx);
        tracing::debug!(sid = id.0, "session moved here");
    }

    /// Answers the move, once.
    fn answer_move(&mut self, taken: bool) {
        if let Some(settled) = self.arriving.as_mut().and_then(|a| a.settled.take()) {
            let _ = settled.send(taken);
        }
    }

    /// A namespace joined again (with the subscriptions to wait for), refused, or
    /// the rejoins all begun (nothing to wait for). Once every namespace has answered,
    /// waits for the subscriptions (at most [`SUBSCRIBE_WAIT`]), then answers the
    /// move: every broadcast published after the answer reaches the session here.
    /// The old node's window is then awaited ([`WINDOW_WAIT`]).
    fn landed_one(&mut self, subscribing: Vec<oneshot::Receiver<()>>, ctx: &mut Context<Self>) {
        let Some(arrival) = &mut self.arriving else {
            return;
        };
        let Some(subscribing) = arrival.landed(subscribing) else {
            return;
        };
        if arrival.settled.is_none() {
            return; // answered already (refused at `Adopt`)
        }
        let all = futures_util::future::join_all(subscribing);
        let wait = tokio::time::timeout(SUBSCRIBE_WAIT, all);
        ctx.spawn(wait.into_actor(self).map(|_, act, ctx| {
            act.answer_move(true);
            act.arriving = None;
            ctx.run_later(WINDOW_WAIT, |act, ctx| act.window_late(ctx));
        }));
    }

    /// Joins a namespace again: its middleware runs with the same `auth`. A refusal
    /// takes the client out of the namespace (it hears why).
    fn rejoin(&mut self, moved: MovedNamespace, ctx: &mut Context<Self>) {
        let (Some(namespace), Some(link)) = (self.shared.namespace(&moved.ns), self.ids.clone())
        else {
            let reason = format!("namespace '{}' is not on this node", moved.ns);
            return self.refused(moved.ns, reason, ctx);
        };
        // No connection yet: the client's address is not known here.
        match namespace.authorize(link.id, None, &moved.auth) {
            Authorization::Now(answer) => self.rejoined(namespace, link, answer, moved, ctx),
            Authorization::Later(answer) => {
                let ns = moved.ns.clone();
                // The client's events for it wait meanwhile, as for a first join.
                let answer = ctx.spawn(answer.into_actor(self).map(move |answer, act, ctx| {
                    let waited = act.sink.sockets.borrow_mut().authorizing.remove(&moved.ns);
                    let held = waited.map(|(_, held)| held);
                    act.rejoined(namespace, link, answer, moved, ctx);
                    act.handle_held(held.unwrap_or_default(), ctx);
                }));
                self.sink
                    .sockets
                    .borrow_mut()
                    .authorizing
                    .insert(ns, answer);
            }
        }
    }

    fn rejoined(
        &mut self,
        namespace: NamespaceHandle,
        link: Arc<super::SessionLink>,
        answer: Result<namespace::SocketData, String>,
        moved: MovedNamespace,
        ctx: &mut Context<Self>,
    ) {
        if self.ended() {
            return;
        }
        let data = match answer {
            Ok(data) => data,
            // A seat that came with it is freed by its room's hold running out.
            Err(reason) => return self.refused(moved.ns, reason, ctx),
        };
        let socket = Socket::new(&namespace, link.clone(), data);
        let (subscribed, namespace_subscribed) = oneshot::channel();
        namespace.addr.do_send(namespace::AddSocket {
            id: link.id,
            recipient: link.deliver.clone(),
            effective: Some(subscribed),
        });
        for room in &moved.rooms {
            socket.join(room);
        }
        if let Some(data) = moved.data {
            socket.share_json(Some(data.into()));
        }
        let mut subscribing = socket.take_joining();
        subscribing.push(namespace_subscribed);
        // Before any client frame reaches the socket: its inputs find the seat.
        if let (Some(seat), Some(cluster)) = (moved.seat, &self.shared.cluster) {
            cluster.seat_moved_in(&socket, seat);
        }
        self.sink.sockets.borrow_mut().joined.insert(Joined {
            socket,
            namespace,
            watchers: Vec::new(),
            auth: moved.auth.into_vec(),
        });
        self.publish_namespaces();
        self.landed_one(subscribing, ctx);
    }

    fn refused(&mut self, ns: String, reason: String, ctx: &mut Context<Self>) {
        tracing::info!(sid = self.id().0, ns = %ns, %reason, "moved session refused by namespace");
        let frame = self.disconnect_frame(&ns, &reason);
        self.send_frame(&frame, ctx);
        self.landed_one(Vec::new(), ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A namespace without middleware rejoins within the loop of `settle`: the
    /// loop's end must not answer the move before that namespace's joins (it did,
    /// once: the drain tests lost broadcasts under load).
    #[test]
    fn a_move_is_answered_once_after_every_namespace_and_the_loop() {
        let (settled, _answer) = oneshot::channel();
        let mut arrival = Arrival {
            state: None,
            settled: Some(settled),
            // Two namespaces and the loop that rejoins them.
            joining: 3,
            subscribing: Vec::new(),
        };
        let (_a, room_a) = oneshot::channel::<()>();
        let (_b, room_b) = oneshot::channel::<()>();
        assert!(arrival.landed(vec![room_a]).is_none());
        assert!(arrival.landed(vec![room_b]).is_none());
        let waits = arrival.landed(Vec::new()).expect("everything landed");
        assert_eq!(
            waits.len(),
            2,
            "the answer waits for both namespaces' joins"
        );
        assert!(arrival.landed(Vec::new()).is_none(), "answered once");
    }

    #[test]
    fn the_state_crosses_as_json() {
        let state = SessionState {
            id: 1 << 32 | 7,
            token: [9; 16],
            opened_ms: 5,
            recv_seq: 3,
            acked: 10,
            frames: vec![ByteBuf::from(vec![1, 2]), ByteBuf::from(vec![3])],
            max_frame_size: Some(4096),
            next_ack: 4,
            namespaces: vec![MovedNamespace {
                ns: "/chat".into(),
                auth: ByteBuf::from(b"{\"name\":\"ann\"}".to_vec()),
                rooms: vec!["red".into()],
                seat: Some(MovedSeat { room: 5, owner: 6 }),
                data: Some(r#"{"team":"red"}"#.into()),
            }],
            move_id: 11,
        };
        let json = serde_json::to_vec(&state).unwrap();
        let back: SessionState = serde_json::from_slice(&json).unwrap();
        assert_eq!((back.id, back.acked, back.frames.len()), (state.id, 10, 2));
        assert_eq!(back.namespaces[0].rooms, ["red"]);
        assert_eq!(
            back.namespaces[0].seat,
            Some(MovedSeat { room: 5, owner: 6 })
        );
        assert_eq!(
            back.namespaces[0].data.as_deref(),
            Some(r#"{"team":"red"}"#)
        );
        // From a node of an earlier version: no shared data.
        let older: MovedNamespace =
            serde_json::from_str(r#"{"ns":"/chat","auth":[],"rooms":[],"seat":null}"#).unwrap();
        assert_eq!(older.data, None);
    }
}
