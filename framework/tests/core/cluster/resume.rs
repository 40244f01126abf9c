//! Resume on any node, no sticky sessions: a connection that lands on another node
//! than its session's is relayed to it, a polling request that lands on another
//! node than its connection's is answered by that node, and the guarantees stay
//! exactly-once.

use std::time::Duration;

use tokio::sync::mpsc;
use volley::client::Transport;
use volley::protocol::Frame;

use super::*;
use crate::proxy::{Cuts, FaultProxy};
use crate::resume::{counting_namespace, exactly_once_through, server_addr};

/// The random-cut exchange of `resume.rs` through a round-robin balancer over two
/// nodes: every new TCP connection (a WebSocket, or a polling request's) goes to the
/// other node.
/// With `moves` (`RedisCluster::move_on_resume`), each resume moves the session to
/// the node the connection reached instead of relaying it.
async fn exactly_once_over_two_nodes(transport: Transport, moves: bool) {
    let Some(redis) = RedisServer::start("a_session_resumes_exactly_once_whichever_node") else {
        return;
    };
    let (tx, mut received) = mpsc::unbounded_channel();
    let counting = |tx| {
        let cluster = RedisCluster::new(&redis.url()).unwrap();
        Volley::builder()
            .heartbeat(Duration::from_secs(2), Duration::from_secs(2))
            .namespace("/", counting_namespace(tx))
            .cluster(cluster.move_on_resume(moves))
    };
    let a = node_of(counting(tx.clone())).await;
    let b = node_of(counting(tx)).await;
    // A round-robin balancer: every reconnection goes to the other node.
    let targets = vec![server_addr(&a), server_addr(&b)];
    let cuts = Cuts::Random {
        min: 400,
        max: 4_000,
        max_cuts: 300,
    };
    let proxy = FaultProxy::balance(targets, cuts, 0xc105).await;
    exactly_once_through(&proxy, transport, &mut received).await;
    let relayed = |s: &TestServer| s.volley.cluster().unwrap().stats().relayed;
    if !moves {
        assert!(
            relayed(&a) > 0 && relayed(&b) > 0,
            "no resume went through a relay"
        );
        return;
    }
    // The resumes moved the session (a move that fails falls back to a relay).
    let moved = |s: &TestServer| s.volley.cluster().unwrap().stats().resumes_moved;
    assert!(
        moved(&a) > 0 && moved(&b) > 0,
        "no resume moved its session"
    );
}

#[actix_rt::test]
async fn a_session_resumes_exactly_once_whichever_node_each_connection_reaches() {
    exactly_once_over_two_nodes(Transport::WebSocket, false).await;
}

#[actix_rt::test]
async fn polling_requests_may_land_on_any_node() {
    exactly_once_over_two_nodes(Transport::Polling, false).await;
}

#[actix_rt::test]
async fn a_session_moved_to_each_node_its_client_reaches_resumes_exactly_once() {
    exactly_once_over_two_nodes(Transport::WebSocket, true).await;
}

#[actix_rt::test]
async fn a_polling_session_moved_to_each_node_its_client_reaches_resumes_exactly_once() {
    exactly_once_over_two_nodes(Transport::Polling, true).await;
}

#[actix_rt::test]
async fn a_resume_token_is_valid_on_every_node_and_only_with_its_session() {
    let Some(redis) = RedisServer::start("a_resume_token_is_valid_on_every_node") else {
        return;
    };
    let (a, b) = (node(&redis).await, node(&redis).await);
    let (raw, open) = RawClient::open(&a.url).await;
    drop(raw);
    // A wrong token is refused on the other node as on its own.
    let mut forged = open.clone();
    forged.token[0] ^= 1;
    let mut wrong = RawClient::resume(&b.url, &forged, 0).await;
    assert!(
        matches!(wrong.recv().await, Some(Frame::ResumeFailed { .. })),
        "a forged token resumed"
    );
    // The right one resumes the session through B.
    let mut right = RawClient::resume(&b.url, &open, 0).await;
    assert!(matches!(
        right.recv().await,
        Some(Frame::Resumed { replay: 0, .. })
    ));
    right.join("/").await;
    let listed = b.volley.cluster().unwrap().sessions().await.unwrap();
    assert_eq!(listed.len(), 1, "one session in the cluster: {listed:?}");
    assert_eq!(listed[0].node, a.volley.cluster().unwrap().id());
}

#[actix_rt::test]
async fn each_polling_request_may_go_to_another_node() {
    let Some(redis) = RedisServer::start("each_polling_request_may_go_to_another_node") else {
        return;
    };
    let (a, b) = (node(&redis).await, node(&redis).await);
    let hello = Frame::Hello {
        version: volley::protocol::PROTOCOL_VERSION,
        max_frame_size: None,
    };
    let mut poller = RawPoller::connect(&a.url, &hello).await;
    // The connection is A's; every request from now on reaches B, which forwards it.
    poller.via(&b.url);
    assert!(matches!(poller.recv().await, Ok(Frame::Open(_))));
    poller.send(&connect_to("/")).await;
    assert_eq!(poller.recv().await, Ok(Frame::Connected { ns: "/".into() }));
    poller
        .send(&Frame::Event {
            ns: "/".into(),
            name: "echo".into(),
            payload: b"42".to_vec().into(),
            ack: Some(7),
        })
        .await;
    assert!(matches!(poller.recv().await, Ok(Frame::Ack { id: 7, .. })));
    // And the other way round.
    let mut other = RawPoller::connect(&b.url, &hello).await;
    other.via(&a.url);
    assert!(matches!(other.recv().await, Ok(Frame::Open(_))));
}

/// A namespace that hands its sockets to the test (to ask their clients questions)
/// and echoes with an ack.
fn handing_out_sockets() -> (Namespace, mpsc::UnboundedReceiver<volley::Socket>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let tx = std::sync::Mutex::new(tx);
    let namespace = Namespace::new()
        .on_connect(move |socket| {
            let _ = tx.lock().unwrap().send(socket.clone());
        })
        .on_ack("join", |socket, room: String, ack| {
            socket.join(&room);
            let _ = ack.send(&room);
        })
        .on_ack("echo", |_, v: serde_json::Value, ack| {
            let _ = ack.send(&v);
        });
    (namespace, rx)
}

/// Two nodes (each resume moving its session, with `moves`), and a client behind a
/// round-robin balancer whose first connection reaches A: its socket there (in room
/// `red`), and its namespace.
struct SocketOnA {
    _redis: RedisServer,
    a: TestServer,
    b: TestServer,
    proxy: FaultProxy,
    client: volley::client::Client,
    ns: volley::client::NamespaceClient,
    socket: volley::Socket,
}

impl SocketOnA {
    async fn start(test: &str, moves: bool) -> Option<SocketOnA> {
        let redis = RedisServer::start(test)?;
        let (on_a, mut sockets) = handing_out_sockets();
        let (on_b, _) = handing_out_sockets();
        let cluster = || {
            RedisCluster::new(&redis.url())
                .unwrap()
                .move_on_resume(moves)
        };
        let a = node_of(Volley::builder().namespace("/", on_a).cluster(cluster())).await;
        let b = node_of(Volley::builder().namespace("/", on_b).cluster(cluster())).await;
        await_nodes(&a, 2).await;
        let targets = vec![server_addr(&a), server_addr(&b)];
        let proxy = FaultProxy::balance(targets, Cuts::Never, 1).await;
        let config = volley::client::ClientConfig {
            backoff: crate::resume::quick_backoff(),
            ..Default::default()
        };
        // The first connection goes to A, where the session opens; every later one to B.
        let client = volley::client::Client::connect_with(&proxy.url(), config)
            .await
            .unwrap();
        let ns = client.join("/", &()).await.unwrap();
        let _: String = ns.emit_with_ack("join", &"red", WAIT).await.unwrap();
        let socket = tokio::time::timeout(WAIT, sockets.recv())
            .await
            .unwrap()
            .unwrap();
        Some(SocketOnA {
            _redis: redis,
            a,
            b,
            proxy,
            client,
            ns,
            socket,
        })
    }
}

#[actix_rt::test]
async fn acks_and_broadcasts_cross_a_relayed_resume_both_ways() {
    let name = "acks_and_broadcasts_cross_a_relayed_resume";
    let Some(SocketOnA {
        a,
        b,
        proxy,
        client,
        mut ns,
        socket,
        _redis,
    }) = SocketOnA::start(name, false).await
    else {
        return;
    };

    // A question arrives, the connection is cut before the answer: the answer waits in
    // the client, and crosses the relay from B to the session on A after the resume.
    let asked = socket.emit_with_ack::<_, String>("question", &"who?", WAIT);
    let question = next_event(&mut ns).await;
    proxy.cut_all();
    question.ack.expect("an ack id").send(&"me").unwrap();
    assert_eq!(resumed(&client).await, 0);
    assert_eq!(asked.await, Ok("me".to_owned()));
    let relayed = b.volley.cluster().unwrap().stats().relayed;
    assert!(relayed > 0, "the resume went through B");

    // Through the relay: client → server acks, server → client acks, room broadcasts.
    let echoed: u32 = ns.emit_with_ack("echo", &7, WAIT).await.unwrap();
    assert_eq!(echoed, 7);
    let asked = socket.emit_with_ack::<_, String>("question", &"again?", WAIT);
    let question = next_event(&mut ns).await;
    question.ack.expect("an ack id").send(&"still me").unwrap();
    assert_eq!(asked.await, Ok("still me".to_owned()));
    news_reaches(&a, "red", &mut ns).await;
    let session = a.volley.local_sessions().await;
    assert_eq!(session.len(), 1, "the session stayed on A");
    assert_eq!(session[0].id.0, client.session_id());
}

#[actix_rt::test]
async fn a_resumed_session_moves_to_its_clients_node() {
    let name = "a_resumed_session_moves_to_its_clients_node";
    let Some(mut on) = SocketOnA::start(name, true).await else {
        return;
    };
    // Events sent while the client is away are replayed on B, once.
    on.proxy.cut_all();
    for n in 0..3 {
        on.socket.emit("while-away", &n).unwrap();
    }
    resumed(&on.client).await;
    for n in 0..3 {
        let event = next_event(&mut on.ns).await;
        let got = (event.name.as_str(), event.decode::<u32>().unwrap());
        assert_eq!(got, ("while-away", n));
    }
    // The session is B's now, in the whole cluster's view; nothing is relayed.
    let (a, b) = (
        on.a.volley.cluster().unwrap(),
        on.b.volley.cluster().unwrap(),
    );
    let listed = a.sessions().await.unwrap();
    assert_eq!(listed.len(), 1, "one session in the cluster: {listed:?}");
    assert_eq!(listed[0].info.id.0, on.client.session_id());
    assert_eq!(listed[0].node, b.id());
    assert!(on.a.volley.local_sessions().await.is_empty());
    let echoed: u32 = on.ns.emit_with_ack("echo", &7, WAIT).await.unwrap();
    assert_eq!(echoed, 7);
    news_reaches(&on.a, "red", &mut on.ns).await;
    assert_eq!((b.stats().relayed, b.stats().resumes_moved), (0, 1));
}
