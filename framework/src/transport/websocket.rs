//! The WebSocket transport: one actor per connection, one frame per binary message.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;

use crate::protocol::{self, Frame};
use crate::server::Shared;
use crate::session::{Backlog, FromTransport, Session, ToTransport};
use crate::DisconnectReason;

/// The actix-web handler for the WebSocket endpoint.
pub(crate) async fn route(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Arc<Shared>>,
) -> Result<HttpResponse, actix_web::Error> {
    let max = shared.config.max_frame_size;
    let transport = WsTransport::new(shared.get_ref().clone());
    ws::WsResponseBuilder::new(transport, &req, payload)
        .frame_size(max)
        .start()
}

/// One WebSocket connection.
///
/// Note on back-pressure: actix runs this actor only while the HTTP layer pulls its
/// output, so a peer that stops reading also stops this actor. The send backlog is
/// therefore counted by the session (which keeps running) and drained here.
pub(crate) struct WsTransport {
    shared: Arc<Shared>,
    session: Option<Addr<Session>>,
    backlog: Backlog,
    closed: bool,
}

impl WsTransport {
    fn new(shared: Arc<Shared>) -> Self {
        WsTransport {
            shared,
            session: None,
            backlog: Arc::new(AtomicUsize::new(0)),
            closed: false,
        }
    }

    /// Closes the connection because of something the client did; says why first.
    fn refuse(&mut self, reason: String, ctx: &mut ws::WebsocketContext<Self>) {
        tracing::warn!(%reason, "closing connection: protocol error");
        let session_reason = DisconnectReason::Protocol(reason.clone());
        self.close(reason, ws::CloseCode::Policy, ctx);
        if let Some(session) = self.session.take() {
            session.do_send(FromTransport::Closed(session_reason));
        }
    }

    fn close(&mut self, reason: String, code: ws::CloseCode, ctx: &mut ws::WebsocketContext<Self>) {
        if self.closed {
            return;
        }
        self.closed = true;
        ctx.binary(protocol::encode(&Frame::Close {
            reason: reason.clone(),
        }));
        // A close reason is at most 123 bytes in a WebSocket control frame.
        let mut description = reason;
        description.truncate(120);
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
        match (&self.session, frame) {
            (Some(session), frame) => session.do_send(FromTransport::Frame(frame)),
            (None, Frame::Hello { version }) if version == protocol::PROTOCOL_VERSION => {
                let session = Session::new(
                    self.shared.clone(),
                    ctx.address().recipient(),
                    self.backlog.clone(),
                );
                self.session = Some(session.start());
            }
            (None, Frame::Hello { version }) => self.refuse(
                format!(
                    "unsupported protocol version {version}; this server speaks {}",
                    protocol::PROTOCOL_VERSION
                ),
                ctx,
            ),
            (None, Frame::Resume { .. }) => {
                ctx.binary(protocol::encode(&Frame::ResumeFailed {
                    reason: "unknown session".to_owned(),
                }));
            }
            (None, other) => self.refuse(
                format!(
                    "expected 'hello' as the first frame, got '{}'",
                    other.kind()
                ),
                ctx,
            ),
        }
    }
}

impl Actor for WsTransport {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_later(self.shared.config.handshake_timeout, |act, ctx| {
            if act.session.is_none() && !act.closed {
                act.close("handshake timeout".to_owned(), ws::CloseCode::Policy, ctx);
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(session) = self.session.take() {
            session.do_send(FromTransport::Closed(DisconnectReason::TransportClosed));
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
                self.backlog.fetch_sub(bytes.len(), Ordering::Relaxed);
                if !self.closed {
                    ctx.binary(bytes);
                }
            }
            ToTransport::Close { reason } => {
                // The session is ending by itself: do not report back to it.
                self.session = None;
                self.close(reason, ws::CloseCode::Normal, ctx);
            }
        }
    }
}
