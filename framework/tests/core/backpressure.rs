//! Back-pressure: every queue between a broadcast and a socket is bounded, and a peer
//! that stops reading is dropped after the write timeout (its session may resume).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::mpsc;
use volley::client::Transport;
use volley::protocol::{self, Frame, Open, PROTOCOL_VERSION};
use volley::{
    DisconnectReason, EmitError, Namespace, Socket, SocketEvent, SocketEventKind, Volley,
};

use crate::common::*;

/// Forwards what happens to watched sockets to the test.
struct Watcher(mpsc::UnboundedSender<SocketEventKind>);

impl Actor for Watcher {
    type Context = Context<Self>;
}

impl Handler<SocketEvent> for Watcher {
    type Result = ();

    fn handle(&mut self, msg: SocketEvent, _: &mut Context<Self>) {
        let _ = self.0.send(msg.kind);
    }
}

/// A namespace whose sockets are watched by a [`Watcher`] from the moment they join.
fn watched() -> (Namespace, mpsc::UnboundedReceiver<SocketEventKind>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let watcher = Watcher(tx).start().recipient();
    let ns = Namespace::new().on_connect(move |socket| socket.watch(watcher.clone()));
    (ns, rx)
}

async fn next_kind(rx: &mut mpsc::UnboundedReceiver<SocketEventKind>) -> SocketEventKind {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("timed out waiting for a socket event")
        .expect("watcher gone")
}

/// A WebSocket client on a plain blocking socket with a tiny receive buffer, written
/// by hand so that it can simply stop reading.
struct StalledPeer {
    stream: TcpStream,
}

impl StalledPeer {
    /// Connects, completes the WebSocket handshake, opens a session and joins `ns`.
    fn open_in(url: &str, ns: &str) -> (StalledPeer, Open) {
        let authority = url.trim_start_matches("ws://").split('/').next().unwrap();
        let addr: SocketAddr = authority.parse().unwrap();
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        // A small window: the server's bytes pile up in its own kernel at once.
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&addr.into()).unwrap();
        let mut stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        write!(
            stream,
            "GET /volley HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "handshake refused");
        let mut peer = StalledPeer { stream };
        peer.send(&Frame::Hello {
            version: PROTOCOL_VERSION,
            max_frame_size: None,
        });
        let Frame::Open(open) = peer.recv() else {
            panic!("expected open");
        };
        peer.send(&Frame::Connect {
            ns: ns.into(),
            auth: Default::default(),
        });
        assert_eq!(peer.recv(), Frame::Connected { ns: ns.into() });
        (peer, open)
    }

    /// Writes one binary message, masked with the all-zero key (allowed, and it leaves
    /// the payload as it is).
    fn send(&mut self, frame: &Frame) {
        let payload = protocol::encode(frame);
        let mut out = vec![0x82];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&payload);
        self.stream.write_all(&out).unwrap();
    }

    /// Reads the next binary message (the server does not mask).
    fn recv(&mut self) -> Frame {
        loop {
            let mut head = [0u8; 2];
            self.stream.read_exact(&mut head).unwrap();
            let len = match head[1] & 0x7f {
                126 => {
                    let mut ext = [0u8; 2];
                    self.stream.read_exact(&mut ext).unwrap();
                    u16::from_be_bytes(ext) as usize
                }
                127 => {
                    let mut ext = [0u8; 8];
                    self.stream.read_exact(&mut ext).unwrap();
                    u64::from_be_bytes(ext) as usize
                }
                n => n as usize,
            };
            let mut payload = vec![0u8; len];
            self.stream.read_exact(&mut payload).unwrap();
            if head[0] & 0x0f == 2 {
                return protocol::decode(&payload).unwrap();
            }
        }
    }
}

#[actix_rt::test]
async fn a_peer_that_stops_reading_is_dropped_after_the_write_timeout_and_may_resume() {
    const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
    let (stall, mut events) = watched();
    let (disconnects, _) = Disconnects::new();
    let server = serve(
        Volley::builder()
            // The heartbeat must not be what finds the peer.
            .heartbeat(Duration::from_secs(60), Duration::from_secs(60))
            .write_timeout(WRITE_TIMEOUT)
            // Room for everything below: the write timeout, not a limit, drops it.
            .max_send_backlog(64 << 20)
            .max_outbox(1_000_000, 1 << 30)
            .namespace("/", test_namespace(disconnects))
            .namespace("/stall", stall),
    );
    let healthy = connect(&server, Transport::WebSocket).await;
    let healthy_ns = healthy.join("/", &()).await.unwrap();

    let (peer, open) = StalledPeer::open_in(&server.url, "/stall");
    // The peer reads nothing from here on, while the server sends it 2 MiB.
    const BLOBS: u64 = 256;
    let stall_ns = server.volley.of("/stall").unwrap();
    let blob = "x".repeat(8 * 1024);
    for _ in 0..BLOBS {
        stall_ns.emit("blob", &blob).unwrap();
    }
    stall_ns.stats().await;
    let stalled_at = Instant::now();

    assert_eq!(next_kind(&mut events).await, SocketEventKind::Detached);
    let after = stalled_at.elapsed();
    println!("stalled peer dropped after {after:?} (write timeout {WRITE_TIMEOUT:?})");
    assert!(
        after < WRITE_TIMEOUT + Duration::from_secs(4),
        "dropped only after {after:?}"
    );

    // Everyone else carried on.
    let v: String = healthy_ns
        .emit_with_ack("echo", &"alive", WAIT)
        .await
        .unwrap();
    assert_eq!(v, "alive");

    // A new connection resumes the session and gets every blob (the client had
    // processed `Connected`, reliable frame 1).
    let mut raw = RawClient::resume(&server.url, &open, 1).await;
    assert_eq!(
        raw.recv().await,
        Some(Frame::Resumed {
            last_seq: 1,
            replay: BLOBS
        })
    );
    assert_eq!(next_kind(&mut events).await, SocketEventKind::Resumed);
    drop(peer);
}

#[actix_rt::test]
async fn a_peer_that_pauses_reading_gets_every_frame_in_order_once_it_reads_again() {
    let server = serve(
        Volley::builder()
            .heartbeat(Duration::from_secs(60), Duration::from_secs(60))
            .max_send_backlog(64 << 20)
            .max_outbox(1_000_000, 1 << 30)
            .namespace("/pause", Namespace::new()),
    );
    // The peer blocks on its socket: off the thread that runs the server's future.
    let url = server.url.clone();
    let (mut peer, _) = tokio::task::spawn_blocking(move || StalledPeer::open_in(&url, "/pause"))
        .await
        .unwrap();
    // 4 MiB while the peer reads nothing: its 4 KiB window fills at once, the
    // server's socket refuses the rest, and what it refused waits in the connection's
    // queue for its writer.
    const BLOBS: u64 = 512;
    let ns = server.volley.of("/pause").unwrap();
    let blob = "x".repeat(8 * 1024);
    for n in 0..BLOBS {
        ns.emit("blob", &(n, &blob)).unwrap();
    }
    ns.stats().await;
    // Then it reads: every blob, once, in order.
    let read = tokio::task::spawn_blocking(move || {
        for n in 0..BLOBS {
            let Frame::Event { name, payload, .. } = peer.recv() else {
                panic!("expected blob {n}");
            };
            assert_eq!(name, "blob");
            let (got, text): (u64, String) = serde_json::from_slice(&payload).unwrap();
            assert_eq!((got, text.len()), (n, 8 * 1024));
        }
    });
    read.await.unwrap();
}

/// A namespace with the usual handlers plus `block`, which hands out its socket and
/// then holds its session's thread until the test releases it: the simplest slow
/// session.
fn with_block(
    disconnects: Disconnects,
) -> (
    Namespace,
    mpsc::UnboundedReceiver<Socket>,
    std::sync::mpsc::Sender<()>,
) {
    let (blocked_tx, blocked) = mpsc::unbounded_channel();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let ns = test_namespace(disconnects).on("block", move |socket, ()| {
        let _ = blocked_tx.send(socket.clone());
        // Bounded, so that a failing test cannot hang the server.
        let _ = release_rx.lock().unwrap().recv_timeout(WAIT);
    });
    (ns, blocked, release)
}

#[actix_rt::test]
async fn a_session_whose_mailbox_fills_ends_as_slow_consumer_and_others_carry_on() {
    const MAILBOX: usize = 32;
    let (disconnects, mut seen) = Disconnects::new();
    let (slow_ns, mut blocked, release) = with_block(disconnects.clone());
    let server = serve(
        Volley::builder()
            .max_mailbox(MAILBOX)
            .namespace("/", test_namespace(disconnects))
            .namespace("/slow", slow_ns),
    );
    let healthy = connect(&server, Transport::WebSocket).await;
    let healthy_ns = healthy.join("/", &()).await.unwrap();

    let (mut raw, _) = RawClient::open_in(&server.url, "/slow").await;
    raw.send(&Frame::Event {
        ns: "/slow".into(),
        name: "block".into(),
        payload: b"null".to_vec().into(),
        ack: None,
    })
    .await;
    let socket = tokio::time::timeout(WAIT, blocked.recv())
        .await
        .unwrap()
        .unwrap();

    // While its session is stuck, broadcasts wait for its thread: one message per
    // thread each, holding its place in the namespace's gauge, so past `max_mailbox`
    // the namespace refuses more (nothing is lost on the way)...
    let slow = server.volley.of("/slow").unwrap();
    for i in 0..MAILBOX {
        slow.emit("blob", &i).unwrap();
    }
    assert!(matches!(
        slow.emit("blob", &MAILBOX),
        Err(EmitError::Busy(MAILBOX))
    ));
    // ...and three times its mailbox is sent to the socket itself: past its mailbox,
    // the session is a slow consumer.
    for i in 0..3 * MAILBOX {
        let _ = socket.emit("blob", &i);
    }
    release.send(()).unwrap();

    assert_eq!(raw.close_reason().await.as_deref(), Some("slow consumer"));
    let (ns, why) = tokio::time::timeout(WAIT, seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ns.as_str(), why),
        ("/slow", DisconnectReason::SlowConsumer)
    );

    // The server and the other client carry on.
    let v: String = healthy_ns
        .emit_with_ack("echo", &"alive", WAIT)
        .await
        .unwrap();
    assert_eq!(v, "alive");
    assert!(!healthy.is_closed());
}

#[actix_rt::test]
async fn frames_that_come_faster_than_the_session_takes_them_close_it_with_a_reason() {
    const MAILBOX: usize = 8;
    let (disconnects, _) = Disconnects::new();
    let server = serve(
        Volley::builder()
            .max_mailbox(MAILBOX)
            .namespace("/", test_namespace(disconnects)),
    );
    let hello = Frame::Hello {
        version: PROTOCOL_VERSION,
        max_frame_size: None,
    };
    let mut poller = RawPoller::connect(&server.url, &hello).await;
    assert!(matches!(poller.recv().await, Ok(Frame::Open(_))));

    // One batch is handed to the session at once: more frames than its mailbox holds.
    let shout = Frame::Event {
        ns: "/".into(),
        name: "shout".into(),
        payload: b"\"hey\"".to_vec().into(),
        ack: None,
    };
    let mut batch = vec![Frame::Connect {
        ns: "/".into(),
        auth: Default::default(),
    }];
    batch.extend(std::iter::repeat_n(shout, 2 * MAILBOX));
    let reason = "too many frames waiting for the server (limit 8): send less at once";
    assert_eq!(poller.send_batch(&batch).await, Err(reason.to_owned()));
    assert_eq!(
        poller.recv().await,
        Ok(Frame::Close {
            reason: reason.to_owned()
        })
    );

    // A batch the mailbox holds goes through on a new session.
    let mut poller = RawPoller::connect(&server.url, &hello).await;
    assert!(matches!(poller.recv().await, Ok(Frame::Open(_))));
    poller.send_batch(&batch[..MAILBOX]).await.unwrap();
    assert_eq!(poller.recv().await, Ok(Frame::Connected { ns: "/".into() }));
}

#[actix_rt::test]
async fn a_namespace_refuses_broadcasts_past_its_mailbox_and_takes_them_again_once_caught_up() {
    const MAILBOX: usize = 1;
    let server = serve(
        Volley::builder()
            .max_mailbox(MAILBOX)
            .namespace("/", Namespace::new()),
    );
    let root = server.volley.of("/").unwrap();

    // As fast as the test can: each broadcast is sent or refused as `Busy`, never
    // queued beyond the one place.
    let mut refused = 0;
    for i in 0..1000 {
        match root.emit("tick", &i) {
            Ok(()) => {}
            Err(volley::EmitError::Busy(limit)) => {
                assert_eq!(limit, MAILBOX);
                refused += 1;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    println!("{refused} of 1000 broadcasts refused with a mailbox of {MAILBOX}");
    assert!(refused < 1000, "the first broadcast had a place");

    // Once the namespace has fanned out what it took, the place is free again: the
    // count never drifts.
    root.stats().await;
    root.emit("tick", &"again").unwrap();
}
