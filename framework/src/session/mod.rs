//! Sessions: one per client, independent of the transport that carries it.
//!
//! A [`Session`] actor holds everything the server knows about a client: its id and
//! resume token, heartbeat, joined namespaces (as [`Socket`](crate::Socket)s), pending acks and
//! sequence counters. Transports feed it decoded frames ([`FromTransport`]) and take
//! encoded bytes from it ([`ToTransport`]); rooms and namespaces deliver to it
//! ([`Deliver`]). Event handlers run here, on the connection's thread.
//!
//! A session outlives its transport: when the connection drops it *detaches* and
//! stays resumable for the grace window, keeping its namespaces, rooms and an
//! [`Outbox`] of reliable frames the client has not acknowledged. A new connection
//! that presents the session id and token *attaches* (see [`Attach`]): the session
//! tells the client what it last received, replays what the client missed, and
//! carries on. Volatile frames are never kept.
//!
//! Whoever needs to follow a socket through this (a game room holding a seat)
//! watches it ([`Socket::watch`](crate::Socket::watch)): the session tells each watcher when it detaches,
//! resumes, and when the socket is gone.

mod addresses;
mod authorizing;
mod client_limit;
mod heartbeat;
mod ids;
mod inbound;
mod joined;
mod joining;
mod keepalive;
#[cfg(feature = "cluster")]
mod moving;
#[cfg(feature = "cluster")]
pub(crate) mod nodes;
mod outbox;
mod outlet;
mod rate;
mod send_queue;
mod shared;
mod socket_write;
mod supervisor;
mod transport_link;
#[cfg(feature = "cluster")]
mod window;

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use authorizing::HeldEvent;
pub use client_limit::{ClientLimit, MIN_CLIENT_FRAME};
pub use heartbeat::{Beat, Pulse};
pub use inbound::LocalSession;
use joined::{leave, Joined};
#[cfg(feature = "cluster")]
pub(crate) use moving::{Freeze, MovedOut, MovedSeat, SessionState, Thaw, Unmove};
#[cfg(feature = "cluster")]
pub(crate) use nodes::{NodeId, Nodes};
pub use outbox::{Outbox, Overflow};
use outlet::{Link, Outlet, Sink};
pub(crate) use send_queue::queued_size;
pub use send_queue::Backlog;
pub use send_queue::SendQueue;
pub(crate) use send_queue::{Batch, SocketWrite, Starter, WriterTask};
#[cfg(feature = "cluster")]
pub(crate) use shared::RoomPlacer;
pub(crate) use shared::{network_of, Connections, NamespaceFactory, Over, Shared};
pub(crate) use supervisor::DropConnection as DropSessionConnection;
#[cfg(feature = "cluster")]
pub(crate) use supervisor::{CancelMove, Holds, Movable, MovedHere, SetMoving, Unregister, MOVING};
pub(crate) use supervisor::{CountSessions, KickSession, ListSessions};
pub use supervisor::{SessionInfo, Supervisor};
pub(crate) use transport_link::DropConnection;
pub(crate) use transport_link::{resume_here, too_many_frames, ResumeError};
pub use transport_link::{
    Attach, FromTransport, Sending, SessionRecipient, ToTransport, Translate, TransportId,
    TransportKind, TransportLink,
};
#[cfg(feature = "cluster")]
pub(crate) use transport_link::{SESSION_ENDED, SESSION_GONE};
#[cfg(feature = "cluster")]
pub(crate) use window::{MergeWindow, MovedWindow, TakeWindow};

use crate::log_gate::LogGate;
use crate::namespace::{SessionLink, SocketCommand, SocketEvent, SocketEventKind};
use crate::protocol::{self, Frame, Open, ResumeToken, WireFrame, PROTOCOL_VERSION};
use crate::room::local as local_delivery;
use crate::room::{Deliver, Mailbox};
use crate::{AckError, DisconnectReason, SessionId};

/// Ends a session from the application (see [`crate::Volley::kick`]).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Kick {
    pub reason: String,
}

struct PendingAck {
    tx: oneshot::Sender<Result<Vec<u8>, AckError>>,
    timer: SpawnHandle,
}

/// Emits waiting for the client's ack, by ack id. The map is made on the first: most
/// sessions never wait for one, and every idle session carries this in its task
/// (a `HashMap` is 48 bytes there; the task is allocated in 128-byte steps).
// Boxed on purpose: 8 bytes in the session's task instead of the collection's own.
#[allow(clippy::box_collection)]
#[derive(Default)]
struct PendingAcks(Option<Box<HashMap<u64, PendingAck>>>);

impl PendingAcks {
    fn insert(&mut self, id: u64, pending: PendingAck) {
        self.0.get_or_insert_default().insert(id, pending);
    }

    fn remove(&mut self, id: &u64) -> Option<PendingAck> {
        self.0.as_mut()?.remove(id)
    }

    /// Takes every pending emit (the session is ending or moving).
    fn drain(&mut self) -> impl Iterator<Item = (u64, PendingAck)> {
        self.0.take().into_iter().flat_map(|acks| *acks)
    }
}

/// One client's session.
pub struct Session {
    shared: Arc<Shared>,
    ids: Option<Arc<SessionLink>>,
    pending_acks: PendingAcks,
    /// The connection, the outbox and the client's limit, shared with the thread's
    /// broadcasts and heartbeat wheel (see [`outlet`]); the namespaces joined and
    /// joining, shared with the connection that started the session (see
    /// [`inbound`]).
    sink: Rc<Sink>,
    /// A session moved here from another node, set up when the actor starts.
    #[cfg(feature = "cluster")]
    arriving: Option<Box<moving::Arrival>>,
}

impl Session {
    /// Starts a session carried by `link` on the current thread; answers it as the
    /// connection holds it (see [`LocalSession`]).
    pub(crate) fn open(
        shared: Arc<Shared>,
        link: TransportLink,
        limit: ClientLimit,
    ) -> LocalSession {
        let session = Session::new(shared, link, limit);
        let sink = session.sink.clone();
        // Started by the first poll of its task, which comes after this hand-over.
        // The registry, the thread's sink and the sockets share this one address.
        let _ = sink.session.set(Arc::new(session.start()));
        LocalSession(sink)
    }

    pub(crate) fn new(shared: Arc<Shared>, link: TransportLink, limit: ClientLimit) -> Self {
        let out = Outlet::new(shared.clone(), link, limit);
        Session::with_outlet(shared, out)
    }

    fn with_outlet(shared: Arc<Shared>, out: Outlet) -> Self {
        Session {
            shared,
            ids: None,
            pending_acks: PendingAcks::default(),
            sink: Rc::new(Sink::new(out)),
            #[cfg(feature = "cluster")]
            arriving: None,
        }
    }

    /// Whether the session has ended (or is frozen for a move): it takes and
    /// delivers nothing more.
    fn ended(&self) -> bool {
        self.sink.outlet.borrow().ended
    }

    fn set_ended(&self, ended: bool) {
        self.sink.outlet.borrow_mut().ended = ended;
    }

    fn id(&self) -> SessionId {
        self.ids.as_ref().map_or(SessionId(0), |l| l.id)
    }

    /// The current connection's command address, if one is attached.
    fn transport(&self) -> Option<Recipient<ToTransport>> {
        match &self.sink.outlet.borrow().link {
            Link::Attached(t) => Some(t.recipient.clone()),
            Link::Detached { .. } => None,
        }
    }

    /// Sends a frame to the client (see [`Outlet::deliver`]); ends the session when
    /// its outbox or its connection's backlog overflows.
    fn deliver(&mut self, frame: WireFrame, reliable: bool, ctx: &mut Context<Self>) {
        if self.ended() {
            return;
        }
        let delivered = self.sink.outlet.borrow_mut().deliver(&frame, reliable);
        if let Err(reason) = delivered {
            self.end(reason, true, ctx);
        }
    }

    /// Hands a frame to the connection, if any (see [`Outlet::write`]).
    fn write(&mut self, frame: WireFrame, ctx: &mut Context<Self>) {
        let written = self.sink.outlet.borrow_mut().write(&frame);
        if let Err(reason) = written {
            self.end(reason, true, ctx);
        }
    }

    /// Sends a frame the session itself produced (see [`Sink::send`]); ends the
    /// session when its outbox or its connection's backlog overflows.
    fn send_frame(&mut self, frame: &Frame, ctx: &mut Context<Self>) {
        let sent = self.sink.send(frame);
        self.or_end(sent, ctx);
    }

    /// Ends the session when `result` says it must.
    fn or_end(&mut self, result: Result<(), DisconnectReason>, ctx: &mut Context<Self>) {
        if let Err(reason) = result {
            self.end(reason, true, ctx);
        }
    }

    /// Tells the client how far we have processed its stream.
    fn report_received(&mut self, ctx: &mut Context<Self>) {
        let reported = self.sink.report_received();
        self.or_end(reported, ctx);
    }

    /// A frame from the client, counted in (see [`Sink::admit`]); the events and
    /// acknowledgements its connection could not hand to the socket itself, and
    /// everything else (see [`inbound`]).
    fn on_frame(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        if frame.is_reliable() {
            if let Err(reason) = self.sink.counted() {
                return self.end(reason, true, ctx);
            }
        }
        match frame {
            Frame::Pong { last_seq } => {
                self.ponged();
                let acked = self.sink.acknowledged(last_seq);
                self.or_end(acked, ctx);
            }
            Frame::Received { last_seq } => {
                let acked = self.sink.acknowledged(last_seq);
                self.or_end(acked, ctx);
            }
            Frame::Connect { ns, auth } => self.connect(ns, &auth, ctx),
            Frame::Disconnect { ns, .. } => {
                let answer = self.sink.sockets.borrow_mut().authorizing.remove(&ns);
                if let Some((answer, held)) = answer {
                    ctx.cancel_future(answer);
                    self.handle_held(held, ctx);
                }
                let joined = self.sink.sockets.borrow_mut().joined.remove(ns.as_str());
                if let Some(joined) = joined {
                    leave(joined, &DisconnectReason::ClientLeft);
                    self.publish_namespaces();
                }
            }
            Frame::Event {
                ns,
                name,
                payload,
                ack,
            } => {
                let event = HeldEvent {
                    ns,
                    name,
                    payload,
                    ack,
                };
                let handled = self.sink.event(event);
                self.or_end(handled, ctx);
            }
            Frame::Ack { id, payload, .. } => match self.pending_acks.remove(&id) {
                Some(pending) => {
                    ctx.cancel_future(pending.timer);
                    let _ = pending.tx.send(Ok(payload.into_vec()));
                }
                None => tracing::debug!(sid = self.id().0, id, "ack for no pending emit (late?)"),
            },
            Frame::Close { .. } => self.end(DisconnectReason::ClientLeft, true, ctx),
            other => {
                let reason = format!("unexpected '{}' frame from a client", other.kind());
                static WARNED: LogGate = LogGate::new();
                if let Some(suppressed) = WARNED.admit() {
                    tracing::warn!(sid = self.id().0, %reason, suppressed, "protocol error");
                }
                self.end(DisconnectReason::Protocol(reason), true, ctx);
            }
        }
    }

    /// Handles the events held for a join that was answered (or abandoned), as if
    /// they arrived now.
    fn handle_held(&mut self, held: Vec<HeldEvent>, ctx: &mut Context<Self>) {
        for event in held {
            let handled = self.sink.dispatch(event);
            self.or_end(handled, ctx);
        }
    }

    /// The connection is gone: keep the session for the grace window.
    fn detach(&mut self, cause: DisconnectReason, ctx: &mut Context<Self>) {
        let grace = self.shared.config.resume_grace;
        if grace.is_zero() {
            return self.end(cause, false, ctx);
        }
        tracing::debug!(sid = self.id().0, %cause, ?grace, "session detached");
        let metrics = &self.shared.metrics;
        metrics.detaches.inc();
        metrics.sessions_attached.dec();
        metrics.sessions_detached.inc();
        self.notify_watchers(&SocketEventKind::Detached);
        let expired = DisconnectReason::Expired(Box::new(cause.clone()));
        let expiry = ctx.run_later(grace, move |act, ctx| {
            tracing::debug!(sid = act.id().0, "session expired");
            act.end(expired, false, ctx);
        });
        // Counted against `max_detached_sessions`, and against its share for the
        // address of the connection lost: the supervisor evicts the session detached
        // longest (of that address) once too many wait.
        let since = supervisor::next_detach();
        let lost = std::mem::replace(
            &mut self.sink.outlet.borrow_mut().link,
            Link::Detached {
                expiry,
                since,
                cause,
            },
        );
        // Counted by its network, as the connection limits count it.
        let address = match lost {
            Link::Attached(link) => link.address.map(network_of),
            Link::Detached { .. } => None,
        };
        self.shared.supervisor.do_send(supervisor::Detached {
            id: self.id(),
            since,
            address,
        });
        if let Some(ids) = &self.ids {
            ids.transport
                .store(TransportKind::code(None), Ordering::Relaxed);
        }
    }

    fn notify_watchers(&self, kind: &SocketEventKind) {
        for joined in self.sink.sockets.borrow().joined.values() {
            joined.notify(kind);
        }
    }

    /// Adds (`on`) or removes a watcher of the socket in `ns`. A watcher that comes
    /// late is told at once what it missed: the connection is down, or the socket
    /// is already gone (it left the namespace).
    fn watch(&mut self, ns: Arc<str>, recipient: Recipient<SocketEvent>, on: bool) {
        let detached = self.transport().is_none();
        let id = self.id();
        let late = |kind| SocketEvent {
            id,
            namespace: ns.clone(),
            kind,
        };
        match self.sink.sockets.borrow_mut().joined.get_mut(&ns) {
            Some(joined) => {
                joined.watchers.retain(|w| *w != recipient);
                if on && detached {
                    recipient.do_send(late(SocketEventKind::Detached));
                }
                if on {
                    joined.watchers.push(recipient);
                }
            }
            None if on => {
                recipient.do_send(late(SocketEventKind::Left(DisconnectReason::ClientLeft)))
            }
            None => {}
        }
    }

    /// Ends the session: the registry forgets it, sockets leave their namespaces
    /// (handlers see `reason`), pending acks fail, and the transport is closed.
    fn end(&mut self, reason: DisconnectReason, close_transport: bool, ctx: &mut Context<Self>) {
        if self.ended() {
            return;
        }
        self.set_ended(true);
        tracing::debug!(sid = self.id().0, %reason, "session ended");
        // Unregistered before the disconnect hooks run, as each socket leaves its
        // namespace before its hook: whatever a hook (or whoever hears from it) asks
        // next is answered after the registry and the namespaces have let go.
        if self.ids.is_some() {
            self.shared
                .supervisor
                .do_send(supervisor::Unregister { id: self.id() });
            let metrics = &self.shared.metrics;
            metrics.disconnected(&reason);
            match self.transport() {
                Some(_) => metrics.sessions_attached.dec(),
                None => metrics.sessions_detached.dec(),
            };
        }
        // Taken out first: the disconnect hooks run with nothing borrowed.
        let joined: Vec<Joined> = self.sink.sockets.borrow_mut().joined.drain().collect();
        for joined in joined {
            leave(joined, &reason);
        }
        for (_, pending) in self.pending_acks.drain() {
            let _ = pending.tx.send(Err(AckError::Disconnected));
        }
        let dropped_volatile = {
            let mut out = self.sink.outlet.borrow_mut();
            out.closed = true;
            out.dropped_volatile
        };
        if let (true, Some(t)) = (close_transport, self.transport()) {
            t.do_send(ToTransport::Close {
                reason: reason.to_string(),
            });
        }
        if dropped_volatile > 0 {
            tracing::debug!(
                sid = self.id().0,
                dropped = dropped_volatile,
                "volatile frames dropped"
            );
        }
        ctx.stop();
    }
}

/// Too many sessions wait to resume and this one waited longest (see
/// [`supervisor::Detached`]): it ends now, unless it resumed or detached again since.
impl Handler<supervisor::Evict> for Session {
    type Result = ();

    fn handle(&mut self, msg: supervisor::Evict, ctx: &mut Context<Self>) {
        let cause = match &self.sink.outlet.borrow().link {
            Link::Detached { since, cause, .. } if *since == msg.since => cause.clone(),
            _ => return,
        };
        static WARNED: LogGate = LogGate::new();
        if let Some(suppressed) = WARNED.admit() {
            match msg.address {
                Some(address) => tracing::warn!(
                    sid = self.id().0,
                    max = msg.max,
                    %address,
                    suppressed,
                    "too many sessions of one client address waiting to resume: its one detached longest ends"
                ),
                None => tracing::warn!(
                    sid = self.id().0,
                    max = msg.max,
                    suppressed,
                    "too many sessions waiting to resume: the one detached longest ends"
                ),
            }
        }
        self.end(DisconnectReason::Evicted(Box::new(cause)), false, ctx);
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        let local = self.sink.outlet.borrow_mut().local.take();
        if let Some(key) = local {
            local_delivery::unregister(key);
        }
    }

    fn started(&mut self, ctx: &mut Context<Self>) {
        #[cfg(feature = "cluster")]
        if let Some(state) = self.arriving.as_mut().and_then(|a| a.state.take()) {
            return self.arrive(state, ctx);
        }
        // The registry and the session's sockets share one address, the transport's.
        let addr = self.sink.session.get_or_init(|| Arc::new(ctx.address()));
        let addr = addr.clone();
        let register = self
            .shared
            .supervisor
            .send(supervisor::Register { addr: addr.clone() });
        // `wait` holds every other message until the session has its id.
        ctx.wait(
            register
                .into_actor(self)
                .map(move |res, act, ctx| match res {
                    Ok((id, token)) => act.opened(id, token, addr, ctx),
                    Err(_) => {
                        tracing::error!("supervisor unavailable; refusing session");
                        act.end(
                            DisconnectReason::Kicked("server shutting down".into()),
                            true,
                            ctx,
                        );
                    }
                }),
        );
    }
}

impl Session {
    fn opened(
        &mut self,
        id: SessionId,
        token: ResumeToken,
        addr: Arc<Addr<Session>>,
        ctx: &mut Context<Self>,
    ) {
        self.link_up_as(id, addr);
        let config = self.shared.config.clone();
        let open = Frame::Open(Open {
            version: PROTOCOL_VERSION,
            sid: id.0,
            token,
            ping_interval_ms: millis(config.ping_interval),
            ping_timeout_ms: millis(config.ping_timeout),
            max_frame_size: u32::try_from(config.max_frame_size).unwrap_or(u32::MAX),
        });
        self.send_frame(&open, ctx);
        tracing::debug!(sid = id.0, "session opened");
        self.shared.metrics.sessions_opened.inc();
        self.shared.metrics.sessions_attached.inc();
    }

    /// The session has its id: its sockets' shared state, its place in the thread's
    /// local delivery and heartbeat wheel, and the registry's view of it.
    #[cfg(feature = "cluster")]
    fn link_up(&mut self, id: SessionId, ctx: &mut Context<Self>) {
        self.link_up_as(id, Arc::new(ctx.address()));
    }

    /// [`Session::link_up`] with the session's address `addr`, shared by every holder
    /// (the registry, the thread's sink, the sockets' deliveries and commands): each
    /// copy of an actix address would allocate its own sender cells.
    fn link_up_as(&mut self, id: SessionId, addr: Arc<Addr<Session>>) {
        self.sink.outlet.borrow_mut().id = id;
        let sink = self.sink.clone();
        let _ = sink.session.set(addr.clone());
        let route = local_delivery::register(sink.clone());
        self.sink.outlet.borrow_mut().local = Some(route.key);
        let transport = match &self.sink.outlet.borrow().link {
            Link::Attached(t) => Some(t.kind),
            Link::Detached { .. } => None,
        };
        let link = Arc::new(SessionLink {
            id,
            deliver: Mailbox::new(addr.clone(), self.shared.config.max_mailbox, route),
            session: addr,
            rtt_us: AtomicU64::new(0),
            transport: AtomicU8::new(TransportKind::code(transport)),
            next_ack: AtomicU64::new(1),
            max_frame: AtomicUsize::new(self.sink.outlet.borrow().limit.bytes()),
        });
        // The registry reads the link's RTT and transport when it lists sessions.
        self.shared.supervisor.do_send(supervisor::SetLink {
            id,
            link: link.clone(),
        });
        keepalive::start(&sink, link.clone(), self.shared.config.ping_interval);
        self.ids = Some(link);
    }
}

impl Session {
    /// The `Disconnect` telling the client the application removed it from `ns`: with
    /// the reason for a client that reads it and when it fits the client's limit.
    fn disconnect_frame(&self, ns: &str, reason: &str) -> Frame {
        let with_reason = Frame::Disconnect {
            ns: ns.to_owned(),
            reason: Some(reason.to_owned()),
        };
        let limit = self.sink.outlet.borrow().limit;
        if limit.reads_trailing_fields() && limit.admits(protocol::encode(&with_reason).len()) {
            return with_reason;
        }
        Frame::Disconnect {
            ns: ns.to_owned(),
            reason: None,
        }
    }
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl Session {
    /// Counts off one message that took a place in the mailbox (see [`Mailbox`]).
    /// If an earlier one was refused, the session ends with `slow consumer` and this
    /// answers `true`: the message must not be handled (it would skip the refused).
    fn took_mail(&mut self, ctx: &mut Context<Self>) -> bool {
        let Some(link) = &self.ids else {
            return false;
        };
        if !link.deliver.gauge().taken() {
            return false;
        }
        if !self.ended() {
            let limit = link.deliver.gauge().limit();
            tracing::warn!(
                sid = self.id().0,
                limit,
                "slow consumer: mailbox over its limit"
            );
            self.end(DisconnectReason::SlowConsumer, true, ctx);
        }
        true
    }
}

impl Handler<Deliver> for Session {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        if !self.took_mail(ctx) {
            self.deliver(msg.frame, msg.reliable, ctx);
        }
    }
}

impl Handler<SocketCommand> for Session {
    type Result = ();

    fn handle(&mut self, msg: SocketCommand, ctx: &mut Context<Self>) {
        match msg {
            SocketCommand::ExpectAck {
                frame,
                id,
                tx,
                timeout,
            } => {
                if self.took_mail(ctx) || self.ended() {
                    let _ = tx.send(Err(AckError::Disconnected));
                    return;
                }
                let limit = self.sink.outlet.borrow().limit;
                if !limit.admits(frame.len()) {
                    let (size, limit) = (frame.len(), limit.bytes());
                    let _ = tx.send(Err(AckError::TooLarge { size, limit }));
                    return;
                }
                let timer = ctx.run_later(timeout, move |act, _| {
                    if let Some(pending) = act.pending_acks.remove(&id) {
                        act.shared.metrics.acks_timed_out.inc();
                        let _ = pending.tx.send(Err(AckError::Timeout));
                    }
                });
                self.pending_acks.insert(id, PendingAck { tx, timer });
                self.deliver(WireFrame::new(&frame), true, ctx);
            }
            SocketCommand::Leave { ns, reason } => {
                let joined = self.sink.sockets.borrow_mut().joined.remove(&ns);
                if let Some(joined) = joined {
                    let frame = self.disconnect_frame(&ns, &reason);
                    self.send_frame(&frame, ctx);
                    leave(joined, &DisconnectReason::Kicked(reason));
                    self.publish_namespaces();
                }
            }
            SocketCommand::Watch { ns, recipient, on } => self.watch(ns, recipient, on),
        }
    }
}

impl Handler<Kick> for Session {
    type Result = ();

    fn handle(&mut self, msg: Kick, ctx: &mut Context<Self>) {
        self.end(DisconnectReason::Kicked(msg.reason), true, ctx);
    }
}
