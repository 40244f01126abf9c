//! Volley's own HTTP server: your actix-web `App` for every route, Volley's routes
//! added to it, and WebSocket connections taken out of actix-http's HTTP/1 dispatcher
//! at the upgrade, so that an open connection costs a few hundred bytes of buffers
//! instead of 16 KiB and each message goes to the socket without being copied.
//!
//! Use it in place of actix-web's `HttpServer`; mounting [`Volley::configure`] into
//! actix-web's own server still works, at that cost.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use actix_http::body::MessageBody;
use actix_http::HttpService;
use actix_service::{fn_service, map_config, ServiceFactory};
use actix_web::dev::{AppConfig, Server, ServiceRequest, ServiceResponse};
use actix_web::App;

use crate::session::Shared;
use crate::transport::connection;
use crate::transport::upgrade::upgrade;
use crate::Volley;

/// An HTTP server for a [`Volley`] and your own routes; build it with
/// [`Volley::http_server`].
///
/// `factory` builds the `App` of each worker thread, as for actix-web's
/// `HttpServer::new`; Volley's routes ([`Volley::configure`]) are added to it.
/// `TCP_NODELAY` and the write timeout ([`crate::Config::write_timeout`]) are set on
/// every connection. Every WebSocket upgrade request goes to Volley (a path other
/// than [`crate::Config::path`] gets `404`): an `App` with WebSocket routes of its own
/// needs actix-web's `HttpServer` with [`Volley::configure`].
///
/// ```no_run
/// use actix_web::{web, App, HttpResponse};
/// use volley::{Namespace, Volley};
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     let volley = Volley::builder()
///         .namespace("/", Namespace::new())
///         .build();
///     volley
///         .http_server(|| App::new().route("/health", web::get().to(HttpResponse::Ok)))
///         .bind(("127.0.0.1", 8080))?
///         .run()
///         .await
/// }
/// ```
pub struct HttpServer<F> {
    shared: Arc<Shared>,
    volley: Volley,
    factory: F,
    builder: actix_server::ServerBuilder,
    backlog: u32,
    addrs: Vec<SocketAddr>,
}

impl<F, T, B> HttpServer<F>
where
    F: Fn() -> App<T> + Send + Clone + 'static,
    T: ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    B: MessageBody + 'static,
{
    pub(crate) fn new(volley: Volley, shared: Arc<Shared>, factory: F) -> Self {
        HttpServer {
            shared,
            volley,
            factory,
            builder: actix_server::Server::build(),
            backlog: 1024,
            addrs: Vec::new(),
        }
    }

    /// Worker threads (default: one per CPU core).
    pub fn workers(mut self, workers: usize) -> Self {
        self.builder = self.builder.workers(workers);
        self
    }

    /// The listen queue of the sockets bound after this call (default 1024).
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog;
        self.builder = self.builder.backlog(backlog);
        self
    }

    /// How long a stopping server waits for its connections, in seconds (default 30).
    /// Open WebSockets never finish by themselves.
    pub fn shutdown_timeout(mut self, seconds: u64) -> Self {
        self.builder = self.builder.shutdown_timeout(seconds);
        self
    }

    /// Listens on `addr` (port 0: one the system picks; see [`HttpServer::addrs`]).
    pub fn bind(mut self, addr: impl ToSocketAddrs) -> io::Result<Self> {
        for addr in addr.to_socket_addrs()? {
            let listener = self.listener(addr)?;
            let (shared, volley, factory) = self.parts();
            let write_timeout = shared.config.write_timeout;
            self.builder = self.builder.listen("volley", listener, move || {
                crate::threads::name_io_thread();
                crate::pacing::start(shared.config.io_window);
                let shared = shared.clone();
                let sio = volley.socketio();
                HttpService::build()
                    .tcp_nodelay(true)
                    .on_connect_ext(move |io: &tokio::net::TcpStream, ext| {
                        connection::tune(io, ext, write_timeout)
                    })
                    .upgrade(fn_service(move |(req, framed)| {
                        upgrade(shared.clone(), sio.clone(), req, framed)
                    }))
                    .finish(map_config(factory().configure(volley.configure()), |()| {
                        AppConfig::default()
                    }))
                    .tcp()
            })?;
        }
        Ok(self)
    }

    /// [`HttpServer::bind`] with TLS (`https`, `wss`); build `tls` with
    /// [`crate::tls::server_config`].
    #[cfg(feature = "tls")]
    pub fn bind_rustls(
        mut self,
        addr: impl ToSocketAddrs,
        tls: rustls::ServerConfig,
    ) -> io::Result<Self> {
        use actix_tls::accept::rustls_0_23::TlsStream;
        for addr in addr.to_socket_addrs()? {
            let listener = self.listener(addr)?;
            let (shared, volley, factory) = self.parts();
            let write_timeout = shared.config.write_timeout;
            let tls = tls.clone();
            self.builder = self.builder.listen("volley-tls", listener, move || {
                crate::threads::name_io_thread();
                crate::pacing::start(shared.config.io_window);
                let shared = shared.clone();
                let sio = volley.socketio();
                HttpService::build()
                    .tcp_nodelay(true)
                    .on_connect_ext(move |io: &TlsStream<tokio::net::TcpStream>, ext| {
                        connection::tune(io, ext, write_timeout)
                    })
                    .upgrade(fn_service(move |(req, framed)| {
                        upgrade(shared.clone(), sio.clone(), req, framed)
                    }))
                    .finish(map_config(factory().configure(volley.configure()), |()| {
                        AppConfig::default()
                    }))
                    .rustls_0_23(tls.clone())
            })?;
        }
        Ok(self)
    }

    /// The addresses listened on, as bound (with the ports the system picked).
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// Starts the server: await it to run until it stops; its `handle()` stops it.
    ///
    /// A cluster node (feature `cluster`) drains on `SIGTERM` or Ctrl-C before it
    /// stops: its sessions move to the other nodes and their clients resume there
    /// (`ClusterNode::drain`; the guide's "Rolling restarts: draining a node"), and
    /// its game rooms run on until empty or `RedisCluster::drain_deadline`.
    pub fn run(self) -> Server {
        #[cfg(feature = "cluster")]
        if let Some(node) = self.volley.cluster_weak() {
            // The signals are the drain's, which stops the server once done.
            let server = self.builder.disable_signals().run();
            actix::spawn(crate::cluster::drain_on_signal(node, server.handle()));
            return server;
        }
        self.builder.run()
    }

    fn parts(&self) -> (Arc<Shared>, Volley, F) {
        (
            self.shared.clone(),
            self.volley.clone(),
            self.factory.clone(),
        )
    }

    fn listener(&mut self, addr: SocketAddr) -> io::Result<std::net::TcpListener> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(i32::try_from(self.backlog).unwrap_or(i32::MAX))?;
        let listener = std::net::TcpListener::from(socket);
        self.addrs.push(listener.local_addr()?);
        Ok(listener)
    }
}
