//! Bad input and slow readers: a clear error or close, and everyone else keeps going.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};

use volley::client::Client;
use volley::protocol::Frame;
use volley::{DisconnectReason, Volley};

use volley::client::Transport;

use crate::common::*;

const MAX_FRAME: usize = 4 * 1024;

fn server(
    backlog: usize,
) -> (
    TestServer,
    tokio::sync::mpsc::UnboundedReceiver<(String, DisconnectReason)>,
) {
    server_on(serve, backlog)
}

fn server_on(
    start: fn(volley::VolleyBuilder) -> TestServer,
    backlog: usize,
) -> (
    TestServer,
    tokio::sync::mpsc::UnboundedReceiver<(String, DisconnectReason)>,
) {
    let (disconnects, seen) = Disconnects::new();
    let server = start(
        Volley::builder()
            .max_frame_size(MAX_FRAME)
            .max_send_backlog(backlog)
            // Large enough that the send backlog, not the outbox, is what a reader
            // that never reads runs into first.
            .max_outbox(1_000_000, 1 << 30)
            .namespace("/", test_namespace(disconnects.clone()))
            .namespace("/other", test_namespace(disconnects)),
    );
    (server, seen)
}

async fn still_works(client: &Client) {
    let ns = client.join("/other", &()).await;
    let ns = match ns {
        Ok(ns) => ns,
        Err(volley::client::ClientError::Refused(_)) => return, // already joined: fine
        Err(e) => panic!("healthy client broken: {e}"),
    };
    let v: String = ns.emit_with_ack("echo", &"alive", WAIT).await.unwrap();
    assert_eq!(v, "alive");
    ns.leave().unwrap();
}

#[actix_rt::test]
async fn bad_input_is_refused_clearly_and_others_keep_working() {
    let (server, _) = server(4 * 1024 * 1024);
    let healthy = connect(&server, Transport::WebSocket).await;
    still_works(&healthy).await;

    // Malformed bytes: an event frame cut short.
    let (mut raw, _) = RawClient::open(&server.url).await;
    raw.send_bytes(vec![9, 5, b'/']).await;
    let reason = raw.close_reason().await.unwrap();
    assert!(reason.starts_with("malformed frame"), "{reason}");
    still_works(&healthy).await;

    // An unknown frame tag.
    let (mut raw, _) = RawClient::open(&server.url).await;
    raw.send_bytes(vec![200, 1, 2, 3]).await;
    assert_eq!(raw.close_reason().await.unwrap(), "unknown frame tag 200");
    still_works(&healthy).await;

    // A frame over the size limit.
    let (mut raw, _) = RawClient::open(&server.url).await;
    raw.send_bytes(vec![0; MAX_FRAME + 1]).await;
    assert_eq!(
        raw.close_reason().await.unwrap(),
        format!("frame too large (limit {MAX_FRAME} bytes)")
    );
    still_works(&healthy).await;

    // Garbage before the handshake.
    let mut raw = RawClient::connect(&server.url).await;
    raw.send_bytes(vec![0xff, 0xff]).await;
    assert!(raw
        .close_reason()
        .await
        .unwrap()
        .starts_with("unknown frame tag"));

    // A frame a client must not send.
    let (mut raw, _) = RawClient::open(&server.url).await;
    raw.send(&Frame::Ping).await;
    assert_eq!(
        raw.close_reason().await.unwrap(),
        "protocol error: unexpected 'ping' frame from a client"
    );

    // An event to a namespace not joined: an error frame, and the session lives on.
    let (mut raw, _) = RawClient::open(&server.url).await;
    raw.send(&Frame::Event {
        ns: "/other".into(),
        name: "echo".into(),
        payload: b"1".to_vec().into(),
        ack: Some(1),
    })
    .await;
    assert_eq!(
        raw.recv().await,
        Some(Frame::Error {
            ns: "/other".into(),
            reason: "namespace '/other' not joined: connect to it first".into()
        })
    );
    // Unknown event and wrong payload type in a joined namespace: errors too.
    raw.send(&Frame::Connect {
        ns: "/".into(),
        auth: Default::default(),
    })
    .await;
    assert_eq!(raw.recv().await, Some(Frame::Connected { ns: "/".into() }));
    raw.send(&Frame::Event {
        ns: "/".into(),
        name: "nope".into(),
        payload: b"1".to_vec().into(),
        ack: None,
    })
    .await;
    assert_eq!(
        raw.recv().await,
        Some(Frame::Error {
            ns: "/".into(),
            reason: "unknown event 'nope'".into()
        })
    );
    raw.send(&Frame::Event {
        ns: "/".into(),
        name: "join".into(),
        payload: b"42".to_vec().into(),
        ack: Some(2),
    })
    .await;
    match raw.recv().await {
        Some(Frame::Error { ns, reason }) => {
            assert_eq!(ns, "/");
            assert!(
                reason.starts_with("event 'join': payload does not match"),
                "{reason}"
            );
        }
        other => panic!("expected an error frame, got {other:?}"),
    }
    raw.send(&Frame::Event {
        ns: "/".into(),
        name: "echo".into(),
        payload: b"\"ok\"".to_vec().into(),
        ack: Some(3),
    })
    .await;
    assert_eq!(
        raw.recv().await,
        Some(Frame::Ack {
            ns: "/".into(),
            id: 3,
            payload: b"\"ok\"".to_vec().into()
        })
    );
    still_works(&healthy).await;
    assert!(!healthy.is_closed());
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A client of namespace "/" that stops reading once it has joined.
enum SlowReader {
    Native,
    SocketIo,
}

impl SlowReader {
    /// Connects and joins "/"; what is returned keeps the connection open, unread.
    async fn open(&self, server: &TestServer) -> Box<dyn std::any::Any> {
        match self {
            SlowReader::Native => Box::new(RawClient::open_in(&server.url, "/").await.0),
            SlowReader::SocketIo => {
                let url = server
                    .url
                    .replace("/volley", "/socket.io/?EIO=4&transport=websocket");
                let (_, mut ws) = awc::Client::new().ws(url).connect().await.unwrap();
                assert!(eio_record(&mut ws).await.starts_with("0{"), "the open");
                ws.send(awc::ws::Message::Text("40".into())).await.unwrap();
                assert!(eio_record(&mut ws).await.starts_with("40{"), "joined \"/\"");
                Box::new(ws)
            }
        }
    }
}

/// The next Engine.IO record (a WebSocket text frame) the server sent.
async fn eio_record(ws: &mut actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>) -> String {
    match tokio::time::timeout(WAIT, ws.next()).await {
        Ok(Some(Ok(awc::ws::Frame::Text(t)))) => String::from_utf8_lossy(&t).into_owned(),
        other => panic!("expected an Engine.IO record, got {other:?}"),
    }
}

#[actix_rt::test]
async fn a_reader_that_never_reads_is_closed_as_slow_consumer_with_bounded_memory() {
    never_reading(serve, SlowReader::Native).await;
}

#[actix_rt::test]
async fn a_socketio_reader_that_never_reads_is_closed_as_slow_consumer() {
    never_reading(serve, SlowReader::SocketIo).await;
}

#[actix_rt::test]
async fn a_socketio_reader_that_never_reads_is_closed_under_actix_webs_own_server() {
    never_reading(serve_in_actix_web, SlowReader::SocketIo).await;
}

/// A reader that never reads (native or Socket.IO, on `start`'s server) is closed as a
/// slow consumer once its send backlog is full, and what is broadcast after does not
/// pile up for it.
async fn never_reading(start: fn(volley::VolleyBuilder) -> TestServer, slow: SlowReader) {
    // The RSS measured is the test process's: one of these runs at a time.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    const BACKLOG: usize = 256 * 1024;
    let (server, mut seen) = server_on(start, BACKLOG);
    let healthy = connect(&server, Transport::WebSocket).await;

    // The slow client joins "/" and then never reads again.
    let raw = slow.open(&server).await;

    let root = server.volley.of("/").unwrap();
    let blob = "x".repeat(16 * 1024);
    let before = rss_kib();
    let mut sent_bytes = 0usize;
    let mut reason = None;
    // Bounded: 16 KiB × 20,000 = 320 MiB at most, far beyond any socket buffer.
    for round in 0..20_000 {
        root.emit("blob", &blob).unwrap();
        sent_bytes += blob.len();
        if round % 64 == 63 {
            // A round trip through the namespace actor: every emit so far is fanned out.
            root.stats().await;
            if let Ok(r) = seen.try_recv() {
                reason = Some(r);
                break;
            }
        }
    }
    let (ns, why) = match reason {
        Some(r) => r,
        None => tokio::time::timeout(WAIT, seen.recv())
            .await
            .unwrap()
            .unwrap(),
    };
    assert_eq!((ns.as_str(), why), ("/", DisconnectReason::SlowConsumer));
    println!(
        "slow consumer closed after {} KiB were broadcast",
        sent_bytes / 1024
    );

    // Keep broadcasting after the close: nothing accumulates for the dead session.
    for _ in 0..2_000 {
        root.emit("blob", &blob).unwrap();
    }
    root.stats().await;
    let after = rss_kib();
    let growth_mib = after.saturating_sub(before) / 1024;
    println!(
        "server process RSS grew by {growth_mib} MiB (backlog limit {} KiB)",
        BACKLOG / 1024
    );
    // 2,000 more blobs are 32 MiB: had they queued for the slow reader, RSS would grow
    // past that. Allow the allocator's slack, not the stream.
    assert!(growth_mib < 24, "RSS grew by {growth_mib} MiB");

    still_works(&healthy).await;
    drop(raw);
    let _ = Duration::ZERO;
}
