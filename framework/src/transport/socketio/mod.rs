//! The Socket.IO endpoint (`Config::socketio`, default `/socket.io/`): Engine.IO v4
//! connections for the official Socket.IO clients, each one a transport of a Volley
//! session, so that their namespaces, events, acks, rooms and game rooms are the
//! native clients' own.
//!
//! - `GET <path>?EIO=4&transport=polling` opens a connection (the handshake), `GET` and
//!   `POST` with `&sid=` carry its packets ([`connection::EioConnection`]).
//! - `GET <path>?EIO=4&transport=websocket` (an upgrade, under Volley's own server)
//!   opens a WebSocket-only connection, or with `&sid=` probes and takes over a
//!   polling one ([`websocket`]).
//!
//! The same admission (origin, connection limits) and limits (frame size, polling
//! batch, backlog, rate limits in the session) as the native endpoint apply.

mod carrier;
mod carrying;
mod connection;
mod frames;
mod inbound;
mod outbound;
pub(crate) mod websocket;
mod writing;

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use actix_http::ws::{Frame as WsFrame, ProtocolError};
use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::BytesMut;
use futures_util::{Stream, StreamExt};
use serde_json::json;
use tokio::sync::oneshot;

use self::carrier::Poll;
use self::connection::{EioConnection, Post};
use super::admission::{self, ConnectionSlot};
use super::polling::{cors, polling_pid};
use crate::protocol::socketio::{decode_payload, EioPacket, EIO_VERSION};
use crate::session::{SendQueue, Shared};

/// Open Engine.IO connections by sid. Touched once per HTTP request or WebSocket,
/// never per packet.
pub(crate) type Registry = std::sync::RwLock<HashMap<Arc<str>, Addr<EioConnection>>>;

/// Engine.IO's error codes, as its server answers them (`{"code":…,"message":…}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EioRefusal {
    UnknownTransport,
    UnknownSid,
    BadHandshakeMethod,
    BadRequest,
    UnsupportedVersion,
}

impl EioRefusal {
    fn code(self) -> u8 {
        match self {
            EioRefusal::UnknownTransport => 0,
            EioRefusal::UnknownSid => 1,
            EioRefusal::BadHandshakeMethod => 2,
            EioRefusal::BadRequest => 3,
            EioRefusal::UnsupportedVersion => 5,
        }
    }

    fn message(self) -> &'static str {
        match self {
            EioRefusal::UnknownTransport => "Transport unknown",
            EioRefusal::UnknownSid => "Session ID unknown",
            EioRefusal::BadHandshakeMethod => "Bad handshake method",
            EioRefusal::BadRequest => "Bad request",
            EioRefusal::UnsupportedVersion => "Unsupported protocol version",
        }
    }

    /// The JSON body of the `400` answer.
    pub(crate) fn body(self) -> String {
        json!({ "code": self.code(), "message": self.message() }).to_string()
    }
}

/// The query of every Engine.IO request.
#[derive(serde::Deserialize, Debug, Default)]
pub(crate) struct EioQuery {
    #[serde(rename = "EIO")]
    pub eio: Option<String>,
    pub transport: Option<String>,
    pub sid: Option<String>,
}

impl EioQuery {
    /// Checks the version and that the transport is `expected`.
    pub(crate) fn check(&self, expected: &str) -> Result<(), EioRefusal> {
        if self.eio.as_deref() != Some(EIO_VERSION) {
            return Err(EioRefusal::UnsupportedVersion);
        }
        match self.transport.as_deref() {
            Some(t) if t == expected => Ok(()),
            _ => Err(EioRefusal::UnknownTransport),
        }
    }
}

/// Mounts the endpoint's long-polling routes at `path` (the WebSocket comes through
/// the upgrade hook, [`websocket::upgrade`]).
pub(crate) fn configure(cfg: &mut web::ServiceConfig, path: &str, registry: Arc<Registry>) {
    cfg.app_data(web::Data::from(registry))
        .route(path, web::get().to(get))
        .route(path, web::post().to(post))
        .route(
            path,
            web::method(Method::OPTIONS).to(super::polling::preflight),
        )
        .route(path, web::route().to(HttpResponse::MethodNotAllowed));
}

/// The handshake's JSON: the connection's sid, what it may upgrade to, the heartbeat
/// and the largest payload the server reads.
pub(crate) fn handshake(shared: &Shared, sid: &str, upgrades: bool) -> String {
    let config = &shared.config;
    let open = json!({
        "sid": sid,
        "upgrades": if upgrades { vec!["websocket"] } else { vec![] },
        "pingInterval": config.ping_interval.as_millis() as u64,
        "pingTimeout": config.ping_timeout.as_millis() as u64,
        "maxPayload": config.max_frame_size,
    });
    EioPacket::Open(open.to_string()).encode()
}

/// Starts and registers a new connection carried by long polling.
pub(crate) fn open(
    shared: &Arc<Shared>,
    registry: &Arc<Registry>,
    slot: ConnectionSlot,
) -> (Arc<str>, Addr<EioConnection>) {
    let sid = polling_pid(shared);
    let connection = EioConnection::create(|ctx| {
        EioConnection::new(
            shared.clone(),
            registry.clone(),
            sid.clone(),
            slot,
            false,
            ctx,
        )
    });
    register(registry, &sid, &connection);
    (sid, connection)
}

/// Starts and registers a new connection carried by a WebSocket from the start,
/// which the connection's actor reads: `frames`. Returns its queue, for the socket's
/// writing half.
pub(crate) fn open_websocket<S>(
    shared: &Arc<Shared>,
    registry: &Arc<Registry>,
    slot: ConnectionSlot,
    frames: S,
) -> Arc<SendQueue>
where
    S: Stream<Item = Result<WsFrame, ProtocolError>> + 'static,
{
    let sid = polling_pid(shared);
    let mut queue = None;
    let connection = EioConnection::create(|ctx| {
        ctx.add_stream(frames);
        let connection = EioConnection::new(
            shared.clone(),
            registry.clone(),
            sid.clone(),
            slot,
            true,
            ctx,
        );
        queue = Some(connection.out.queue().clone());
        connection
    });
    register(registry, &sid, &connection);
    queue.unwrap_or_else(SendQueue::shared)
}

/// Lists a new connection under its sid. In a cluster the sid starts with the node's
/// id: a request for it that lands on another node is answered by this one (as
/// native polling pids are).
fn register(registry: &Registry, sid: &Arc<str>, connection: &Addr<EioConnection>) {
    registry
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(sid.clone(), connection.clone());
}

fn lookup(registry: &Registry, sid: &str) -> Option<Addr<EioConnection>> {
    registry
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(sid)
        .cloned()
}

fn answer(
    req: &HttpRequest,
    shared: &Shared,
    result: Result<String, (StatusCode, String)>,
) -> HttpResponse {
    let mut builder = match &result {
        Ok(_) => HttpResponse::Ok(),
        Err((status, _)) => HttpResponse::build(*status),
    };
    cors(req, shared, &mut builder);
    builder.insert_header((header::CACHE_CONTROL, "no-store"));
    match result {
        Ok(body) => builder.content_type("text/plain; charset=UTF-8").body(body),
        Err((_, body)) => builder.content_type("application/json").body(body),
    }
}

fn refused(refusal: EioRefusal) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, refusal.body())
}

/// A long-polling GET: the handshake without a sid, the next packets with one. Under
/// actix-web's own server, the WebSocket's upgrade request comes here too.
async fn get(
    req: HttpRequest,
    query: web::Query<EioQuery>,
    payload: web::Payload,
    shared: web::Data<Arc<Shared>>,
    registry: web::Data<Registry>,
) -> HttpResponse {
    crate::transport::connection::check_tuned(&req, shared.config.write_timeout);
    if let Err(refusal) = admission::check_origin(req.head(), &shared) {
        return refusal.response();
    }
    if query.transport.as_deref() == Some("websocket") {
        return match query.check("websocket") {
            Ok(()) => websocket::route(
                &req,
                payload,
                shared.get_ref().clone(),
                registry.into_inner(),
                query.into_inner(),
            ),
            Err(refusal) => answer(&req, &shared, Err(refused(refusal))),
        };
    }
    let result = async {
        query.check("polling").map_err(refused)?;
        let Some(sid) = query.sid.as_deref() else {
            let slot = admission::reserve(req.head(), &shared, "socketio_polling")
                .map_err(|r| (r.status(), r.to_string()))?;
            let (sid, _) = open(&shared, &registry.clone().into_inner(), slot);
            return Ok(handshake(&shared, &sid, true));
        };
        match lookup(&registry, sid) {
            Some(connection) => poll_here(&connection).await,
            None => elsewhere(&shared, sid, None).await,
        }
    }
    .await;
    answer(&req, &shared, result)
}

/// A long-poll of a connection of this node: the packets waiting, or held until some
/// come.
async fn poll_here(connection: &Addr<EioConnection>) -> Result<String, (StatusCode, String)> {
    let (reply, answer) = oneshot::channel();
    connection
        .send(Poll { reply })
        .await
        .map_err(|_| refused(EioRefusal::UnknownSid))?;
    match answer.await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(_)) | Err(_) => Err(refused(EioRefusal::BadRequest)),
    }
}

/// The client's packets for a connection of this node.
async fn post_here(
    shared: &Shared,
    connection: &Addr<EioConnection>,
    body: &[u8],
) -> Result<String, (StatusCode, String)> {
    let text = std::str::from_utf8(body).map_err(|_| refused(EioRefusal::BadRequest))?;
    let packets = decode_payload(text, shared.config.max_poll_frames).map_err(|e| {
        shared.metrics.refused("bad_batch");
        (StatusCode::BAD_REQUEST, e.to_string())
    })?;
    let sized = packets.into_iter().map(|p| {
        let size = match &p {
            EioPacket::Message(text) => text.len(),
            EioPacket::Binary(bytes) => bytes.len(),
            _ => 1,
        };
        (p, size)
    });
    connection
        .send(Post(sized.collect()))
        .await
        .map_err(|_| refused(EioRefusal::UnknownSid))?;
    Ok("ok".to_owned())
}

/// A request for a connection that is not here: in a cluster, the node its sid
/// names answers it (see `session::Nodes::poll_elsewhere`).
async fn elsewhere(
    shared: &Shared,
    sid: &str,
    body: Option<bytes::Bytes>,
) -> Result<String, (StatusCode, String)> {
    #[cfg(feature = "cluster")]
    if let Some(cluster) = &shared.cluster {
        let hold = shared.config.ping_interval + shared.config.ping_timeout;
        return match cluster.poll_elsewhere(sid, body, hold, true).await {
            Some(Ok(bytes)) => {
                String::from_utf8(bytes.to_vec()).map_err(|_| refused(EioRefusal::BadRequest))
            }
            Some(Err((status, text))) => Err((
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                text,
            )),
            None => Err(refused(EioRefusal::UnknownSid)),
        };
    }
    let _ = (shared, sid, body);
    Err(refused(EioRefusal::UnknownSid))
}

/// Answers a request that reached another node for connection `sid` of this one (a
/// long-poll when `body` is none).
#[cfg(feature = "cluster")]
pub(crate) async fn for_another_node(
    registry: &Registry,
    shared: &Shared,
    sid: &str,
    body: Option<bytes::Bytes>,
) -> Result<bytes::Bytes, (u16, String)> {
    let result = match (lookup(registry, sid), body) {
        (None, _) => Err(refused(EioRefusal::UnknownSid)),
        (Some(connection), None) => poll_here(&connection).await,
        (Some(connection), Some(body)) => post_here(shared, &connection, &body).await,
    };
    result
        .map(bytes::Bytes::from)
        .map_err(|(status, text)| (status.as_u16(), text))
}

/// A long-polling POST: the client's packets.
async fn post(
    req: HttpRequest,
    query: web::Query<EioQuery>,
    mut payload: web::Payload,
    shared: web::Data<Arc<Shared>>,
    registry: web::Data<Registry>,
) -> HttpResponse {
    let result = async {
        admission::check_origin(req.head(), &shared).map_err(|r| (r.status(), r.to_string()))?;
        query.check("polling").map_err(refused)?;
        let sid = query
            .sid
            .as_deref()
            .ok_or(refused(EioRefusal::BadHandshakeMethod))?;
        // maxPayload, as the handshake announced it.
        let limit = shared.config.max_frame_size;
        let too_large = || {
            shared.metrics.refused("body_too_large");
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body too large (limit {limit} bytes)"),
            )
        };
        let mut body = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| refused(EioRefusal::BadRequest))?;
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        match lookup(&registry, sid) {
            Some(connection) => post_here(&shared, &connection, &body).await,
            None => elsewhere(&shared, sid, Some(body.freeze())).await,
        }
    }
    .await;
    answer(&req, &shared, result)
}
