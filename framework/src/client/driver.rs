//! The client's connection driver: one task that owns the connection, and replaces
//! it when it drops.
//!
//! Reliable frames are numbered implicitly on both sides. The driver keeps what it
//! sent in an [`Outbox`] until the server says it processed it (`Received`, or
//! `Resumed` on reconnection), and counts what it processed from the server
//! (`recv_seq`), reported back in `Pong` and `Received`. On reconnection it sends
//! `Resume` with that count; the server replays the rest and says where the client's
//! stream should continue, and the driver resends from there. Nothing is delivered
//! twice and nothing is skipped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_bytes::ByteBuf;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep_until, Instant};

use super::link::{self, Link, LinkError, OpenError, Transport};
use super::{AckSender, ClientConfig, ClientError, ConnectionEvent, Event};
use crate::protocol::{self, Frame, Open, PROTOCOL_VERSION};
use crate::session::Outbox;
use crate::AckError;

type AckResult = oneshot::Sender<Result<Vec<u8>, AckError>>;
/// Answers a `join` call: joined, or refused with the reason.
type JoinResult = oneshot::Sender<Result<(), String>>;

/// Requests from the handles to the driver.
#[derive(Debug)]
pub(crate) enum Command {
    Connect {
        ns: Arc<str>,
        auth: Vec<u8>,
        events: mpsc::Sender<Event>,
        left: LeftReason,
        done: JoinResult,
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
}

/// Channels from the driver back to the application.
pub(crate) struct Outputs {
    pub handle: mpsc::Sender<Command>,
    pub errors: mpsc::Sender<(String, String)>,
    pub status: mpsc::Sender<ConnectionEvent>,
    pub closed: watch::Sender<Option<String>>,
    pub open: Arc<Mutex<Open>>,
    pub transport: Arc<Mutex<Transport>>,
    /// Heartbeat pings received (`Client::pings_received`).
    pub pings: Arc<AtomicU64>,
}

/// How one connection ended.
enum End {
    /// The session is over.
    Final(String),
    /// The connection dropped; the session may be resumed.
    Lost(String),
}

/// Report what we processed at least every this many reliable frames...
const RECEIVED_EVERY: u64 = 64;
/// ...and at most this long after the first unreported one.
const RECEIVED_AFTER: Duration = Duration::from_millis(1000);

/// Opens the connection (falling back to long-polling if configured so), performs
/// the Hello/Open handshake and spawns the driver.
pub(crate) async fn start(
    url: &str,
    config: ClientConfig,
    commands: mpsc::Receiver<Command>,
    close: watch::Receiver<bool>,
    outputs: Outputs,
) -> Result<Open, ClientError> {
    let hello_frame = hello(&config);
    let attempt = |kind: Transport, limit: Duration| {
        let hello_frame = hello_frame.clone();
        let config = &config;
        async move {
            let opening = async {
                let mut link = link::open(url, config, kind, hello_frame).await?;
                let open = expect_open(&mut link).await?;
                Ok::<_, OpenError>((link, open))
            };
            tokio::time::timeout(limit, opening)
                .await
                .map_err(|_| OpenError::from(ClientError::OpenTimeout))?
        }
    };
    let (link, open) = match config.transport {
        // Long-polling is tried when the upgrade was refused over HTTP or hung (a
        // proxy that holds it); not when nothing answered, which is an outage.
        Transport::Auto => match attempt(Transport::WebSocket, config.upgrade_timeout).await {
            Ok(opened) => opened,
            Err(OpenError {
                error: e,
                upgrade_refused,
            }) if upgrade_refused || e == ClientError::OpenTimeout => {
                tracing::info!(error = %e, "WebSocket unavailable; falling back to long-polling");
                let opened = attempt(Transport::Polling, config.connect_timeout).await?;
                let _ = outputs.status.try_send(ConnectionEvent::FellBack {
                    reason: e.to_string(),
                });
                opened
            }
            Err(e) => return Err(e.error),
        },
        kind => attempt(kind, config.connect_timeout).await?,
    };
    *outputs.open.lock().unwrap_or_else(|e| e.into_inner()) = open.clone();
    *outputs.transport.lock().unwrap_or_else(|e| e.into_inner()) = link.kind;
    let outbox = Outbox::new(config.send_buffer.max(1), usize::MAX);
    let driver = Driver {
        url: url.to_owned(),
        open: open.clone(),
        config,
        outputs,
        namespaces: HashMap::new(),
        connecting: HashMap::new(),
        pending_acks: HashMap::new(),
        outbox,
        recv_seq: 0,
        reported_seq: 0,
        rng: StdRng::from_entropy(),
    };
    actix_rt::spawn(driver.run(link, commands, close));
    Ok(open)
}

/// `Hello`, announcing the largest frame this client accepts.
fn hello(config: &ClientConfig) -> Bytes {
    protocol::encode(&Frame::Hello {
        version: PROTOCOL_VERSION,
        max_frame_size: Some(announced_limit(config)),
    })
}

/// The client's frame limit as announced on the wire (a u32, saturated).
fn announced_limit(config: &ClientConfig) -> u32 {
    u32::try_from(config.max_frame_size).unwrap_or(u32::MAX)
}

/// Reads the next protocol frame during a handshake.
async fn next_frame(link: &mut Link) -> Result<Frame, ClientError> {
    let bytes = link
        .recv()
        .await
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    protocol::decode(&bytes).map_err(|e| ClientError::Connect(e.to_string()))
}

/// Waits for `Open` after `Hello`.
async fn expect_open(link: &mut Link) -> Result<Open, ClientError> {
    match next_frame(link).await? {
        Frame::Open(open) => Ok(open),
        Frame::Close { reason } => Err(ClientError::Closed(reason)),
        other => Err(ClientError::Connect(format!(
            "expected 'open', got '{}'",
            other.kind()
        ))),
    }
}

/// Why the server removed the client from a namespace (set before its event channel
/// closes; read with [`super::NamespaceClient::disconnect_reason`]).
pub(crate) type LeftReason = Arc<Mutex<Option<String>>>;

/// What the client shows when the server removes it from a namespace without a
/// reason (a server that predates the `Disconnect` reason field).
const NO_REASON: &str = "disconnected by the server";

/// A joined namespace: where its events go and the auth to rejoin with.
struct Joined {
    events: mpsc::Sender<Event>,
    auth: Vec<u8>,
    left: LeftReason,
}

struct Driver {
    url: String,
    open: Open,
    config: ClientConfig,
    outputs: Outputs,
    namespaces: HashMap<Arc<str>, Joined>,
    /// Joins sent and not answered; `done` is `None` for automatic rejoins.
    connecting: HashMap<Arc<str>, (Joined, Option<JoinResult>)>,
    pending_acks: HashMap<u64, AckResult>,
    /// Our reliable frames the server has not confirmed; numbers our stream.
    outbox: Outbox,
    /// Reliable frames processed from the server.
    recv_seq: u64,
    /// The `recv_seq` the server was last told about.
    reported_seq: u64,
    rng: StdRng,
}

impl Driver {
    async fn run(
        mut self,
        mut link: Link,
        mut commands: mpsc::Receiver<Command>,
        mut close: watch::Receiver<bool>,
    ) {
        let reason = loop {
            match self.connection(link, &mut commands, &mut close).await {
                End::Final(reason) => break reason,
                End::Lost(reason) => {
                    tracing::debug!(%reason, "connection lost; reconnecting");
                    if !self.config.reconnect {
                        break reason;
                    }
                    match self.reconnect(&mut close).await {
                        Ok(next) => link = next,
                        Err(reason) => break reason,
                    }
                }
            }
        };
        tracing::debug!(%reason, "client session closed");
        // Pending acks and namespace channels close with the driver.
        let _ = self.outputs.status.try_send(ConnectionEvent::Closed {
            reason: reason.clone(),
        });
        let _ = self.outputs.closed.send(Some(reason));
    }

    /// Drives one connection until it ends.
    async fn connection(
        &mut self,
        mut link: Link,
        commands: &mut mpsc::Receiver<Command>,
        close: &mut watch::Receiver<bool>,
    ) -> End {
        let silence = Duration::from_millis(
            u64::from(self.open.ping_interval_ms) + u64::from(self.open.ping_timeout_ms),
        );
        let mut deadline = Instant::now() + silence;
        let mut report_at: Option<Instant> = None;
        let limit = self.config.send_buffer.max(1);
        let goodbye = || {
            protocol::encode(&Frame::Close {
                reason: "client left".into(),
            })
        };
        loop {
            let room = self.outbox.len() < limit;
            let reply = tokio::select! {
                _ = close.changed() => {
                    let _ = link.send(goodbye()).await;
                    link.close().await;
                    return End::Final("client closed".into());
                }
                // Read commands only while the outbox has room: when it is full the
                // command channel fills up and `emit` reports a full send buffer.
                cmd = commands.recv(), if room => {
                    let Some(cmd) = cmd else {
                        let _ = link.send(goodbye()).await;
                        link.close().await;
                        return End::Final("client dropped".into());
                    };
                    let mut next = Some(cmd);
                    while let Some(cmd) = next {
                        if let Some(bytes) = self.command(cmd) {
                            if let Err(e) = link.send(bytes).await {
                                return End::Lost(e);
                            }
                        }
                        next = if self.outbox.len() < limit { commands.try_recv().ok() } else { None };
                    }
                    None
                }
                bytes = link.recv() => {
                    let bytes = match bytes {
                        Ok(bytes) => bytes,
                        Err(LinkError::Lost(e)) => return End::Lost(e),
                        // The server would replay the same frame on a resume:
                        // end the session (and tell the server) instead.
                        Err(too_large) => {
                            let reason = too_large.to_string();
                            let close = Frame::Close { reason: reason.clone() };
                            let _ = link.send(protocol::encode(&close)).await;
                            link.close().await;
                            return End::Final(reason);
                        }
                    };
                    let frame = match protocol::decode(&bytes) {
                        Ok(frame) => frame,
                        Err(e) => return End::Final(format!("server sent a bad frame: {e}")),
                    };
                    match frame {
                        Frame::Ping => {
                            self.outputs.pings.fetch_add(1, Ordering::Relaxed);
                            deadline = Instant::now() + silence;
                            self.reported_seq = self.recv_seq;
                            report_at = None;
                            Some(Frame::Pong { last_seq: self.recv_seq })
                        }
                        frame => {
                            if let Some(end) = self.on_frame(frame).await {
                                return end;
                            }
                            let unreported = self.recv_seq - self.reported_seq;
                            if unreported >= RECEIVED_EVERY {
                                self.reported_seq = self.recv_seq;
                                report_at = None;
                                Some(Frame::Received { last_seq: self.recv_seq })
                            } else {
                                if unreported > 0 && report_at.is_none() {
                                    report_at = Some(Instant::now() + RECEIVED_AFTER);
                                }
                                None
                            }
                        }
                    }
                }
                _ = sleep_until(report_at.unwrap_or(deadline)), if report_at.is_some() => {
                    report_at = None;
                    self.reported_seq = self.recv_seq;
                    Some(Frame::Received { last_seq: self.recv_seq })
                }
                _ = sleep_until(deadline) => return End::Lost("ping timeout".into()),
            };
            if let Some(reply) = reply {
                if let Err(e) = link.send(protocol::encode(&reply)).await {
                    return End::Lost(e);
                }
            }
        }
    }

    /// Replaces a lost connection, resuming the session if the server still has it.
    async fn reconnect(&mut self, close: &mut watch::Receiver<bool>) -> Result<Link, String> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if !self.config.backoff.allows(attempt) {
                return Err(format!(
                    "reconnection failed after {} attempts",
                    attempt - 1
                ));
            }
            let delay = self.config.backoff.delay(attempt, &mut self.rng);
            let _ = self
                .outputs
                .status
                .try_send(ConnectionEvent::Reconnecting { attempt, delay });
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = close.changed() => return Err("client closed".into()),
            }
            let error = match tokio::time::timeout(self.config.connect_timeout, self.reopen()).await
            {
                Ok(Ok(link)) => return Ok(link),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!(
                    "no answer within the connect timeout ({} ms)",
                    self.config.connect_timeout.as_millis()
                ),
            };
            tracing::debug!(attempt, %error, "reconnection attempt failed");
            let _ = self
                .outputs
                .status
                .try_send(ConnectionEvent::ReconnectFailed { attempt, error });
        }
    }

    /// One reconnection attempt, on the transport that carried the session last:
    /// resume, or start a fresh session if the server says the old one is gone.
    async fn reopen(&mut self) -> Result<Link, ClientError> {
        let kind = *self
            .outputs
            .transport
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let resume = protocol::encode(&Frame::Resume {
            sid: self.open.sid,
            token: self.open.token,
            last_seq: self.recv_seq,
            max_frame_size: Some(announced_limit(&self.config)),
        });
        let mut link = match link::open(&self.url, &self.config, kind, resume.clone()).await {
            Ok(link) => link,
            // WebSocket stopped working (a proxy started refusing upgrades): with
            // `Auto`, the same attempt goes on over long-polling. An upgrade that got
            // no answer at all is an outage, and the next attempt is WebSocket again.
            Err(OpenError {
                error: e,
                upgrade_refused: true,
            }) if self.config.transport == Transport::Auto && kind == Transport::WebSocket => {
                let link = link::open(&self.url, &self.config, Transport::Polling, resume).await?;
                *self
                    .outputs
                    .transport
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Transport::Polling;
                let _ = self.outputs.status.try_send(ConnectionEvent::FellBack {
                    reason: e.to_string(),
                });
                link
            }
            Err(e) => return Err(e.error),
        };
        match next_frame(&mut link).await? {
            Frame::Resumed { last_seq, replay } => {
                let resend: Vec<Bytes> = match self.outbox.replay_after(last_seq) {
                    Ok(frames) => frames.cloned().collect(),
                    Err(_) => {
                        return Err(ClientError::Connect(format!(
                            "server resumed at frame {last_seq}, which this client cannot continue from"
                        )))
                    }
                };
                // The session is resumed from here on, even if this connection breaks
                // while we resend: what the server already sent must still be read
                // (that is progress), and unsent frames stay in the outbox for the
                // next connection.
                for bytes in &resend {
                    if link.send(bytes.clone()).await.is_err() {
                        tracing::debug!("connection broke while resending");
                        break;
                    }
                }
                self.reported_seq = self.recv_seq;
                let _ = self.outputs.status.try_send(ConnectionEvent::Reconnected {
                    resumed: true,
                    replayed: replay,
                    resent: resend.len() as u64,
                });
                Ok(link)
            }
            Frame::ResumeFailed { reason } => {
                link.send(hello(&self.config))
                    .await
                    .map_err(ClientError::Connect)?;
                let open = expect_open(&mut link).await?;
                self.session_lost(reason, open, &link).await?;
                Ok(link)
            }
            other => Err(ClientError::Connect(format!(
                "expected 'resumed', got '{}'",
                other.kind()
            ))),
        }
    }

    /// The server no longer has our session: start over on `open`, fail what was in
    /// flight, and rejoin every namespace with its auth.
    async fn session_lost(
        &mut self,
        reason: String,
        open: Open,
        link: &Link,
    ) -> Result<(), ClientError> {
        tracing::info!(%reason, "session lost; continuing on a fresh session");
        let dropped = self.outbox.len();
        self.outbox = Outbox::new(self.config.send_buffer.max(1), usize::MAX);
        self.pending_acks.clear();
        self.recv_seq = 0;
        self.reported_seq = 0;
        self.open = open.clone();
        *self.outputs.open.lock().unwrap_or_else(|e| e.into_inner()) = open;
        let mut rejoin: Vec<(Arc<str>, Joined, Option<JoinResult>)> = self
            .namespaces
            .drain()
            .map(|(ns, joined)| (ns, joined, None))
            .collect();
        rejoin.extend(
            self.connecting
                .drain()
                .map(|(ns, (joined, done))| (ns, joined, done)),
        );
        for (ns, joined, done) in rejoin {
            let frame = Frame::Connect {
                ns: ns.to_string(),
                auth: ByteBuf::from(joined.auth.clone()),
            };
            let bytes = protocol::encode(&frame);
            let _ = self.outbox.push(bytes.clone());
            link.send(bytes).await.map_err(ClientError::Connect)?;
            self.connecting.insert(ns, (joined, done));
        }
        let _ = self
            .outputs
            .status
            .try_send(ConnectionEvent::SessionLost { reason, dropped });
        let _ = self.outputs.status.try_send(ConnectionEvent::Reconnected {
            resumed: false,
            replayed: 0,
            resent: 0,
        });
        Ok(())
    }

    /// Turns a command into bytes to send, if any; reliable frames enter the outbox.
    fn command(&mut self, cmd: Command) -> Option<Bytes> {
        let frame = match cmd {
            Command::Connect {
                ns,
                auth,
                events,
                left,
                done,
            } => {
                let frame = Frame::Connect {
                    ns: ns.to_string(),
                    auth: ByteBuf::from(auth.clone()),
                };
                let joined = Joined { events, auth, left };
                self.connecting.insert(ns, (joined, Some(done)));
                frame
            }
            Command::Disconnect { ns } => {
                self.namespaces.remove(&ns);
                Frame::Disconnect {
                    ns: ns.to_string(),
                    reason: None,
                }
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
                return None;
            }
        };
        let bytes = protocol::encode(&frame);
        // Every command frame is reliable; the caller only reads commands while the
        // outbox has room, so this cannot overflow.
        if self.outbox.push(bytes.clone()).is_err() {
            tracing::error!("client outbox full; frame dropped");
            return None;
        }
        Some(bytes)
    }

    /// Handles one frame from the server; `Some` ends the connection.
    async fn on_frame(&mut self, frame: Frame) -> Option<End> {
        if frame.is_reliable() {
            self.recv_seq += 1;
        }
        match frame {
            Frame::Received { last_seq } => {
                if self.outbox.ack(last_seq).is_err() {
                    return Some(End::Final(format!(
                        "server acknowledged frame {last_seq}, beyond what was sent"
                    )));
                }
            }
            Frame::Connected { ns } => {
                if let Some((joined, done)) = self.connecting.remove(ns.as_str()) {
                    self.namespaces.insert(ns.into(), joined);
                    if let Some(done) = done {
                        let _ = done.send(Ok(()));
                    }
                }
            }
            Frame::ConnectError { ns, reason } => {
                if let Some((_, done)) = self.connecting.remove(ns.as_str()) {
                    match done {
                        Some(done) => {
                            let _ = done.send(Err(reason));
                        }
                        None => {
                            // An automatic rejoin was refused: the namespace's event
                            // channel closes, and the application hears why.
                            let _ = self.outputs.errors.try_send((ns, reason));
                        }
                    }
                }
            }
            Frame::Disconnect { ns, reason } => {
                if let Some(joined) = self.namespaces.remove(ns.as_str()) {
                    let reason = reason.unwrap_or_else(|| NO_REASON.to_owned());
                    tracing::debug!(ns = %ns, %reason, "removed from the namespace by the server");
                    *joined.left.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
                }
            }
            Frame::Event {
                ns,
                name,
                payload,
                ack,
            } => {
                let Some(joined) = self.namespaces.get(ns.as_str()) else {
                    tracing::debug!(ns = %ns, event = %name, "event for a namespace not joined");
                    return None;
                };
                let event = Event {
                    name,
                    payload: Bytes::from(payload.into_vec()),
                    volatile: false,
                    ack: ack.map(|id| AckSender {
                        ns: ns.as_str().into(),
                        id,
                        commands: self.outputs.handle.clone(),
                    }),
                };
                // Waits while the application is behind: reliable events are never
                // dropped here.
                let _ = joined.events.send(event).await;
            }
            Frame::Volatile { ns, name, payload } => {
                if let Some(joined) = self.namespaces.get(ns.as_str()) {
                    // Latest-wins: if the application is behind, this one is dropped.
                    let _ = joined.events.try_send(Event {
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
                let _ = self.outputs.errors.try_send((ns, reason));
            }
            Frame::Close { reason } => return Some(End::Final(reason)),
            other => {
                tracing::debug!(kind = other.kind(), "ignoring unexpected frame");
            }
        }
        None
    }
}
