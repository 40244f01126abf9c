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
async fn exactly_once_over_two_nodes(transport: Transport) {
    let Some(redis) = RedisServer::start("a_session_resumes_exactly_once_whichever_node") else {
        return;
    };
    let (tx, mut received) = mpsc::unbounded_channel();
    let counting = |tx| {
        Volley::builder()
            .heartbeat(Duration::from_secs(2), Duration::from_secs(2))
            .namespace("/", counting_namespace(tx))
            .cluster(RedisCluster::new(&redis.url()).unwrap())
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
    assert!(
        relayed(&a) > 0 && relayed(&b) > 0,
        "no resume went through a relay"
    );
}

#[actix_rt::test]
async fn a_session_resumes_exactly_once_whichever_node_each_connection_reaches() {
    exactly_once_over_two_nodes(Transport::WebSocket).await;
}

#[actix_rt::test]
async fn polling_requests_may_land_on_any_node() {
    exactly_once_over_two_nodes(Transport::Polling).await;
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
