//! One Engine.IO connection ([`EioConnection`]): to its Volley session it is a
//! transport like any other (it sends `FromTransport`, takes `ToTransport`'s closes,
//! and its [`EioOut`] writes the session's frames, translated, straight onto its
//! carrier), to its client it is an Engine.IO socket, carried by long-polling requests
//! or a WebSocket (`carrier.rs`), and moved from the first to the second by the
//! upgrade probe.
//!
//! The session is opened on the client's first Socket.IO `CONNECT`, not at the
//! Engine.IO handshake: that packet says whether the client recovers an earlier
//! session (its `pid` and `offset`), which is a Volley resume of that session from
//! the offset on, or starts a new one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use actix_http::ws::{Frame as WsFrame, ProtocolError};
use serde_bytes::ByteBuf;

use super::carrier::{Carrier, Notice, WsHandle, WsOut};
use super::frames::{pong, read, Read};
use super::inbound::{inbound, Inbound, Recovery};
use super::outbound::Outbound;
use super::writing::EioOut;
use super::Registry;
use crate::protocol::socketio::{Binary, EioPacket, SioPacket};
use crate::protocol::Frame;
use crate::room::Gauge;
use crate::session::{
    queued_size, too_many_frames, ClientLimit, FromTransport, Sending, SessionRecipient, Shared,
    ToTransport, Translate, TransportId, TransportKind, TransportLink,
};
use crate::transport::admission::ConnectionSlot;
use crate::transport::opening::{resume, start_session};
use crate::DisconnectReason;

static NEXT_TRANSPORT: AtomicU64 = AtomicU64::new(3 << 61);

/// One Engine.IO connection and the Volley session behind it.
pub(crate) struct EioConnection {
    pub(super) id: TransportId,
    pub(super) eio_sid: Arc<str>,
    pub(super) shared: Arc<Shared>,
    pub(super) registry: Arc<Registry>,
    pub(super) session: Option<SessionRecipient>,
    /// Client frames posted to the session and not handled yet.
    pub(super) inbound: Arc<Gauge>,
    /// What the connection writes, the session's frames and its own records.
    pub(super) out: Arc<EioOut>,
    pub(super) carrier: Carrier,
    /// A WebSocket that sent `2probe`, until its `5` makes it the carrier.
    pub(super) probe: Option<WsHandle>,
    /// A binary packet waiting for its attachments, and its bytes so far (boxed: rare,
    /// and the connection's actor is allocated for its whole life).
    pub(super) binary: Option<Box<(Binary, usize)>>,
    /// The client said goodbye (Engine.IO close): the session ends, not detaches.
    pub(super) client_left: bool,
    pub(super) closing: bool,
    /// The handshake timeout, cancelled once a session is attached (its timer would
    /// otherwise stay allocated for the connection's whole life).
    handshake: SpawnHandle,
    pub(super) _slot: ConnectionSlot,
}

impl EioConnection {
    /// A new connection, carried by long polling or (`websocket`) by a WebSocket
    /// from the start, which this actor reads itself and whose first record is the
    /// handshake (the caller hands the socket's writing half to the connection's
    /// queue).
    pub fn new(
        shared: Arc<Shared>,
        registry: Arc<Registry>,
        eio_sid: Arc<str>,
        slot: ConnectionSlot,
        websocket: bool,
        ctx: &mut Context<Self>,
    ) -> Self {
        let recovery = shared.config.socketio.as_ref().is_some_and(|s| s.recovery);
        let told = ctx.address().recipient().downgrade();
        let out = Arc::new(EioOut::new(recovery, websocket, told));
        let carrier = match websocket {
            true => {
                out.send(super::handshake(&shared, &eio_sid, false));
                Carrier::Own
            }
            false => Carrier::Polling { waiting: None },
        };
        EioConnection {
            id: NEXT_TRANSPORT.fetch_add(1, Ordering::Relaxed),
            eio_sid,
            inbound: Arc::new(Gauge::new(shared.config.max_mailbox)),
            shared,
            registry,
            session: None,
            out,
            carrier,
            probe: None,
            binary: None,
            client_left: false,
            closing: false,
            handshake: SpawnHandle::default(),
            _slot: slot,
        }
    }

    fn link(&self, ctx: &mut Context<Self>) -> TransportLink {
        let kind = match self.carrier {
            Carrier::WebSocket(_) | Carrier::Own => TransportKind::WebSocket,
            Carrier::Polling { .. } => TransportKind::Polling,
        };
        TransportLink {
            id: self.id,
            kind,
            recipient: ctx.address().recipient(),
            sending: Sending::Translated(self.out.clone()),
            inbound: self.inbound.clone(),
            address: self._slot.address(),
        }
    }

    /// Ends the connection: the client gets an Engine.IO close after what is queued.
    pub(super) fn close(&mut self, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.out.close();
        if let Carrier::WebSocket(_) | Carrier::Own = &self.carrier {
            self.out.send(EioPacket::Close.encode());
            self.out.finish_websocket();
            // The socket's reading ends with the actor (a task's, when it stops).
            ctx.stop();
        } else {
            // The close goes alone in the poll after what is queued: the official
            // client handles a batch's close before the batch's other packets.
            if let Carrier::Polling { waiting } = &mut self.carrier {
                if self.out.nothing_to_poll() {
                    if let Some(w) = waiting.take() {
                        let _ = w.reply.send(Ok(EioPacket::Close.encode()));
                    }
                }
            }
            // A client that never polls again does not keep the connection alive.
            ctx.run_later(self.shared.config.ping_timeout, |_, ctx| ctx.stop());
        }
    }

    /// A protocol error from the client: the session ends with it.
    pub(super) fn refuse(&mut self, reason: String, ctx: &mut Context<Self>) {
        tracing::debug!(eio = %self.eio_sid, %reason, "closing Socket.IO connection: protocol error");
        self.shared.metrics.refused("bad_frame");
        if let Some(session) = self.session.take() {
            session.do_send(FromTransport::Closed {
                transport: self.id,
                reason: DisconnectReason::Protocol(reason),
            });
        }
        self.close(ctx);
    }

    /// Handles the client's packets in order; a recovery waits for the supervisor, and
    /// what follows it continues once the session is attached.
    pub fn feed<I>(&mut self, mut packets: I, ctx: &mut Context<Self>)
    where
        I: Iterator<Item = (EioPacket, usize)>,
    {
        while let Some((packet, mut size)) = packets.next() {
            if self.closing {
                return;
            }
            let sio = match packet {
                EioPacket::Message(text) => match SioPacket::decode(&text) {
                    Ok(packet) if packet.attachments > 0 => {
                        self.binary = Some(Box::new((Binary::new(packet), size)));
                        continue;
                    }
                    Ok(packet) => Ok(packet),
                    Err(e) => Err(e),
                },
                EioPacket::Binary(bytes) => {
                    let Some((binary, so_far)) = self.binary.as_deref_mut() else {
                        return self.refuse("attachment without a binary packet".to_owned(), ctx);
                    };
                    // The rate limit counts the packet with all its attachments.
                    *so_far += size;
                    let Some(done) = binary.push(bytes) else {
                        continue;
                    };
                    size = *so_far;
                    self.binary = None;
                    done
                }
                EioPacket::Pong(false) => {
                    if let Some(frame) = self.out.outbound(Outbound::pong) {
                        self.forward(frame, size, ctx);
                    }
                    continue;
                }
                EioPacket::Close => {
                    self.client_left = true;
                    ctx.stop();
                    return;
                }
                // Pings come from the server in v4; probes and upgrades come on the
                // WebSocket (handled there).
                _ => continue,
            };
            let inbound = match sio.and_then(inbound) {
                Ok(inbound) => inbound,
                Err(e) => return self.refuse(e.to_string(), ctx),
            };
            match inbound {
                Inbound::Frame(frame) => self.forward(frame, size, ctx),
                Inbound::Connect { ns, auth, recover } => {
                    let recovery = self.out.outbound(|out| out.recovery);
                    if let Some(recovery) = recover.filter(|_| recovery) {
                        if self.session.is_none() {
                            return self.recover(recovery, ns, auth, packets.collect(), ctx);
                        }
                        let answer = self.out.outbound(|out| {
                            out.recovered_with(recovery.sid, &ns, &recovery.pid, recovery.last_seq)
                        });
                        if let Some(answer) = answer {
                            self.out.send(answer);
                            continue;
                        }
                    }
                    self.connect(ns, auth, size, ctx);
                }
            }
        }
    }

    /// A namespace connect on a new session (started here if there is none yet).
    fn connect(&mut self, ns: String, auth: Vec<u8>, size: usize, ctx: &mut Context<Self>) {
        if self.session.is_none() {
            let limit = ClientLimit::announced(None);
            let session = start_session(&self.shared, self.link(ctx), limit);
            self.attached(session, ctx);
        }
        let auth = ByteBuf::from(auth);
        self.forward(Frame::Connect { ns, auth }, size, ctx);
    }

    /// Resumes the recovering client's session from its offset; if that session is
    /// gone (or cannot replay), a new one answers the connect, as Socket.IO does.
    fn recover(
        &mut self,
        recovery: Recovery,
        ns: String,
        auth: Vec<u8>,
        rest: VecDeque<(EioPacket, usize)>,
        ctx: &mut Context<Self>,
    ) {
        let Recovery {
            pid,
            sid,
            token,
            last_seq,
        } = recovery;
        self.out
            .outbound(|out| out.recovering(sid, token, last_seq, ns.clone(), pid));
        let link = self.link(ctx);
        let limit = ClientLimit::announced(None);
        let attach = resume(
            self.shared.clone(),
            crate::SessionId(sid),
            token,
            last_seq,
            limit,
            link,
        );
        // `wait`: nothing else from this client is handled meanwhile.
        ctx.wait(attach.into_actor(self).map(move |result, act, ctx| {
            match result {
                Ok(session) => act.attached(session, ctx),
                Err(reason) => {
                    tracing::debug!(sid, %reason, "Socket.IO recovery failed: new session");
                    act.out.outbound(|out| *out = Outbound::new(true));
                    act.connect(ns, auth, 0, ctx);
                }
            }
            act.feed(rest.into_iter(), ctx);
        }));
    }

    /// The connection carries `session` from now on.
    fn attached(&mut self, session: SessionRecipient, ctx: &mut Context<Self>) {
        self.session = Some(session);
        ctx.cancel_future(self.handshake);
    }

    fn forward(&mut self, frame: Frame, size: usize, ctx: &mut Context<Self>) {
        let Some(session) = &self.session else {
            return self.refuse(
                format!("'{}' before any namespace connect", frame.kind()),
                ctx,
            );
        };
        if !session.frame(self.id, frame, size, &self.inbound) {
            self.refuse(too_many_frames(self.inbound.limit()), ctx);
        }
    }
}

impl Actor for EioConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.handshake = ctx.run_later(self.shared.config.handshake_timeout, |act, ctx| {
            if act.session.is_none() && !act.closing {
                tracing::debug!(eio = %act.eio_sid, "Socket.IO connection without a connect: closed");
                act.close(ctx);
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.registry
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.eio_sid);
        self.out.stopped();
        if let Carrier::WebSocket(ws) = &self.carrier {
            let _ = ws.tx.unbounded_send(WsOut::Close);
        }
        if let Some(probe) = &self.probe {
            let _ = probe.tx.unbounded_send(WsOut::Close);
        }
        if let Some(session) = self.session.take() {
            let reason = match self.client_left {
                true => DisconnectReason::ClientLeft,
                false => DisconnectReason::TransportClosed,
            };
            session.do_send(FromTransport::Closed {
                transport: self.id,
                reason,
            });
        }
    }
}

/// A long-polling POST's packets, with their sizes.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Post(pub Vec<(EioPacket, usize)>);

impl Handler<Post> for EioConnection {
    type Result = ();

    fn handle(&mut self, msg: Post, ctx: &mut Context<Self>) {
        self.feed(msg.0.into_iter(), ctx);
    }
}

impl Handler<ToTransport> for EioConnection {
    type Result = ();

    fn handle(&mut self, msg: ToTransport, ctx: &mut Context<Self>) {
        match msg {
            // A relay's frame (a session on another node): counted in the backlog as
            // sessions count theirs, and written the same way.
            ToTransport::Frame(frame) => self.out.write(&frame, queued_size(&frame.payload())),
            ToTransport::Close { reason } => {
                self.session = None;
                self.out.translate(Frame::Close { reason });
                self.close(ctx);
            }
            ToTransport::Drop { reason } => {
                tracing::debug!(eio = %self.eio_sid, %reason, "Socket.IO connection dropped");
                self.session = None;
                self.close(ctx);
            }
        }
    }
}

/// The frames of the WebSocket this connection reads itself ([`Carrier::Own`]).
impl StreamHandler<Result<WsFrame, ProtocolError>> for EioConnection {
    fn handle(&mut self, frame: Result<WsFrame, ProtocolError>, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        match read(Some(frame), &self.shared) {
            Read::Packet(packet, size) => self.feed(std::iter::once((packet, size)), ctx),
            Read::Ping(bytes) => {
                // A peer that pings and does not read gets no more pongs than the
                // backlog holds.
                let queue = self.out.queue();
                if queue.backlog().load(Ordering::Relaxed) < self.shared.config.max_send_backlog {
                    self.out.push(pong(bytes));
                }
            }
            Read::Nothing => {}
            Read::End => ctx.stop(),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Notice> for EioConnection {
    type Result = ();

    fn handle(&mut self, msg: Notice, ctx: &mut Context<Self>) {
        match msg {
            Notice::Flush => self.flush(),
            // The session's close is written: the connection ends after it.
            Notice::Close => {
                self.session = None;
                self.close(ctx);
            }
        }
    }
}
