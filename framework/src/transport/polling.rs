//! The HTTP long-polling transport, for networks where WebSocket is blocked.
//!
//! A polling connection is an actor ([`PollTransport`]) named by a random polling id
//! (`pid`, 128 bits: knowing it is what lets a client use the connection). The
//! opening `POST <path>/poll` carries `Hello` or `Resume` and is answered with the
//! pid; then `GET <path>/poll?pid=…` returns the frames queued for the client as one
//! batch (or an empty batch after `poll_hold`), and `POST <path>/poll?pid=…` carries
//! the client's frames. Bodies are batches of length-prefixed frames
//! ([`protocol::encode_batch`]). The session behind it is the same as over WebSocket:
//! it can resume on either transport.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use rand::RngCore;
use tokio::sync::oneshot;

use super::admission::{self, ConnectionSlot, Refusal};
use super::opening::{opening, resume, start_session, Opening};
use crate::log_gate::LogGate;
use crate::protocol::{self, Frame};
use crate::room::Gauge;
use crate::session::Shared;
use crate::session::{
    queued_size, too_many_frames, Backlog, FromTransport, ResumeError, Sending, SessionRecipient,
    ToTransport, TransportId, TransportKind, TransportLink,
};
use crate::DisconnectReason;

/// Polling connections by pid. Touched once per HTTP request, never per frame.
pub(crate) type PollRegistry = std::sync::RwLock<HashMap<Arc<str>, Addr<PollTransport>>>;

static NEXT_TRANSPORT: AtomicU64 = AtomicU64::new(1 << 62);

/// Mounts the polling routes at `<path>/poll`.
/// Mounts the polling endpoint at `<path>/poll`; `polls` is the server's registry of
/// open polling connections, shared by every worker's `App`.
pub(crate) fn configure(cfg: &mut web::ServiceConfig, path: &str, polls: Arc<PollRegistry>) {
    let path = format!("{}/poll", path.trim_end_matches('/'));
    cfg.app_data(web::Data::from(polls))
        .route(&path, web::get().to(get))
        .route(&path, web::post().to(post))
        .route(&path, web::method(Method::OPTIONS).to(preflight))
        .route(&path, web::route().to(not_allowed));
}

/// The methods of the polling endpoint, for `Allow` and CORS preflights.
const METHODS: &str = "GET, POST, OPTIONS";

/// Any other method on the polling endpoint: 405 with the methods it takes.
async fn not_allowed(req: HttpRequest, shared: web::Data<Arc<Shared>>) -> HttpResponse {
    shared.metrics.refused("method_not_allowed");
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, METHODS))
        .content_type("text/plain; charset=utf-8")
        .body(format!(
            "method {} not allowed on the polling endpoint (allowed: {METHODS})",
            req.method()
        ))
}

#[derive(serde::Deserialize)]
struct PollQuery {
    pid: Option<String>,
}

/// Why a polling request was refused; the text is the response body.
#[derive(Debug, thiserror::Error)]
enum PollError {
    #[error("unknown or expired polling id")]
    UnknownPid,
    #[error("another poll is already waiting on this connection")]
    Concurrent,
    #[error("polling connection closed: {0}")]
    Gone(String),
    /// The session refused a frame (counted where the transport refuses it).
    #[error("{0}")]
    Refused(String),
    /// The body is not a batch this server takes: malformed, too many frames, or an
    /// opening request without frames.
    #[error("{0}")]
    BadBatch(String),
    #[error("request body too large (limit {0} bytes)")]
    TooLarge(usize),
    /// Foreign origin (403) or no room for another connection (503).
    #[error(transparent)]
    Admission(#[from] Refusal),
    /// Refused by the node that holds the connection (a cluster), with its status.
    #[cfg(feature = "cluster")]
    #[error("{1}")]
    Elsewhere(u16, String),
}

impl PollError {
    fn status(&self) -> StatusCode {
        match self {
            PollError::Concurrent => StatusCode::CONFLICT,
            PollError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            PollError::Admission(refusal) => refusal.status(),
            #[cfg(feature = "cluster")]
            PollError::Elsewhere(status, _) => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST)
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The reason this refusal is counted under in `volley_refused_total`, unless it
    /// is counted where it happens (admission, the session) or refuses no input.
    fn counted_as(&self) -> Option<&'static str> {
        match self {
            PollError::TooLarge(_) => Some("body_too_large"),
            PollError::BadBatch(_) => Some("bad_batch"),
            _ => None,
        }
    }
}

fn respond(req: &HttpRequest, shared: &Shared, result: Result<Bytes, PollError>) -> HttpResponse {
    let mut builder = match &result {
        Ok(_) => HttpResponse::Ok(),
        Err(e) => HttpResponse::build(e.status()),
    };
    cors(req, shared, &mut builder);
    builder.insert_header((header::CACHE_CONTROL, "no-store"));
    match result {
        Ok(body) => builder.content_type("application/octet-stream").body(body),
        Err(e) => {
            tracing::debug!(error = %e, "polling request refused");
            if let Some(reason) = e.counted_as() {
                shared.metrics.refused(reason);
            }
            builder
                .content_type("text/plain; charset=utf-8")
                .body(e.to_string())
        }
    }
}

/// Adds CORS headers when the request's origin is allowed.
pub(crate) fn cors(req: &HttpRequest, shared: &Shared, builder: &mut HttpResponseBuilder) {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return;
    };
    let allowed = &shared.config.cors_origins;
    let ok = origin
        .to_str()
        .is_ok_and(|o| allowed.iter().any(|a| a == "*" || a == o));
    if ok {
        builder
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()))
            .insert_header((header::VARY, "Origin"));
    }
}

pub(crate) async fn preflight(req: HttpRequest, shared: web::Data<Arc<Shared>>) -> HttpResponse {
    if let Err(refusal) = admission::check_origin(req.head(), &shared) {
        return refusal.response();
    }
    let mut builder = HttpResponse::NoContent();
    cors(&req, &shared, &mut builder);
    builder
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, METHODS))
        .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, "Content-Type"))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
        .finish()
}

fn lookup(polls: &PollRegistry, pid: &str) -> Option<Addr<PollTransport>> {
    polls
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(pid)
        .cloned()
}

/// Long-poll: the frames queued for the client.
async fn get(
    req: HttpRequest,
    query: web::Query<PollQuery>,
    shared: web::Data<Arc<Shared>>,
    polls: web::Data<PollRegistry>,
) -> HttpResponse {
    // A GET answer that cannot be written is dropped like a stalled WebSocket.
    super::connection::check_tuned(&req, shared.config.write_timeout);
    let result = async {
        admission::check_origin(req.head(), &shared)?;
        let pid = query.pid.as_deref().ok_or(PollError::UnknownPid)?;
        match lookup(&polls, pid) {
            Some(transport) => poll(&transport).await,
            None => elsewhere(&shared, pid, None).await,
        }
    }
    .await;
    respond(&req, &shared, result)
}

/// Waits for the frames queued on `transport` (a long-poll).
async fn poll(transport: &Addr<PollTransport>) -> Result<Bytes, PollError> {
    let (reply, answer) = oneshot::channel();
    transport
        .send(Poll { reply })
        .await
        .map_err(|_| PollError::UnknownPid)?;
    answer
        .await
        .map_err(|_| PollError::Gone("closed".to_owned()))?
}

/// A request for a polling connection that is not here: in a cluster, the node
/// that holds it answers (its pid starts with its node id).
async fn elsewhere(shared: &Shared, pid: &str, body: Option<Bytes>) -> Result<Bytes, PollError> {
    #[cfg(feature = "cluster")]
    if let Some(cluster) = &shared.cluster {
        let hold = shared.config.poll_hold;
        if let Some(answer) = cluster.poll_elsewhere(pid, body, hold, false).await {
            return answer.map_err(|(status, text)| PollError::Elsewhere(status, text));
        }
        return Err(PollError::UnknownPid);
    }
    let _ = (shared, pid, body);
    Err(PollError::UnknownPid)
}

/// Answers a polling request that reached another node of the cluster: a long-poll
/// (`body` none) or frames, for the connection `pid` of this node.
#[cfg(feature = "cluster")]
pub(crate) async fn for_another_node(
    polls: &PollRegistry,
    shared: &Shared,
    pid: &str,
    body: Option<Bytes>,
) -> Result<Bytes, (u16, String)> {
    let result = match (lookup(polls, pid), body) {
        (None, _) => Err(PollError::UnknownPid),
        (Some(transport), None) => poll(&transport).await,
        (Some(transport), Some(body)) => {
            match protocol::split_batch(&body, shared.config.max_poll_frames) {
                Ok(frames) => push(&transport, frames).await.map(|()| ok()),
                Err(e) => Err(PollError::BadBatch(e.to_string())),
            }
        }
    };
    result.map_err(|e| (e.status().as_u16(), e.to_string()))
}

fn ok() -> Bytes {
    Bytes::from_static(b"ok")
}

/// Frames from the client; without a pid, opens a polling connection.
async fn post(
    req: HttpRequest,
    query: web::Query<PollQuery>,
    payload: web::Payload,
    shared: web::Data<Arc<Shared>>,
    polls: web::Data<PollRegistry>,
) -> HttpResponse {
    let result = async {
        admission::check_origin(req.head(), &shared)?;
        let body = read_body(&req, payload, shared.config.max_poll_body).await?;
        let frames = protocol::split_batch(&body, shared.config.max_poll_frames)
            .map_err(|e| PollError::BadBatch(e.to_string()))?;
        match query.pid.as_deref() {
            Some(pid) => {
                let Some(transport) = lookup(&polls, pid) else {
                    return elsewhere(&shared, pid, Some(body)).await;
                };
                push(&transport, frames).await?;
                Ok(ok())
            }
            None => {
                if frames.is_empty() {
                    return Err(PollError::BadBatch(
                        "an opening request must carry 'hello' or 'resume'".to_owned(),
                    ));
                }
                let slot = admission::reserve(req.head(), &shared, "polling")?;
                let pid = polling_pid(&shared);
                let registry = polls.clone().into_inner();
                let transport =
                    PollTransport::new(shared.get_ref().clone(), registry, pid.clone(), slot)
                        .start();
                polls
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(pid.clone(), transport.clone());
                push(&transport, frames).await?;
                Ok(Bytes::copy_from_slice(pid.as_bytes()))
            }
        }
    }
    .await;
    respond(&req, &shared, result)
}

async fn push(transport: &Addr<PollTransport>, frames: Vec<Bytes>) -> Result<(), PollError> {
    transport
        .send(Push { frames })
        .await
        .map_err(|_| PollError::UnknownPid)?
        .map_err(PollError::Refused)
}

/// Reads a request body of at most `limit` bytes. A `Content-Length` above the limit
/// is refused before any of the body is read, so the client hears 413 at once instead
/// of after uploading it.
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, PollError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(PollError::TooLarge(limit));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| PollError::BadBatch(format!("bad request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(PollError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A fresh random pid (the Socket.IO endpoint's sids too).
pub(crate) fn new_pid() -> Arc<str> {
    let mut raw = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    raw.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .into()
}

/// A fresh pid for a polling connection of this server; in a cluster it starts with
/// the node's id, so that any node can tell where the connection is.
pub(crate) fn polling_pid(shared: &Shared) -> Arc<str> {
    #[cfg(feature = "cluster")]
    if let Some(cluster) = &shared.cluster {
        return format!("{}{}", cluster.id(), new_pid()).into();
    }
    let _ = shared;
    new_pid()
}

/// A waiting GET.
struct Waiting {
    reply: oneshot::Sender<Result<Bytes, PollError>>,
    timer: SpawnHandle,
}

/// One long-polling connection.
pub(crate) struct PollTransport {
    id: TransportId,
    pid: Arc<str>,
    shared: Arc<Shared>,
    /// The registry this connection is in, under `pid`; it leaves it when it stops.
    polls: Arc<PollRegistry>,
    session: Option<SessionRecipient>,
    backlog: Backlog,
    /// Client frames posted to the session and not handled yet.
    inbound: Arc<Gauge>,
    /// Frames for the client; `true` marks the session's (counted in `backlog`),
    /// `false` the transport's own (`Close`, `ResumeFailed`).
    queue: VecDeque<(Bytes, bool)>,
    waiting: Option<Waiting>,
    flush_scheduled: bool,
    /// The session is over or moved: deliver what is queued, then stop.
    closing: bool,
    /// This connection's place under the connection limits, given back on drop.
    _slot: ConnectionSlot,
}

impl PollTransport {
    fn new(
        shared: Arc<Shared>,
        polls: Arc<PollRegistry>,
        pid: Arc<str>,
        slot: ConnectionSlot,
    ) -> Self {
        PollTransport {
            id: NEXT_TRANSPORT.fetch_add(1, Ordering::Relaxed),
            inbound: Arc::new(Gauge::new(shared.config.max_mailbox)),
            pid,
            shared,
            polls,
            session: None,
            backlog: Arc::new(AtomicUsize::new(0)),
            queue: VecDeque::new(),
            waiting: None,
            flush_scheduled: false,
            closing: false,
            _slot: slot,
        }
    }

    fn link(&self, ctx: &mut Context<Self>) -> TransportLink {
        TransportLink {
            id: self.id,
            kind: TransportKind::Polling,
            recipient: ctx.address().recipient(),
            sending: Sending::messages(self.backlog.clone()),
            inbound: self.inbound.clone(),
            address: self._slot.address(),
        }
    }

    /// Answers the waiting GET, if any, with what is queued.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.flush_scheduled = false;
        if self.queue.is_empty() && !self.closing {
            return;
        }
        let Some(waiting) = self.waiting.take() else {
            return;
        };
        ctx.cancel_future(waiting.timer);
        let limit = self.shared.config.max_poll_body;
        let max_frames = self.shared.config.max_poll_frames;
        let mut batch = Vec::new();
        let mut size = 0usize;
        while let Some((front, _)) = self.queue.front() {
            let next = front.len() + 10;
            if !batch.is_empty() && (size + next > limit || batch.len() == max_frames) {
                break;
            }
            size += next;
            if let Some((frame, counted)) = self.queue.pop_front() {
                if counted {
                    self.backlog
                        .fetch_sub(queued_size(&frame), Ordering::Relaxed);
                }
                batch.push(frame);
            }
        }
        let _ = waiting.reply.send(Ok(protocol::encode_batch(&batch)));
        if self.closing && self.queue.is_empty() {
            ctx.stop();
        }
    }

    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        // Flush on the next turn, so that frames posted together go out together.
        if self.waiting.is_some() && !self.flush_scheduled {
            self.flush_scheduled = true;
            ctx.run_later(std::time::Duration::ZERO, |act, ctx| act.flush(ctx));
        }
    }

    /// Ends the connection: the client gets `Close` on its next poll.
    fn close(&mut self, reason: String, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.closing = true;
        let close = protocol::encode(&Frame::Close { reason });
        self.queue.push_back((close, false));
        self.schedule_flush(ctx);
        // A client that never polls again does not keep the connection alive.
        ctx.run_later(self.shared.config.ping_timeout, |_, ctx| ctx.stop());
    }

    fn refuse(&mut self, reason: String, ctx: &mut Context<Self>) {
        static WARNED: LogGate = LogGate::new();
        if let Some(suppressed) = WARNED.admit() {
            tracing::warn!(%reason, suppressed, "closing polling connection: protocol error");
        }
        self.shared.metrics.refused("bad_frame");
        if let Some(session) = self.session.take() {
            session.do_send(FromTransport::Closed {
                transport: self.id,
                reason: DisconnectReason::Protocol(reason.clone()),
            });
        }
        self.close(reason, ctx);
    }

    /// Feeds client frames in order; `Resume` needs the supervisor, so what follows
    /// it continues once the session is attached.
    fn feed(&mut self, mut frames: VecDeque<Bytes>, ctx: &mut Context<Self>) -> Result<(), String> {
        while let Some(bytes) = frames.pop_front() {
            if self.closing {
                return Err("polling connection closed".to_owned());
            }
            let limit = self.shared.config.max_frame_size;
            if bytes.len() > limit {
                // The same limit as a WebSocket message.
                let reason = format!("frame too large (limit {limit} bytes)");
                self.refuse(reason.clone(), ctx);
                return Err(reason);
            }
            let frame = match protocol::decode(&bytes) {
                Ok(frame) => frame,
                Err(e) => {
                    self.refuse(e.to_string(), ctx);
                    return Err(e.to_string());
                }
            };
            if let Some(session) = &self.session {
                if !session.frame(self.id, frame, bytes.len(), &self.inbound) {
                    let reason = too_many_frames(self.inbound.limit());
                    self.refuse(reason.clone(), ctx);
                    return Err(reason);
                }
                continue;
            }
            match opening(frame) {
                Opening::Hello(limit) => {
                    self.session = Some(start_session(&self.shared, self.link(ctx), limit))
                }
                Opening::Refuse(reason) => {
                    self.refuse(reason.clone(), ctx);
                    return Err(reason);
                }
                Opening::Resume {
                    sid,
                    token,
                    last_seq,
                    limit,
                } => {
                    let link = self.link(ctx);
                    let attach = resume(self.shared.clone(), sid, token, last_seq, limit, link);
                    // `wait`: nothing else from this client is handled meanwhile.
                    ctx.wait(
                        attach
                            .into_actor(self)
                            .map(move |result, act, ctx| match result {
                                Ok(session) => {
                                    act.session = Some(session);
                                    let _ = act.feed(frames, ctx);
                                }
                                Err(ResumeError::Refused(reason)) => {
                                    tracing::debug!(sid = sid.0, %reason, "resume failed");
                                    let failed = protocol::encode(&Frame::ResumeFailed { reason });
                                    act.queue.push_back((failed, false));
                                    act.schedule_flush(ctx);
                                }
                                // Not a verdict on the session: the connection ends
                                // without a word on it, and the client tries again.
                                Err(ResumeError::Unavailable(reason)) => {
                                    tracing::debug!(sid = sid.0, %reason, "resume unavailable");
                                    act.closing = true;
                                    ctx.stop();
                                }
                            }),
                    );
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

impl Actor for PollTransport {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_later(self.shared.config.handshake_timeout, |act, ctx| {
            if act.session.is_none() && !act.closing {
                act.close("handshake timeout".to_owned(), ctx);
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.polls
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.pid);
        if let Some(session) = self.session.take() {
            session.do_send(FromTransport::Closed {
                transport: self.id,
                reason: DisconnectReason::TransportClosed,
            });
        }
    }
}

/// A long-poll GET.
#[derive(Message)]
#[rtype(result = "()")]
struct Poll {
    reply: oneshot::Sender<Result<Bytes, PollError>>,
}

impl Handler<Poll> for PollTransport {
    type Result = ();

    fn handle(&mut self, msg: Poll, ctx: &mut Context<Self>) {
        if self.waiting.is_some() {
            let _ = msg.reply.send(Err(PollError::Concurrent));
            return;
        }
        let timer = ctx.run_later(self.shared.config.poll_hold, |act, ctx| {
            // Nothing came: answer an empty batch so the client polls again.
            if let Some(waiting) = act.waiting.take() {
                let _ = waiting.reply.send(Ok(Bytes::new()));
            }
            if act.closing {
                ctx.stop();
            }
        });
        self.waiting = Some(Waiting {
            reply: msg.reply,
            timer,
        });
        if !self.queue.is_empty() || self.closing {
            self.flush(ctx);
        }
    }
}

/// A POST's frames.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
struct Push {
    frames: Vec<Bytes>,
}

impl Handler<Push> for PollTransport {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: Push, ctx: &mut Context<Self>) -> Self::Result {
        self.feed(msg.frames.into(), ctx)
    }
}

impl Handler<ToTransport> for PollTransport {
    type Result = ();

    fn handle(&mut self, msg: ToTransport, ctx: &mut Context<Self>) {
        match msg {
            ToTransport::Frame(frame) => {
                let bytes = frame.payload();
                if self.closing {
                    self.backlog
                        .fetch_sub(queued_size(&bytes), Ordering::Relaxed);
                    return;
                }
                self.queue.push_back((bytes, true));
                self.schedule_flush(ctx);
            }
            ToTransport::Close { reason } => {
                self.session = None;
                self.close(reason, ctx);
            }
            ToTransport::Drop { reason } => {
                self.session = None;
                if let Some(waiting) = self.waiting.take() {
                    let _ = waiting.reply.send(Err(PollError::Gone(reason)));
                }
                ctx.stop();
            }
        }
    }
}
