//! The WebSocket of an Engine.IO connection, under Volley's own server: the upgrade
//! hook ([`crate::transport::upgrade`]) hands over `<path>?EIO=4&transport=websocket`
//! after its checks and the `101`, and one task per WebSocket reads the client's
//! frames into packets for its [`EioConnection`]: a new one (WebSocket-only clients,
//! handshake first) or, with `&sid=`, the polling connection it probes and takes over.
//!
//! Under Volley's own server the socket is read as the native transport reads it
//! (`ReadChunks`, `Incoming`: no buffer kept while idle), and once the socket carries
//! the connection its writing half goes to the connection's queue, as a native
//! connection's does: the session's records are written by the thread's flush or the
//! queue's writer, never by this task. Under actix-web's own server (`route`) the
//! request body is read the same way and the queue is drained into the response body.

use std::future::poll_fn;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::prelude::*;
use actix_codec::AsyncRead;
use actix_http::ws::{Frame, ProtocolError};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::carrier::{FromWs, WsHandle, WsOut};
use super::connection::EioConnection;
use super::frames::{pong, read, Read, CLOSE};
use super::{lookup, open_websocket, EioQuery, Registry};
use crate::protocol::socketio::text_message;
use crate::session::{queued_size, SendQueue, Shared, SocketWrite};
use crate::transport::admission::{self, ConnectionSlot};
use crate::transport::ws_frames::{Incoming, ReadChunks, Writer};

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

/// Runs an upgraded WebSocket (the `101` is written) as an Engine.IO transport: its
/// reading half, what was read past the upgrade request, and its writing half.
pub(crate) fn start(
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    query: EioQuery,
    slot: ConnectionSlot,
    read: Box<dyn AsyncRead + Unpin>,
    write: SocketWrite,
    read_buf: BytesMut,
) {
    // As the native transport: no buffer kept while the connection is idle.
    let max = shared.config.max_frame_size;
    let frames = Incoming::new(ReadChunks::new(read, read_buf.freeze()), max);
    attach(
        shared,
        registry,
        query,
        slot,
        frames,
        WsWrite::Socket(write),
    );
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
    // Bounded: a message is taken off the queue (and its backlog) only once the
    // dispatcher has taken the one before it, so a slow reader's bytes wait in the
    // connection's bounded queue, not here.
    let (body, written) = mpsc::channel::<Bytes>(1);
    attach(shared, registry, query, slot, frames, WsWrite::Body(body));
    let stream = futures_util::stream::unfold(written, |mut written| async move {
        let bytes = written.recv().await?;
        Some((Ok::<_, actix_web::Error>(bytes), written))
    });
    response.streaming(stream)
}

/// Where a WebSocket's bytes go: written by its task until the socket carries the
/// connection, then through the connection's queue.
enum WsWrite {
    /// Volley's own server: the socket's writing half.
    Socket(SocketWrite),
    /// actix-web's server: the response body.
    Body(mpsc::Sender<Bytes>),
    /// Carrying the connection: its queue (which has the writing half).
    Queue(Arc<SendQueue>),
}

impl WsWrite {
    /// Writes a message of the task's own (a probe's answer, a pong, a close).
    async fn write(&mut self, message: Bytes) -> std::io::Result<()> {
        match self {
            WsWrite::Socket(io) => io.write_all(&message).await,
            WsWrite::Body(body) => body
                .send(message)
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe)),
            WsWrite::Queue(queue) => {
                queue
                    .backlog()
                    .fetch_add(queued_size(&message), Ordering::Relaxed);
                queue.push(message);
                Ok(())
            }
        }
    }

    /// The socket carries the connection from now on: its writing half goes to the
    /// connection's queue (under actix-web's server, a task drains the queue into
    /// the response body).
    fn carry(&mut self, queue: Arc<SendQueue>) {
        match std::mem::replace(self, WsWrite::Queue(queue.clone())) {
            WsWrite::Socket(io) => Writer::hand_over(&queue, io),
            WsWrite::Body(body) => drop(tokio::task::spawn_local(drain(queue, body))),
            WsWrite::Queue(_) => {}
        }
    }
}

/// Moves a connection's queue into the response body (actix-web's server).
async fn drain(queue: Arc<SendQueue>, body: mpsc::Sender<Bytes>) {
    while let Some(message) = poll_fn(|cx| queue.poll_next(cx)).await {
        if body.send(message).await.is_err() {
            queue.gone();
            return;
        }
    }
}

/// Ties a WebSocket's frames and writer to a new connection (no sid: WebSocket
/// only), which reads the frames itself, or to the polling connection it probes,
/// with a task that reads them.
fn attach<S>(
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    query: EioQuery,
    slot: ConnectionSlot,
    frames: S,
    mut write: WsWrite,
) where
    S: Stream<Item = Result<Frame, ProtocolError>> + Unpin + 'static,
{
    let Some(sid) = query.sid.as_deref() else {
        // WebSocket only: the connection queues the handshake first.
        let queue = open_websocket(&shared, &registry, slot, frames);
        write.carry(queue);
        return;
    };
    // The polling connection holds its place; this socket needs none.
    drop(slot);
    // A few messages per socket (see `WsOut`): a channel that allocates per message
    // rather than one that holds a block of slots for the socket's whole life.
    let (tx, rx) = futures_channel::mpsc::unbounded();
    static NEXT_WS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT_WS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let handle = WsHandle {
        id,
        tx: tx.clone(),
        probed: false,
    };
    let connection = lookup(&registry, sid);
    match &connection {
        Some(connection) => connection.do_send(FromWs::Probe(handle)),
        None => {
            tracing::debug!("Socket.IO upgrade for an unknown sid");
            let _ = tx.unbounded_send(WsOut::Close);
        }
    }
    tokio::task::spawn_local(run(frames, write, rx, connection, id, shared));
}

/// Reads the client's frames into packets for the connection, and takes what the
/// connection tells the socket, until either side ends.
async fn run<S>(
    mut frames: S,
    mut writer: WsWrite,
    mut rx: futures_channel::mpsc::UnboundedReceiver<WsOut>,
    connection: Option<Addr<EioConnection>>,
    id: u64,
    shared: Arc<Shared>,
) where
    S: Stream<Item = Result<Frame, ProtocolError>> + Unpin,
{
    loop {
        tokio::select! {
            out = rx.next() => {
                let message = match out {
                    None => break,
                    Some(WsOut::Carry(queue)) => {
                        writer.carry(queue);
                        continue;
                    }
                    Some(WsOut::Text(record)) => text_message(&[record.as_bytes()]),
                    Some(WsOut::Close) => {
                        // A carrier's close is queued by its connection already.
                        if !matches!(writer, WsWrite::Queue(_)) {
                            let _ = writer.write(Bytes::from_static(CLOSE)).await;
                        }
                        break;
                    }
                };
                if writer.write(message).await.is_err() {
                    break;
                }
            },
            frame = frames.next() => {
                let (packet, size) = match read(frame, &shared) {
                    Read::Packet(packet, size) => (packet, size),
                    Read::Ping(bytes) => {
                        // A peer that pings and does not read gets no more pongs than
                        // the connection's backlog holds.
                        if let WsWrite::Queue(queue) = &writer {
                            if queue.backlog().load(Ordering::Relaxed) >= shared.config.max_send_backlog {
                                continue;
                            }
                        }
                        if writer.write(pong(bytes)).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    Read::Nothing => continue,
                    Read::End => break,
                };
                let Some(connection) = &connection else { break };
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
}
