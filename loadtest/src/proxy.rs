//! A TCP proxy that cuts every connection through it at once, or a random share of
//! them: how the reconnect and soak scenarios break sessions.
//!
//! Each worker of that scenario runs one in front of the server, and its clients
//! connect through it. A cut closes both sides of every proxied connection, so the
//! client and the server each see their connection end, as they would if the network
//! failed; whatever was in flight inside the proxy is lost. The clients then
//! reconnect through the proxy by themselves and resume their sessions: what is
//! measured is real resumption, with nothing in the framework told about the cut.

use std::net::{SocketAddr, ToSocketAddrs};

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

/// Connections the proxy's listener queues (a reconnection storm arrives at once).
const BACKLOG: u32 = 4096;

/// A cutting proxy in front of a server.
pub struct CutProxy {
    addr: SocketAddr,
    /// The URL path clients use on the server (`/volley`).
    path: String,
    /// Each value sent is a cut: every connection open then is cut with that
    /// probability (1: all of them).
    cuts: watch::Sender<f64>,
}

impl CutProxy {
    /// Proxies a new port on 127.0.0.1 to the server of `ws_url`.
    ///
    /// The proxy runs on a thread of its own: cutting a thousand connections is a
    /// burst of work, and on the clients' thread it would delay the very clients
    /// whose reaction to the cut is being timed.
    pub fn start(ws_url: &str) -> std::io::Result<CutProxy> {
        let (target, path) = split_url(ws_url)?;
        let (cuts, _) = watch::channel(0.0);
        let cut_rx = cuts.clone();
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
                while let Ok((client, _)) = listener.accept().await {
                    tokio::spawn(pipe(client, target, cut_rx.subscribe()));
                }
            });
        });
        let addr = bound
            .recv()
            .map_err(|_| std::io::Error::other("proxy thread ended"))??;
        Ok(CutProxy { addr, path, cuts })
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

/// Copies bytes both ways until either side closes or a cut takes this connection.
async fn pipe(mut client: TcpStream, target: SocketAddr, mut cut: watch::Receiver<f64>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
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
