//! [`Volley`]: the server object an application builds, configures and mounts into
//! actix-web.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use std::any::Any;

use actix::prelude::*;
use actix_web::dev::Extensions;
use actix_web::web;

use crate::metrics::Metrics;
use crate::namespace::{Namespace, NamespaceHandle, NamespaceRef};
use crate::session::{
    CountSessions, DropSessionConnection, KickSession, ListSessions, SessionInfo, Supervisor,
};
use crate::session::{NamespaceFactory, Shared};
use crate::transport::{connection, polling, socketio, websocket};
use crate::{Config, GameRooms, HttpServer, MetricsRoute, RateLimit, SessionId};

/// Builds a [`Volley`] server. Every setting has a default (see [`Config`]).
///
/// ```
/// use std::time::Duration;
/// use volley::{Namespace, Volley};
///
/// let builder = Volley::builder()
///     .path("/ws") // long-polling then answers at /ws/poll
///     .heartbeat(Duration::from_secs(10), Duration::from_secs(5)) // interval, timeout
///     .max_frame_size(64 * 1024)
///     .resume_grace(Duration::from_secs(30))
///     .cors_origins(&["https://play.example.com"])
///     .namespace("/chat", Namespace::new());
/// // `builder.build()` then starts it, inside a running actix system.
/// ```
#[derive(Default)]
pub struct VolleyBuilder {
    config: Config,
    namespaces: Vec<(String, Namespace)>,
    dynamic: Option<Arc<NamespaceFactory>>,
    #[cfg(feature = "cluster")]
    cluster: Option<crate::cluster::RedisCluster>,
}

impl VolleyBuilder {
    /// Replaces the whole configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Path of the WebSocket endpoint (default `/volley`).
    pub fn path(mut self, path: &str) -> Self {
        self.config.path = path.to_owned();
        self
    }

    /// Heartbeat interval and timeout (defaults 25 s and 20 s).
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.config.ping_interval = interval;
        self.config.ping_timeout = timeout;
        self
    }

    /// Largest accepted frame in bytes (default 1 MiB).
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config.max_frame_size = bytes;
        self
    }

    /// Send backlog limit per connection in bytes (default 4 MiB).
    pub fn max_send_backlog(mut self, bytes: usize) -> Self {
        self.config.max_send_backlog = bytes;
        self
    }

    /// How long a socket may take no bytes while bytes wait for it before the
    /// connection is dropped (default 30 s; zero disables). See
    /// [`Config::write_timeout`].
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.config.write_timeout = timeout;
        self
    }

    /// How long a busy io thread gathers its clients' frames before taking them
    /// (default zero: at once). See [`Config::io_window`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use volley::Volley;
    ///
    /// // A game at 30 Hz: its io threads wake once per 4 ms under load.
    /// let builder = Volley::builder().io_window(Duration::from_millis(4));
    /// ```
    pub fn io_window(mut self, window: Duration) -> Self {
        self.config.io_window = window;
        self
    }

    /// Most messages waiting in a session's or a namespace's mailbox (default 4096).
    /// See [`Config::max_mailbox`].
    pub fn max_mailbox(mut self, messages: usize) -> Self {
        self.config.max_mailbox = messages;
        self
    }

    /// How long a dropped session stays resumable (default 2 min; zero disables).
    pub fn resume_grace(mut self, grace: Duration) -> Self {
        self.config.resume_grace = grace;
        self
    }

    /// Most sessions kept resumable without a connection at once (default: as many
    /// as `max_connections`); past it the one detached longest ends. See
    /// [`Config::max_detached_sessions`].
    ///
    /// ```
    /// use volley::Volley;
    ///
    /// // A game whose players rarely drop: a few hundred may wait to resume.
    /// let builder = Volley::builder().max_detached_sessions(500);
    /// # drop(builder);
    /// ```
    pub fn max_detached_sessions(mut self, sessions: usize) -> Self {
        self.config.max_detached_sessions = Some(sessions);
        self
    }

    /// Outbox limits per session: unacknowledged reliable frames and their bytes
    /// (defaults 4096 frames, 2 MiB).
    pub fn max_outbox(mut self, frames: usize, bytes: usize) -> Self {
        self.config.max_outbox_frames = frames;
        self.config.max_outbox_bytes = bytes;
        self
    }

    /// Origins allowed to use long-polling from pages served elsewhere (CORS); `"*"`
    /// allows any. Default: none.
    pub fn cors_origins(mut self, origins: &[&str]) -> Self {
        self.config.cors_origins = origins.iter().map(|o| (*o).to_owned()).collect();
        self
    }

    /// Most open connections in total and from one client address (defaults 20,000
    /// and 1,000; `usize::MAX` for no limit). Past either, new connections get 503.
    pub fn max_connections(mut self, total: usize, per_ip: usize) -> Self {
        self.config.max_connections = total;
        self.config.max_connections_per_ip = per_ip;
        self
    }

    /// How fast one client address may open new connections (default 100 a second,
    /// burst 1,000); past it, new connections from that address get 429.
    /// [`ConnectRate::OFF`](crate::ConnectRate::OFF) turns it off.
    pub fn connect_rate_per_ip(mut self, rate: crate::ConnectRate) -> Self {
        self.config.connect_rate_per_ip = rate;
        self
    }

    /// Reverse proxies whose `X-Forwarded-For` header names the client for the
    /// per-address connection limit (default: none).
    pub fn trusted_proxies(mut self, proxies: &[std::net::IpAddr]) -> Self {
        self.config.trusted_proxies = proxies.to_vec();
        self
    }

    /// Inbound rate limit per session (default 200 frames/s, burst 2,000, and 1 MiB/s,
    /// burst 2 MiB); [`RateLimit::OFF`] turns it off.
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.config.rate_limit = limit;
        self
    }

    /// The Socket.IO endpoint for the official Socket.IO clients (default: on, at
    /// `/socket.io/`, with connection-state recovery); `None` turns it off.
    pub fn socketio(mut self, endpoint: Option<crate::SocketIo>) -> Self {
        self.config.socketio = endpoint;
        self
    }

    /// Long-polling hold time: how long a GET waits for frames (default 20 s).
    pub fn poll_hold(mut self, hold: Duration) -> Self {
        self.config.poll_hold = hold;
        self
    }

    /// Serves Prometheus metrics at `GET /metrics` to the callers `route` allows
    /// (default: no metrics route). See [`MetricsRoute`] and the guide's "Monitoring".
    pub fn metrics(mut self, route: MetricsRoute) -> Self {
        self.config.metrics = Some(route);
        self
    }

    /// Declares a namespace. Names start with `/`.
    pub fn namespace(mut self, name: &str, namespace: Namespace) -> Self {
        self.namespaces.push((name.to_owned(), namespace));
        self
    }

    /// Creates namespaces on demand: when a client asks for a namespace that was not
    /// declared, `factory` is called with its name; `None` refuses it. A namespace
    /// it made is dropped once nothing uses it (no socket in it, no [`NamespaceRef`]
    /// held; outside a cluster) and made again by the next client asking for it.
    pub fn dynamic_namespaces(
        mut self,
        factory: impl Fn(&str) -> Option<Namespace> + Send + Sync + 'static,
    ) -> Self {
        self.dynamic = Some(Arc::new(factory));
        self
    }

    /// Joins this node to a cluster of nodes sharing `cluster`'s Redis (feature
    /// `cluster`): broadcasts reach the members of their target on every node. See
    /// [`crate::cluster`] and the guide's "Running several nodes".
    #[cfg(feature = "cluster")]
    pub fn cluster(mut self, cluster: crate::cluster::RedisCluster) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Starts the supervisor, the namespaces and the room threads.
    ///
    /// # Panics
    /// When called outside a running actix `System` (use `#[actix_web::main]`).
    pub fn build(self) -> Volley {
        let control = crate::threads::arbiter("volley-control");
        #[allow(unused_mut)]
        let mut metrics = Metrics::default();
        #[cfg(feature = "cluster")]
        let cluster = self.cluster.map(|config| {
            let limits = (self.config.max_mailbox, self.config.max_send_backlog);
            let node = crate::cluster::ClusterNode::start(config, limits, metrics.registry_mut());
            Arc::new(node)
        });
        let resumes = metrics.resume_results();
        #[allow(unused_mut)]
        let mut node_number = Arc::<crate::node::NodeNumber>::default();
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &cluster {
            node_number = cluster.node_number();
        }
        let mut config = self.config;
        config.max_connections = crate::fd_limit::fit(config.max_connections);
        config.io_window = crate::pacing::fit(config.io_window);
        // Every connection cut at once may resume, unless told otherwise.
        let max_detached = config
            .max_detached_sessions
            .unwrap_or(config.max_connections);
        // And one client address as many as it may hold connected.
        let per_address = config.max_connections_per_ip;
        let supervisor = Supervisor::start_in_arbiter(&control, move |_| {
            Supervisor::new(resumes, node_number, max_detached, per_address)
        });
        // Sessions moved here from other nodes (no connection of their own yet) go
        // round-robin over the room threads, one per core by default; started only
        // on a node of a cluster.
        #[cfg(feature = "cluster")]
        let place_room: crate::session::RoomPlacer = {
            let threads = if cluster.is_some() {
                config.room_threads.max(1)
            } else {
                0
            };
            let mut arbiters: Vec<ArbiterHandle> = (0..threads)
                .map(|n| crate::threads::arbiter(format!("volley-room-{n}")))
                .collect();
            if arbiters.is_empty() {
                arbiters.push(control.clone());
            }
            let next = std::sync::atomic::AtomicUsize::new(0);
            Arc::new(move || {
                arbiters[next.fetch_add(1, Ordering::Relaxed) % arbiters.len()].clone()
            })
        };
        let connections = Arc::new(crate::session::Connections::new(&config));
        let shared = Shared {
            config,
            supervisor,
            namespaces: Arc::new(RwLock::new(HashMap::new())),
            dynamic: self.dynamic,
            #[cfg(feature = "cluster")]
            place_room,
            control,
            over_client_limit: AtomicU64::new(0),
            connections,
            metrics,
            #[cfg(feature = "cluster")]
            cluster: cluster
                .clone()
                .map(|node| node as Arc<dyn crate::session::Nodes>),
        };
        let started: HashMap<String, NamespaceHandle> = self
            .namespaces
            .into_iter()
            .map(|(name, spec)| {
                let handle = shared.start_namespace(&name, spec, None);
                (name, handle)
            })
            .collect();
        *shared.namespaces.write().unwrap_or_else(|e| e.into_inner()) = started;
        let shared = Arc::new(shared);
        let polls: Arc<polling::PollRegistry> = Arc::default();
        let socketio: Arc<socketio::Registry> = Arc::default();
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &cluster {
            cluster.attach(&shared, poll_answer(&shared, &polls, &socketio));
        }
        Volley {
            shared,
            polls,
            socketio,
            #[cfg(feature = "cluster")]
            cluster,
        }
    }
}

/// How this node answers the polling requests other nodes of its cluster received
/// for its connections.
#[cfg(feature = "cluster")]
fn poll_answer(
    shared: &Arc<Shared>,
    polls: &Arc<polling::PollRegistry>,
    sio: &Arc<socketio::Registry>,
) -> crate::cluster::PollAnswer {
    let (shared, polls, sio) = (
        Arc::downgrade(shared),
        Arc::downgrade(polls),
        Arc::downgrade(sio),
    );
    Arc::new(move |pid, body, socketio| {
        let (shared, polls, sio) = (shared.upgrade(), polls.upgrade(), sio.upgrade());
        Box::pin(async move {
            let (Some(shared), Some(polls), Some(sio)) = (shared, polls, sio) else {
                return Err((503, "server stopping".to_owned()));
            };
            if socketio {
                return socketio::for_another_node(&sio, &shared, &pid, body).await;
            }
            polling::for_another_node(&polls, &shared, &pid, body).await
        })
    })
}

/// A running Volley server: serve it with [`Volley::http_server`] (or mount it into
/// actix-web's own server with [`Volley::configure`]) and use it to reach namespaces
/// and sessions from outside handlers.
///
/// ```no_run
/// use actix_web::App;
/// use volley::{Namespace, Volley};
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     let volley = Volley::builder()
///         .namespace("/", Namespace::new().on("echo", |socket, text: String| {
///             let _ = socket.emit("echo", &text);
///         }))
///         .build();
///     volley
///         .http_server(App::new) // your routes go in the App
///         .bind(("127.0.0.1", 8080))?
///         .run()
///         .await
/// }
/// ```
#[derive(Clone)]
pub struct Volley {
    shared: Arc<Shared>,
    /// Open long-polling connections, shared by the routes of every worker.
    polls: Arc<polling::PollRegistry>,
    /// Open Socket.IO (Engine.IO) connections, shared likewise.
    socketio: Arc<socketio::Registry>,
    /// This node of a cluster (`VolleyBuilder::cluster`); `shared` holds the same
    /// node as the sessions see it (`session::Nodes`).
    #[cfg(feature = "cluster")]
    cluster: Option<Arc<crate::cluster::ClusterNode>>,
}

impl Volley {
    /// A builder with the default configuration.
    pub fn builder() -> VolleyBuilder {
        VolleyBuilder::default()
    }

    /// The state the server's sessions share, for the crate's own tests.
    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Routes to add to an actix-web `App` (`App::new().configure(volley.configure())`)
    /// under actix-web's own `HttpServer`; [`Volley::http_server`] adds them itself.
    /// There, WebSocket connections stay in actix-http's HTTP/1 dispatcher (16 KiB of
    /// buffers each and a copy per message): prefer `http_server` unless the
    /// application needs WebSocket routes of its own or builds its server itself.
    pub fn configure(&self) -> impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static {
        let shared = self.shared.clone();
        let polls = self.polls.clone();
        let sio = self.socketio.clone();
        move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(web::Data::new(shared.clone()))
                .route(&shared.config.path, web::get().to(websocket::route));
            if let Some(metrics) = &shared.config.metrics {
                cfg.route(&metrics.path, web::get().to(crate::metrics::scrape));
            }
            polling::configure(cfg, &shared.config.path, polls.clone());
            if let Some(endpoint) = &shared.config.socketio {
                socketio::configure(cfg, &endpoint.path, sio.clone());
            }
        }
    }

    /// The server's open Socket.IO connections, for the upgrade hook of [`HttpServer`].
    pub(crate) fn socketio(&self) -> Arc<socketio::Registry> {
        self.socketio.clone()
    }

    /// The hook that sets up each accepted connection: it enforces
    /// [`Config::write_timeout`] (a peer that stops reading is dropped after it).
    /// Install it with `HttpServer::on_connect` when you mount [`Volley::configure`]
    /// into your own server; without it the server logs a warning once.
    pub fn on_connect(&self) -> impl Fn(&dyn Any, &mut Extensions) + Send + Sync + 'static {
        let write_timeout = self.shared.config.write_timeout;
        move |conn, ext| connection::tune(conn, ext, write_timeout)
    }

    /// An HTTP server for this Volley and your own routes: `factory` builds the
    /// actix-web `App` of each worker thread, and Volley's routes are added to it. Its
    /// WebSocket connections leave actix-http's HTTP/1 dispatcher at the upgrade (see
    /// [`HttpServer`]): the lean way to serve, and what [`Volley::serve`] uses.
    pub fn http_server<F, T, B>(&self, factory: F) -> HttpServer<F>
    where
        F: Fn() -> actix_web::App<T> + Send + Clone + 'static,
        T: actix_service::ServiceFactory<
                actix_web::dev::ServiceRequest,
                Config = (),
                Response = actix_web::dev::ServiceResponse<B>,
                Error = actix_web::Error,
                InitError = (),
            > + 'static,
        B: actix_http::body::MessageBody + 'static,
    {
        HttpServer::new(self.clone(), self.shared.clone(), factory)
    }

    /// Serves this server alone on `addr` until the process is stopped, with the
    /// settings a real-time server wants (`TCP_NODELAY` on, so small frames are not
    /// held back by Nagle's algorithm; the write timeout). To add your own routes, use
    /// [`Volley::http_server`].
    pub async fn serve(self, addr: impl std::net::ToSocketAddrs) -> std::io::Result<()> {
        self.http_server(actix_web::App::new)
            .bind(addr)?
            .run()
            .await
    }

    /// Open connections (WebSocket and long-polling) right now, as counted by
    /// [`Config::max_connections`].
    pub fn open_connections(&self) -> usize {
        self.shared.connections.open()
    }

    /// A handle on namespace `name` for broadcasting from anywhere (a game loop, an
    /// HTTP handler). A name that is not running yet goes to the
    /// [`VolleyBuilder::dynamic_namespaces`] factory, as a client's connect would:
    /// the namespace it makes is started and kept while the returned handle (or a
    /// clone, or a socket in it) lives, so a table's handle exists before its first
    /// player; dropped once nothing uses it (see
    /// [`VolleyBuilder::dynamic_namespaces`]). `None` if the name is neither declared
    /// nor made by the factory.
    pub fn of(&self, name: &str) -> Option<NamespaceRef> {
        let handle = self.shared.namespace(name)?;
        Some(NamespaceRef::new(handle))
    }

    /// The live sessions: in a cluster (feature `cluster`) every node's, as
    /// `ClusterNode::sessions` lists them (a node that does not answer within 2 s is
    /// left out; while Redis is away, this node's alone), otherwise this node's
    /// ([`Volley::local_sessions`]).
    pub async fn sessions(&self) -> Vec<SessionInfo> {
        #[cfg(feature = "cluster")]
        if let Some(cluster) = self.cluster() {
            if let Ok(all) = cluster.sessions().await {
                return all.into_iter().map(|s| s.info).collect();
            }
        }
        self.local_sessions().await
    }

    /// The live sessions of this node (in a cluster, the sessions it holds).
    pub async fn local_sessions(&self) -> Vec<SessionInfo> {
        self.shared
            .supervisor
            .send(ListSessions)
            .await
            .unwrap_or_default()
    }

    /// How many live sessions this node holds: [`Volley::local_sessions`]`().len()`
    /// without listing them (for a dashboard or a load test polling it often).
    ///
    /// ```no_run
    /// # async fn example(volley: volley::Volley) {
    /// println!("{} sessions here", volley.local_session_count().await);
    /// # }
    /// ```
    pub async fn local_session_count(&self) -> usize {
        self.shared
            .supervisor
            .send(CountSessions)
            .await
            .unwrap_or_default()
    }

    /// Drops a session's current connection as a network failure would, without
    /// ending the session: the client reconnects and resumes (within the grace
    /// window). For operations and failure drills. In a cluster, on whichever node
    /// holds the session. Returns whether it existed.
    pub async fn drop_connection(&self, id: SessionId) -> bool {
        let here = self
            .shared
            .supervisor
            .send(DropSessionConnection { id })
            .await
            .unwrap_or(false);
        #[cfg(feature = "cluster")]
        if let (false, Some(cluster)) = (here, self.cluster()) {
            return cluster.drop_connection(id).await.unwrap_or(false);
        }
        here
    }

    /// How many deliveries were skipped because the frame was larger than its
    /// recipient accepts (the `max_frame_size` a client announces when it connects):
    /// a broadcast leaves such a client out, counts it here and logs a warning. An
    /// emit to one socket fails at the sender instead ([`EmitError::TooLarge`](crate::EmitError::TooLarge)).
    pub fn frames_over_client_limit(&self) -> u64 {
        self.shared.over_client_limit.load(Ordering::Relaxed)
    }

    /// How many broadcast frames were delivered to sessions since the server started
    /// (one per recipient; `volley_broadcast_deliveries_total` in `/metrics`). Sample
    /// it twice for a rate, as the demo's admin page does.
    pub fn deliveries(&self) -> u64 {
        self.shared.metrics.deliveries.get()
    }

    /// Reports the game rooms of `rooms` in this server's metrics (rooms, players and
    /// seats held by room type, ticks run and skipped, tick lateness), read from
    /// [`GameRooms::all_metrics`] at each scrape.
    pub fn watch_game_rooms(&self, rooms: &GameRooms) {
        self.shared.metrics.watch(rooms.clone());
    }

    /// This node's place in its cluster, when built with
    /// [`VolleyBuilder::cluster`]: its id, whether Redis is reachable, its figures.
    #[cfg(feature = "cluster")]
    pub fn cluster(&self) -> Option<&crate::cluster::ClusterNode> {
        self.cluster.as_deref()
    }

    /// This node of a cluster, without keeping it (or its server) alive: what the
    /// drain on a stop signal holds (`HttpServer::run`).
    #[cfg(feature = "cluster")]
    pub(crate) fn cluster_weak(&self) -> Option<std::sync::Weak<crate::cluster::ClusterNode>> {
        self.cluster.as_ref().map(Arc::downgrade)
    }

    /// Ends a session with a reason the client receives; in a cluster, on whichever
    /// node holds it (a [`SessionId`] names one session cluster-wide). Returns
    /// whether it existed.
    pub async fn kick(&self, id: SessionId, reason: &str) -> bool {
        let here = self
            .shared
            .supervisor
            .send(KickSession {
                id,
                reason: reason.to_owned(),
            })
            .await
            .unwrap_or(false);
        #[cfg(feature = "cluster")]
        if let (false, Some(cluster)) = (here, self.cluster()) {
            return cluster.kick(id, reason).await.unwrap_or(false);
        }
        here
    }
}

/// Game rooms in a cluster: defined here, above both, so that `game/` needs nothing
/// of `cluster/` (it sees the cluster as a `Directory`).
#[cfg(feature = "cluster")]
impl GameRooms {
    /// Shares these rooms with the other nodes of `volley`'s cluster (feature
    /// `cluster`): listings and join-or-create see every node's rooms, new rooms go
    /// to the least loaded node, and a player connected here plays in a room of any
    /// node (its inputs and states relayed through Redis). One `GameRooms` per node;
    /// call it once, before players join. Without a cluster it does nothing.
    /// See the guide's "Running several nodes".
    pub fn share_in(&self, volley: &Volley) {
        if let Some(cluster) = volley.cluster() {
            if self.share(Arc::new(cluster.clone()), cluster.node_number()) {
                cluster.share_rooms(self);
            }
        }
    }
}
