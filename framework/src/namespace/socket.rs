//! [`Socket`]: a session's membership in one namespace, as handlers see it.

use std::any::Any;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::dev::ToEnvelope;
use actix::prelude::*;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_bytes::ByteBuf;
use tokio::sync::oneshot;

use super::{
    encode_event, Broadcast, JoinRoomMsg, LeaveRoomMsg, NamespaceHandle, RoomsOf, ShareData,
    SocketData, Target,
};
use crate::protocol::{self, EventKind, Frame};
use crate::room::{Deliver, Deliveries, Mailbox};
use crate::{AckError, DisconnectReason, EmitError, SessionId};

/// What happened to the session behind a watched socket (see [`Socket::watch`]).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct SocketEvent {
    /// The socket's session.
    pub id: SessionId,
    /// The socket's namespace.
    pub namespace: Arc<str>,
    /// What happened.
    pub kind: SocketEventKind,
}

/// The changes a watcher is told about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketEventKind {
    /// The connection dropped; the session is held for its resume grace window.
    Detached,
    /// A new connection resumed the session (after a drop, or replacing a
    /// connection the server had not yet seen drop). Volatile frames sent meanwhile
    /// were lost: send the client a fresh state.
    Resumed,
    /// The socket is gone for good: it left the namespace or the session ended
    /// (`Expired` when the grace window ran out). Sent last; the watch ends with it.
    Left(DisconnectReason),
}

/// Requests from a socket handle to the session that owns it.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) enum SocketCommand {
    /// Send `frame` (an event carrying ack id `id`) and wait for the client's answer.
    ExpectAck {
        frame: Bytes,
        id: u64,
        tx: oneshot::Sender<Result<Vec<u8>, AckError>>,
        timeout: Duration,
    },
    /// Remove the socket from namespace `ns` (server-side disconnect).
    Leave { ns: Arc<str>, reason: String },
    /// Tell `recipient` about the session of the socket in `ns` (or stop telling it).
    Watch {
        ns: Arc<str>,
        recipient: Recipient<SocketEvent>,
        on: bool,
    },
}

/// Whether a join's effect is still awaited (not told, not given up).
#[cfg(feature = "cluster")]
fn waiting(rx: &mut oneshot::Receiver<()>) -> bool {
    matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty))
}

/// A session's address as its sockets hold it: one actix address for its deliveries
/// (see [`Mailbox`]) and its commands, shared by every holder, where a `Recipient`
/// per message type and holder would allocate a sender cell each.
pub(crate) trait SessionAddress: Deliveries {
    /// Posts a command to the session.
    fn command(&self, command: SocketCommand);
}

impl<A> SessionAddress for Addr<A>
where
    A: Actor + Handler<Deliver> + Handler<SocketCommand>,
    A::Context: ToEnvelope<A, Deliver> + ToEnvelope<A, SocketCommand>,
{
    fn command(&self, command: SocketCommand) {
        self.do_send(command);
    }
}

/// State a session shares with all of its sockets.
pub(crate) struct SessionLink {
    pub id: SessionId,
    /// Deliveries to the session, bounded (see [`Mailbox`]).
    pub deliver: Mailbox,
    /// Commands to the session (the same address as `deliver`'s, shared). `ExpectAck`
    /// takes a place in `deliver`'s count; `Leave` and `Watch` come once per namespace
    /// or seat, not per message.
    pub session: Arc<dyn SessionAddress>,
    /// Last measured round-trip time in microseconds; 0 until the first pong.
    pub rtt_us: AtomicU64,
    /// The current connection's [`TransportKind::code`](crate::session::TransportKind);
    /// 0 while detached.
    pub transport: AtomicU8,
    /// Ack ids for server → client emits, unique per session.
    pub next_ack: AtomicU64,
    /// The largest frame the client accepts (it announced it; `usize::MAX` if not).
    pub max_frame: AtomicUsize,
}

impl SessionLink {
    /// The last measured round-trip time, if any (see `rtt_us`).
    pub(crate) fn rtt(&self) -> Option<Duration> {
        match self.rtt_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }
}

/// A client's presence in one namespace. Cheap to clone and `Send`: keep it, move it
/// to another thread or a game loop, and emit through it later.
///
/// ```
/// use volley::Namespace;
///
/// struct Player {
///     name: String,
/// }
///
/// let lobby = Namespace::new()
///     .authorize(|hs| Ok(Player { name: hs.auth()? }))
///     .on_connect(|socket| {
///         if let Some(player) = socket.data::<Player>() {
///             socket.join("lobby");
///             let _ = socket.emit("welcome", &player.name); // to this client
///             let _ = socket.to("lobby").emit("joined", &player.name); // to the others
///         }
///     })
///     .on("lag", |socket, (): ()| {
///         let ms = socket.rtt().map(|rtt| rtt.as_millis() as u64);
///         let _ = socket.emit_volatile("lag", &ms); // latest-wins, never replayed
///     });
/// ```
#[derive(Clone)]
pub struct Socket {
    inner: Arc<SocketInner>,
}

struct SocketInner {
    /// Its name, actor and broadcasts not yet fanned out.
    namespace: NamespaceHandle,
    link: Arc<SessionLink>,
    data: SocketData,
    /// What a layer above keeps per socket for its own hot path (the game rooms: the
    /// input gate of the player's seat), so that it need not look it up in a table
    /// shared by every thread. Only this socket's session thread touches it in
    /// practice: the lock is never contended.
    route: std::sync::Mutex<Option<Arc<dyn Any + Send + Sync>>>,
    /// Joins not yet effective on every node of a cluster: the next ack waits for
    /// them (see `AckReply::send`). Finished ones are pruned at each join.
    #[cfg(feature = "cluster")]
    joining: std::sync::Mutex<Vec<oneshot::Receiver<()>>>,
}

impl Socket {
    pub(crate) fn new(
        namespace: &NamespaceHandle,
        link: Arc<SessionLink>,
        data: SocketData,
    ) -> Self {
        Socket {
            inner: Arc::new(SocketInner {
                namespace: namespace.clone(),
                link,
                data,
                route: std::sync::Mutex::new(None),
                #[cfg(feature = "cluster")]
                joining: Default::default(),
            }),
        }
    }

    /// The session id; the same in every namespace the client joined.
    pub fn id(&self) -> SessionId {
        self.inner.link.id
    }

    /// The namespace this socket belongs to.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace.name
    }

    /// Its namespace as code outside the handlers reaches it (Socket.IO's
    /// `socket.nsp`): a broadcast that includes the sender, the room list.
    ///
    /// ```
    /// use volley::Namespace;
    ///
    /// let table = Namespace::new().on("deal", |socket, (): ()| {
    ///     // `socket.to` leaves the dealer out; the namespace's own `to` does not.
    ///     let _ = socket.namespace_ref().to("table").emit("dealt", &socket.id().0);
    /// });
    /// ```
    pub fn namespace_ref(&self) -> super::NamespaceRef {
        super::NamespaceRef::new(self.inner.namespace.clone())
    }

    pub(crate) fn ns_arc(&self) -> Arc<str> {
        self.inner.namespace.name.clone()
    }

    pub(crate) fn mailbox(&self) -> Mailbox {
        self.inner.link.deliver.clone()
    }

    /// The data the namespace's middleware attached, if it is a `T`.
    pub fn data<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.inner.data.as_ref()?.downcast_ref::<T>()
    }

    /// Runs `f` with the route kept with [`Socket::set_route`], if it is a `T`
    /// (borrowed where it is kept: no reference counted per use).
    pub(crate) fn with_route<T: Any + Send + Sync, R>(&self, f: impl FnOnce(Option<&T>) -> R) -> R {
        let route = self.inner.route.lock().unwrap_or_else(|e| e.into_inner());
        f(route.as_deref().and_then(|route| route.downcast_ref::<T>()))
    }

    /// Keeps `route` with the socket (see `SocketInner::route`).
    pub(crate) fn set_route(&self, route: Arc<dyn Any + Send + Sync>) {
        *self.inner.route.lock().unwrap_or_else(|e| e.into_inner()) = Some(route);
    }

    /// The last measured round-trip time to the client (from the heartbeat), if any.
    pub fn rtt(&self) -> Option<Duration> {
        self.inner.link.rtt()
    }

    /// Sends a reliable event to this client.
    pub fn emit<T: Serialize>(&self, event: &str, payload: &T) -> Result<(), EmitError> {
        self.send(EventKind::Reliable, event, payload)
    }

    /// Sends a latest-wins event (never buffered or replayed) to this client.
    pub fn emit_volatile<T: Serialize>(&self, event: &str, payload: &T) -> Result<(), EmitError> {
        self.send(EventKind::Volatile, event, payload)
    }

    fn send<T: Serialize>(
        &self,
        kind: EventKind,
        event: &str,
        payload: &T,
    ) -> Result<(), EmitError> {
        let frame = encode_event(kind, &self.inner.namespace.name, event, payload)?;
        self.check_size(frame.len())?;
        self.inner.link.deliver.post(Deliver {
            frame,
            reliable: kind == EventKind::Reliable,
            mark: None,
        });
        Ok(())
    }

    /// The largest frame, in bytes, the client accepts (as it announced when it
    /// connected; `usize::MAX` for a client that did not say). An emit whose frame is
    /// larger fails with [`EmitError::TooLarge`].
    pub fn max_frame_size(&self) -> usize {
        self.inner.link.max_frame.load(Ordering::Relaxed)
    }

    /// Fails if a frame of `size` bytes is larger than the client accepts.
    pub(crate) fn check_size(&self, size: usize) -> Result<(), EmitError> {
        let limit = self.max_frame_size();
        if size > limit {
            return Err(EmitError::TooLarge { size, limit });
        }
        Ok(())
    }

    /// Sends an event and waits for the client's acknowledgement, decoded as `R`. The
    /// future always resolves: with the answer, [`AckError::Timeout`] after `timeout`,
    /// [`AckError::Disconnected`] if the session ends first, or at once with
    /// [`AckError::TooLarge`] if the event is larger than the client accepts.
    pub fn emit_with_ack<T: Serialize, R: DeserializeOwned>(
        &self,
        event: &str,
        payload: &T,
        timeout: Duration,
    ) -> impl Future<Output = Result<R, AckError>> + 'static {
        let id = self.inner.link.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        match serde_json::to_vec(payload) {
            // The session is too far behind: it ends with `slow consumer`.
            Ok(_) if !self.inner.link.deliver.gauge().admit() => {
                let _ = tx.send(Err(AckError::Disconnected));
            }
            Ok(json) => {
                let frame = protocol::encode(&Frame::Event {
                    ns: self.inner.namespace.name.to_string(),
                    name: event.to_owned(),
                    payload: ByteBuf::from(json),
                    ack: Some(id),
                });
                let limit = self.max_frame_size();
                if frame.len() > limit {
                    let size = frame.len();
                    let _ = tx.send(Err(AckError::TooLarge { size, limit }));
                } else {
                    self.inner.link.session.command(SocketCommand::ExpectAck {
                        frame,
                        id,
                        tx,
                        timeout,
                    });
                }
            }
            Err(e) => {
                let _ = tx.send(Err(AckError::Decode(format!(
                    "payload did not serialize: {e}"
                ))));
            }
        }
        async move {
            let raw = rx.await.map_err(|_| AckError::Disconnected)??;
            serde_json::from_slice(&raw).map_err(|e| AckError::Decode(e.to_string()))
        }
    }

    /// Puts this socket in `room` (created on first join).
    ///
    /// On a cluster, the join takes effect on the other nodes once this node is
    /// subscribed to the room's channel; an ack this socket sends after `join` waits
    /// for that, so a client that has the ack gets every broadcast sent to the room
    /// from any node after it (see docs/guide.md, "Running several nodes").
    pub fn join(&self, room: &str) {
        #[cfg(feature = "cluster")]
        let effective = {
            let (tx, rx) = oneshot::channel();
            let mut joining = self.joining();
            joining.retain_mut(waiting);
            joining.push(rx);
            Some(tx)
        };
        // Not counted (see `NamespaceActor`): one per call, a map update to handle.
        self.inner.namespace.addr.do_send(JoinRoomMsg {
            id: self.id(),
            room: room.into(),
            #[cfg(feature = "cluster")]
            effective,
        });
    }

    #[cfg(feature = "cluster")]
    fn joining(&self) -> std::sync::MutexGuard<'_, Vec<oneshot::Receiver<()>>> {
        self.inner.joining.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the joins of this socket not yet effective cluster-wide.
    #[cfg(feature = "cluster")]
    pub(crate) fn take_joining(&self) -> Vec<oneshot::Receiver<()>> {
        let mut joining = std::mem::take(&mut *self.joining());
        joining.retain_mut(waiting);
        joining
    }

    /// Where a delivery that must wait for this socket's joins goes.
    #[cfg(feature = "cluster")]
    pub(crate) fn namespace_addr(&self) -> &Addr<super::NamespaceActor> {
        &self.inner.namespace.addr
    }

    /// Takes this socket out of `room`.
    pub fn leave(&self, room: &str) {
        self.inner.namespace.addr.do_send(LeaveRoomMsg {
            id: self.id(),
            room: room.into(),
        });
    }

    /// The rooms this socket is in.
    pub async fn rooms(&self) -> Vec<String> {
        self.inner
            .namespace
            .addr
            .send(RoomsOf { id: self.id() })
            .await
            .unwrap_or_default()
    }

    /// Shares `data` of this socket with whoever asks for it with
    /// [`Broadcast::fetch_sockets`], on every node of a cluster (Socket.IO's
    /// `socket.data`, as `fetchSockets` shows it): a player's name, a team, a
    /// status. Kept as JSON by the namespace until this socket leaves it or shares
    /// something else; a session drained to another node takes it along. A fetch
    /// after this call sees it (both go to the namespace, in order).
    ///
    /// ```
    /// use volley::Namespace;
    ///
    /// #[derive(serde::Deserialize, serde::Serialize)]
    /// struct Player {
    ///     name: String,
    /// }
    ///
    /// let lobby = Namespace::new().on("name", |socket, name: String| {
    ///     let _ = socket.share_data(&Player { name });
    /// });
    /// ```
    pub fn share_data<T: Serialize>(&self, data: &T) -> Result<(), serde_json::Error> {
        let data = serde_json::to_string(data)?;
        self.share_json(Some(data.into()));
        Ok(())
    }

    /// Takes back what [`Socket::share_data`] shared: `fetch_sockets` shows nothing.
    pub fn unshare_data(&self) {
        self.share_json(None);
    }

    /// Shares `data`, JSON text, as [`Socket::share_data`] does (a session moved
    /// here brings it as text).
    pub(crate) fn share_json(&self, data: Option<Arc<str>>) {
        self.inner.namespace.addr.do_send(ShareData {
            id: self.id(),
            data,
        });
    }

    /// A broadcast to `room`, excluding this socket (the sender).
    pub fn to(&self, room: &str) -> Broadcast {
        self.broadcast().to(room)
    }

    /// A broadcast to the whole namespace, excluding this socket.
    pub fn broadcast(&self) -> Broadcast {
        Broadcast::new(
            self.inner.namespace.name.clone(),
            Addr::clone(&self.inner.namespace.addr),
            self.inner.namespace.broadcasts.clone(),
            Target {
                except_ids: vec![self.id()],
                ..Target::default()
            },
        )
    }

    /// Tells `recipient` when this socket's connection drops, when the session
    /// resumes, and when the socket is gone (it left the namespace or the session
    /// ended): see [`SocketEventKind`]. A socket that is already gone answers at once
    /// with `Left`. Watching twice with the same recipient watches once. Game rooms
    /// use it to hold a player's seat while the client reconnects.
    pub fn watch(&self, recipient: Recipient<SocketEvent>) {
        self.watch_command(recipient, true);
    }

    /// Stops telling `recipient` (see [`Socket::watch`]).
    pub fn unwatch(&self, recipient: Recipient<SocketEvent>) {
        self.watch_command(recipient, false);
    }

    fn watch_command(&self, recipient: Recipient<SocketEvent>, on: bool) {
        // Not counted: once per seat or watcher, not per message.
        self.inner.link.session.command(SocketCommand::Watch {
            ns: self.inner.namespace.name.clone(),
            recipient,
            on,
        });
    }

    /// Removes the client from this namespace (it stays in the others) and tells it
    /// with a `Disconnect` frame.
    pub fn disconnect(&self, reason: &str) {
        self.inner.link.session.command(SocketCommand::Leave {
            ns: self.inner.namespace.name.clone(),
            reason: reason.to_owned(),
        });
    }
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.id())
            .field("namespace", &self.namespace())
            .finish()
    }
}
