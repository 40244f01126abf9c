//! The WebSocket transport: one actor per connection, one frame per binary message.
//!
//! actix-web does the handshake; the upgraded connection's two byte streams are then
//! ours: the actor reads the client's frames ([`super::ws_read`]: checked, unmasked and
//! decoded without an allocation per frame), and the session writes framed messages
//! straight onto the connection's [`SendQueue`] ([`super::ws_frames`]).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_codec::Encoder;
use actix_http::ws::{self, Codec, Message as WsMessage};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::BytesMut;
use tokio::io::AsyncRead;

use super::admission::{self, ConnectionSlot};
use super::opening::{opening, resume, start_session, Opening};
use super::ws_frames::{ConnectionGone, Outgoing};
use super::ws_read::{BodyBytes, ClientFrames, ClientMessage, ReadError};
use crate::log_gate::LogGate;
use crate::protocol::{self, DecodeError, Frame, WireFrame};
use crate::room::Gauge;
use crate::session::Shared;
use crate::session::{
    queued_size, too_many_frames, ClientLimit, FromTransport, ResumeError, SendQueue, Sending,
    SessionRecipient, ToTransport, TransportId, TransportKind, TransportLink,
};
use crate::{DisconnectReason, SessionId};

/// The actix-web handler for the WebSocket endpoint, under a plain actix-web
/// `HttpServer` (Volley's own server takes upgrades before they reach it: see
/// [`super::upgrade`]).
pub(crate) async fn route(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Arc<Shared>>,
) -> Result<HttpResponse, actix_web::Error> {
    super::connection::check_tuned(&req, shared.config.write_timeout);
    let slot = match admission::check_origin(req.head(), &shared)
        .and_then(|()| admission::reserve(req.head(), &shared, "websocket"))
    {
        Ok(slot) => slot,
        Err(refusal) => return Ok(refusal.response()),
    };
    let mut response = actix_web_actors::ws::handshake(&req)
        .inspect_err(|e| shared.metrics.refused(admission::handshake_refusal(e)))?;
    let body = BodyBytes::new(payload);
    let (transport, queue) = start(shared.get_ref(), slot, body, BytesMut::new());
    Ok(response.streaming(Outgoing::new(queue, transport.recipient())))
}

/// Starts the transport actor of an upgraded connection whose client bytes are read
/// from `io`, after `first` (read past the upgrade request); what the caller must
/// write is in the returned queue.
pub(crate) fn start<R>(
    shared: &Arc<Shared>,
    slot: ConnectionSlot,
    io: R,
    first: BytesMut,
) -> (Addr<WsTransport>, Arc<SendQueue>)
where
    R: AsyncRead + Unpin + 'static,
{
    let max = shared.config.max_frame_size;
    let transport = WsTransport::new(shared.clone(), slot.address());
    let queue = transport.queue.clone();
    let incoming = ClientFrames::new(io, first, max).holding(slot);
    let addr = WsTransport::create(|ctx| {
        ctx.add_stream(incoming);
        transport
    });
    (addr, queue)
}

/// Source of transport ids, unique within the process.
static NEXT_TRANSPORT: AtomicU64 = AtomicU64::new(1);

/// One WebSocket connection.
///
/// Back-pressure: the session counts what it queues in the queue's backlog, and the
/// HTTP layer counts it off as it takes each message to write; a peer that stops
/// reading makes the backlog grow until the session ends it as a slow consumer. What
/// this actor writes itself (pongs, closes) is counted too.
///
/// Kept small: with its actix context it is one task per connection, allocated in
/// 128-byte blocks (its place under the connection limits is held by the stream it
/// reads, and the backlog is reached through the queue).
pub(crate) struct WsTransport {
    id: TransportId,
    shared: Arc<Shared>,
    session: Option<SessionRecipient>,
    /// What the connection has to write, drained by the HTTP layer.
    queue: Arc<SendQueue>,
    /// Frames posted to the session and not handled yet.
    inbound: Arc<Gauge>,
    closed: bool,
    /// The handshake timeout, cancelled once a session is attached (its timer would
    /// otherwise stay allocated for the connection's whole life).
    handshake: SpawnHandle,
}

impl WsTransport {
    /// A connection of the client at `address` (kept in its queue).
    fn new(shared: Arc<Shared>, address: Option<IpAddr>) -> Self {
        WsTransport {
            id: NEXT_TRANSPORT.fetch_add(1, Ordering::Relaxed),
            inbound: Arc::new(Gauge::new(shared.config.max_mailbox)),
            shared,
            session: None,
            queue: SendQueue::for_client(address),
            closed: false,
            handshake: SpawnHandle::default(),
        }
    }

    /// The connection carries `session` from now on.
    fn attached(&mut self, session: SessionRecipient, ctx: &mut Context<Self>) {
        self.session = Some(session);
        ctx.cancel_future(self.handshake);
    }

    fn backlog(&self) -> &AtomicUsize {
        self.queue.backlog()
    }

    fn link(&self, ctx: &mut Context<Self>) -> TransportLink {
        TransportLink {
            id: self.id,
            kind: TransportKind::WebSocket,
            recipient: ctx.address().recipient(),
            sending: Sending::Queue(self.queue.clone()),
            inbound: self.inbound.clone(),
            address: self.queue.client(),
        }
    }

    /// Closes the connection because of something the client did; says why first.
    fn refuse(&mut self, reason: String, ctx: &mut Context<Self>) {
        static WARNED: LogGate = LogGate::new();
        if let Some(suppressed) = WARNED.admit() {
            tracing::warn!(%reason, suppressed, "closing connection: protocol error");
        }
        let limit = reason.starts_with("frame too large");
        let label = if limit {
            "frame_too_large"
        } else {
            "bad_frame"
        };
        self.shared.metrics.refused(label);
        let session_reason = DisconnectReason::Protocol(reason.clone());
        self.close(reason, true, ws::CloseCode::Policy, ctx);
        if let Some(session) = self.session.take() {
            session.do_send(FromTransport::Closed {
                transport: self.id,
                reason: session_reason,
            });
        }
    }

    /// Closes the connection. With `session_over` a `Close` frame first tells the
    /// client the session is over; the WebSocket close carries the reason either way.
    fn close(
        &mut self,
        reason: String,
        session_over: bool,
        code: ws::CloseCode,
        ctx: &mut Context<Self>,
    ) {
        if self.closed {
            return;
        }
        self.closed = true;
        if session_over {
            let close = WireFrame::encode(&Frame::Close {
                reason: reason.clone(),
            });
            self.send(close.message().clone());
        }
        let mut description = reason;
        // A close reason is at most 123 bytes in a WebSocket control frame.
        truncate_utf8(&mut description, 120);
        self.send_control(WsMessage::Close(Some(ws::CloseReason {
            code,
            description: Some(description),
        })));
        self.queue.finish();
        ctx.stop();
    }

    /// Queues a message this actor writes itself, counted in the backlog.
    fn send(&self, message: bytes::Bytes) {
        self.backlog()
            .fetch_add(queued_size(&message), Ordering::Relaxed);
        self.queue.push(message);
    }

    /// Queues a WebSocket control frame (pong, close).
    fn send_control(&self, message: WsMessage) {
        let mut buf = BytesMut::new();
        // A server's control frame always encodes (it is small and unmasked).
        if Codec::new().encode(message, &mut buf).is_ok() {
            self.send(buf.freeze());
        }
    }

    fn on_binary(
        &mut self,
        frame: Result<Frame, DecodeError>,
        size: usize,
        ctx: &mut Context<Self>,
    ) {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => return self.refuse(e.to_string(), ctx),
        };
        if let Some(session) = &self.session {
            if let Frame::Pong { last_seq } = frame {
                // The answer to the session's ping, acknowledging nothing new: the
                // heartbeat is all it changes, and the pulse holds that.
                if let Some(rtt) = self.queue.pulse().answer(last_seq, Instant::now()) {
                    let metrics = &self.shared.metrics;
                    metrics.frames_in.inc();
                    metrics.bytes_in.inc_by(size as u64);
                    metrics.ping_rtt.observe(rtt.as_secs_f64());
                    return;
                }
            }
            if !session.frame(self.id, frame, size, &self.inbound) {
                self.refuse(too_many_frames(self.inbound.limit()), ctx);
            }
            return;
        }
        match opening(frame) {
            Opening::Hello(limit) => {
                let session = start_session(&self.shared, self.link(ctx), limit);
                self.attached(session, ctx);
            }
            Opening::Resume {
                sid,
                token,
                last_seq,
                limit,
            } => self.resume(sid, token, last_seq, limit, ctx),
            Opening::Refuse(reason) => self.refuse(reason, ctx),
        }
    }

    /// Attaches this connection to an existing session. On failure the client is told
    /// why and may send `Hello` on the same connection for a fresh session.
    fn resume(
        &mut self,
        sid: SessionId,
        token: protocol::ResumeToken,
        last_seq: u64,
        limit: ClientLimit,
        ctx: &mut Context<Self>,
    ) {
        let link = self.link(ctx);
        let attach = resume(self.shared.clone(), sid, token, last_seq, limit, link);
        // `wait` holds the client's next frames until the session is attached.
        ctx.wait(
            attach
                .into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(session) => act.attached(session, ctx),
                    Err(ResumeError::Refused(reason)) => {
                        tracing::debug!(sid = sid.0, %reason, "resume failed");
                        let failed = WireFrame::encode(&Frame::ResumeFailed { reason });
                        act.send(failed.message().clone());
                    }
                    // Not a verdict on the session: closed as a failed connection
                    // (1013, try again later), and the client's next attempt asks again.
                    Err(ResumeError::Unavailable(reason)) => {
                        act.close(reason, false, ws::CloseCode::Again, ctx)
                    }
                }),
        );
    }
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

impl Actor for WsTransport {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.handshake = ctx.run_later(self.shared.config.handshake_timeout, |act, ctx| {
            if act.session.is_none() && !act.closed {
                act.close(
                    "handshake timeout".to_owned(),
                    true,
                    ws::CloseCode::Policy,
                    ctx,
                );
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.queue.finish();
        if let Some(session) = self.session.take() {
            session.do_send(FromTransport::Closed {
                transport: self.id,
                reason: DisconnectReason::TransportClosed,
            });
        }
    }
}

impl StreamHandler<Result<ClientMessage, ReadError>> for WsTransport {
    fn handle(&mut self, msg: Result<ClientMessage, ReadError>, ctx: &mut Self::Context) {
        if self.closed {
            return;
        }
        match msg {
            Ok(ClientMessage::Binary(frame, size)) => self.on_binary(frame, size, ctx),
            // A peer that pings and does not read gets no more pongs than the backlog
            // holds.
            Ok(ClientMessage::Ping(bytes)) => {
                if self.backlog().load(Ordering::Relaxed) < self.shared.config.max_send_backlog {
                    self.send_control(WsMessage::Pong(bytes));
                }
            }
            Ok(ClientMessage::Pong) => {}
            Ok(ClientMessage::Close) => {
                self.closed = true;
                self.send_control(WsMessage::Close(None));
                self.queue.finish();
                ctx.stop();
            }
            Err(ReadError::Refused(reason)) => self.refuse(reason, ctx),
            // The connection broke (reset, EOF mid-frame): not the client's fault, so
            // the session detaches and may be resumed.
            Err(ReadError::Lost(e)) => {
                tracing::debug!(error = %e, "connection lost");
                self.closed = true;
                self.queue.gone();
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// The HTTP layer dropped the connection (I/O error, write timeout, shutdown).
impl Handler<ConnectionGone> for WsTransport {
    type Result = ();

    fn handle(&mut self, _: ConnectionGone, ctx: &mut Self::Context) {
        self.closed = true;
        ctx.stop();
    }
}

impl Handler<ToTransport> for WsTransport {
    type Result = ();

    fn handle(&mut self, msg: ToTransport, ctx: &mut Self::Context) {
        match msg {
            // Sessions write to the queue; a frame sent this way goes there too.
            ToTransport::Frame(frame) => {
                self.backlog()
                    .fetch_sub(queued_size(&frame.payload()), Ordering::Relaxed);
                if !self.closed {
                    self.send(frame.message().clone());
                }
            }
            ToTransport::Close { reason } => {
                // The session is ending by itself: do not report back to it.
                self.session = None;
                self.close(reason, true, ws::CloseCode::Normal, ctx);
            }
            ToTransport::Drop { reason } => {
                self.session = None;
                self.close(reason, false, ws::CloseCode::Away, ctx);
            }
        }
    }
}
