//! The limits a public server needs, on by default: the `Origin` check, the
//! connection limits (in total and per client address) and the inbound rate limit.
//! HTTP requests are written by hand on a raw socket, so that nothing in between
//! adds, drops or retries a header.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use volley::client::Transport;
use volley::protocol::Frame;
use volley::{ConnectRate, DisconnectReason, RateLimit, Volley, VolleyBuilder};

use crate::common::*;

pub(crate) fn addr(server: &TestServer) -> SocketAddr {
    let authority = server.url.trim_start_matches("ws://");
    authority.split('/').next().unwrap().parse().unwrap()
}

/// An HTTP answer read off a raw socket; `stream` stays open (a WebSocket after 101).
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: String,
    pub(crate) stream: TcpStream,
}

/// Sends `method path` with `headers` (and `body`) on a new connection and reads the
/// answer's head, and its body unless it is a 101.
pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    tokio::time::timeout(WAIT, read_answer(stream))
        .await
        .expect("no answer in time")
}

async fn read_answer(mut stream: TcpStream) -> Answer {
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before the answer's head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head[9..12].parse().unwrap();
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[end..].to_vec();
    if status != 101 {
        while body.len() < length {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed inside the body");
            body.extend_from_slice(&chunk[..n]);
        }
    }
    Answer {
        status,
        head,
        body: String::from_utf8_lossy(&body).into_owned(),
        stream,
    }
}

const UPGRADE: [&str; 4] = [
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
];

/// A WebSocket upgrade request with `extra` headers.
async fn upgrade(addr: SocketAddr, extra: &[&str]) -> Answer {
    let headers: Vec<&str> = UPGRADE.iter().chain(extra).copied().collect();
    request(addr, "GET", "/volley", &headers, b"").await
}

/// An opening long-polling POST (a batch holding `Hello`) with `extra` headers.
async fn open_poll(addr: SocketAddr, extra: &[&str]) -> Answer {
    let hello = volley::protocol::encode(&Frame::Hello {
        version: volley::protocol::PROTOCOL_VERSION,
        max_frame_size: None,
    });
    let batch = volley::protocol::encode_batch(&[hello]);
    request(addr, "POST", "/volley/poll", extra, &batch).await
}

fn builder() -> VolleyBuilder {
    let (disconnects, _) = Disconnects::new();
    Volley::builder().namespace("/", test_namespace(disconnects))
}

#[actix_rt::test]
async fn websocket_origin_must_be_the_server_or_listed() {
    let server = serve(builder());
    let addr = addr(&server);
    // Native clients send no Origin.
    assert_eq!(upgrade(addr, &[]).await.status, 101);
    // A page of this server, over http or https (the scheme is not compared).
    let own = format!("Origin: http://{addr}");
    assert_eq!(upgrade(addr, &[&own]).await.status, 101);
    let own_tls = format!("Origin: https://{addr}");
    assert_eq!(upgrade(addr, &[&own_tls]).await.status, 101);
    // Anyone else: 403 and why.
    for foreign in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        let answer = upgrade(addr, &[&format!("Origin: {foreign}")]).await;
        assert_eq!(answer.status, 403, "{foreign}");
        assert!(answer.head.contains("text/plain"), "{}", answer.head);
        assert_eq!(
            answer.body,
            format!("origin '{foreign}' is not allowed to connect to this server")
        );
    }

    // The allow-list is `cors_origins`, matched exactly.
    let listed = serve(builder().cors_origins(&["https://play.example"]));
    let addr = self::addr(&listed);
    assert_eq!(
        upgrade(addr, &["Origin: https://play.example"])
            .await
            .status,
        101
    );
    assert_eq!(
        upgrade(addr, &["Origin: https://play.example.evil"])
            .await
            .status,
        403
    );
    let any = serve(builder().cors_origins(&["*"]));
    let addr = self::addr(&any);
    assert_eq!(
        upgrade(addr, &["Origin: http://anywhere.example"])
            .await
            .status,
        101
    );
}

#[actix_rt::test]
async fn polling_origin_must_be_the_server_or_listed() {
    let server = serve(builder().cors_origins(&["https://play.example"]));
    let addr = addr(&server);
    let foreign = "Origin: http://evil.example";
    let refused = "origin 'http://evil.example' is not allowed to connect to this server";
    for (method, path) in [
        ("OPTIONS", "/volley/poll"),
        ("GET", "/volley/poll?pid=00"),
        ("POST", "/volley/poll?pid=00"),
    ] {
        let answer = request(addr, method, path, &[foreign], b"").await;
        assert_eq!((answer.status, answer.body.as_str()), (403, refused));
    }
    let answer = open_poll(addr, &[foreign]).await;
    assert_eq!((answer.status, answer.body.as_str()), (403, refused));
    assert_eq!(server.volley.open_connections(), 0);

    // Without Origin, from the server's own pages, and from a listed origin: served.
    assert_eq!(open_poll(addr, &[]).await.status, 200);
    assert_eq!(
        open_poll(addr, &[&format!("Origin: http://{addr}")])
            .await
            .status,
        200
    );
    let listed = "Origin: https://play.example";
    let preflight = request(addr, "OPTIONS", "/volley/poll", &[listed], b"").await;
    assert_eq!(preflight.status, 204);
    assert!(preflight
        .head
        .to_ascii_lowercase()
        .contains("access-control-allow-origin: https://play.example"));
    assert_eq!(open_poll(addr, &[listed]).await.status, 200);
}

/// Retries `check` until it holds, failing the test after [`WAIT`]: for state the
/// server updates on its own after a connection closes.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_rt::test]
async fn connections_past_the_total_limit_get_503_until_one_closes() {
    let server = serve(builder().max_connections(3, usize::MAX));
    let addr = addr(&server);
    let mut open = Vec::new();
    for _ in 0..2 {
        let answer = upgrade(addr, &[]).await;
        assert_eq!(answer.status, 101);
        open.push(answer.stream);
    }
    // A polling connection takes a place too.
    assert_eq!(open_poll(addr, &[]).await.status, 200);
    assert_eq!(server.volley.open_connections(), 3);

    let full = "server full: too many connections (limit 3)";
    let answer = upgrade(addr, &[]).await;
    assert_eq!((answer.status, answer.body.as_str()), (503, full));
    let answer = open_poll(addr, &[]).await;
    assert_eq!((answer.status, answer.body.as_str()), (503, full));
    // Refusals hold no place.
    assert_eq!(server.volley.open_connections(), 3);

    // One closes: its place is given back.
    drop(open.pop());
    eventually("the closed connection is released", || {
        server.volley.open_connections() == 2
    })
    .await;
    let answer = upgrade(addr, &[]).await;
    assert_eq!(answer.status, 101);
    assert_eq!(upgrade(addr, &[]).await.status, 503);
}

/// A connection the server ends (here: no `Hello` within the handshake timeout)
/// gives its place back at once, though its client keeps the socket open and says
/// nothing more: the server stops reading it as its transport actor stops.
#[actix_rt::test]
async fn a_connection_the_server_ends_gives_its_place_back_while_its_client_stays() {
    let config = volley::Config {
        handshake_timeout: Duration::from_millis(200),
        ..volley::Config::default()
    };
    let server = serve(builder().config(config).max_connections(1, usize::MAX));
    let addr = addr(&server);
    let mut silent = upgrade(addr, &[]).await;
    assert_eq!(silent.status, 101);
    assert_eq!(upgrade(addr, &[]).await.status, 503);
    let close = crate::wire::read_close(&mut silent.stream).await;
    assert_eq!(close, Some((1008, "handshake timeout".to_owned())));
    eventually("the ended connection is released", || {
        server.volley.open_connections() == 0
    })
    .await;
    let answer = upgrade(addr, &[]).await;
    assert_eq!(answer.status, 101);
    // The silent client's socket is still open on its side.
    drop(silent);
}

/// Each connection is a file: a server asked for more connections than the process
/// may open files is built with the limit the files allow (the soft limit raised to
/// the hard one, 256 kept for the rest), so it answers `503` past it instead of
/// failing to accept.
#[cfg(target_os = "linux")]
#[actix_rt::test]
async fn the_connection_limit_fits_the_open_file_limit() {
    let server = serve(builder().max_connections(usize::MAX, usize::MAX));
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let files: Vec<u64> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("the open-file limit")
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let (soft, hard) = (files[0], files[1]);
    assert_eq!(soft, hard, "the soft limit was raised to the hard one");
    let expected = usize::try_from(hard - 256).unwrap();
    assert_eq!(server.volley.config().max_connections, expected);
}

/// A full server's `503` is an answer to come back later, not a blocked WebSocket:
/// a client on `Transport::Auto` does not try long-polling, which the server would
/// refuse the same (and, once there was room, leave the session on the slower
/// transport). The server sees one refused connection, not two.
#[actix_rt::test]
async fn a_full_server_does_not_send_the_client_to_long_polling() {
    let server = serve(
        builder()
            .metrics(volley::MetricsRoute::token(crate::metrics::TOKEN))
            .max_connections(1, usize::MAX),
    );
    let addr = addr(&server);
    let only = upgrade(addr, &[]).await;
    assert_eq!(only.status, 101);

    let config = volley::client::ClientConfig {
        transport: Transport::Auto,
        ..Default::default()
    };
    let refused = volley::client::Client::connect_with(&server.url, config)
        .await
        .err()
        .expect("the server is full");
    assert!(refused.to_string().contains("503"), "{refused}");
    let (_, figures) = crate::metrics::scrape(&server, Some(crate::metrics::TOKEN)).await;
    let limit = figures.get("volley_refused_total{reason=\"connection_limit\"}");
    assert_eq!(limit, Some(&1.0), "refusals by the connection limit");
}

#[actix_rt::test]
async fn the_per_address_limit_counts_the_forwarded_client_only_behind_a_trusted_proxy() {
    // Behind a trusted proxy (here: loopback), X-Forwarded-For names the client.
    let proxied = serve(
        builder()
            .max_connections(100, 2)
            .trusted_proxies(&["127.0.0.1".parse().unwrap()]),
    );
    let addr = addr(&proxied);
    let first = "X-Forwarded-For: 198.51.100.1";
    let mut open = Vec::new();
    for _ in 0..2 {
        let answer = upgrade(addr, &[first]).await;
        assert_eq!(answer.status, 101);
        open.push(answer.stream);
    }
    let answer = upgrade(addr, &[first]).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (503, "too many connections from your address (limit 2)")
    );
    let answer = open_poll(addr, &[first]).await;
    assert_eq!(answer.status, 503);
    // Another client behind the same proxy has its own count; a forged hop in front
    // of the proxy's does not change who the client is.
    let second = upgrade(addr, &["X-Forwarded-For: 198.51.100.2"]).await;
    assert_eq!(second.status, 101);
    let forged = upgrade(addr, &["X-Forwarded-For: 203.0.113.5, 198.51.100.1"]).await;
    assert_eq!(forged.status, 503);
    drop(open.pop());
    eventually("the closed connection is released", || {
        proxied.volley.open_connections() == 2
    })
    .await;
    assert_eq!(upgrade(addr, &[first]).await.status, 101);

    // From a peer that is not a trusted proxy, the header is ignored: every request
    // here comes from 127.0.0.1.
    let direct = serve(builder().max_connections(100, 2));
    let addr = self::addr(&direct);
    let a = upgrade(addr, &["X-Forwarded-For: 198.51.100.1"]).await;
    let b = upgrade(addr, &["X-Forwarded-For: 198.51.100.2"]).await;
    assert_eq!((a.status, b.status), (101, 101));
    let c = upgrade(addr, &["X-Forwarded-For: 198.51.100.3"]).await;
    assert_eq!(c.status, 503);
}

/// Sends `open` until the server answers 429 (a refill between two tries can let
/// one more in: a few tries at most); the 429's body.
async fn until_rate_limited<F, Fut>(what: &str, open: F) -> String
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    for _ in 0..5 {
        let answer = open().await;
        if answer.status == 429 {
            return answer.body;
        }
        assert!(
            matches!(answer.status, 101 | 200),
            "{what}: {}",
            answer.status
        );
    }
    panic!("{what}: never refused by the connect rate");
}

/// One address opens connections at `connect_rate_per_ip` at most: past its burst a
/// new connection of any transport (WebSocket, long-polling, Socket.IO) gets 429,
/// another address still gets in, the refusals are counted, and once the bucket
/// refills the address connects again.
#[actix_rt::test]
async fn connects_past_the_per_address_rate_get_429_until_it_refills() {
    let server = serve(
        builder()
            .metrics(volley::MetricsRoute::token(crate::metrics::TOKEN))
            .trusted_proxies(&["127.0.0.1".parse().unwrap()])
            .connect_rate_per_ip(ConnectRate {
                per_sec: 1,
                burst: 3,
            }),
    );
    let addr = addr(&server);
    let first = ["X-Forwarded-For: 198.51.100.1"];
    let mut open = Vec::new();
    for _ in 0..3 {
        let answer = upgrade(addr, &first).await;
        assert_eq!(answer.status, 101);
        open.push(answer.stream);
    }
    let body = until_rate_limited("websocket", || upgrade(addr, &first)).await;
    assert_eq!(
        body,
        "too many new connections from your address (limit 1/s, burst 3)"
    );
    // Closing a connection gives no connect back: the rate counts opening.
    drop(open.pop());
    until_rate_limited("polling", || open_poll(addr, &first)).await;
    let socketio = || {
        request(
            addr,
            "GET",
            "/socket.io/?EIO=4&transport=polling",
            &first,
            b"",
        )
    };
    until_rate_limited("socket.io", socketio).await;
    // Another client behind the proxy has its own bucket.
    let other = upgrade(addr, &["X-Forwarded-For: 198.51.100.2"]).await;
    assert_eq!(other.status, 101);
    let (_, figures) = crate::metrics::scrape(&server, Some(crate::metrics::TOKEN)).await;
    let refused = figures.get("volley_refused_total{reason=\"connection_rate\"}");
    assert!(refused.is_some_and(|n| *n >= 3.0), "counted: {refused:?}");
    // A connect a second: the address is let in again within two.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2) + WAIT;
    loop {
        let answer = upgrade(addr, &first).await;
        if answer.status == 101 {
            break;
        }
        assert_eq!(answer.status, 429);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bucket never refilled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads frames until the server closes; returns the `Error` and `Close` frames.
async fn errors_and_close(raw: &mut Raw) -> Vec<Frame> {
    let mut seen = Vec::new();
    while let Some(frame) = raw.recv().await {
        if matches!(frame, Frame::Error { .. } | Frame::Close { .. }) {
            seen.push(frame);
        }
    }
    seen
}

async fn rate_limited_session(
    transport: Transport,
    limit: RateLimit,
    flood: &[Frame],
) -> Vec<Frame> {
    let (disconnects, mut seen) = Disconnects::new();
    let server = serve(
        Volley::builder()
            .rate_limit(limit)
            .namespace("/", test_namespace(disconnects)),
    );
    let (mut raw, _) = Raw::open(&server.url, transport).await;
    raw.join("/").await;
    raw.send_all(flood).await;
    let frames = errors_and_close(&mut raw).await;
    let (ns, why) = tokio::time::timeout(WAIT, seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ns.as_str(), why), ("/", DisconnectReason::RateLimited));
    frames
}

async fn too_many_frames_end_the_session(transport: Transport) {
    // 1 frame/s, burst 5: the connect takes one, four pongs pass, the fifth is over.
    let limit = RateLimit {
        frames_per_sec: 1,
        frame_burst: 5,
        ..RateLimit::OFF
    };
    let flood = vec![Frame::Pong { last_seq: 0 }; 8];
    let frames = rate_limited_session(transport, limit, &flood).await;
    assert_eq!(
        frames,
        vec![
            Frame::Error {
                ns: String::new(),
                reason: "rate limited: more than 1 frames/s (burst 5)".into()
            },
            Frame::Close {
                reason: "rate limited".into()
            }
        ]
    );
}

async fn too_many_bytes_end_the_session(transport: Transport) {
    let limit = RateLimit {
        bytes_per_sec: 1000,
        byte_burst: 2000,
        ..RateLimit::OFF
    };
    // Events to an unknown handler: each answered with an error frame, until the
    // third (some 2,400 bytes in all) is over the byte burst.
    let event = Frame::Event {
        ns: "/".into(),
        name: "nothing".into(),
        payload: format!("\"{}\"", "x".repeat(800)).into_bytes().into(),
        ack: None,
    };
    let frames = rate_limited_session(transport, limit, &vec![event; 4]).await;
    let unknown = Frame::Error {
        ns: "/".into(),
        reason: "unknown event 'nothing'".into(),
    };
    assert_eq!(
        frames,
        vec![
            unknown.clone(),
            unknown,
            Frame::Error {
                ns: String::new(),
                reason: "rate limited: more than 1000 bytes/s (burst 2000)".into()
            },
            Frame::Close {
                reason: "rate limited".into()
            }
        ]
    );
}

over_transports!(
    too_many_frames_end_the_session,
    too_many_bytes_end_the_session
);

#[test]
fn the_defaults_are_on() {
    let config = volley::Config::default();
    assert_eq!(config.max_connections, 20_000);
    assert_eq!(config.max_connections_per_ip, 1_000);
    assert_eq!(config.connect_rate_per_ip, ConnectRate::default());
    assert_eq!(
        (
            config.connect_rate_per_ip.per_sec,
            config.connect_rate_per_ip.burst
        ),
        (100, 1_000)
    );
    assert!(config.trusted_proxies.is_empty());
    assert_eq!(config.rate_limit, RateLimit::default());
    assert_eq!(config.rate_limit.frames_per_sec, 200);
    assert_eq!(config.rate_limit.bytes_per_sec, 1024 * 1024);
}
