//! How transports carry a session: the messages between a session and its current
//! connection, and the session's side of attaching (resume), detaching and being
//! dropped. A session is attached to at most one transport at a time; frames from a
//! replaced transport are recognised by its [`TransportId`] and discarded.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;

use super::outlet::Link;
use super::send_queue::{Backlog, SendQueue};
use super::supervisor::ResumeSession;
use super::{ClientLimit, LocalSession, Pulse, Session, Shared};
use crate::namespace::SocketEventKind;
use crate::protocol::{Frame, ResumeToken, WireFrame};
use crate::room::Gauge;
use crate::{DisconnectReason, SessionId};

/// Identifies one transport (connection) of a session, so that frames still in
/// flight from a replaced connection are told apart from the current one's.
pub type TransportId = u64;

/// What a session sends to its transport.
#[derive(Message)]
#[rtype(result = "()")]
pub enum ToTransport {
    /// Write one frame (transports without a [`SendQueue`]): long polling takes its
    /// payload, the Socket.IO endpoint its Socket.IO form, shared by the broadcast's
    /// recipients (see [`WireFrame::socketio`]).
    Frame(WireFrame),
    /// The session is over: write a `Close` frame with the reason, then close.
    Close {
        /// The close reason sent to the client.
        reason: String,
    },
    /// Close this connection only; the session stays resumable elsewhere.
    Drop {
        /// Why: the connection's own close reason (WebSocket close, polling error),
        /// not a `Close` frame.
        reason: String,
    },
}

/// A transport's session: where it hands the client's frames and posts what it
/// tells the session. Each variant is one pointer (a transport's actor is allocated
/// in 128-byte steps).
pub enum SessionRecipient {
    /// The session this connection started, on this thread: the client's events
    /// reach their handler where they are read (see [`LocalSession`]).
    Local(LocalSession),
    /// A session resumed here, maybe on another thread: everything goes through its
    /// mailbox. Its one shared address (a copy would allocate its own sender cells).
    Resumed(Arc<Addr<Session>>),
    /// A relay to the session on another node.
    #[cfg(feature = "cluster")]
    Relay(Arc<Recipient<FromTransport>>),
}

impl SessionRecipient {
    /// Posts one message; dropped if the session has stopped.
    pub fn do_send(&self, msg: FromTransport) {
        match self {
            SessionRecipient::Local(session) => session.do_send(msg),
            SessionRecipient::Resumed(session) => session.do_send(msg),
            #[cfg(feature = "cluster")]
            SessionRecipient::Relay(relay) => relay.do_send(msg),
        }
    }

    /// Hands the session `frame`, read from connection `transport` (`size` bytes as
    /// received): taken at once where it can be, posted otherwise and counted in
    /// `inbound`, the connection's gauge of frames waiting for the session. `false`
    /// when that gauge is full: the frame is dropped and the connection must close
    /// (the client sends more than the server takes).
    pub fn frame(
        &self,
        transport: TransportId,
        frame: Frame,
        size: usize,
        inbound: &Gauge,
    ) -> bool {
        let frame = match self {
            SessionRecipient::Local(session) => match session.take_now(transport, frame, size) {
                Ok(()) => return true,
                Err(frame) => frame,
            },
            _ => frame,
        };
        if !inbound.admit() {
            return false;
        }
        self.do_send(FromTransport::Frame {
            transport,
            frame,
            size,
        });
        true
    }
}

/// What a transport tells its session.
#[derive(Message)]
#[rtype(result = "()")]
pub enum FromTransport {
    /// A decoded frame from the client, `size` bytes as received.
    Frame {
        /// The connection it came on.
        transport: TransportId,
        /// The frame.
        frame: Frame,
        /// Its size on the wire, in bytes.
        size: usize,
    },
    /// The connection is gone (and why). The transport has already closed it.
    Closed {
        /// The connection that closed.
        transport: TransportId,
        /// Why it closed.
        reason: DisconnectReason,
    },
}

/// Which kind of connection carries a session (shown in [`SessionInfo`](super::SessionInfo)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// A WebSocket connection.
    WebSocket,
    /// HTTP long-polling.
    Polling,
}

impl TransportKind {
    /// The kind as stored in [`SessionLink::transport`](crate::namespace::SessionLink):
    /// 0 is reserved for "detached".
    pub(crate) fn code(kind: Option<TransportKind>) -> u8 {
        match kind {
            None => 0,
            Some(TransportKind::WebSocket) => 1,
            Some(TransportKind::Polling) => 2,
        }
    }

    /// The inverse of [`TransportKind::code`].
    pub(crate) fn from_code(code: u8) -> Option<TransportKind> {
        match code {
            1 => Some(TransportKind::WebSocket),
            2 => Some(TransportKind::Polling),
            _ => None,
        }
    }
}

/// A transport's end of the link: where the session writes and how much is queued.
pub struct TransportLink {
    /// Identifies the connection.
    pub id: TransportId,
    /// What kind of connection it is.
    pub kind: TransportKind,
    /// Where the connection's commands go (close, drop), and encoded frames too when
    /// it has no queue ([`Sending::Messages`]: long polling).
    pub recipient: Recipient<ToTransport>,
    /// How the session's frames reach the connection, what counts them, and the
    /// connection's heartbeat.
    pub sending: Sending,
    /// Client frames handed to the session and not handled yet. The transport admits
    /// each frame before posting it and closes the connection with
    /// `too_many_frames` at the limit; the session counts frames off.
    pub inbound: Arc<Gauge>,
    /// The client's address, if known (not for a connection relayed from another
    /// node): behind `trusted_proxies`, the one `X-Forwarded-For` names. A session
    /// that loses this connection waits to resume under the share of
    /// `max_detached_sessions` of the address's network (an IPv6 client's /64, as
    /// the connection limits count it); connect middleware sees it
    /// ([`crate::Handshake::address`]).
    pub address: Option<IpAddr>,
}

/// How a session's frames reach its connection, and what counts the bytes queued on
/// it (its backlog, shared with the transport).
#[derive(Clone)]
pub enum Sending {
    /// A WebSocket connection's queue: the session appends complete WebSocket
    /// messages here directly, without a message to the transport per frame. The
    /// queue counts its own backlog and keeps the connection's heartbeat, beside its
    /// lock: a delivery, or a ping, touches one cache line of the connection's for
    /// all of them. The transport takes a pong itself ([`Pulse::answer`]).
    Queue(Arc<SendQueue>),
    /// Encoded frames go to the transport's `recipient` as messages (long polling,
    /// Socket.IO, a cluster's relay), counted in `backlog`; the session takes the
    /// pongs and keeps the heartbeat.
    Messages {
        /// Bytes queued on the connection, shared with the transport.
        backlog: Backlog,
        /// The connection's heartbeat.
        pulse: Arc<Pulse>,
    },
    /// A connection that writes frames in a protocol of its own (the Socket.IO
    /// endpoint): the session hands it each frame on the session's thread, and it
    /// writes its own form of it (a broadcast's shared, framed once) onto its queue
    /// directly, without a message per frame. Its queue counts the backlog and keeps
    /// the heartbeat; the session takes the pongs.
    Translated(Arc<dyn Translate>),
}

/// A connection that writes the session's frames in a protocol of its own, onto its
/// [`SendQueue`] ([`Sending::Translated`]). The session calls [`Translate::write`] on
/// its own thread for every frame, in order, after counting the frame in the
/// queue's backlog (and ending the session as a slow consumer past
/// `Config::max_send_backlog`).
///
/// ```
/// use std::sync::atomic::Ordering;
/// use volley::protocol::{Frame, WireFrame};
/// use volley::session::{SendQueue, Translate};
///
/// /// Writes each frame as Volley's own binary message, as `Sending::Queue` does.
/// struct AsIs(SendQueue);
///
/// impl Translate for AsIs {
///     fn queue(&self) -> &SendQueue {
///         &self.0
///     }
///
///     fn write(&self, frame: &WireFrame, counted: usize) {
///         let message = frame.message().clone();
///         let backlog = self.0.backlog();
///         backlog.fetch_sub(counted, Ordering::Relaxed);
///         backlog.fetch_add(message.len() + 64, Ordering::Relaxed);
///         self.0.push(message);
///     }
/// }
///
/// let connection = AsIs(SendQueue::new());
/// let frame = WireFrame::encode(&Frame::Ping);
/// // What the session counts before it writes: the frame and what carries it.
/// connection.queue().backlog().fetch_add(frame.len() + 64, Ordering::Relaxed);
/// connection.write(&frame, frame.len() + 64);
/// let queued = connection.queue().backlog().load(Ordering::Relaxed);
/// assert_eq!(queued, frame.message().len() + 64);
/// ```
pub trait Translate: Send + Sync {
    /// The connection's queue: its backlog and its heartbeat.
    fn queue(&self) -> &SendQueue;

    /// Writes `frame` to the client in the connection's protocol. The caller counted
    /// `counted` bytes of the queue's backlog for it; the connection gives them back
    /// and counts what it queues instead.
    fn write(&self, frame: &WireFrame, counted: usize);
}

impl Sending {
    /// Bytes queued on the connection (each message its length plus 64 bytes for
    /// what carries it).
    pub fn backlog(&self) -> &AtomicUsize {
        match self {
            Sending::Queue(queue) => queue.backlog(),
            Sending::Messages { backlog, .. } => backlog,
            Sending::Translated(connection) => connection.queue().backlog(),
        }
    }

    /// The connection's heartbeat.
    pub fn pulse(&self) -> &Pulse {
        match self {
            Sending::Queue(queue) => queue.pulse(),
            Sending::Messages { pulse, .. } => pulse,
            Sending::Translated(connection) => connection.queue().pulse(),
        }
    }

    /// Frames that go to the transport as messages, counted in `backlog`.
    pub fn messages(backlog: Backlog) -> Self {
        Sending::Messages {
            backlog,
            pulse: Arc::default(),
        }
    }
}

/// Why a transport closed a connection whose frames came faster than its session
/// handled them (`Config::max_mailbox` waiting).
pub(crate) fn too_many_frames(limit: usize) -> String {
    format!("too many frames waiting for the server (limit {limit}): send less at once")
}

/// Moves a session onto a new connection (resume). Answers the number of frames
/// replayed, or why the session cannot be resumed.
#[derive(Message)]
#[rtype(result = "Result<u64, String>")]
pub struct Attach {
    /// The new connection.
    pub link: TransportLink,
    /// The last reliable frame the client processed.
    pub last_seq: u64,
    /// The largest frame the client accepts, from its `Resume`.
    pub limit: ClientLimit,
}

impl Handler<FromTransport> for Session {
    type Result = ();

    fn handle(&mut self, msg: FromTransport, ctx: &mut Context<Self>) {
        if self.ended() {
            return;
        }
        let current = match &self.sink.outlet.borrow().link {
            Link::Attached(t) => Some(t.id),
            Link::Detached { .. } => None,
        };
        match msg {
            // Frames still in flight from a replaced connection are dropped: the
            // client resends whatever we did not count before the switch.
            FromTransport::Frame {
                transport,
                frame,
                size,
            } if Some(transport) == current => {
                if let Link::Attached(t) = &self.sink.outlet.borrow().link {
                    t.inbound.taken();
                }
                let admitted = self.sink.admit(size);
                match admitted {
                    Ok(()) => self.on_frame(frame, ctx),
                    Err(reason) => self.end(reason, true, ctx),
                }
            }
            FromTransport::Closed { transport, reason } if Some(transport) == current => {
                match reason {
                    DisconnectReason::TransportClosed => self.detach(reason, ctx),
                    other => self.end(other, false, ctx),
                }
            }
            _ => {}
        }
    }
}

/// Drops the current connection as if the network had failed (operations, tests):
/// the session detaches and the client may resume.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct DropConnection;

impl Handler<DropConnection> for Session {
    type Result = ();

    fn handle(&mut self, _: DropConnection, ctx: &mut Context<Self>) {
        if let Some(t) = self.transport() {
            t.do_send(ToTransport::Drop {
                reason: "connection dropped by the server".to_owned(),
            });
            self.detach(DisconnectReason::TransportClosed, ctx);
        }
    }
}

impl Handler<Attach> for Session {
    type Result = Result<u64, String>;

    fn handle(&mut self, msg: Attach, ctx: &mut Context<Self>) -> Self::Result {
        if self.ended() {
            self.shared.metrics.resumed("unknown_session");
            return Err(SESSION_ENDED.to_owned());
        }
        let replay = self.reattach(msg, ctx);
        let replay = match replay {
            Ok(replay) => replay,
            Err(refused) => {
                self.shared.metrics.resumed("cannot_replay");
                return Err(refused);
            }
        };
        self.resumed(replay, ctx)
    }
}

impl Session {
    /// Puts the new connection in place of the old one (or of none) and returns the
    /// reliable frames to replay on it.
    fn reattach(&mut self, msg: Attach, ctx: &mut Context<Self>) -> Result<Vec<WireFrame>, String> {
        let replay = {
            let mut out = self.sink.outlet.borrow_mut();
            out.outbox.check_resume(msg.last_seq)?;
            if let Some(too_large) = out
                .outbox
                .after(msg.last_seq)
                .find(|frame| !msg.limit.admits(frame.len()))
            {
                return Err(format!(
                    "cannot resume: a frame to replay has {} bytes, over the client's limit of {}",
                    too_large.len(),
                    msg.limit.bytes()
                ));
            }
            // Checked above: the replay cannot be out of range.
            // Framed again for the new connection: a resume is rare, a copy per frame fine.
            let replay: Vec<WireFrame> = out
                .outbox
                .replay_after(msg.last_seq)
                .map(|frames| frames.map(|frame| WireFrame::new(frame)).collect())
                .unwrap_or_default();
            out.limit = msg.limit;
            if let Some(ids) = &self.ids {
                let kind = TransportKind::code(Some(msg.link.kind));
                ids.transport.store(kind, Ordering::Relaxed);
            }
            match std::mem::replace(&mut out.link, Link::Attached(msg.link)) {
                Link::Attached(old) => old.recipient.do_send(ToTransport::Drop {
                    reason: "replaced by a resumed connection".to_owned(),
                }),
                Link::Detached { expiry, .. } => {
                    ctx.cancel_future(expiry);
                    self.shared.metrics.sessions_detached.dec();
                    self.shared.metrics.sessions_attached.inc();
                }
            }
            replay
        };
        if let Some(ids) = &self.ids {
            ids.max_frame.store(msg.limit.bytes(), Ordering::Relaxed);
        }
        Ok(replay)
    }

    /// Tells the resumed client where it stands, then replays `replay` to it.
    fn resumed(&mut self, replay: Vec<WireFrame>, ctx: &mut Context<Self>) -> Result<u64, String> {
        // The new connection owes no pong (its pulse is new); the schedule itself
        // carries on unchanged (one per session, see `keepalive`).
        let replayed = replay.len() as u64;
        tracing::debug!(sid = self.id().0, replayed, "session resumed");
        let last_seq = {
            let mut out = self.sink.outlet.borrow_mut();
            out.reported_seq = out.recv_seq;
            out.recv_seq
        };
        // Counted before the client can hear of it.
        self.shared.metrics.resumed("ok");
        self.shared.metrics.frames_replayed.inc_by(replayed);
        let resumed = Frame::Resumed {
            last_seq,
            replay: replayed,
        };
        self.write(WireFrame::encode(&resumed), ctx);
        for frame in replay {
            self.write(frame, ctx);
        }
        self.notify_watchers(&SocketEventKind::Resumed);
        Ok(replayed)
    }
}

/// Why a resume did not attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ResumeError {
    /// The session cannot be resumed (unknown, expired, wrong token, a `last_seq`
    /// out of range): the client is told with `ResumeFailed` and starts afresh.
    Refused(String),
    /// Whether the session exists could not be told now (a node of the cluster did
    /// not answer in time): the connection is closed without a word on the session,
    /// as a network failure would close it, so that the client tries again later
    /// instead of giving its session up. Only a cluster says this.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    Unavailable(String),
}

impl std::fmt::Display for ResumeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResumeError::Refused(reason) | ResumeError::Unavailable(reason) => f.write_str(reason),
        }
    }
}

/// Why a resume is refused: the session ended as it was found.
pub(crate) const SESSION_ENDED: &str = "session ended";
/// Why a resume is refused: the session stopped as it was found.
pub(crate) const SESSION_GONE: &str = "unknown or expired session";

/// Attaches `link` to a session of this node. When the session is not here (or the
/// token is not its own), `link` comes back with the reason.
pub(crate) async fn resume_here(
    shared: &Arc<Shared>,
    sid: SessionId,
    token: ResumeToken,
    last_seq: u64,
    limit: ClientLimit,
    link: TransportLink,
    quiet: bool,
) -> Result<Addr<Session>, (String, Option<TransportLink>)> {
    let session = match shared
        .supervisor
        .send(ResumeSession { sid, token, quiet })
        .await
    {
        Ok(Ok(session)) => session,
        Ok(Err(reason)) => return Err((reason, Some(link))),
        Err(_) => return Err(("server shutting down".to_owned(), None)),
    };
    session
        .send(Attach {
            link,
            last_seq,
            limit,
        })
        .await
        .map_err(|_| (SESSION_GONE.to_owned(), None))?
        .map_err(|reason| (reason, None))?;
    Ok(session)
}
