//! Namespaces: the application's entry points, multiplexed over one connection.
//!
//! A [`Namespace`] is declared by the application with an optional connect
//! middleware ([`Namespace::authorize`]), connect/disconnect hooks and typed event
//! handlers. At run time each namespace is a `NamespaceActor` that keeps its sockets
//! and rooms; the handlers themselves run in the session of the socket that sent the
//! event, on that connection's thread, so no single actor sits on the event path.

mod actor;
mod broadcast;
mod reference;
#[cfg(feature = "cluster")]
mod remote;
mod socket;

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use serde_json::value::RawValue;

pub use actor::NamespaceStats;
pub(crate) use actor::{
    AddSocket, Emit, JoinRoom as JoinRoomMsg, LeaveRoom as LeaveRoomMsg, LeaveSockets, ListRooms,
    NamespaceActor, RemoveSocket, RoomsOf, ShareData, Sockets, SocketsOp, Stats, Target,
};
#[cfg(feature = "cluster")]
pub(crate) use actor::{SharedOf, Subscribe, Subscribing};
pub use broadcast::{Broadcast, FoundSocket};
pub use reference::NamespaceRef;
#[cfg(feature = "cluster")]
pub(crate) use remote::{FlushFor, Remote, JOIN_WAIT};
pub(crate) use socket::{SessionLink, SocketCommand};
pub use socket::{Socket, SocketEvent, SocketEventKind};

use crate::protocol::{self, Frame, WireFrame};
use crate::room::{Deliver, Gauge};
use crate::{DisconnectReason, EmitError, SessionId};

/// Data a middleware attached to a socket.
pub(crate) type SocketData = Option<Arc<dyn Any + Send + Sync>>;
type AuthorizeFn = dyn Fn(&Handshake<'_>) -> Result<SocketData, String> + Send + Sync;
type AuthorizeAsyncFn =
    dyn Fn(ConnectRequest) -> LocalBoxFuture<'static, Result<SocketData, String>> + Send + Sync;

/// How long an asynchronous connect middleware may take by default (see
/// [`Namespace::authorize_timeout`]).
pub(crate) const DEFAULT_AUTHORIZE_TIMEOUT: Duration = Duration::from_secs(10);

/// The connect middleware of a namespace, if it has one.
#[derive(Clone)]
pub(crate) enum Authorizer {
    Now(Arc<AuthorizeFn>),
    Later(Arc<AuthorizeAsyncFn>),
}

/// A middleware's answer: at once, or a future the session awaits (with the
/// namespace's timeout already applied).
pub(crate) enum Authorization {
    Now(Result<SocketData, String>),
    Later(LocalBoxFuture<'static, Result<SocketData, String>>),
}
type EventFn = dyn Fn(&Socket, &[u8], Option<AckReply>) -> Result<(), String> + Send + Sync;
type ConnectFn = dyn Fn(&Socket) + Send + Sync;
type DisconnectFn = dyn Fn(&Socket, &DisconnectReason) + Send + Sync;

/// What a connect middleware sees of a client asking to join a namespace.
pub struct Handshake<'a> {
    /// The client's session.
    pub sid: SessionId,
    /// The namespace asked for.
    pub namespace: &'a str,
    /// The client's address: its connection's peer, or behind `trusted_proxies` the
    /// one `X-Forwarded-For` names (the address the connection limits count). `None`
    /// when unknown: a session that moved from another node of a cluster runs the
    /// middleware again on its new node before its client's connection arrives.
    pub address: Option<IpAddr>,
    auth: &'a [u8],
}

impl Handshake<'_> {
    /// The client's auth payload, decoded from JSON. An absent payload decodes as
    /// JSON `null` (so `Option<T>` accepts it).
    pub fn auth<A: DeserializeOwned>(&self) -> Result<A, String> {
        decode_auth(self.auth)
    }
}

/// What an asynchronous connect middleware ([`Namespace::authorize_async`]) sees of
/// a client asking to join: a [`Handshake`] it can keep across `.await`s.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    /// The client's session.
    pub sid: SessionId,
    /// The namespace asked for.
    pub namespace: String,
    /// The client's address, as [`Handshake::address`].
    pub address: Option<IpAddr>,
    auth: Vec<u8>,
}

impl ConnectRequest {
    /// The client's auth payload, decoded from JSON, as [`Handshake::auth`].
    pub fn auth<A: DeserializeOwned>(&self) -> Result<A, String> {
        decode_auth(&self.auth)
    }
}

fn decode_auth<A: DeserializeOwned>(auth: &[u8]) -> Result<A, String> {
    let raw: &[u8] = if auth.is_empty() { b"null" } else { auth };
    serde_json::from_slice(raw).map_err(|e| format!("invalid auth payload: {e}"))
}

/// The answer to an event that asked for an acknowledgement. Dropping it without
/// calling [`AckReply::send`] leaves the client to its ack timeout.
pub struct AckReply {
    /// `None` when the client did not ask for an answer: sending is then a no-op.
    socket: Option<Socket>,
    ns: Arc<str>,
    id: u64,
}

impl AckReply {
    /// Sends the acknowledgement with a payload. Fails with [`EmitError::TooLarge`]
    /// (and sends nothing) if the answer is larger than the client accepts.
    pub fn send<T: Serialize>(self, payload: &T) -> Result<(), EmitError> {
        let Some(socket) = self.socket else {
            return Ok(());
        };
        let payload = serde_json::to_vec(payload)?;
        let frame = protocol::encode(&Frame::Ack {
            ns: self.ns.to_string(),
            id: self.id,
            payload: ByteBuf::from(payload),
        });
        socket.check_size(frame.len())?;
        let deliver = Deliver {
            frame: WireFrame::new(&frame),
            reliable: true,
            mark: None,
        };
        // On a cluster, the ack of a handler that joined rooms waits until the joins
        // are effective on every node.
        #[cfg(feature = "cluster")]
        let deliver = match remote::AckAfterJoins::new(&socket, deliver) {
            Ok(wait) => {
                socket.namespace_addr().do_send(wait);
                return Ok(());
            }
            Err(deliver) => deliver,
        };
        socket.mailbox().post(deliver);
        Ok(())
    }
}

/// A namespace declaration: middleware, hooks and event handlers.
///
/// ```
/// use volley::Namespace;
///
/// #[derive(serde::Deserialize)]
/// struct Move { x: f32, y: f32 }
///
/// let game = Namespace::new()
///     .on("move", |socket, mv: Move| {
///         tracing::debug!(sid = socket.id().0, x = mv.x, y = mv.y, "move");
///     })
///     .on_ack("ping", |_socket, n: u32, ack| {
///         let _ = ack.send(&(n + 1));
///     });
/// ```
#[derive(Clone)]
pub struct Namespace {
    pub(crate) authorize: Option<Authorizer>,
    pub(crate) authorize_timeout: Duration,
    pub(crate) on_connect: Option<Arc<ConnectFn>>,
    pub(crate) on_disconnect: Option<Arc<DisconnectFn>>,
    pub(crate) handlers: HashMap<String, Arc<EventFn>>,
}

impl Default for Namespace {
    fn default() -> Self {
        Namespace {
            authorize: None,
            authorize_timeout: DEFAULT_AUTHORIZE_TIMEOUT,
            on_connect: None,
            on_disconnect: None,
            handlers: HashMap::new(),
        }
    }
}

impl Namespace {
    /// An open namespace with no handlers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Connect middleware. It runs on the server for every client that asks to join;
    /// `Ok(data)` accepts the client and attaches `data` to its socket (read it with
    /// [`Socket::data`]); `Err(reason)` refuses it, and the client receives `reason`.
    ///
    /// ```
    /// use volley::Namespace;
    ///
    /// struct Admin { name: String }
    ///
    /// let admin = Namespace::new().authorize(|hs| {
    ///     let token: Option<String> = hs.auth()?;
    ///     match token.as_deref() {
    ///         Some("s3cret") => Ok(Admin { name: "root".into() }),
    ///         _ => Err("admin token required".to_string()),
    ///     }
    /// });
    /// ```
    pub fn authorize<D, F>(mut self, f: F) -> Self
    where
        D: Any + Send + Sync,
        F: Fn(&Handshake<'_>) -> Result<D, String> + Send + Sync + 'static,
    {
        self.authorize = Some(Authorizer::Now(Arc::new(move |hs: &Handshake<'_>| {
            f(hs).map(socket_data)
        })));
        self
    }

    /// Connect middleware that answers later: check a token against a database or an
    /// identity provider. The join waits for the answer, which means what it means for
    /// [`Namespace::authorize`]; the session meanwhile goes on (other namespaces,
    /// heartbeats), and the events the client sends to this namespace before the answer
    /// are held and handled after it (64 at most; past that they are refused).
    /// An answer that takes longer than [`Namespace::authorize_timeout`] (10 s by
    /// default) refuses the client with `authorization timed out after …`.
    ///
    /// The future runs on the connection's thread, so it need not be `Send`. It
    /// replaces any [`Namespace::authorize`] middleware (the last one set wins).
    ///
    /// ```
    /// use volley::Namespace;
    ///
    /// async fn user_of(token: &str) -> Option<String> {
    ///     // a database or HTTP look-up
    ///     (token == "s3cret").then(|| "ada".to_string())
    /// }
    ///
    /// let game = Namespace::new().authorize_async(|req| async move {
    ///     let token: String = req.auth()?;
    ///     user_of(&token).await.ok_or_else(|| "unknown token".to_string())
    /// });
    /// ```
    pub fn authorize_async<D, F, Fut>(mut self, f: F) -> Self
    where
        D: Any + Send + Sync,
        F: Fn(ConnectRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<D, String>> + 'static,
    {
        self.authorize = Some(Authorizer::Later(Arc::new(move |req: ConnectRequest| {
            f(req).map(|answer| answer.map(socket_data)).boxed_local()
        })));
        self
    }

    /// How long [`Namespace::authorize_async`] may take to answer before the client
    /// is refused (default 10 s).
    pub fn authorize_timeout(mut self, timeout: Duration) -> Self {
        self.authorize_timeout = timeout;
        self
    }

    /// Runs after a client has joined the namespace.
    pub fn on_connect(mut self, f: impl Fn(&Socket) + Send + Sync + 'static) -> Self {
        self.on_connect = Some(Arc::new(f));
        self
    }

    /// Runs when a socket leaves the namespace, with the reason. By then the socket is
    /// out of the namespace and its rooms, and a session that ended is out of
    /// [`crate::Volley::sessions`].
    pub fn on_disconnect(
        mut self,
        f: impl Fn(&Socket, &DisconnectReason) + Send + Sync + 'static,
    ) -> Self {
        self.on_disconnect = Some(Arc::new(f));
        self
    }

    /// Handles event `name` with a payload decoded from JSON as `T`. A payload that does
    /// not decode is answered with an `Error` frame; the handler does not run.
    pub fn on<T, F>(mut self, name: &str, f: F) -> Self
    where
        T: DeserializeOwned,
        F: Fn(&Socket, T) + Send + Sync + 'static,
    {
        let handler = move |socket: &Socket, payload: &[u8], _: Option<AckReply>| {
            f(socket, decode_payload(payload)?);
            Ok(())
        };
        self.handlers.insert(name.to_owned(), Arc::new(handler));
        self
    }

    /// Handles event `name` with its payload as JSON text: checked to be JSON and
    /// handed over as it arrived, borrowed, not decoded into anything (an event sent
    /// without a payload gives `null`). For a handler that passes the text on (a
    /// game's input, a relay) or decodes it later, without an allocation per event. A
    /// payload that is not JSON is answered with an `Error` frame; the handler does
    /// not run.
    ///
    /// ```
    /// use serde_json::value::RawValue;
    /// use volley::Namespace;
    ///
    /// let chat = Namespace::new().on_json("say", |socket, text: &RawValue| {
    ///     // Relayed as it came: `emit` writes a `RawValue` as its text.
    ///     let _ = socket.to("lobby").emit("said", &text);
    /// });
    /// ```
    pub fn on_json<F>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(&Socket, &RawValue) + Send + Sync + 'static,
    {
        let handler = move |socket: &Socket, payload: &[u8], _: Option<AckReply>| {
            f(socket, decode_payload::<&RawValue>(payload)?);
            Ok(())
        };
        self.handlers.insert(name.to_owned(), Arc::new(handler));
        self
    }

    /// Handles event `name` and answers it: the client asked for an acknowledgement.
    /// If the client did not ask, the handler still runs and its answer is discarded.
    pub fn on_ack<T, F>(mut self, name: &str, f: F) -> Self
    where
        T: DeserializeOwned,
        F: Fn(&Socket, T, AckReply) + Send + Sync + 'static,
    {
        let handler = move |socket: &Socket, payload: &[u8], ack: Option<AckReply>| {
            let value = decode_payload(payload)?;
            let ack = ack.unwrap_or(AckReply {
                socket: None,
                ns: socket.ns_arc(),
                id: 0,
            });
            f(socket, value, ack);
            Ok(())
        };
        self.handlers.insert(name.to_owned(), Arc::new(handler));
        self
    }
}

fn socket_data<D: Any + Send + Sync>(data: D) -> SocketData {
    Some(Arc::new(data) as Arc<dyn Any + Send + Sync>)
}

fn decode_payload<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, String> {
    let raw: &[u8] = if payload.is_empty() { b"null" } else { payload };
    serde_json::from_slice(raw).map_err(|e| format!("payload does not match: {e}"))
}

/// A namespace as the server runs it: its declaration and its actor. One allocation
/// shared by every session and socket in the namespace: each socket and each joined
/// entry of a session carries a pointer, not the parts.
#[derive(Clone)]
pub(crate) struct NamespaceHandle(Arc<NamespaceParts>);

impl NamespaceHandle {
    pub fn new(parts: NamespaceParts) -> Self {
        NamespaceHandle(Arc::new(parts))
    }
}

/// A namespace the dynamic factory made is dropped once nothing uses it: no socket
/// in it (a client's, or one the application keeps), no join on its way and no
/// [`NamespaceRef`](crate::NamespaceRef) held. So the handle that lets go last, the
/// registry's own aside, takes it out of the registry, and its actor stops with its
/// last address; the next client asking for the name gets a new one from the
/// factory. Without that, every name a client asked for stayed for the server's
/// life: a factory that accepts `/table-<anything>` let one client make namespaces
/// without end by joining and leaving.
impl Drop for NamespaceHandle {
    fn drop(&mut self) {
        // This handle and the registry's: nothing else holds the namespace.
        if Arc::strong_count(&self.0) != 2 {
            return;
        }
        let Some(registry) = self.0.registry.as_ref().and_then(std::sync::Weak::upgrade) else {
            return;
        };
        let unused = {
            let mut map = registry.write().unwrap_or_else(|e| e.into_inner());
            match map.get(&*self.0.name) {
                // Checked again under the lock: a join may have taken a handle since.
                Some(kept) if Arc::ptr_eq(&kept.0, &self.0) && Arc::strong_count(&self.0) == 2 => {
                    map.remove(&*self.0.name)
                }
                _ => None,
            }
        };
        // Dropped with the lock released (its own drop finds it gone).
        drop(unused);
    }
}

impl std::ops::Deref for NamespaceHandle {
    type Target = NamespaceParts;

    fn deref(&self) -> &NamespaceParts {
        &self.0
    }
}

/// The running namespaces by name (the server's, in `Shared`). A namespace the
/// dynamic factory made holds it weakly, to leave it once nothing uses it (see
/// `impl Drop for NamespaceHandle`).
pub(crate) type Registry = std::sync::RwLock<std::collections::HashMap<String, NamespaceHandle>>;

/// What a [`NamespaceHandle`] points to.
pub(crate) struct NamespaceParts {
    pub name: Arc<str>,
    pub spec: Arc<Namespace>,
    /// Shared by every session and socket in the namespace: a clone of an actix
    /// address allocates a sender cell (72 bytes per holder, two per socket).
    pub addr: Arc<actix::Addr<NamespaceActor>>,
    /// Broadcasts posted to `addr` and not yet fanned out.
    pub broadcasts: Arc<Gauge>,
    /// The registry of a namespace the dynamic factory made, which it leaves once
    /// nothing uses it; `None` for a declared one (kept while the server runs).
    pub registry: Option<std::sync::Weak<Registry>>,
}

impl NamespaceHandle {
    /// Runs the middleware for a client (at `address`, if known).
    pub fn authorize(&self, sid: SessionId, address: Option<IpAddr>, auth: &[u8]) -> Authorization {
        match &self.spec.authorize {
            None => Authorization::Now(Ok(None)),
            Some(Authorizer::Now(f)) => Authorization::Now(f(&Handshake {
                sid,
                namespace: &self.name,
                address,
                auth,
            })),
            Some(Authorizer::Later(f)) => {
                let answer = f(ConnectRequest {
                    sid,
                    namespace: self.name.to_string(),
                    address,
                    auth: auth.to_vec(),
                });
                let limit = self.spec.authorize_timeout;
                Authorization::Later(
                    tokio::time::timeout(limit, answer)
                        .map(move |answer| {
                            answer.unwrap_or_else(|_| {
                                Err(format!("authorization timed out after {limit:?}"))
                            })
                        })
                        .boxed_local(),
                )
            }
        }
    }

    /// Dispatches an event to its handler. `Err` is the reason sent back to the client.
    pub fn dispatch(
        &self,
        socket: &Socket,
        name: &str,
        payload: &[u8],
        ack: Option<u64>,
    ) -> Result<(), String> {
        let Some(handler) = self.spec.handlers.get(name) else {
            return Err(format!("unknown event '{name}'"));
        };
        let ack = ack.map(|id| AckReply {
            socket: Some(socket.clone()),
            ns: self.name.clone(),
            id,
        });
        handler(socket, payload, ack).map_err(|e| format!("event '{name}': {e}"))
    }
}

/// Encodes a reliable event frame for `ns` (used by emits and broadcasts alike).
pub(crate) fn encode_event<T: Serialize>(
    kind: protocol::EventKind,
    ns: &str,
    name: &str,
    payload: &T,
) -> Result<WireFrame, EmitError> {
    let json = serde_json::to_vec(payload)?;
    Ok(WireFrame::event(kind, ns, name, &json))
}
