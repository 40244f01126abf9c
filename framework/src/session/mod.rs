//! Sessions: one per client, independent of the transport that carries it.
//!
//! A [`Session`] actor holds everything the server knows about a client: its id and
//! resume token, heartbeat, joined namespaces (as [`Socket`]s), pending acks and
//! sequence counters. Transports feed it decoded frames ([`FromTransport`]) and take
//! encoded bytes from it ([`ToTransport`]); rooms and namespaces deliver to it
//! ([`Deliver`]). Event handlers run here, on the connection's thread.

mod heartbeat;
mod supervisor;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::oneshot;

pub use heartbeat::{Beat, Heartbeat};
pub(crate) use supervisor::{KickSession, ListSessions};
pub use supervisor::{SessionInfo, Supervisor};

use crate::namespace::{self, NamespaceHandle, SessionLink, Socket, SocketCommand};
use crate::protocol::{self, Frame, Open, ResumeToken, PROTOCOL_VERSION};
use crate::room::Deliver;
use crate::server::Shared;
use crate::{AckError, DisconnectReason, SessionId};

/// What a session sends to its transport.
#[derive(Message)]
#[rtype(result = "()")]
pub enum ToTransport {
    /// Write one encoded frame.
    Frame(Bytes),
    /// Write a `Close` frame with the reason, then close the connection.
    Close { reason: String },
}

/// What a transport tells its session.
#[derive(Message)]
#[rtype(result = "()")]
pub enum FromTransport {
    /// A decoded frame from the client.
    Frame(Frame),
    /// The connection is gone (and why). The transport has already closed it.
    Closed(DisconnectReason),
}

/// Ends a session from the application (see [`crate::Volley::kick`]).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Kick {
    pub reason: String,
}

/// Bytes handed to the transport that its peer has not taken yet. The session adds,
/// the transport subtracts; past the limit the client is a slow consumer.
pub type Backlog = Arc<AtomicUsize>;

struct PendingAck {
    tx: oneshot::Sender<Result<Vec<u8>, AckError>>,
    timer: SpawnHandle,
}

struct Joined {
    socket: Socket,
    namespace: NamespaceHandle,
}

/// One client's session.
pub struct Session {
    shared: Arc<Shared>,
    transport: Recipient<ToTransport>,
    backlog: Backlog,
    link: Option<Arc<SessionLink>>,
    heartbeat: Heartbeat,
    joined: HashMap<Arc<str>, Joined>,
    pending_acks: HashMap<u64, PendingAck>,
    /// Reliable frames processed from the client (the client's sequence, implicit).
    recv_seq: u64,
    /// Reliable frames sent to the client.
    sent_seq: u64,
    ended: bool,
}

impl Session {
    pub(crate) fn new(
        shared: Arc<Shared>,
        transport: Recipient<ToTransport>,
        backlog: Backlog,
    ) -> Self {
        let timeout = shared.config.ping_timeout;
        Session {
            shared,
            transport,
            backlog,
            link: None,
            heartbeat: Heartbeat::new(timeout),
            joined: HashMap::new(),
            pending_acks: HashMap::new(),
            recv_seq: 0,
            sent_seq: 0,
            ended: false,
        }
    }

    fn id(&self) -> SessionId {
        self.link.as_ref().map_or(SessionId(0), |l| l.id)
    }

    /// Hands bytes to the transport, enforcing the backlog limit.
    fn write(&mut self, frame: Bytes, ctx: &mut Context<Self>) {
        if self.ended {
            return;
        }
        let queued = self.backlog.fetch_add(frame.len(), Ordering::Relaxed) + frame.len();
        if queued > self.shared.config.max_send_backlog {
            tracing::warn!(
                sid = self.id().0,
                queued,
                "slow consumer: send backlog over its limit"
            );
            self.end(DisconnectReason::SlowConsumer, true, ctx);
            return;
        }
        self.transport.do_send(ToTransport::Frame(frame));
    }

    fn send_frame(&mut self, frame: &Frame, ctx: &mut Context<Self>) {
        if frame.is_reliable() {
            self.sent_seq += 1;
        }
        self.write(protocol::encode(frame), ctx);
    }

    fn on_frame(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        if frame.is_reliable() {
            self.recv_seq += 1;
        }
        match frame {
            Frame::Pong { .. } => {
                if let Some(rtt) = self.heartbeat.pong(Instant::now()) {
                    if let Some(link) = &self.link {
                        let us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1);
                        link.rtt_us.store(us, Ordering::Relaxed);
                    }
                }
            }
            Frame::Received { .. } => {}
            Frame::Connect { ns, auth } => self.connect(ns, &auth, ctx),
            Frame::Disconnect { ns } => {
                if let Some(joined) = self.joined.remove(ns.as_str()) {
                    leave(joined, &DisconnectReason::ClientLeft);
                    self.publish_namespaces();
                }
            }
            Frame::Event {
                ns,
                name,
                payload,
                ack,
            } => match self.joined.get(ns.as_str()) {
                Some(joined) => {
                    if let Err(reason) =
                        joined
                            .namespace
                            .dispatch(&joined.socket, &name, &payload, ack)
                    {
                        tracing::debug!(sid = self.id().0, ns = %ns, %reason, "event refused");
                        self.send_frame(&Frame::Error { ns, reason }, ctx);
                    }
                }
                None => {
                    let reason = format!("namespace '{ns}' not joined: connect to it first");
                    self.send_frame(&Frame::Error { ns, reason }, ctx);
                }
            },
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
                tracing::warn!(sid = self.id().0, %reason, "protocol error");
                self.end(DisconnectReason::Protocol(reason), true, ctx);
            }
        }
    }

    fn connect(&mut self, ns: String, auth: &[u8], ctx: &mut Context<Self>) {
        let refuse = |reason: String| Frame::ConnectError {
            ns: ns.clone(),
            reason,
        };
        if self.joined.contains_key(ns.as_str()) {
            let frame = refuse(format!("already connected to '{ns}'"));
            return self.send_frame(&frame, ctx);
        }
        if self.joined.len() >= self.shared.config.max_namespaces_per_session {
            let frame = refuse("too many namespaces for one session".to_owned());
            return self.send_frame(&frame, ctx);
        }
        let Some(namespace) = self.shared.namespace(&ns) else {
            return self.send_frame(&refuse(format!("unknown namespace '{ns}'")), ctx);
        };
        let Some(link) = self.link.clone() else {
            return;
        };
        let data = match namespace.authorize(link.id, auth) {
            Ok(data) => data,
            Err(reason) => {
                tracing::info!(sid = link.id.0, ns = %ns, %reason, "namespace refused client");
                return self.send_frame(&refuse(reason), ctx);
            }
        };
        let socket = Socket::new(
            namespace.name.clone(),
            link.clone(),
            namespace.addr.clone(),
            data,
        );
        namespace.addr.do_send(namespace::AddSocket {
            id: link.id,
            recipient: link.deliver.clone(),
        });
        self.send_frame(&Frame::Connected { ns: ns.clone() }, ctx);
        if let Some(hook) = &namespace.spec.on_connect {
            hook(&socket);
        }
        self.joined
            .insert(namespace.name.clone(), Joined { socket, namespace });
        self.publish_namespaces();
    }

    fn publish_namespaces(&self) {
        let mut namespaces: Vec<String> = self.joined.keys().map(|k| k.to_string()).collect();
        namespaces.sort();
        self.shared.supervisor.do_send(supervisor::SetNamespaces {
            id: self.id(),
            namespaces,
        });
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        match self.heartbeat.tick(Instant::now()) {
            Beat::Ping => {
                self.send_frame(&Frame::Ping, ctx);
                // Check again when the answer is due, so that a dead peer is found
                // within interval + timeout rather than two intervals.
                ctx.run_later(self.shared.config.ping_timeout, |act, ctx| {
                    act.heartbeat(ctx)
                });
            }
            Beat::TimedOut => {
                tracing::info!(sid = self.id().0, "ping timeout");
                self.end(DisconnectReason::PingTimeout, true, ctx);
            }
            Beat::Wait => {}
        }
    }

    /// Ends the session: sockets leave their namespaces (handlers see `reason`),
    /// pending acks fail, the registry forgets it, and the transport is closed.
    fn end(&mut self, reason: DisconnectReason, close_transport: bool, ctx: &mut Context<Self>) {
        if self.ended {
            return;
        }
        self.ended = true;
        tracing::debug!(sid = self.id().0, %reason, "session ended");
        for (_, joined) in self.joined.drain() {
            leave(joined, &reason);
        }
        for (_, pending) in self.pending_acks.drain() {
            let _ = pending.tx.send(Err(AckError::Disconnected));
        }
        if self.link.is_some() {
            self.shared
                .supervisor
                .do_send(supervisor::Unregister { id: self.id() });
        }
        if close_transport {
            self.transport.do_send(ToTransport::Close {
                reason: reason.to_string(),
            });
        }
        ctx.stop();
    }
}

/// Takes a socket out of its namespace and runs the disconnect hook.
fn leave(joined: Joined, reason: &DisconnectReason) {
    joined.namespace.addr.do_send(namespace::RemoveSocket {
        id: joined.socket.id(),
    });
    if let Some(hook) = &joined.namespace.spec.on_disconnect {
        hook(&joined.socket, reason);
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let register = self.shared.supervisor.send(supervisor::Register {
            addr: ctx.address(),
        });
        // `wait` holds every other message until the session has its id.
        ctx.wait(register.into_actor(self).map(|res, act, ctx| match res {
            Ok((id, token)) => act.opened(id, token, ctx),
            Err(_) => {
                tracing::error!("supervisor unavailable; refusing session");
                act.end(
                    DisconnectReason::Kicked("server shutting down".into()),
                    true,
                    ctx,
                );
            }
        }));
    }
}

impl Session {
    fn opened(&mut self, id: SessionId, token: ResumeToken, ctx: &mut Context<Self>) {
        let addr = ctx.address();
        self.link = Some(Arc::new(SessionLink {
            id,
            deliver: addr.clone().recipient(),
            command: addr.recipient(),
            rtt_us: AtomicU64::new(0),
            next_ack: AtomicU64::new(1),
        }));
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
        ctx.run_interval(config.ping_interval, |act, ctx| act.heartbeat(ctx));
    }
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl Handler<FromTransport> for Session {
    type Result = ();

    fn handle(&mut self, msg: FromTransport, ctx: &mut Context<Self>) {
        if self.ended {
            return;
        }
        match msg {
            FromTransport::Frame(frame) => self.on_frame(frame, ctx),
            FromTransport::Closed(reason) => self.end(reason, false, ctx),
        }
    }
}

impl Handler<Deliver> for Session {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        if msg.reliable {
            self.sent_seq += 1;
        }
        self.write(msg.frame, ctx);
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
                if self.ended {
                    let _ = tx.send(Err(AckError::Disconnected));
                    return;
                }
                let timer = ctx.run_later(timeout, move |act, _| {
                    if let Some(pending) = act.pending_acks.remove(&id) {
                        let _ = pending.tx.send(Err(AckError::Timeout));
                    }
                });
                self.pending_acks.insert(id, PendingAck { tx, timer });
                self.sent_seq += 1;
                self.write(frame, ctx);
            }
            SocketCommand::Leave { ns, reason } => {
                if let Some(joined) = self.joined.remove(&ns) {
                    self.send_frame(&Frame::Disconnect { ns: ns.to_string() }, ctx);
                    leave(joined, &DisconnectReason::Kicked(reason));
                    self.publish_namespaces();
                }
            }
        }
    }
}

impl Handler<Kick> for Session {
    type Result = ();

    fn handle(&mut self, msg: Kick, ctx: &mut Context<Self>) {
        self.end(DisconnectReason::Kicked(msg.reason), true, ctx);
    }
}
