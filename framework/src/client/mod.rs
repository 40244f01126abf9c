//! The Rust client (cargo feature `client`), on awc.
//!
//! [`Client::connect`] opens a session; [`Client::join`] joins a namespace and gives a
//! [`NamespaceClient`] to emit on and to read events from. A background task (the
//! driver, in `driver.rs`) owns the connection: it answers pings, counts reliable
//! frames, routes events to their namespace and resolves acks.
//!
//! When the connection drops, the client reconnects by itself with exponential
//! back-off ([`Backoff`]) and resumes its session: reliable events are delivered
//! exactly once and in order in both directions, and [`NamespaceClient`]s keep
//! working. [`Client::next_connection_event`] tells the application what happens.
//!
//! The client runs on the current thread's actix/tokio runtime (awc is not `Send`):
//! use it inside `#[actix_rt::main]`, `#[actix_web::main]` or `#[actix_rt::test]`.

mod backoff;
mod driver;
mod link;

pub use backoff::Backoff;
pub use link::Transport;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::protocol::Open;
use crate::AckError;

/// Client settings; every default is on its field.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Time allowed for the WebSocket upgrade and the server's `Open` frame.
    /// Default 10 s.
    pub connect_timeout: Duration,
    /// Frames the application may queue for sending before `emit` fails with
    /// [`ClientError::SendBufferFull`]. Default 1024. The same number bounds the
    /// reliable frames kept until the server confirms them (for resending after a
    /// reconnection); while that many are unconfirmed, or while disconnected, new
    /// emits wait in the buffer, and once it is full `emit` fails at once.
    pub send_buffer: usize,
    /// Events buffered per namespace for [`NamespaceClient::next_event`]. When full,
    /// the client stops reading the connection until the application catches up
    /// (the server then sees a slow consumer). Default 1024.
    pub event_buffer: usize,
    /// Largest frame accepted from the server, in bytes. Default 16 MiB. The client
    /// announces it when it connects and the server never sends a larger frame (a
    /// larger emit fails on the server); if one arrives anyway, the session ends
    /// with that reason rather than reconnecting into the same frame again.
    pub max_frame_size: usize,
    /// Reconnect (and resume) when the connection drops. Default `true`.
    pub reconnect: bool,
    /// Which transport to use. Default [`Transport::Auto`]: WebSocket, falling back
    /// to long-polling. A client that fell back stays on polling for the life of the
    /// `Client` (it does not upgrade later).
    pub transport: Transport,
    /// With [`Transport::Auto`], how long the WebSocket attempt (upgrade and `Open`)
    /// may take before falling back to long-polling. Default 5 s.
    pub upgrade_timeout: Duration,
    /// Long-polling: how long one HTTP request may take. Must exceed the server's
    /// `poll_hold` (default 20 s). Default 45 s.
    pub poll_timeout: Duration,
    /// Delays between reconnection attempts. Default: 1 s doubling to 5 s, ±50%.
    pub backoff: Backoff,
    /// Local IP address the client's connections start from. Default `None`: the
    /// system picks one. A load generator spreads thousands of clients over several
    /// loopback addresses (`127.0.0.x`) with it, since each source address has its
    /// own range of ephemeral ports.
    pub local_address: Option<std::net::IpAddr>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(10),
            send_buffer: 1024,
            event_buffer: 1024,
            max_frame_size: 16 * 1024 * 1024,
            reconnect: true,
            backoff: Backoff::default(),
            transport: Transport::Auto,
            upgrade_timeout: Duration::from_secs(5),
            poll_timeout: Duration::from_secs(45),
            local_address: None,
        }
    }
}

/// What went wrong on the client side.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ClientError {
    /// The connection could not be opened.
    #[error("could not connect: {0}")]
    Connect(String),
    /// No `Open` frame arrived in time.
    #[error("the server did not open a session within the connect timeout")]
    OpenTimeout,
    /// The server refused to let the client join a namespace.
    #[error("namespace refused: {0}")]
    Refused(String),
    /// The session is closed (with the server's reason, if it gave one).
    #[error("session closed: {0}")]
    Closed(String),
    /// The send buffer is full; the application emits faster than the link carries.
    #[error("send buffer full")]
    SendBufferFull,
    /// A payload could not be serialized.
    #[error("payload did not serialize: {0}")]
    Serialize(String),
}

/// What happened to the connection, for the application to show or log.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectionEvent {
    /// WebSocket did not work (the reason); the session runs over long-polling.
    FellBack {
        /// Why the WebSocket attempt failed.
        reason: String,
    },
    /// The connection dropped; attempt `attempt` starts after `delay`.
    Reconnecting {
        /// Attempt number since the connection dropped, from 1.
        attempt: u32,
        /// Back-off delay before this attempt ([`ClientConfig::backoff`]).
        delay: Duration,
    },
    /// Reconnection attempt `attempt` failed (`error`: the connection was refused,
    /// the upgrade failed, no answer came within [`ClientConfig::connect_timeout`],
    /// ...); a [`ConnectionEvent::Reconnecting`] follows unless
    /// [`Backoff::max_attempts`] is reached.
    ReconnectFailed {
        /// The attempt that failed, from 1.
        attempt: u32,
        /// What went wrong.
        error: String,
    },
    /// A connection is back. `resumed`: the same session continues, with `replayed`
    /// frames replayed by the server and `resent` frames resent by the client;
    /// otherwise a fresh session started (see [`ConnectionEvent::SessionLost`]).
    Reconnected {
        /// Whether the same session continues (`false`: a fresh one).
        resumed: bool,
        /// Reliable frames the server replayed.
        replayed: u64,
        /// Reliable frames the client resent.
        resent: u64,
    },
    /// The server no longer had the session (expired, bad token). A fresh session
    /// was opened and the namespaces rejoined; `dropped` unconfirmed frames and all
    /// pending acks were abandoned.
    SessionLost {
        /// The server's reason for refusing the resume.
        reason: String,
        /// Unconfirmed reliable frames abandoned.
        dropped: usize,
    },
    /// The client stopped for good.
    Closed {
        /// Why: the server's close reason, or the client's own.
        reason: String,
    },
}

/// An event received from the server.
#[derive(Debug)]
pub struct Event {
    /// Event name.
    pub name: String,
    /// JSON payload.
    pub payload: Bytes,
    /// Whether it came as a volatile (latest-wins) frame.
    pub volatile: bool,
    /// Present when the server asked for an acknowledgement.
    pub ack: Option<AckSender>,
}

impl Event {
    /// Decodes the payload.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.payload)
    }
}

/// Answers an event for which the server asked for an acknowledgement.
#[derive(Debug)]
pub struct AckSender {
    ns: Arc<str>,
    id: u64,
    commands: mpsc::Sender<driver::Command>,
}

impl AckSender {
    /// Sends the answer.
    pub fn send<T: Serialize>(self, payload: &T) -> Result<(), ClientError> {
        let payload = to_json(payload)?;
        try_command(
            &self.commands,
            driver::Command::Ack {
                ns: self.ns,
                id: self.id,
                payload,
            },
        )
    }
}

fn to_json<T: Serialize>(payload: &T) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(payload).map_err(|e| ClientError::Serialize(e.to_string()))
}

fn try_command(
    commands: &mpsc::Sender<driver::Command>,
    cmd: driver::Command,
) -> Result<(), ClientError> {
    commands.try_send(cmd).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => ClientError::SendBufferFull,
        mpsc::error::TrySendError::Closed(_) => ClientError::Closed("client stopped".into()),
    })
}

/// A connected client session.
///
/// ```no_run
/// use std::time::Duration;
/// use volley::client::{Client, ClientConfig, Transport};
///
/// #[actix_web::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let config = ClientConfig {
///         transport: Transport::Auto, // WebSocket, or long-polling where it is blocked
///         send_buffer: 256,
///         ..ClientConfig::default()
///     };
///     let client = Client::connect_with("ws://127.0.0.1:8080/volley", config).await?;
///     let lobby = client.join("/lobby", &"my-token").await?;
///     let rooms: Vec<String> = lobby
///         .emit_with_ack("list", &(), Duration::from_secs(5))
///         .await?;
///     println!("{rooms:?}");
///     // Reconnections happen by themselves; this tells what happened.
///     while let Some(event) = client.next_connection_event().await {
///         println!("{event:?}");
///     }
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct Client {
    open: Arc<Mutex<Open>>,
    transport: Arc<Mutex<Transport>>,
    config: ClientConfig,
    commands: mpsc::Sender<driver::Command>,
    close: Arc<watch::Sender<bool>>,
    closed: watch::Receiver<Option<String>>,
    errors: Arc<tokio::sync::Mutex<mpsc::Receiver<(String, String)>>>,
    status: Arc<tokio::sync::Mutex<mpsc::Receiver<ConnectionEvent>>>,
    next_ack: Arc<AtomicU64>,
    pings: Arc<AtomicU64>,
}

impl Client {
    /// Connects to a Volley server (`ws://host:port/volley`) with default settings.
    /// The first connection is not retried: an error is returned at once.
    pub async fn connect(url: &str) -> Result<Client, ClientError> {
        Self::connect_with(url, ClientConfig::default()).await
    }

    /// Connects with explicit settings.
    pub async fn connect_with(url: &str, config: ClientConfig) -> Result<Client, ClientError> {
        let (commands, command_rx) = mpsc::channel(config.send_buffer.max(1));
        let (errors, error_rx) = mpsc::channel(64);
        let (status, status_rx) = mpsc::channel(256);
        let (closed_tx, closed) = watch::channel(None);
        let (close, close_rx) = watch::channel(false);
        let open = Arc::new(Mutex::new(Open {
            version: 0,
            sid: 0,
            token: [0; 16],
            ping_interval_ms: 0,
            ping_timeout_ms: 0,
            max_frame_size: 0,
        }));
        let transport = Arc::new(Mutex::new(Transport::WebSocket));
        let pings = Arc::new(AtomicU64::new(0));
        let outputs = driver::Outputs {
            transport: transport.clone(),
            pings: pings.clone(),
            handle: commands.clone(),
            errors,
            status,
            closed: closed_tx,
            open: open.clone(),
        };
        driver::start(url, config.clone(), command_rx, close_rx, outputs).await?;
        Ok(Client {
            open,
            transport,
            config,
            commands,
            close: Arc::new(close),
            closed,
            errors: Arc::new(tokio::sync::Mutex::new(error_rx)),
            status: Arc::new(tokio::sync::Mutex::new(status_rx)),
            next_ack: Arc::new(AtomicU64::new(1)),
            pings,
        })
    }

    /// How many heartbeat `Ping`s the server has sent this session so far, over
    /// every connection (the client answers each by itself). Read-only, for
    /// monitoring: the load tester's soak checks the server pings once per interval.
    pub fn pings_received(&self) -> u64 {
        self.pings.load(Ordering::Relaxed)
    }

    /// The current session id (a new one after [`ConnectionEvent::SessionLost`]).
    pub fn session_id(&self) -> u64 {
        self.open_frame().sid
    }

    /// The transport carrying the session ([`Transport::WebSocket`] or
    /// [`Transport::Polling`]).
    pub fn transport(&self) -> Transport {
        *self.transport.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The server's session parameters (ping interval and timeout, frame limit).
    pub fn open_frame(&self) -> Open {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Joins namespace `ns`, sending `auth` (any JSON-serializable value, or `()` for
    /// none) to its middleware. Fails with [`ClientError::Refused`] and the server's
    /// reason if the middleware says no. After a lost session the client rejoins with
    /// the same `auth` by itself.
    pub async fn join<A: Serialize>(
        &self,
        ns: &str,
        auth: &A,
    ) -> Result<NamespaceClient, ClientError> {
        let auth = to_json(auth)?;
        let (tx, rx) = oneshot::channel();
        let (events_tx, events) = mpsc::channel(self.config.event_buffer.max(1));
        let ns: Arc<str> = ns.into();
        let left = driver::LeftReason::default();
        self.commands
            .send(driver::Command::Connect {
                ns: ns.clone(),
                auth,
                events: events_tx,
                left: left.clone(),
                done: tx,
            })
            .await
            .map_err(|_| self.closed_error())?;
        match rx.await {
            Ok(Ok(())) => Ok(NamespaceClient {
                emitter: Emitter {
                    ns,
                    commands: self.commands.clone(),
                    next_ack: self.next_ack.clone(),
                },
                events,
                handlers: HashMap::new(),
                left,
            }),
            Ok(Err(reason)) => Err(ClientError::Refused(reason)),
            Err(_) => Err(self.closed_error()),
        }
    }

    fn closed_error(&self) -> ClientError {
        let reason = self.closed.borrow().clone();
        ClientError::Closed(reason.unwrap_or_else(|| "connection lost".into()))
    }

    /// The next `Error` frame from the server, as `(namespace, reason)`; `None` once the
    /// session is closed. At most 64 are kept; while that many wait, newer ones are
    /// dropped.
    pub async fn next_error(&self) -> Option<(String, String)> {
        self.errors.lock().await.recv().await
    }

    /// The next change of connection state (reconnecting, reconnected, session lost,
    /// closed); `None` after the client stopped and every event was read. At most 256
    /// are kept; while that many wait, newer ones are dropped.
    pub async fn next_connection_event(&self) -> Option<ConnectionEvent> {
        self.status.lock().await.recv().await
    }

    /// Resolves when the client has stopped for good, with the reason.
    pub async fn closed(&self) -> String {
        let mut closed = self.closed.clone();
        loop {
            if let Some(reason) = closed.borrow().clone() {
                return reason;
            }
            if closed.changed().await.is_err() {
                return closed
                    .borrow()
                    .clone()
                    .unwrap_or_else(|| "connection lost".into());
            }
        }
    }

    /// Whether the client has stopped for good.
    pub fn is_closed(&self) -> bool {
        self.closed.borrow().is_some()
    }

    /// Ends the session (the server runs disconnect handlers with `client left`),
    /// also while reconnecting.
    pub async fn close(&self) {
        let _ = self.close.send(true);
        self.closed().await;
    }
}

type EventHandler = Box<dyn Fn(Event)>;

/// The sending half of a [`NamespaceClient`]: cheap to clone, so one task can emit
/// while another reads events.
#[derive(Clone, Debug)]
pub struct Emitter {
    ns: Arc<str>,
    commands: mpsc::Sender<driver::Command>,
    next_ack: Arc<AtomicU64>,
}

impl Emitter {
    /// Sends a reliable event. Fails at once (never blocks) if the send buffer is full.
    pub fn emit<T: Serialize>(&self, event: &str, payload: &T) -> Result<(), ClientError> {
        let payload = to_json(payload)?;
        try_command(
            &self.commands,
            driver::Command::Emit {
                ns: self.ns.clone(),
                name: event.to_owned(),
                payload,
                ack: None,
            },
        )
    }

    /// Sends an event and waits for the server's answer, decoded as `R`. Always
    /// resolves: the answer, [`AckError::Timeout`], or [`AckError::Disconnected`].
    pub async fn emit_with_ack<T: Serialize, R: DeserializeOwned>(
        &self,
        event: &str,
        payload: &T,
        timeout: Duration,
    ) -> Result<R, AckError> {
        let payload = to_json(payload).map_err(|e| AckError::Decode(e.to_string()))?;
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        try_command(
            &self.commands,
            driver::Command::Emit {
                ns: self.ns.clone(),
                name: event.to_owned(),
                payload,
                ack: Some((id, tx)),
            },
        )
        .map_err(|e| match e {
            ClientError::SendBufferFull => AckError::SendBufferFull,
            _ => AckError::Disconnected,
        })?;
        let raw = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer?,
            Ok(Err(_)) => return Err(AckError::Disconnected),
            Err(_) => {
                let _ = self.commands.try_send(driver::Command::ForgetAck(id));
                return Err(AckError::Timeout);
            }
        };
        serde_json::from_slice(&raw).map_err(|e| AckError::Decode(e.to_string()))
    }
}

/// The client's membership in one namespace.
pub struct NamespaceClient {
    emitter: Emitter,
    events: mpsc::Receiver<Event>,
    handlers: HashMap<String, EventHandler>,
    left: driver::LeftReason,
}

impl std::fmt::Debug for NamespaceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespaceClient")
            .field("namespace", &self.emitter.ns)
            .finish()
    }
}

impl NamespaceClient {
    /// The namespace name.
    pub fn namespace(&self) -> &str {
        &self.emitter.ns
    }

    /// A sending handle for this namespace that can live in another task.
    pub fn emitter(&self) -> Emitter {
        self.emitter.clone()
    }

    /// Sends a reliable event. Fails at once (never blocks) if the send buffer is full.
    pub fn emit<T: Serialize>(&self, event: &str, payload: &T) -> Result<(), ClientError> {
        self.emitter.emit(event, payload)
    }

    /// Sends an event and waits for the server's answer, decoded as `R`. Always
    /// resolves: the answer, [`AckError::Timeout`], or [`AckError::Disconnected`].
    pub async fn emit_with_ack<T: Serialize, R: DeserializeOwned>(
        &self,
        event: &str,
        payload: &T,
        timeout: Duration,
    ) -> Result<R, AckError> {
        self.emitter.emit_with_ack(event, payload, timeout).await
    }

    /// The next event for this namespace (`None` once the namespace or session is
    /// closed). Events with a handler registered by [`NamespaceClient::on`] go to the
    /// handler instead.
    pub async fn next_event(&mut self) -> Option<Event> {
        loop {
            let event = self.events.recv().await?;
            match self.handlers.get(&event.name) {
                Some(handler) => handler(event),
                None => return Some(event),
            }
        }
    }

    /// Calls `f` for every event named `event` (while [`NamespaceClient::next_event`]
    /// is being polled). Undecodable payloads are skipped with a log line.
    pub fn on<T: DeserializeOwned + 'static>(&mut self, event: &str, f: impl Fn(T) + 'static) {
        let name = event.to_owned();
        self.handlers.insert(
            event.to_owned(),
            Box::new(move |ev: Event| match ev.decode::<T>() {
                Ok(value) => f(value),
                Err(e) => tracing::warn!(event = %name, error = %e, "undecodable event payload"),
            }),
        );
    }

    /// Why the server removed this client from the namespace (the reason the
    /// application gave to `Socket::disconnect`), once it has: [`next_event`] then
    /// returns `None`. `None` while the client is a member, and when the namespace
    /// closed because the whole session did (see [`Client::closed`] for that reason).
    /// From a server that sends no reason: `disconnected by the server`.
    ///
    /// [`next_event`]: NamespaceClient::next_event
    pub fn disconnect_reason(&self) -> Option<String> {
        self.left.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Leaves the namespace; the session and its other namespaces stay.
    pub fn leave(self) -> Result<(), ClientError> {
        try_command(
            &self.emitter.commands,
            driver::Command::Disconnect {
                ns: self.emitter.ns,
            },
        )
    }
}
