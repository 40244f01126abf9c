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
use actix_codec::{AsyncRead, AsyncWrite, Framed, FramedParts};
use actix_http::ws::{Codec, Frame, Message};
use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use super::connection::{EioConnection, FromWs, WsHandle, WsOut};
use super::{handshake, lookup, open, EioQuery, Registry};
use crate::protocol::socketio::EioPacket;
use crate::session::{Backlog, Shared};
use crate::transport::admission::ConnectionSlot;

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
    let framed = Framed::from_parts(FramedParts::with_read_buf(io, codec, read_buf));
    let (tx, rx) = mpsc::unbounded_channel();
    static NEXT_WS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT_WS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let handle = WsHandle { id, tx: tx.clone() };
    let connection = match query.sid.as_deref() {
        None => {
            // WebSocket only: the handshake is the first record.
            let (sid, connection) = open(&shared, &registry, slot, Some(handle));
            let _ = tx.send(WsOut::Text(handshake(&shared, &sid, false), 0));
            connection
        }
        Some(sid) => {
            // The polling connection holds its place; this socket needs none.
            drop(slot);
            let Some(connection) = lookup(&registry, sid) else {
                tracing::debug!("Socket.IO upgrade for an unknown sid");
                let _ = tx.send(WsOut::Close);
                tokio::task::spawn_local(run(framed, rx, None, id, shared));
                return;
            };
            connection.do_send(FromWs::Probe(handle));
            connection
        }
    };
    tokio::task::spawn_local(run(framed, rx, Some(connection), id, shared));
}

/// Reads the client's frames into packets for the connection, and writes the
/// connection's records, until either side ends.
async fn run<T>(
    mut framed: Framed<T, Codec>,
    mut rx: mpsc::UnboundedReceiver<WsOut>,
    connection: Option<Addr<EioConnection>>,
    id: u64,
    shared: Arc<Shared>,
) where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    // The connection's send backlog, once this socket carries it.
    let mut backlog: Option<Backlog> = None;
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(WsOut::Text(record, counted)) => {
                    let sent = framed.send(Message::Text(record.into())).await;
                    release(&backlog, counted);
                    if sent.is_err() {
                        break;
                    }
                }
                Some(WsOut::Carrier(carrying)) => backlog = Some(carrying),
                Some(WsOut::Close) | None => {
                    let _ = framed.send(Message::Close(None)).await;
                    break;
                }
            },
            frame = framed.next() => {
                let packet = match frame {
                    Some(Ok(Frame::Text(bytes))) => match std::str::from_utf8(&bytes) {
                        Ok(text) => EioPacket::decode(text).map(|p| (p, bytes.len())),
                        Err(_) => break,
                    },
                    Some(Ok(Frame::Binary(bytes))) => Ok((EioPacket::Binary(bytes.to_vec()), bytes.len())),
                    Some(Ok(Frame::Ping(bytes))) => {
                        let _ = framed.send(Message::Pong(bytes)).await;
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
