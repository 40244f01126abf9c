//! A session's delivery end: its connection (if any), its outbox of reliable frames,
//! the client's frame limit and the counters of the client's stream. The session
//! actor owns it, and its thread's broadcasts and heartbeat wheel reach it directly
//! (see [`crate::room::local`]): all run on the session's thread, one at a time, so
//! it lives in a `RefCell` inside the session's [`Sink`], an `Rc` the three share,
//! and a broadcast costs no actor message per recipient.

use std::cell::{OnceCell, RefCell};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use super::heartbeat::Heartbeat;
use super::joined::Sockets;
use super::rate::{Exceeded, InboundRate};
use super::send_queue::queued_size;
use super::Shared;
use super::{ClientLimit, Outbox, Sending, Session, ToTransport, TransportLink};
use crate::protocol::WireFrame;
use crate::room::local::{LocalKey, LocalSink};
use crate::room::Deliver;
use crate::{DisconnectReason, SessionId};

/// Whether a connection currently carries the session.
pub(super) enum Link {
    Attached(TransportLink),
    /// Dropped; the session ends when `expiry` fires unless resumed.
    Detached {
        expiry: SpawnHandle,
        /// This detach among the process's (see `supervisor::Detached`); 0 when
        /// not counted against `max_detached_sessions` (a session moved here that
        /// waits for its client).
        since: u64,
        /// Why the connection dropped.
        cause: DisconnectReason,
    },
}

/// Where a session's frames go.
pub(super) struct Outlet {
    shared: Arc<Shared>,
    pub id: SessionId,
    pub link: Link,
    /// Reliable frames sent and not yet acknowledged; numbers the server's stream.
    pub outbox: Outbox,
    /// The largest frame the client accepts (from `Hello`, then each `Resume`).
    pub limit: ClientLimit,
    /// Volatile frames dropped because the connection was behind or absent.
    pub dropped_volatile: u64,
    /// The session is ending: nothing more is delivered.
    pub closed: bool,
    /// The session has ended (or is frozen for a move): it takes and delivers
    /// nothing more. Kept here rather than in the session's actor, whose task is
    /// allocated in 128-byte steps (see `Session`).
    pub ended: bool,
    /// Reliable frames processed from the client (the client's stream, implicit).
    pub recv_seq: u64,
    /// The `recv_seq` the client was last told about.
    pub reported_seq: u64,
    /// What the client may still send under `Config::rate_limit`; kept across resumes.
    pub rate: InboundRate,
    /// Where the thread's broadcasts find this outlet; given back when the session
    /// stops.
    pub local: Option<LocalKey>,
    /// While the session moves between nodes: the broadcasts kept for the move
    /// (see [`super::window`]).
    #[cfg(feature = "cluster")]
    pub window: Option<Box<super::window::Window>>,
}

impl Outlet {
    pub fn new(shared: Arc<Shared>, link: TransportLink, limit: ClientLimit) -> Self {
        let config = &shared.config;
        let outbox = Outbox::new(config.max_outbox_frames, config.max_outbox_bytes);
        Outlet::with(shared, Link::Attached(link), limit, outbox)
    }

    /// The outlet of a session moved here by move `move_id` from another node
    /// (`origin`: that node and the session's token): no connection yet (its expiry
    /// is set when the session starts), the outbox it had there, and its broadcasts
    /// held until the old node's window came.
    #[cfg(feature = "cluster")]
    pub fn moved_in(
        shared: Arc<Shared>,
        limit: ClientLimit,
        outbox: Outbox,
        move_id: u64,
        origin: (u64, crate::protocol::ResumeToken),
    ) -> Self {
        let link = Link::Detached {
            expiry: SpawnHandle::default(),
            since: 0,
            cause: DisconnectReason::TransportClosed,
        };
        let mut out = Outlet::with(shared, link, limit, outbox);
        let mut window = out.new_window(move_id);
        window.origin = Some(origin);
        out.window = Some(window);
        out
    }

    /// An outlet with no connection, for the session machinery's own tests.
    #[cfg(test)]
    pub fn detached(shared: Arc<Shared>) -> Self {
        let config = &shared.config;
        let outbox = Outbox::new(config.max_outbox_frames, config.max_outbox_bytes);
        let link = Link::Detached {
            expiry: SpawnHandle::default(),
            since: 0,
            cause: DisconnectReason::TransportClosed,
        };
        Outlet::with(shared, link, ClientLimit::announced(None), outbox)
    }

    /// A window for a move, bounded as the outbox is.
    #[cfg(feature = "cluster")]
    pub fn new_window(&self, move_id: u64) -> Box<super::window::Window> {
        let config = &self.shared.config;
        super::window::Window::new(move_id, config.max_outbox_frames, config.max_outbox_bytes)
    }

    fn with(shared: Arc<Shared>, link: Link, limit: ClientLimit, outbox: Outbox) -> Self {
        Outlet {
            rate: InboundRate::new(&shared.config.rate_limit, Instant::now()),
            shared,
            id: SessionId(0),
            link,
            outbox,
            limit,
            dropped_volatile: 0,
            closed: false,
            ended: false,
            recv_seq: 0,
            reported_seq: 0,
            local: None,
            #[cfg(feature = "cluster")]
            window: None,
        }
    }

    /// Whether the session has client frames to report before its next ping (see
    /// [`super::keepalive`]).
    pub fn unreported(&self) -> bool {
        self.recv_seq != self.reported_seq
    }

    /// The server's shared state (its configuration).
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Counts a client frame of `size` bytes in, under `Config::rate_limit`.
    pub fn admit(&mut self, size: usize) -> Result<(), Exceeded> {
        let metrics = &self.shared.metrics;
        metrics.frames_in.inc();
        metrics.bytes_in.inc_by(size as u64);
        let limit = &self.shared.config.rate_limit;
        if limit.is_off() {
            // Nothing to count, no clock to read.
            return Ok(());
        }
        self.rate.admit(limit, size, Instant::now())
    }

    /// Sends a frame to the client: reliable frames are numbered and kept in the
    /// outbox until acknowledged (also while detached); volatile ones are written only
    /// to a connection that keeps up, and otherwise dropped. `Err` when the session
    /// must end (its outbox or its connection's backlog overflowed).
    pub fn deliver(&mut self, frame: &WireFrame, reliable: bool) -> Result<(), DisconnectReason> {
        if self.closed {
            return Ok(());
        }
        if !self.limit.admits(frame.len()) {
            // A broadcast (emits to one socket fail at the sender instead): this
            // recipient is skipped. Skipped before numbering, so sequences stay whole.
            let skipped = self
                .shared
                .over_client_limit
                .fetch_add(1, Ordering::Relaxed);
            // One warning per server and 1,024 skips: a broadcast to thousands of
            // small clients must not flood the log.
            if skipped.is_multiple_of(1024) {
                tracing::warn!(
                    sid = self.id.0,
                    bytes = frame.len(),
                    limit = self.limit.bytes(),
                    skipped = skipped + 1,
                    "frame larger than the client accepts: not sent to it"
                );
            }
            return Ok(());
        }
        if reliable {
            if self.outbox.push(frame.payload()).is_err() {
                tracing::warn!(
                    sid = self.id.0,
                    frames = self.outbox.len(),
                    bytes = self.outbox.bytes(),
                    "outbox overflow"
                );
                self.closed = true;
                return Err(DisconnectReason::OutboxOverflow);
            }
        } else if !self.keeps_up() {
            self.dropped_volatile += 1;
            self.shared.metrics.volatile_dropped.inc();
            return Ok(());
        }
        self.write(frame)
    }

    /// Whether the connection is attached and less than half its backlog is used.
    fn keeps_up(&self) -> bool {
        match &self.link {
            Link::Attached(t) => {
                t.sending.backlog().load(Ordering::Relaxed)
                    < self.shared.config.max_send_backlog / 2
            }
            Link::Detached { .. } => false,
        }
    }

    /// Hands a frame to the connection, if any, enforcing the backlog limit: a
    /// WebSocket connection gets the framed message on its queue, shared with every
    /// other recipient of the same broadcast; long polling gets the payload.
    pub fn write(&mut self, frame: &WireFrame) -> Result<(), DisconnectReason> {
        let Link::Attached(transport) = &self.link else {
            return Ok(());
        };
        let size = match &transport.sending {
            Sending::Queue(_) => queued_size(frame.message()),
            Sending::Messages { .. } | Sending::Translated(_) => queued_size(&frame.payload()),
        };
        let backlog = transport.sending.backlog();
        let queued = backlog.fetch_add(size, Ordering::Relaxed) + size;
        if queued > self.shared.config.max_send_backlog {
            backlog.fetch_sub(size, Ordering::Relaxed);
            tracing::warn!(
                sid = self.id.0,
                queued,
                "slow consumer: send backlog over its limit"
            );
            self.closed = true;
            return Err(DisconnectReason::SlowConsumer);
        }
        // Two relaxed atomic adds: no lock, no allocation on the delivery path.
        self.shared.metrics.frames_out.inc();
        self.shared.metrics.bytes_out.inc_by(frame.len() as u64);
        // Bounded by the backlog just counted (bytes, not messages).
        match &transport.sending {
            Sending::Queue(queue) => queue.push(frame.message().clone()),
            Sending::Translated(connection) => connection.write(frame, size),
            Sending::Messages { .. } => transport
                .recipient
                .do_send(ToTransport::Frame(frame.clone())),
        }
        Ok(())
    }
}

/// A session's outlet as the session, its thread's fan-outs and its heartbeat wheel
/// share it: one allocation, so that a delivery or a ping's visit finds the outlet
/// on the line it found the sink on.
pub(super) struct Sink {
    pub outlet: RefCell<Outlet>,
    /// The namespaces joined and joining. Borrowed while a handler runs (an event's,
    /// a hook's), changed only by the session's actor between handlers.
    pub sockets: RefCell<Sockets>,
    /// The session's address, from its start on (see [`Session::open`]).
    pub session: OnceCell<Arc<Addr<Session>>>,
    /// The session's heartbeat schedule, run by the thread's wheel.
    pub heartbeat: Heartbeat,
}

impl Sink {
    pub fn new(outlet: Outlet) -> Self {
        Sink {
            outlet: RefCell::new(outlet),
            sockets: RefCell::default(),
            session: OnceCell::new(),
            heartbeat: Heartbeat::default(),
        }
    }

    /// Posts `msg` to the session (once it has started).
    pub fn tell<M>(&self, msg: M)
    where
        M: Message<Result = ()> + Send + 'static,
        Session: Handler<M>,
    {
        if let Some(session) = self.session.get() {
            session.do_send(msg);
        }
    }
}

/// Ends a session whose delivery failed outside its actor (a broadcast).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct DeliveryFailed(pub DisconnectReason);

/// A broadcast that found the outlet busy, for the session to deliver itself.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct LateDelivery(pub Deliver);

impl LocalSink for Sink {
    fn deliver(&self, deliver: &Deliver) {
        let Ok(mut outlet) = self.outlet.try_borrow_mut() else {
            // The session is in the middle of its own delivery (cannot happen: both
            // run on this thread, one at a time); its mailbox keeps the order.
            self.tell(LateDelivery(deliver.clone()));
            return;
        };
        outlet.shared.metrics.deliveries.inc();
        #[cfg(feature = "cluster")]
        if let Some(window) = outlet.window.as_mut() {
            if window.take(deliver) {
                return;
            }
        }
        if let Err(reason) = outlet.deliver(&deliver.frame, deliver.reliable) {
            drop(outlet);
            self.tell(DeliveryFailed(reason));
        }
    }
}

impl Handler<DeliveryFailed> for Session {
    type Result = ();

    fn handle(&mut self, msg: DeliveryFailed, ctx: &mut Context<Self>) {
        self.end(msg.0, true, ctx);
    }
}

impl Handler<LateDelivery> for Session {
    type Result = ();

    fn handle(&mut self, msg: LateDelivery, ctx: &mut Context<Self>) {
        #[cfg(feature = "cluster")]
        if let Some(window) = self.sink.outlet.borrow_mut().window.as_mut() {
            if window.take(&msg.0) {
                return;
            }
        }
        self.deliver(msg.0.frame, msg.0.reliable, ctx);
    }
}
