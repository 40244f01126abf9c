//! The client's connection driver: one task that owns the WebSocket.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use awc::ws;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_bytes::ByteBuf;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep_until, Instant};

use super::{AckSender, ClientConfig, ClientError, Event};
use crate::protocol::{self, Frame, Open, PROTOCOL_VERSION};
use crate::AckError;

type AckResult = oneshot::Sender<Result<Vec<u8>, AckError>>;

/// Requests from the handles to the driver.
#[derive(Debug)]
pub(crate) enum Command {
    Connect {
        ns: Arc<str>,
        auth: Vec<u8>,
        events: mpsc::Sender<Event>,
        done: oneshot::Sender<Result<(), String>>,
    },
    Disconnect {
        ns: Arc<str>,
    },
    Emit {
        ns: Arc<str>,
        name: String,
        payload: Vec<u8>,
        ack: Option<(u64, AckResult)>,
    },
    Ack {
        ns: Arc<str>,
        id: u64,
        payload: Vec<u8>,
    },
    ForgetAck(u64),
    Close,
}

type Framed = actix_codec::Framed<awc::BoxedSocket, ws::Codec>;

/// Opens the connection, performs the Hello/Open handshake and spawns the driver.
pub(crate) async fn start(
    url: &str,
    config: &ClientConfig,
    commands: mpsc::Receiver<Command>,
    handle: mpsc::Sender<Command>,
    errors: mpsc::Sender<(String, String)>,
    closed: watch::Sender<Option<String>>,
) -> Result<Open, ClientError> {
    let handshake = async {
        let (_, mut framed) = awc::Client::new()
            .ws(url)
            .max_frame_size(config.max_frame_size)
            .connect()
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let hello = protocol::encode(&Frame::Hello {
            version: PROTOCOL_VERSION,
        });
        framed
            .send(ws::Message::Binary(hello))
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        loop {
            match framed.next().await {
                Some(Ok(ws::Frame::Binary(bytes))) => match protocol::decode(&bytes) {
                    Ok(Frame::Open(open)) => return Ok((open, framed)),
                    Ok(Frame::Close { reason }) => return Err(ClientError::Closed(reason)),
                    Ok(other) => {
                        return Err(ClientError::Connect(format!(
                            "expected 'open', got '{}'",
                            other.kind()
                        )))
                    }
                    Err(e) => return Err(ClientError::Connect(e.to_string())),
                },
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(ClientError::Connect(e.to_string())),
                None => {
                    return Err(ClientError::Connect(
                        "connection closed during handshake".into(),
                    ))
                }
            }
        }
    };
    let (open, framed) = tokio::time::timeout(config.connect_timeout, handshake)
        .await
        .map_err(|_| ClientError::OpenTimeout)??;
    let driver = Driver {
        open: open.clone(),
        handle,
        errors,
        namespaces: HashMap::new(),
        connecting: HashMap::new(),
        pending_acks: HashMap::new(),
        recv_seq: 0,
        sent_seq: 0,
    };
    actix_rt::spawn(async move {
        let reason = driver.run(framed, commands).await;
        tracing::debug!(%reason, "client session closed");
        let _ = closed.send(Some(reason));
    });
    Ok(open)
}

struct Driver {
    open: Open,
    handle: mpsc::Sender<Command>,
    errors: mpsc::Sender<(String, String)>,
    namespaces: HashMap<Arc<str>, mpsc::Sender<Event>>,
    connecting: HashMap<Arc<str>, (mpsc::Sender<Event>, oneshot::Sender<Result<(), String>>)>,
    pending_acks: HashMap<u64, AckResult>,
    /// Reliable frames processed from the server.
    recv_seq: u64,
    /// Reliable frames sent to the server.
    sent_seq: u64,
}

/// What ends the driver loop: the reason the session closed.
type Closed = String;

impl Driver {
    async fn run(mut self, framed: Framed, mut commands: mpsc::Receiver<Command>) -> Closed {
        let (mut sink, mut stream) = framed.split();
        let silence = Duration::from_millis(
            u64::from(self.open.ping_interval_ms) + u64::from(self.open.ping_timeout_ms),
        );
        let mut deadline = Instant::now() + silence;
        loop {
            tokio::select! {
                cmd = commands.recv() => {
                    let Some(cmd) = cmd else {
                        let _ = sink.send(close_frame()).await;
                        return "client dropped".into();
                    };
                    // Coalesce: encode everything already queued, then flush once.
                    let mut next = Some(cmd);
                    while let Some(cmd) = next {
                        match self.command(cmd) {
                            Ok(Some(bytes)) => {
                                if let Err(e) = sink.feed(ws::Message::Binary(bytes)).await {
                                    return format!("transport error: {e}");
                                }
                            }
                            Ok(None) => {}
                            Err(reason) => {
                                let _ = sink.send(close_frame()).await;
                                let _ = sink.close().await;
                                return reason;
                            }
                        }
                        next = commands.try_recv().ok();
                    }
                    if let Err(e) = sink.flush().await {
                        return format!("transport error: {e}");
                    }
                }
                frame = stream.next() => {
                    let bytes = match frame {
                        Some(Ok(ws::Frame::Binary(bytes))) => bytes,
                        Some(Ok(ws::Frame::Close(_))) | None => return "transport closed".into(),
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return format!("transport error: {e}"),
                    };
                    let frame = match protocol::decode(&bytes) {
                        Ok(frame) => frame,
                        Err(e) => return format!("server sent a bad frame: {e}"),
                    };
                    if matches!(frame, Frame::Ping) {
                        deadline = Instant::now() + silence;
                        let pong = protocol::encode(&Frame::Pong { last_seq: self.recv_seq });
                        if let Err(e) = sink.send(ws::Message::Binary(pong)).await {
                            return format!("transport error: {e}");
                        }
                        continue;
                    }
                    if let Some(reason) = self.on_frame(frame).await {
                        return reason;
                    }
                }
                _ = sleep_until(deadline) => return "ping timeout".into(),
            }
        }
    }

    /// Turns a command into bytes to send (if any). `Err` ends the session.
    fn command(&mut self, cmd: Command) -> Result<Option<Bytes>, Closed> {
        let frame = match cmd {
            Command::Connect {
                ns,
                auth,
                events,
                done,
            } => {
                self.connecting.insert(ns.clone(), (events, done));
                Frame::Connect {
                    ns: ns.to_string(),
                    auth: ByteBuf::from(auth),
                }
            }
            Command::Disconnect { ns } => {
                self.namespaces.remove(&ns);
                Frame::Disconnect { ns: ns.to_string() }
            }
            Command::Emit {
                ns,
                name,
                payload,
                ack,
            } => {
                let ack = ack.map(|(id, tx)| {
                    self.pending_acks.insert(id, tx);
                    id
                });
                Frame::Event {
                    ns: ns.to_string(),
                    name,
                    payload: ByteBuf::from(payload),
                    ack,
                }
            }
            Command::Ack { ns, id, payload } => Frame::Ack {
                ns: ns.to_string(),
                id,
                payload: ByteBuf::from(payload),
            },
            Command::ForgetAck(id) => {
                self.pending_acks.remove(&id);
                return Ok(None);
            }
            Command::Close => return Err("client closed".into()),
        };
        if frame.is_reliable() {
            self.sent_seq += 1;
        }
        Ok(Some(protocol::encode(&frame)))
    }

    /// Handles one frame from the server; `Some(reason)` ends the session.
    async fn on_frame(&mut self, frame: Frame) -> Option<Closed> {
        if frame.is_reliable() {
            self.recv_seq += 1;
        }
        match frame {
            Frame::Connected { ns } => {
                if let Some((events, done)) = self.connecting.remove(ns.as_str()) {
                    self.namespaces.insert(ns.into(), events);
                    let _ = done.send(Ok(()));
                }
            }
            Frame::ConnectError { ns, reason } => {
                if let Some((_, done)) = self.connecting.remove(ns.as_str()) {
                    let _ = done.send(Err(reason));
                }
            }
            Frame::Disconnect { ns } => {
                self.namespaces.remove(ns.as_str());
            }
            Frame::Event {
                ns,
                name,
                payload,
                ack,
            } => {
                let Some(events) = self.namespaces.get(ns.as_str()) else {
                    tracing::debug!(ns = %ns, event = %name, "event for a namespace not joined");
                    return None;
                };
                let ns: Arc<str> = ns.into();
                let event = Event {
                    name,
                    payload: Bytes::from(payload.into_vec()),
                    volatile: false,
                    ack: ack.map(|id| AckSender {
                        ns,
                        id,
                        commands: self.handle.clone(),
                    }),
                };
                // Waits while the application is behind: reliable events are never
                // dropped here.
                let _ = events.send(event).await;
            }
            Frame::Volatile { ns, name, payload } => {
                if let Some(events) = self.namespaces.get(ns.as_str()) {
                    // Latest-wins: if the application is behind, this one is dropped.
                    let _ = events.try_send(Event {
                        name,
                        payload: Bytes::from(payload.into_vec()),
                        volatile: true,
                        ack: None,
                    });
                }
            }
            Frame::Ack { id, payload, .. } => {
                if let Some(tx) = self.pending_acks.remove(&id) {
                    let _ = tx.send(Ok(payload.into_vec()));
                }
            }
            Frame::Error { ns, reason } => {
                tracing::debug!(ns = %ns, %reason, "server refused a request");
                let _ = self.errors.try_send((ns, reason));
            }
            Frame::Close { reason } => return Some(reason),
            other => {
                tracing::debug!(kind = other.kind(), "ignoring unexpected frame");
            }
        }
        None
    }
}

fn close_frame() -> ws::Message {
    ws::Message::Binary(protocol::encode(&Frame::Close {
        reason: "client left".into(),
    }))
}
