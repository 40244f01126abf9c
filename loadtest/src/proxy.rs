//! A TCP proxy that cuts every connection through it at once, or a random share of
//! them: how the reconnect and soak scenarios break sessions.
//!
//! Each worker of that scenario runs one in front of the server, and its clients
//! connect through it. A cut closes both sides of every proxied connection, so the
//! client and the server each see their connection end, as they would if the network
//! failed; whatever was in flight inside the proxy is lost. The clients then
//! reconnect through the proxy by themselves and resume their sessions: what is
//! measured is real resumption, with nothing in the framework told about the cut.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

/// Connections the proxy's listener queues (a reconnection storm arrives at once).
const BACKLOG: u32 = 4096;

/// How long the proxy waits after a failed `accept` before the next.
const ACCEPT_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// A cutting proxy in front of a server.
pub struct CutProxy {
    addr: SocketAddr,
    /// The URL path clients use on the server (`/volley`).
    path: String,
    /// Each value sent is a cut: every connection open then is cut with that
    /// probability (1: all of them).
    cuts: watch::Sender<f64>,
    /// Connections to the server the proxy could not open.
    failures: Arc<Mutex<Failures>>,
}

/// The proxy's own failures: a client whose connection it could not take or carry
/// on to the server sees only its connection closed or stalled, so the run
/// reports why.
#[derive(Default)]
pub struct Failures {
    pub count: u64,
    pub first: Option<String>,
}

impl CutProxy {
    /// Proxies a new port on 127.0.0.1 to the server of `ws_url`, connecting to it
    /// from `source` (port chosen by the system).
    ///
    /// The proxy runs on a thread of its own: cutting a thousand connections is a
    /// burst of work, and on the clients' thread it would delay the very clients
    /// whose reaction to the cut is being timed.
    ///
    /// Each worker's proxy takes its own source address: all of them connecting
    /// from 127.0.0.1 to the one server port share that address's ~28,000
    /// ephemeral ports, and a cut leaves every connection's port in `TIME_WAIT` on
    /// the proxy's side (it closes first) while the clients reconnect: 19,000
    /// clients ran out of ports (`EADDRNOTAVAIL`) before they had all connected.
    pub fn start(ws_url: &str, source: IpAddr) -> std::io::Result<CutProxy> {
        let (target, path) = split_url(ws_url)?;
        let (cuts, _) = watch::channel(0.0);
        let cut_rx = cuts.clone();
        let failures = Arc::new(Mutex::new(Failures::default()));
        let failed = failures.clone();
        let (bound_tx, bound) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let runtime = match runtime {
                Ok(runtime) => runtime,
                Err(e) => return drop(bound_tx.send(Err(e))),
            };
            runtime.block_on(async move {
                let listener = match listen() {
                    Ok(listener) => listener,
                    Err(e) => return drop(bound_tx.send(Err(e))),
                };
                let _ = bound_tx.send(listener.local_addr());
                loop {
                    let client = match listener.accept().await {
                        Ok((client, _)) => client,
                        // Out of file descriptors, most likely: the clients retry
                        // once some are closed; the proxy must not stop for it.
                        Err(e) => {
                            note(&failed, || format!("accepting a client: {e}"));
                            tokio::time::sleep(ACCEPT_PAUSE).await;
                            continue;
                        }
                    };
                    let upstream = Upstream {
                        source,
                        target,
                        failures: failed.clone(),
                    };
                    tokio::spawn(pipe(client, upstream, cut_rx.subscribe()));
                }
            });
        });
        let addr = bound
            .recv()
            .map_err(|_| std::io::Error::other("proxy thread ended"))??;
        Ok(CutProxy {
            addr,
            path,
            cuts,
            failures,
        })
    }

    /// How many connections the proxy failed to take or to carry on to the server
    /// so far, and the first error.
    pub fn failures(&self) -> (u64, Option<String>) {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        (failures.count, failures.first.clone())
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("ws://{}{}", self.addr, self.path)
    }

    /// Cuts every connection open now; later ones pass.
    pub fn cut(&self) {
        self.cut_share(1.0);
    }

    /// Cuts each connection open now with probability `share` (0 to 1).
    pub fn cut_share(&self, share: f64) {
        // Sent even if equal to the last one: every send is news to the pipes.
        self.cuts.send_replace(share);
    }
}

/// A listener on a free port of 127.0.0.1 with a deep accept queue.
fn listen() -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    socket.listen(BACKLOG)
}

/// Where a proxied connection goes, and where its failure is noted.
struct Upstream {
    source: IpAddr,
    target: SocketAddr,
    failures: Arc<Mutex<Failures>>,
}

impl Upstream {
    async fn connect(&self) -> std::io::Result<TcpStream> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(self.source, 0))?;
        socket.connect(self.target).await
    }

    fn failed(&self, e: std::io::Error) {
        note(&self.failures, || {
            format!("connecting from {} to {}: {e}", self.source, self.target)
        });
    }
}

/// Counts a failure of the proxy, keeping the first one's text.
fn note(failures: &Mutex<Failures>, text: impl FnOnce() -> String) {
    let mut failures = failures.lock().unwrap_or_else(|e| e.into_inner());
    failures.count += 1;
    failures.first.get_or_insert_with(text);
}

/// Copies bytes both ways until either side closes or a cut takes this connection.
async fn pipe(mut client: TcpStream, upstream: Upstream, mut cut: watch::Receiver<f64>) {
    let mut server = match upstream.connect().await {
        Ok(server) => server,
        // Dropping the client's connection closes it: the client sees its
        // connection fail, the run's report says why.
        Err(e) => return upstream.failed(e),
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
    tokio::pin!(copy);
    loop {
        tokio::select! {
            _ = &mut copy => break,
            changed = cut.changed() => {
                let share = *cut.borrow_and_update();
                if changed.is_err() || rand::random::<f64>() < share {
                    break;
                }
            }
        }
    }
    // Dropping both streams closes both connections.
}

/// `ws://host:port/path` → the server's address and `/path`.
fn split_url(url: &str) -> std::io::Result<(SocketAddr, String)> {
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidInput, url.to_owned());
    let rest = url.strip_prefix("ws://").ok_or_else(invalid)?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let addr = host.to_socket_addrs()?.next().ok_or_else(invalid)?;
    Ok((addr, path))
}

#[cfg(test)]
mod tests {
    use super::split_url;

    #[test]
    fn urls_split_into_address_and_path() {
        let (addr, path) = split_url("ws://127.0.0.1:8090/volley").unwrap();
        assert_eq!(
            (addr.to_string(), path.as_str()),
            ("127.0.0.1:8090".into(), "/volley")
        );
        assert!(split_url("http://127.0.0.1:1/x").is_err());
    }
}
