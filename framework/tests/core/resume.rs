//! Session resumption: exactly-once delivery across cuts, expiry, failed resumes,
//! the back-off schedule, and the outbox limit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use volley::client::{Backoff, Client, ClientConfig, ConnectionEvent, NamespaceClient, Transport};
use volley::protocol::{Frame, Open};
use volley::{DisconnectReason, Namespace, SessionId, Socket, TransportKind, Volley};

use crate::common::*;
use crate::proxy::{Cuts, FaultProxy};

pub(crate) const EVENTS: u64 = 1_000;

pub(crate) fn quick_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(5),
        max: Duration::from_millis(50),
        ..Backoff::default()
    }
}

/// A client that reconnects quickly and buffers enough for a counted run's cuts.
pub(crate) fn counting_config(transport: Transport) -> ClientConfig {
    ClientConfig {
        transport,
        backoff: quick_backoff(),
        send_buffer: 4096,
        event_buffer: 4096,
        ..ClientConfig::default()
    }
}

/// The next session end the test namespace's disconnect hook saw: its namespace
/// and reason.
async fn ended(
    seen: &mut mpsc::UnboundedReceiver<(String, DisconnectReason)>,
) -> (String, DisconnectReason) {
    tokio::time::timeout(WAIT, seen.recv())
        .await
        .expect("no session ended in time")
        .expect("the hook's channel closed")
}

pub(crate) fn server_addr(server: &TestServer) -> std::net::SocketAddr {
    server
        .url
        .trim_start_matches("ws://")
        .trim_end_matches("/volley")
        .parse()
        .expect("server address")
}

/// A namespace that reports every `c2s` number it receives, and on `start` sends
/// `EVENTS` numbered `s2c` events followed by `done`.
pub(crate) fn counting_namespace(received: mpsc::UnboundedSender<u64>) -> Namespace {
    let received = Arc::new(Mutex::new(received));
    Namespace::new()
        .on("c2s", move |_, (n, _pad): (u64, String)| {
            let _ = received.lock().unwrap().send(n);
        })
        .on("start", |socket: &Socket, _: ()| {
            for n in 0..EVENTS {
                socket.emit("s2c", &(n, "padding-padding-padding")).unwrap();
            }
            socket.emit("done", &()).unwrap();
        })
        .on_ack("echo", |_, v: serde_json::Value, ack| {
            let _ = ack.send(&v);
        })
}

/// Reads what the counting namespace sends after `start`: every `s2c` number once, in
/// order, then `done`. `patience` bounds the wait for each event.
pub(crate) async fn every_event_in_order(ns: &mut NamespaceClient, patience: Duration) {
    let mut next = 0u64;
    loop {
        let event = tokio::time::timeout(patience, ns.next_event())
            .await
            .expect("events keep coming")
            .expect("namespace open");
        match event.name.as_str() {
            "s2c" => {
                let (n, _): (u64, String) = event.decode().unwrap();
                assert_eq!(n, next, "server → client out of order or duplicated");
                next += 1;
            }
            "done" => break,
            other => panic!("unexpected event {other}"),
        }
    }
    assert_eq!(next, EVENTS);
}

async fn every_event_arrives_exactly_once_and_in_order_across_random_cuts(transport: Transport) {
    let (tx, mut received) = mpsc::unbounded_channel();
    let server = serve(
        Volley::builder()
            .heartbeat(Duration::from_secs(2), Duration::from_secs(2))
            .namespace("/", counting_namespace(tx)),
    );
    let proxy = FaultProxy::start(
        server_addr(&server),
        Cuts::Random {
            min: 400,
            max: 4_000,
            max_cuts: 300,
        },
        0x5eed,
    )
    .await;
    exactly_once_through(&proxy, transport, &mut received).await;
}

/// Runs the counting namespace's exchange through `proxy`, whose cuts the client
/// must resume across: `EVENTS` events each way, every one exactly once and in order.
/// `received` gets what the server's namespace took.
pub(crate) async fn exactly_once_through(
    proxy: &FaultProxy,
    transport: Transport,
    received: &mut mpsc::UnboundedReceiver<u64>,
) {
    let config = counting_config(transport);
    // The first connection may itself be cut during the handshake: retry it.
    let client = loop {
        if let Ok(client) = Client::connect_with(&proxy.url(), config.clone()).await {
            break client;
        }
    };
    let mut ns = client.join("/", &()).await.expect("join through the proxy");

    ns.emit("start", &()).unwrap();
    for n in 0..EVENTS {
        ns.emit("c2s", &(n, "padding-padding-padding")).unwrap();
    }

    every_event_in_order(&mut ns, Duration::from_secs(60)).await;

    // Client → server: every number once, in order; the echo round trip proves
    // nothing else is queued behind them.
    for expected in 0..EVENTS {
        let n = tokio::time::timeout(Duration::from_secs(60), received.recv())
            .await
            .expect("client events keep arriving")
            .unwrap();
        assert_eq!(n, expected, "client → server out of order or duplicated");
    }
    let echoed: u32 = ns
        .emit_with_ack("echo", &1, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(echoed, 1);
    assert!(
        received.try_recv().is_err(),
        "a duplicate arrived after the last event"
    );

    let cuts = proxy.cuts();
    let (mut attempts, mut resumed) = (0, 0);
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(1), client.next_connection_event()).await
    {
        match event {
            ConnectionEvent::Reconnecting { .. } => attempts += 1,
            ConnectionEvent::Reconnected { resumed: true, .. } => resumed += 1,
            // An attempt that met the next cut: the one after it resumes.
            ConnectionEvent::ReconnectFailed { .. } => {}
            other => panic!("the session must survive every cut, got {other:?}"),
        }
    }
    println!(
        "{EVENTS} events each way over {cuts} cuts: {attempts} reconnection attempts, {resumed} resumptions (first 256 events)"
    );
    assert!(
        cuts >= 20,
        "only {cuts} cuts: the test did not exercise enough faults"
    );
}

/// A long-poll answer cut at a frame boundary splits into whole frames; only its
/// `Content-Length` says frames are missing. Taken for the whole answer, it made the
/// client skip the rest of the batch (already off the server's queue) and count every
/// later frame with the wrong number: `left: 256, right: 42` under load.
#[actix_rt::test]
async fn a_poll_answer_cut_between_two_frames_is_resumed_not_taken_as_complete() {
    let (tx, _received) = mpsc::unbounded_channel();
    let server = serve(Volley::builder().namespace("/", counting_namespace(tx)));
    let proxy = FaultProxy::start(server_addr(&server), Cuts::MidBatch, 1).await;
    let config = ClientConfig {
        transport: Transport::Polling,
        backoff: quick_backoff(),
        event_buffer: 4096,
        ..ClientConfig::default()
    };
    let client = Client::connect_with(&proxy.url(), config).await.unwrap();
    let mut ns = client.join("/", &()).await.unwrap();
    ns.emit("start", &()).unwrap();

    every_event_in_order(&mut ns, WAIT).await;
    assert_eq!(proxy.cuts(), 1, "the proxy cut one answer in the middle");
    loop {
        match tokio::time::timeout(WAIT, client.next_connection_event()).await {
            Ok(Some(
                ConnectionEvent::Reconnecting { .. } | ConnectionEvent::ReconnectFailed { .. },
            )) => {}
            Ok(Some(ConnectionEvent::Reconnected { resumed, .. })) => {
                assert!(resumed, "the session carries on");
                break;
            }
            other => panic!("expected a resumption, got {other:?}"),
        }
    }
}

/// A raw client in namespace `/` and its room `lobby`.
async fn in_the_lobby(server: &TestServer) -> RawClient {
    let (mut raw, _) = RawClient::open_in(&server.url, "/").await;
    raw.send(&Frame::Event {
        ns: "/".into(),
        name: "join".into(),
        payload: b"\"lobby\"".to_vec().into(),
        ack: Some(1),
    })
    .await;
    assert!(matches!(raw.recv().await, Some(Frame::Ack { id: 1, .. })));
    raw
}

/// The registry shows the kind of connection a session is on, and none while it is
/// detached: `SessionInfo::transport` follows drop and resume.
async fn sessions_list_their_transport_and_none_while_detached(transport: Transport) {
    let (disconnects, _) = Disconnects::new();
    let server = serve(Volley::builder().namespace("/", test_namespace(disconnects)));
    let kind = match transport {
        Transport::Polling => TransportKind::Polling,
        _ => TransportKind::WebSocket,
    };
    let transport_of = |sid: u64| {
        let volley = server.volley.clone();
        async move {
            let sessions = volley.sessions().await;
            sessions.iter().find(|s| s.id.0 == sid).map(|s| s.transport)
        }
    };
    let (mut raw, open) = Raw::open(&server.url, transport).await;
    assert_eq!(transport_of(open.sid).await, Some(Some(kind)));
    let listed = server.volley.sessions().await;
    assert!(
        listed.iter().all(|s| s.rtt.is_none()),
        "no pong yet: {listed:?}"
    );

    assert!(server.volley.drop_connection(SessionId(open.sid)).await);
    raw.dropped_reason().await;
    // The session detaches when its transport reports the close: bounded wait.
    let deadline = tokio::time::Instant::now() + WAIT;
    while transport_of(open.sid).await != Some(None) {
        assert!(tokio::time::Instant::now() < deadline, "still attached");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let resume = Frame::Resume {
        sid: open.sid,
        token: open.token,
        last_seq: 0,
        max_frame_size: None,
    };
    let mut again = Raw::start(&server.url, transport, &resume).await;
    assert!(matches!(again.recv().await, Some(Frame::Resumed { .. })));
    assert_eq!(transport_of(open.sid).await, Some(Some(kind)));
}

#[actix_rt::test]
async fn a_client_that_never_comes_back_expires_and_leaves_its_rooms() {
    let (disconnects, mut seen) = Disconnects::new();
    let server = serve(
        Volley::builder()
            .resume_grace(Duration::from_millis(300))
            .namespace("/", test_namespace(disconnects)),
    );
    let raw = in_the_lobby(&server).await;
    let root = server.volley.of("/").unwrap();
    assert_eq!(root.stats().await.rooms, 1);

    drop(raw); // the connection goes away without a goodbye
    let (ns, why) = ended(&mut seen).await;
    assert_eq!(ns, "/");
    assert_eq!(
        why,
        DisconnectReason::Expired(Box::new(DisconnectReason::TransportClosed))
    );
    assert_eq!(why.to_string(), "session expired (transport closed)");
    let stats = root.stats().await;
    assert_eq!((stats.sockets, stats.rooms), (0, 0));
    assert!(server.volley.sessions().await.is_empty());
    assert_eq!(server.volley.local_session_count().await, 0);
}

/// A client of `server` (for `forwarded`, if given: see
/// [`RawClient::connect_for`]) opens a session, joins `/` and goes without a
/// goodbye; returns once its session waits to resume.
async fn vanish(server: &TestServer, forwarded: Option<&str>) -> Open {
    let (mut raw, open) = RawClient::open_for(&server.url, forwarded).await;
    raw.join("/").await;
    drop(raw); // no goodbye
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let sessions = server.volley.sessions().await;
        if sessions
            .iter()
            .any(|s| s.id.0 == open.sid && s.transport.is_none())
        {
            return open;
        }
        assert!(tokio::time::Instant::now() < deadline, "never detached");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `gone` is evicted: its disconnect says why, its resume is refused and the
/// registry has forgotten it.
async fn assert_evicted(
    server: &TestServer,
    seen: &mut mpsc::UnboundedReceiver<(String, DisconnectReason)>,
    gone: &Open,
) {
    let (ns, why) = ended(seen).await;
    assert_eq!(ns, "/");
    assert_eq!(
        why,
        DisconnectReason::Evicted(Box::new(DisconnectReason::TransportClosed))
    );
    assert_eq!(
        why.to_string(),
        "session evicted (transport closed): too many sessions waiting to resume"
    );
    let mut late = RawClient::resume(&server.url, gone, 0).await;
    assert_eq!(
        late.recv().await,
        Some(Frame::ResumeFailed {
            reason: "unknown or expired session".into()
        })
    );
    let sessions = server.volley.sessions().await;
    assert!(sessions.iter().all(|s| s.id.0 != gone.sid), "{sessions:?}");
}

/// Each of `opens` resumes.
async fn assert_resume(server: &TestServer, opens: &[&Open]) {
    for open in opens {
        let mut again = RawClient::resume(&server.url, open, 0).await;
        assert!(matches!(again.recv().await, Some(Frame::Resumed { .. })));
    }
}

#[actix_rt::test]
async fn past_the_limit_of_waiting_sessions_the_one_detached_longest_is_evicted() {
    let (disconnects, mut seen) = Disconnects::new();
    let server = serve(
        Volley::builder()
            .resume_grace(Duration::from_secs(60))
            .max_detached_sessions(2)
            .namespace("/", test_namespace(disconnects)),
    );
    // Two clients vanish, one after the other: both wait to resume.
    let first = vanish(&server, None).await;
    let second = vanish(&server, None).await;
    assert!(seen.try_recv().is_err(), "nobody ends while two wait");

    // A third: the first to go ends now, 60 s before its grace window would.
    let third = vanish(&server, None).await;
    assert_evicted(&server, &mut seen, &first).await;
    // The two that went later resume.
    assert_resume(&server, &[&second, &third]).await;
}

/// One client address gets as many of the waiting sessions as it may hold
/// connections (`max_connections_per_ip`): past that its own session detached
/// longest goes, not another address's, and what it sheds does not count against
/// the server's limit either.
#[actix_rt::test]
async fn a_client_address_past_its_share_of_waiting_sessions_evicts_its_own() {
    let (disconnects, mut seen) = Disconnects::new();
    let server = serve(
        Volley::builder()
            .resume_grace(Duration::from_secs(60))
            .max_detached_sessions(3)
            .max_connections(100, 2)
            .trusted_proxies(&["127.0.0.1".parse().unwrap()])
            .namespace("/", test_namespace(disconnects)),
    );
    let (one, other) = (Some("198.51.100.1"), Some("198.51.100.2"));
    let others = vanish(&server, other).await;
    let first = vanish(&server, one).await;
    let second = vanish(&server, one).await;
    assert!(seen.try_recv().is_err(), "an address's share is two");

    // Five in all from one address, the server's limit three: each one past two
    // ends that address's oldest, and the other address's session stays.
    let mut mine = vec![first, second];
    for _ in 0..3 {
        mine.push(vanish(&server, one).await);
    }
    for gone in &mine[..3] {
        assert_evicted(&server, &mut seen, gone).await;
    }
    assert_resume(&server, &[&others, &mine[3], &mine[4]]).await;
}

/// The disconnect hook holds the session's thread until the test has looked, so the
/// test sees exactly the state the hook runs in: the session already out of the
/// registry, the socket out of its namespace and rooms.
#[actix_rt::test]
async fn the_disconnect_hook_runs_once_the_session_is_unregistered() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let (looked, hold) = std::sync::mpsc::channel::<()>();
    let hold = Mutex::new(hold);
    let (disconnects, _) = Disconnects::new();
    // Replaces the test namespace's own hook.
    let namespace = test_namespace(disconnects).on_disconnect(move |_, reason| {
        let _ = seen_tx.send(reason.clone());
        // Bounded: a test that never looks does not hang the server.
        let _ = hold.lock().unwrap().recv_timeout(WAIT);
    });
    let server = serve(Volley::builder().namespace("/", namespace));
    let mut raw = in_the_lobby(&server).await;
    raw.send(&Frame::Close {
        reason: "bye".into(),
    })
    .await;

    let why = tokio::time::timeout(WAIT, seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(why, DisconnectReason::ClientLeft);
    // The hook is still running.
    let sessions = server.volley.sessions().await;
    let stats = server.volley.of("/").unwrap().stats().await;
    looked.send(()).unwrap();
    assert!(sessions.is_empty(), "still registered: {sessions:?}");
    assert_eq!((stats.sockets, stats.rooms), (0, 0));
}

#[actix_rt::test]
async fn resume_with_a_bad_token_or_after_expiry_says_why_and_allows_a_fresh_session() {
    let (disconnects, mut seen) = Disconnects::new();
    let server = serve(
        Volley::builder()
            .resume_grace(Duration::from_millis(300))
            .namespace("/", test_namespace(disconnects)),
    );
    let (raw, open) = RawClient::open_in(&server.url, "/").await;
    drop(raw);

    let mut wrong = open.token;
    wrong[0] ^= 1;
    let mut again = RawClient::connect(&server.url).await;
    again
        .send(&Frame::Resume {
            sid: open.sid,
            token: wrong,
            last_seq: 0,
            max_frame_size: None,
        })
        .await;
    assert_eq!(
        again.recv().await,
        Some(Frame::ResumeFailed {
            reason: "invalid resume token".into()
        })
    );
    // The same connection can start a fresh session.
    again
        .send(&Frame::Hello {
            version: 1,
            max_frame_size: None,
        })
        .await;
    assert!(matches!(again.recv().await, Some(Frame::Open(o)) if o.sid != open.sid));

    // After expiry, even the right token is refused.
    let (_, why) = ended(&mut seen).await;
    assert!(matches!(why, DisconnectReason::Expired(_)));
    let mut late = RawClient::resume(&server.url, &open, 0).await;
    assert_eq!(
        late.recv().await,
        Some(Frame::ResumeFailed {
            reason: "unknown or expired session".into()
        })
    );
}

async fn the_client_reports_a_lost_session_and_carries_on_in_a_fresh_one(transport: Transport) {
    let (disconnects, mut seen) = Disconnects::new();
    let server = serve(
        Volley::builder()
            .resume_grace(Duration::from_millis(200))
            // Polling has no connection to lose: the server notices a vanished
            // client by its silence, so keep the heartbeat short here.
            .heartbeat(Duration::from_millis(300), Duration::from_millis(1000))
            .namespace("/", test_namespace(disconnects)),
    );
    let proxy = FaultProxy::start(server_addr(&server), Cuts::Never, 1).await;
    let config = ClientConfig {
        transport,
        backoff: quick_backoff(),
        ..ClientConfig::default()
    };
    let client = Client::connect_with(&proxy.url(), config).await.unwrap();
    let ns = client.join("/", &()).await.unwrap();
    let first_sid = client.session_id();

    // Keep the client away until its session has expired on the server.
    proxy.refuse(true);
    proxy.cut_all();
    let (_, why) = ended(&mut seen).await;
    assert!(matches!(why, DisconnectReason::Expired(_)));
    proxy.refuse(false);

    let mut lost = None;
    loop {
        match tokio::time::timeout(WAIT, client.next_connection_event())
            .await
            .unwrap()
        {
            Some(ConnectionEvent::SessionLost { reason, .. }) => lost = Some(reason),
            Some(ConnectionEvent::Reconnected { resumed, .. }) => {
                assert!(!resumed);
                break;
            }
            Some(
                ConnectionEvent::Reconnecting { .. } | ConnectionEvent::ReconnectFailed { .. },
            ) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(lost.as_deref(), Some("unknown or expired session"));
    assert_ne!(client.session_id(), first_sid);
    // The namespace was rejoined by itself: the same handle works.
    let v: String = ns.emit_with_ack("echo", &"again", WAIT).await.unwrap();
    assert_eq!(v, "again");
}

#[actix_rt::test]
async fn the_reconnection_schedule_follows_the_configured_back_off() {
    let (disconnects, _) = Disconnects::new();
    let server = serve(Volley::builder().namespace("/", test_namespace(disconnects)));
    let proxy = FaultProxy::start(server_addr(&server), Cuts::Never, 1).await;
    let backoff = Backoff {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(60),
        factor: 2.0,
        jitter: 0.5,
        max_attempts: Some(5),
    };
    let config = ClientConfig {
        backoff: backoff.clone(),
        ..ClientConfig::default()
    };
    let client = Client::connect_with(&proxy.url(), config).await.unwrap();
    proxy.refuse(true);
    proxy.cut_all();

    let mut attempts = Vec::new();
    let mut failed = Vec::new();
    let closed = loop {
        match tokio::time::timeout(WAIT, client.next_connection_event())
            .await
            .unwrap()
        {
            Some(ConnectionEvent::Reconnecting { attempt, delay }) => {
                attempts.push((attempt, delay))
            }
            Some(ConnectionEvent::ReconnectFailed { attempt, .. }) => failed.push(attempt),
            Some(ConnectionEvent::Closed { reason }) => break reason,
            other => panic!("unexpected {other:?}"),
        }
    };
    println!("reconnection delays: {attempts:?}");
    assert_eq!(
        attempts.iter().map(|a| a.0).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(failed, vec![1, 2, 3, 4, 5], "each failure was reported");
    for (attempt, delay) in attempts {
        let base = backoff.base(attempt).as_secs_f64();
        let low = base * 0.5;
        let high = (base * 1.5).min(backoff.max.as_secs_f64());
        let d = delay.as_secs_f64();
        assert!(
            d >= low - 1e-9 && d <= high + 1e-9,
            "attempt {attempt}: {d} not in {low}..={high}"
        );
    }
    assert_eq!(closed, "reconnection failed after 5 attempts");
}

#[actix_rt::test]
async fn a_detached_session_whose_outbox_overflows_is_expired_with_outbox_overflow() {
    let (disconnects, mut seen) = Disconnects::new();
    let server = serve(
        Volley::builder()
            .resume_grace(Duration::from_secs(30))
            .max_outbox(100, 1 << 20)
            .namespace("/", test_namespace(disconnects)),
    );
    let (raw, open) = RawClient::open_in(&server.url, "/").await;
    drop(raw);
    // Wait until the server has noticed the drop: a resume attempt with a wrong
    // token is answered only by a live registry, so poll the session list instead.
    let root = server.volley.of("/").unwrap();
    for n in 0..1_000 {
        root.emit("news", &n).unwrap();
    }
    let (_, why) = ended(&mut seen).await;
    assert_eq!(why, DisconnectReason::OutboxOverflow);
    let mut late = RawClient::resume(&server.url, &open, 1).await;
    assert_eq!(
        late.recv().await,
        Some(Frame::ResumeFailed {
            reason: "unknown or expired session".into()
        })
    );
}

over_transports!(
    every_event_arrives_exactly_once_and_in_order_across_random_cuts,
    the_client_reports_a_lost_session_and_carries_on_in_a_fresh_one,
    sessions_list_their_transport_and_none_while_detached,
);
