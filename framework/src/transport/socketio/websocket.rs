//! The WebSocket of an Engine.IO connection, under Volley's own server: the upgrade
//! hook ([`crate::transport::upgrade`]) hands over `<path>?EIO=4&transport=websocket`
//! after its checks and the `101`, and one task per WebSocket moves text records
//! between the socket and its [`EioConnection`]: a new one (WebSocket-only clients,
//! handshake first) or, with `&sid=`, the polling connection it probes and takes over.
//!
//! Records are few and short next to a game's native frames, so the task writes each
//! with actix-http's codec rather than with the native transport's vectored writer.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::prelude::*;
use actix_codec::Encoder;
use actix_codec::{AsyncRead, AsyncWrite, Framed, FramedParts};
use actix_http::ws::{Codec, Frame, Message, ProtocolError};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;

use super::connection::{EioConnection, FromWs, WsHandle, WsOut};
use super::{handshake, lookup, open, EioQuery, Registry};
use crate::protocol::socketio::EioPacket;
use crate::session::{Backlog, Shared};
use crate::transport::admission::{self, ConnectionSlot};
use crate::transport::ws_frames::Incoming;

/// Whether an upgrade request is for the Socket.IO endpoint: its query, if so.
pub(crate) fn wants(shared: &Shared, path: &str, query: &str) -> Option<EioQuery> {
    let endpoint = shared.config.socketio.as_ref()?;
    if path != endpoint.path {
        return None;
    }
    Some(
        actix_web::web::Query::<EioQuery>::from_query(query)
            .map(|q| q.into_inner())
            .unwrap_or_default(),
    )
}

/// Runs an upgraded WebSocket (the `101` is written) as an Engine.IO transport.
pub(crate) fn start<T>(
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    query: EioQuery,
    slot: ConnectionSlot,
    io: T,
    read_buf: BytesMut,
) where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let codec = Codec::new().max_size(shared.config.max_frame_size);
    let (sink, frames) =
        Framed::from_parts(FramedParts::with_read_buf(io, codec, read_buf)).split();
    attach(shared, registry, query, slot, frames, sink);
}

/// The WebSocket under actix-web's own `HttpServer` (`Volley::configure`): the same
/// transport, the request body as the client's bytes and the response body as ours,
/// which the HTTP/1 dispatcher copies into its write buffer.
pub(crate) fn route(
    req: &HttpRequest,
    payload: web::Payload,
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    query: EioQuery,
) -> HttpResponse {
    let slot = match admission::reserve(req.head(), &shared, "socketio_websocket") {
        Ok(slot) => slot,
        Err(refusal) => return refusal.response(),
    };
    let mut response = match actix_web_actors::ws::handshake(req) {
        Ok(response) => response,
        Err(e) => {
            shared
                .metrics
                .refused(crate::transport::upgrade::handshake_refusal(&e));
            return HttpResponse::from_error(e);
        }
    };
    let max = shared.config.max_frame_size;
    let frames = Incoming::new(payload, max);
    let (body, written) = mpsc::unbounded_channel::<Bytes>();
    let sink = futures_util::sink::unfold(
        (body, Codec::new()),
        |(body, mut codec), message| async move {
            let mut buf = BytesMut::new();
            codec.encode(message, &mut buf)?;
            body.send(buf.freeze())
                .map_err(|_| ProtocolError::Io(std::io::ErrorKind::BrokenPipe.into()))?;
            Ok::<_, ProtocolError>((body, codec))
        },
    );
    attach(shared, registry, query, slot, frames, Box::pin(sink));
    let stream = futures_util::stream::unfold(written, |mut written| async move {
        let bytes = written.recv().await?;
        Some((Ok::<_, actix_web::Error>(bytes), written))
    });
    response.streaming(stream)
}

/// Ties a WebSocket's frames and sink to a new connection (no sid: WebSocket only)
/// or to the polling connection it probes, and runs it.
fn attach<S, K>(
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    query: EioQuery,
    slot: ConnectionSlot,
    frames: S,
    sink: K,
) where
    S: Stream<Item = Result<Frame, ProtocolError>> + Unpin + 'static,
    K: Sink<Message, Error = ProtocolError> + Unpin + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    static NEXT_WS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT_WS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let handle = WsHandle { id, tx: tx.clone() };
    let connection = match query.sid.as_deref() {
        None => {
            // WebSocket only: the handshake is the first record.
            let (sid, connection) = open(&shared, &registry, slot, Some(handle));
            let _ = tx.send(WsOut::Text(handshake(&shared, &sid, false), 0));
            Some(connection)
        }
        Some(sid) => {
            // The polling connection holds its place; this socket needs none.
            drop(slot);
            let connection = lookup(&registry, sid);
            match &connection {
                Some(connection) => connection.do_send(FromWs::Probe(handle)),
                None => {
                    tracing::debug!("Socket.IO upgrade for an unknown sid");
                    let _ = tx.send(WsOut::Close);
                }
            }
            connection
        }
    };
    tokio::task::spawn_local(run(frames, sink, rx, connection, id, shared));
}

/// Reads the client's frames into packets for the connection, and writes the
/// connection's records, until either side ends.
async fn run<S, K>(
    mut frames: S,
    mut sink: K,
    mut rx: mpsc::UnboundedReceiver<WsOut>,
    connection: Option<Addr<EioConnection>>,
    id: u64,
    shared: Arc<Shared>,
) where
    S: Stream<Item = Result<Frame, ProtocolError>> + Unpin,
    K: Sink<Message, Error = ProtocolError> + Unpin,
{
    // The connection's send backlog, once this socket carries it.
    let mut backlog: Option<Backlog> = None;
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(WsOut::Text(record, counted)) => {
                    let sent = sink.send(Message::Text(record.into())).await;
                    release(&backlog, counted);
                    if sent.is_err() {
                        break;
                    }
                }
                Some(WsOut::Carrier(carrying)) => backlog = Some(carrying),
                Some(WsOut::Close) | None => {
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
            },
            frame = frames.next() => {
                let packet = match frame {
                    Some(Ok(Frame::Text(bytes))) => match std::str::from_utf8(&bytes) {
                        Ok(text) => EioPacket::decode(text).map(|p| (p, bytes.len())),
                        Err(_) => break,
                    },
                    Some(Ok(Frame::Binary(bytes))) => Ok((EioPacket::Binary(bytes.to_vec()), bytes.len())),
                    Some(Ok(Frame::Ping(bytes))) => {
                        let _ = sink.send(Message::Pong(bytes)).await;
                        continue;
                    }
                    Some(Ok(Frame::Pong(_))) => continue,
                    // Close, fragments (the clients send none), errors (too large).
                    _ => break,
                };
                let Some(connection) = &connection else { break };
                let Ok((packet, size)) = packet else {
                    shared.metrics.refused("bad_frame");
                    break;
                };
                // Waits for the connection to take it: the client's next frame is read
                // only then, so nothing queues up unbounded in between.
                if connection.send(FromWs::Packet(id, packet, size)).await.is_err() {
                    break;
                }
            }
        }
    }
    if let Some(connection) = connection {
        connection.do_send(FromWs::Gone(id));
    }
    // What the connection still queued is counted off as it is dropped.
    rx.close();
    while let Ok(out) = rx.try_recv() {
        if let WsOut::Text(_, counted) = out {
            release(&backlog, counted);
        }
    }
}

/// Gives back `counted` bytes of the connection's send backlog once written.
fn release(backlog: &Option<Backlog>, counted: usize) {
    if let Some(backlog) = backlog {
        backlog.fetch_sub(counted, Ordering::Relaxed);
    }
}
