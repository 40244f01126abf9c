//! The way into a WebSocket under Volley's own server ([`crate::HttpServer`]): actix-http's
//! upgrade hook hands over the upgrade request with its socket, and the connection
//! leaves the HTTP/1 dispatcher for good.
//!
//! Why: a connection kept by the dispatcher holds its 8 KiB read and 8 KiB write
//! buffers for its whole life (16 of the ~18 KiB an idle WebSocket cost), and every
//! message it writes is copied into that write buffer first. Here the request gets the
//! same checks and answers as under actix-web (path, `Origin`, connection limits, the
//! WebSocket handshake), the `101` is written, and then the socket is split: the
//! transport actor reads it ([`super::ws_read`]) and a [`Writer`] task writes the
//! connection's queue with vectored writes. Neither keeps a buffer while idle.

use std::any::Any;
use std::convert::Infallible;
use std::sync::Arc;

use actix_codec::{AsyncRead, AsyncWrite, Framed};
use actix_http::body::BodySize;
use actix_http::header::{self, HeaderValue};
use actix_http::{h1, ws, ConnectionType, Request, Response, StatusCode};
use bytes::Bytes;
use futures_util::SinkExt;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::admission;
use super::socketio;
use super::websocket;
use super::ws_frames::Writer;
use crate::session::{Shared, SocketWrite};

/// Takes one upgrade request off the HTTP/1 dispatcher. Never fails: whatever goes
/// wrong is answered to the client or is a lost connection.
pub(crate) async fn upgrade<T>(
    shared: Arc<Shared>,
    sio: Arc<socketio::Registry>,
    req: Request,
    framed: Framed<T, h1::Codec>,
) -> Result<(), Infallible>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    open(shared, sio, req, framed).await;
    Ok(())
}

async fn open<T>(
    shared: Arc<Shared>,
    sio: Arc<socketio::Registry>,
    req: Request,
    mut framed: Framed<T, h1::Codec>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Every upgrade request of the server comes here, whatever its path; the
    // Socket.IO endpoint's too (same checks, then its own transport).
    let socketio = socketio::websocket::wants(&shared, req.path(), req.uri().query().unwrap_or(""));
    if req.path() != shared.config.path && socketio.is_none() {
        let text = format!("no WebSocket endpoint at {}", req.path());
        return answer(framed, StatusCode::NOT_FOUND, text).await;
    }
    if let Some(Err(refusal)) = socketio.as_ref().map(|q| q.check("websocket")) {
        return answer(framed, StatusCode::BAD_REQUEST, refusal.body()).await;
    }
    let head = req.head();
    let slot = match admission::check_origin(head, &shared).and_then(|()| {
        let label = match socketio {
            Some(_) => "socketio_websocket",
            None => "websocket",
        };
        admission::reserve(head, &shared, label)
    }) {
        Ok(slot) => slot,
        Err(refusal) => return answer(framed, refusal.status(), refusal.to_string()).await,
    };
    let switching = match ws::handshake(head) {
        Ok(mut builder) => builder.message_body(()),
        Err(e) => {
            let status = match e {
                ws::HandshakeError::GetMethodRequired => StatusCode::METHOD_NOT_ALLOWED,
                _ => StatusCode::BAD_REQUEST,
            };
            shared.metrics.refused(admission::handshake_refusal(&e));
            return answer(framed, status, e.to_string()).await;
        }
    };
    let Ok(switching) = switching else {
        return; // the handshake's own headers are valid: cannot happen
    };
    if let Err(e) = framed
        .send(h1::Message::Item((switching, BodySize::None)))
        .await
    {
        tracing::debug!(error = %e, "connection lost during the WebSocket handshake");
        return;
    }
    let parts = framed.into_parts();
    let Some(halves) = split(parts.io) else {
        return;
    };
    if let Some(query) = socketio {
        let (read, write) = halves.boxed();
        return socketio::websocket::start(shared, sio, query, slot, read, write, parts.read_buf);
    }
    let (queue, write) = match halves {
        Halves::Tcp(read, write) => {
            let (_, queue) = websocket::start(&shared, slot, read, parts.read_buf);
            (queue, SocketWrite::Tcp(write))
        }
        Halves::Other(read, write) => {
            let (_, queue) = websocket::start(&shared, slot, read, parts.read_buf);
            (queue, SocketWrite::Other(Box::new(write)))
        }
    };
    Writer::hand_over(&queue, write);
}

/// An upgraded connection's reading and writing halves.
pub(crate) enum Halves<T> {
    /// A plain TCP connection, split into halves that share no lock: its queue writes
    /// straight on the socket (see `SocketWrite::Tcp`).
    Tcp(OwnedReadHalf, OwnedWriteHalf),
    /// Any other stream (TLS), through tokio's split.
    Other(ReadHalf<T>, WriteHalf<T>),
}

impl<T> Halves<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// The reading half as any reader, the writing half as a queue keeps it.
    pub(crate) fn boxed(self) -> (Box<dyn AsyncRead + Unpin>, SocketWrite) {
        match self {
            Halves::Tcp(read, write) => (Box::new(read), SocketWrite::Tcp(write)),
            Halves::Other(read, write) => (Box::new(read), SocketWrite::Other(Box::new(write))),
        }
    }
}

/// Splits an upgraded connection (`None`: cannot happen, the stream is taken once).
fn split<T>(io: T) -> Option<Halves<T>>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let mut io = Some(io);
    let tcp = (&mut io as &mut dyn Any)
        .downcast_mut::<Option<TcpStream>>()
        .and_then(Option::take);
    match (tcp, io) {
        (Some(tcp), _) => {
            let (read, write) = tcp.into_split();
            Some(Halves::Tcp(read, write))
        }
        (None, Some(io)) => {
            let (read, write) = tokio::io::split(io);
            Some(Halves::Other(read, write))
        }
        (None, None) => None,
    }
}

/// Answers a request that does not become a WebSocket, then closes the connection.
async fn answer<T>(mut framed: Framed<T, h1::Codec>, status: StatusCode, text: String)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    tracing::debug!(%status, %text, "upgrade refused");
    let body = Bytes::from(text);
    let mut response = Response::with_body(status, ());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(header::ALLOW, HeaderValue::from_static("GET"));
    }
    response
        .head_mut()
        .set_connection_type(ConnectionType::Close);
    let size = BodySize::Sized(body.len() as u64);
    let sent = async {
        framed.send(h1::Message::Item((response, size))).await?;
        framed.send(h1::Message::Chunk(Some(body))).await?;
        framed.send(h1::Message::Chunk(None)).await
    };
    if let Err(e) = sent.await {
        tracing::debug!(error = %e, "connection lost while refusing an upgrade");
    }
}
