//! The WebSocket transport: one actor per connection, one frame per binary message.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;

use super::admission::{self, ConnectionSlot};
use super::edge::{FrameGuard, Violation};
use super::opening::{opening, resume, start_session, Opening};
use crate::protocol::{self, Frame};
use crate::room::Gauge;
use crate::server::Shared;
use crate::session::{
    queued_size, too_many_frames, Backlog, ClientLimit, FromTransport, Session, ToTransport,
    TransportId, TransportLink,
};
use crate::{DisconnectReason, SessionId};

/// The actix-web handler for the WebSocket endpoint.
pub(crate) async fn route(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Arc<Shared>>,
) -> Result<HttpResponse, actix_web::Error> {
    super::connection::check_tuned(&req, shared.config.write_timeout);
    let slot = match admission::check_origin(&req, &shared.config)
        .and_then(|()| admission::reserve(&req, &shared))
    {
        Ok(slot) => slot,
        Err(refusal) => return Ok(refusal.response()),
    };
    let max = shared.config.max_frame_size;
    let violation = Violation::default();
    let transport = WsTransport::new(shared.get_ref().clone(), violation.clone(), slot);
    let guarded = FrameGuard::new(payload, max, violation);
    ws::WsResponseBuilder::new(transport, &req, guarded)
        .frame_size(max)
        .start()
}

/// Source of transport ids, unique within the process.
static NEXT_TRANSPORT: AtomicU64 = AtomicU64::new(1);

/// One WebSocket connection.
///
/// Note on back-pressure: actix runs this actor only while the HTTP layer pulls its
/// output, so a peer that stops reading also stops this actor. The send backlog is
/// therefore counted by the session (which keeps running) and drained here.
pub(crate) struct WsTransport {
    id: TransportId,
    shared: Arc<Shared>,
    session: Option<Addr<Session>>,
    backlog: Backlog,
    /// Frames posted to the session and not handled yet.
    inbound: Arc<Gauge>,
    closed: bool,
    /// Why the edge guard stopped the client's bytes, if it did.
    violation: Violation,
    /// This connection's place under the connection limits, given back on drop.
    _slot: ConnectionSlot,
}

impl WsTransport {
    fn new(shared: Arc<Shared>, violation: Violation, slot: ConnectionSlot) -> Self {
        WsTransport {
            id: NEXT_TRANSPORT.fetch_add(1, Ordering::Relaxed),
            inbound: Arc::new(Gauge::new(shared.config.max_mailbox)),
            shared,
            session: None,
            backlog: Arc::new(AtomicUsize::new(0)),
            closed: false,
            violation,
            _slot: slot,
        }
    }

    fn link(&self, ctx: &mut ws::WebsocketContext<Self>) -> TransportLink {
        TransportLink {
            id: self.id,
            recipient: ctx.address().recipient(),
            backlog: self.backlog.clone(),
            inbound: self.inbound.clone(),
        }
    }

    /// Closes the connection because of something the client did; says why first.
    fn refuse(&mut self, reason: String, ctx: &mut ws::WebsocketContext<Self>) {
        tracing::warn!(%reason, "closing connection: protocol error");
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
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        if self.closed {
            return;
        }
        self.closed = true;
        if session_over {
            ctx.binary(protocol::encode(&Frame::Close {
                reason: reason.clone(),
            }));
        }
        let mut description = reason;
        // A close reason is at most 123 bytes in a WebSocket control frame.
        truncate_utf8(&mut description, 120);
        ctx.close(Some(ws::CloseReason {
            code,
            description: Some(description),
        }));
        ctx.stop();
    }

    fn on_binary(&mut self, bytes: &[u8], ctx: &mut ws::WebsocketContext<Self>) {
        let frame = match protocol::decode(bytes) {
            Ok(frame) => frame,
            Err(e) => return self.refuse(e.to_string(), ctx),
        };
        if let Some(session) = &self.session {
            if !self.inbound.admit() {
                return self.refuse(too_many_frames(self.inbound.limit()), ctx);
            }
            return session.do_send(FromTransport::Frame {
                transport: self.id,
                frame,
                size: bytes.len(),
            });
        }
        match opening(frame) {
            Opening::Hello(limit) => {
                self.session = Some(start_session(&self.shared, self.link(ctx), limit))
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
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let link = self.link(ctx);
        let attach = resume(self.shared.clone(), sid, token, last_seq, limit, link);
        // `wait` holds the client's next frames until the session is attached.
        ctx.wait(
            attach
                .into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(session) => act.session = Some(session),
                    Err(reason) => {
                        tracing::debug!(sid = sid.0, %reason, "resume failed");
                        ctx.binary(protocol::encode(&Frame::ResumeFailed { reason }));
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
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_later(self.shared.config.handshake_timeout, |act, ctx| {
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
        if let Some(session) = self.session.take() {
            session.do_send(FromTransport::Closed {
                transport: self.id,
                reason: DisconnectReason::TransportClosed,
            });
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsTransport {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        if self.closed {
            return;
        }
        match msg {
            Ok(ws::Message::Binary(bytes)) => self.on_binary(&bytes, ctx),
            Ok(ws::Message::Ping(bytes)) => ctx.pong(&bytes),
            Ok(ws::Message::Pong(_)) | Ok(ws::Message::Nop) => {}
            Ok(ws::Message::Text(_)) => self.refuse(
                "text frames are not part of the protocol; send binary frames".into(),
                ctx,
            ),
            Ok(ws::Message::Continuation(_)) => {
                self.refuse("fragmented messages are not supported".into(), ctx)
            }
            Ok(ws::Message::Close(_)) => {
                self.closed = true;
                ctx.close(None);
                ctx.stop();
            }
            Err(ws::ProtocolError::Overflow) => self.refuse(
                format!(
                    "frame too large (limit {} bytes)",
                    self.shared.config.max_frame_size
                ),
                ctx,
            ),
            Err(ws::ProtocolError::Io(e)) => match self.violation.take() {
                // The edge guard refused a frame header (too large, reserved bits).
                Some(reason) => self.refuse(reason, ctx),
                // The connection broke (reset, EOF mid-frame): not the client's
                // fault, so the session detaches and may be resumed.
                None => {
                    tracing::debug!(error = %e, "connection lost");
                    self.closed = true;
                    ctx.stop();
                }
            },
            Err(e) => self.refuse(format!("websocket protocol error: {e}"), ctx),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<ToTransport> for WsTransport {
    type Result = ();

    fn handle(&mut self, msg: ToTransport, ctx: &mut Self::Context) {
        match msg {
            ToTransport::Frame(bytes) => {
                self.backlog
                    .fetch_sub(queued_size(&bytes), Ordering::Relaxed);
                if !self.closed {
                    ctx.binary(bytes);
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
