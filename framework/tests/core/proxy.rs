//! A fault-injecting TCP proxy for the resilience tests: it forwards bytes between a
//! client and the server and cuts connections at seeded random byte counts, in the
//! middle of a long-poll answer, on demand, or refuses new ones while told to.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use volley::protocol;

/// When a proxied connection is cut.
#[derive(Clone, Copy, Debug)]
pub enum Cuts {
    /// Never by itself (only by [`FaultProxy::cut_all`]).
    Never,
    /// After a random number of bytes (both directions together) in this range, for
    /// the first `max_cuts` connections; later ones pass everything.
    Random {
        min: usize,
        max: usize,
        max_cuts: usize,
    },
    /// Once: the first long-poll answer that carries two frames or more is cut right
    /// after its first frame. The cut falls on a frame boundary, so the bytes that
    /// did arrive split into whole frames: only the missing `Content-Length` bytes
    /// tell the client that the answer is incomplete.
    MidBatch,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    cuts: Arc<AtomicUsize>,
    refusing: Arc<AtomicBool>,
    /// New connections still to refuse once `refusing` is off.
    refuse_next: Arc<AtomicUsize>,
    /// While set, HTTP requests that ask for a WebSocket upgrade get 403.
    blocking_websocket: Arc<AtomicBool>,
    /// Bumped to cut every open connection.
    generation: watch::Sender<u64>,
}

impl FaultProxy {
    /// Proxies 127.0.0.1:<random port> to `target`.
    pub async fn start(target: SocketAddr, policy: Cuts, seed: u64) -> FaultProxy {
        FaultProxy::balance(vec![target], policy, seed).await
    }

    /// Proxies 127.0.0.1:<random port> to `targets`, each new connection to the next
    /// one (round robin, no stickiness: a load balancer in front of several nodes).
    pub async fn balance(targets: Vec<SocketAddr>, policy: Cuts, seed: u64) -> FaultProxy {
        let next_target = AtomicUsize::new(0);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let cuts = Arc::new(AtomicUsize::new(0));
        let refusing = Arc::new(AtomicBool::new(false));
        let refuse_next = Arc::new(AtomicUsize::new(0));
        let blocking_websocket = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let rng = Arc::new(Mutex::new(StdRng::seed_from_u64(seed)));
        let mid_batch = Arc::new(AtomicBool::new(matches!(policy, Cuts::MidBatch)));
        let proxy = FaultProxy {
            addr,
            cuts: cuts.clone(),
            refusing: refusing.clone(),
            refuse_next: refuse_next.clone(),
            blocking_websocket: blocking_websocket.clone(),
            generation: generation.clone(),
        };
        actix_rt::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let one_more = |n: usize| n.checked_sub(1);
                if refusing.load(Ordering::SeqCst)
                    || refuse_next
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, one_more)
                        .is_ok()
                {
                    drop(client);
                    continue;
                }
                let budget = match policy {
                    Cuts::Random { min, max, max_cuts }
                        if cuts.load(Ordering::SeqCst) < max_cuts =>
                    {
                        Some(rng.lock().unwrap().gen_range(min..=max))
                    }
                    _ => None,
                };
                let first = next_target.fetch_add(1, Ordering::SeqCst);
                // A target that refuses is skipped, as a balancer does with a node
                // that is gone (nginx's `proxy_next_upstream error`).
                let order: Vec<SocketAddr> = (0..targets.len())
                    .map(|k| targets[(first + k) % targets.len()])
                    .collect();
                let cut_all = generation.subscribe();
                let cuts = cuts.clone();
                let mid_batch = mid_batch.clone();
                let block = blocking_websocket.load(Ordering::SeqCst);
                actix_rt::spawn(async move {
                    let mut client = client;
                    let mut head = Vec::new();
                    if block {
                        // Like a corporate proxy: no WebSocket upgrades.
                        head = read_head(&mut client).await;
                        if String::from_utf8_lossy(&head)
                            .to_ascii_lowercase()
                            .contains("upgrade: websocket")
                        {
                            let _ = client
                                .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                                .await;
                            return;
                        }
                    }
                    let mut server = None;
                    for target in order {
                        if let Ok(stream) = TcpStream::connect(target).await {
                            server = Some(stream);
                            break;
                        }
                    }
                    let Some(mut server) = server else {
                        return;
                    };
                    if server.write_all(&head).await.is_err() {
                        return;
                    }
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    if pipe(client, server, budget, mid_batch, cut_all).await {
                        cuts.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        proxy
    }

    pub fn url(&self) -> String {
        format!("ws://{}/volley", self.addr)
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }

    /// Cuts every open connection now.
    pub fn cut_all(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// While `true`, new connections that ask for a WebSocket upgrade are refused
    /// with 403 (plain HTTP passes).
    pub fn block_websocket(&self, blocking: bool) {
        self.blocking_websocket.store(blocking, Ordering::SeqCst);
    }

    /// While `true`, new connections are accepted and closed at once.
    pub fn refuse(&self, refusing: bool) {
        self.refusing.store(refusing, Ordering::SeqCst);
    }

    /// Refuses the next `n` new connections, then lets them through (an outage that
    /// ends between two connection attempts).
    pub fn refuse_next(&self, n: usize) {
        self.refuse_next.store(n, Ordering::SeqCst);
    }
}

/// Reads an HTTP request head (up to the blank line, at most 16 KiB).
async fn read_head(client: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while head.len() < 16 * 1024 && !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    head
}

/// Copies both ways until one side closes, the budget runs out, a long-poll answer
/// is cut (while `mid_batch` is armed), or `cut_all` fires. Returns whether the proxy
/// cut the connection.
async fn pipe(
    client: TcpStream,
    server: TcpStream,
    budget: Option<usize>,
    mid_batch: Arc<AtomicBool>,
    mut cut_all: watch::Receiver<u64>,
) -> bool {
    let budget = Arc::new(Mutex::new(budget));
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = copy(&mut client_read, &mut server_write, budget.clone());
    let down = async {
        match mid_batch.load(Ordering::SeqCst) {
            true => copy_answers(&mut server_read, &mut client_write, &mid_batch).await,
            false => copy(&mut server_read, &mut client_write, budget).await,
        }
    };
    tokio::select! {
        cut = up => cut,
        cut = down => cut,
        _ = cut_all.changed() => true,
    }
    // Dropping both halves of both sockets closes the connections.
}

/// Forwards HTTP responses whole, one at a time, and cuts the first long-poll answer
/// of two frames or more right after its first frame (disarming `mid_batch`). Returns
/// whether it cut. A response without `Content-Length` (a WebSocket upgrade) ends the
/// parsing: the rest passes as it comes.
async fn copy_answers(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    mid_batch: &AtomicBool,
) -> bool {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match from.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let length = head.lines().find_map(|line| {
            let value = line.strip_prefix("content-length:")?;
            value.trim().parse::<usize>().ok()
        });
        let Some(length) = length else {
            if to.write_all(&buf).await.is_err() {
                return false;
            }
            return copy(from, to, Arc::new(Mutex::new(None))).await;
        };
        let end = head_end + length;
        while buf.len() < end {
            match from.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = bytes::Bytes::copy_from_slice(&buf[head_end..end]);
        let frames = protocol::split_batch(&body, usize::MAX).unwrap_or_default();
        if head.starts_with("http/1.1 200")
            && frames.len() >= 2
            && mid_batch.swap(false, Ordering::SeqCst)
        {
            let first = protocol::encode_batch(&frames[..1]).len();
            let _ = to.write_all(&buf[..head_end + first]).await;
            return true;
        }
        if to.write_all(&buf[..end]).await.is_err() {
            return false;
        }
        buf.drain(..end);
    }
}

/// Forwards bytes until EOF (false) or the shared budget is spent (true).
async fn copy(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    budget: Arc<Mutex<Option<usize>>>,
) -> bool {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let allowed = {
            let mut left = budget.lock().unwrap();
            match left.as_mut() {
                None => n,
                Some(left) => {
                    let allowed = n.min(*left);
                    *left -= allowed;
                    allowed
                }
            }
        };
        if to.write_all(&buf[..allowed]).await.is_err() {
            return false;
        }
        if allowed < n || budget.lock().unwrap().is_some_and(|left| left == 0) {
            return true;
        }
    }
}
