//! The WebSocket of an Engine.IO connection, under Volley's own server: the upgrade
//! hook ([`crate::transport::upgrade`]) hands over `<path>?EIO=4&transport=websocket`
//! after its checks and the `101`, and one task per WebSocket moves text records
//! between the socket and its [`EioConnection`]: a new one (WebSocket-only clients,
//! handshake first) or, with `&sid=`, the polling connection it probes and takes over.
//!
//! Under Volley's own server the socket is read as the native transport reads it
//! (`ReadChunks`, `Incoming`: no buffer kept while idle), and the task frames
//! everything queued since its last write into one buffer for one write. Under
//! actix-web's own server (`route`) the request body is read the same way and the
//! batches go into the response body.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::prelude::*;
use actix_codec::Encoder;
use actix_codec::{AsyncRead, AsyncWrite};
use actix_http::ws::{Codec, Frame, Message, ProtocolError};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::carrier::{FromWs, WsHandle, WsOut};
use super::connection::EioConnection;
use super::{handshake, lookup, open, EioQuery, Registry};
use crate::protocol::socketio::EioPacket;
use crate::session::{Backlog, Shared};
use crate::transport::admission::{self, ConnectionSlot};
use crate::transport::ws_frames::{Incoming, ReadChunks};

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
    // As the native transport: no buffer kept while the connection is idle.
    let (read, write) = tokio::io::split(io);
    let max = shared.config.max_frame_size;
    let frames = Incoming::new(ReadChunks::new(read, read_buf.freeze()), max);
    let writer = futures_util::sink::unfold(write, |mut write, bytes: Bytes| async move {
        write.write_all(&bytes).await?;
        Ok::<_, std::io::Error>(write)
    });
    attach(shared, registry, query, slot, frames, Box::pin(writer));
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
            shared.metrics.refused(admission::handshake_refusal(&e));
            return HttpResponse::from_error(e);
        }
    };
    let max = shared.config.max_frame_size;
    let frames = Incoming::new(payload, max);
    // Bounded: a batch counts as written (off the session's backlog) only once the
    // dispatcher has taken the one before it, so a slow reader's bytes wait in the
    // session's bounded outbox and backlog, not here.
    let (body, written) = mpsc::channel::<Bytes>(1);
    let sink = futures_util::sink::unfold(body, |body, bytes: Bytes| async move {
        body.send(bytes)
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok::<_, std::io::Error>(body)
    });
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
    K: Sink<Bytes, Error = std::io::Error> + Unpin + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    static NEXT_WS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT_WS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let handle = WsHandle {
        id,
        tx: tx.clone(),
        probed: false,
    };
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
    mut writer: K,
    mut rx: mpsc::UnboundedReceiver<WsOut>,
    connection: Option<Addr<EioConnection>>,
    id: u64,
    shared: Arc<Shared>,
) where
    S: Stream<Item = Result<Frame, ProtocolError>> + Unpin,
    K: Sink<Bytes, Error = std::io::Error> + Unpin,
{
    // The connection's send backlog, once this socket carries it.
    let mut backlog: Option<Backlog> = None;
    let mut codec = Codec::new();
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(out) = out else { break };
                // Everything queued since the last write goes in one write.
                let mut batch = BytesMut::new();
                let mut counted = 0;
                let mut close = false;
                let mut next = Some(out);
                while let Some(out) = next.take() {
                    match out {
                        WsOut::Text(record, bytes) => {
                            counted += bytes;
                            let _ = codec.encode(Message::Text(record.into()), &mut batch);
                        }
                        WsOut::Carrier(carrying) => backlog = Some(carrying),
                        WsOut::Close => {
                            close = true;
                            let _ = codec.encode(Message::Close(None), &mut batch);
                            break;
                        }
                    }
                    if batch.len() < MAX_BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                let sent = writer.send(batch.freeze()).await;
                release(&backlog, counted);
                if sent.is_err() || close {
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
                        let mut pong = BytesMut::new();
                        let _ = codec.encode(Message::Pong(bytes), &mut pong);
                        if writer.send(pong.freeze()).await.is_err() {
                            break;
                        }
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

/// Most bytes one write takes from the queue; the rest goes in the next.
const MAX_BATCH: usize = 64 * 1024;

/// Gives back `counted` bytes of the connection's send backlog once written.
fn release(backlog: &Option<Backlog>, counted: usize) {
    if let Some(backlog) = backlog {
        backlog.fetch_sub(counted, Ordering::Relaxed);
    }
}
