//! Faults: Redis restarts while nodes serve their clients; a node dies; a node
//! leaves; a node that may hold a resumed session does not answer.

use std::time::Duration;

use super::*;
use crate::metrics::{metered, scrape, TOKEN};

#[actix_rt::test]
async fn a_redis_restart_keeps_local_service_and_cross_node_traffic_resumes() {
    let Some(mut redis) = RedisServer::start("a_redis_restart") else {
        return;
    };
    // A reports its link in /metrics.
    let cluster = RedisCluster::new(&redis.url()).unwrap();
    let a = node_of(metered().namespace("/", namespace()).cluster(cluster)).await;
    let b = node(&redis).await;
    let mut on_a = players(&a, WS, "/", &[("ann", &["red"])]).await;
    let mut on_b = players(&b, WS, "/", &[("bob", &["red"])]).await;
    redis.await_subscribers(&room_channel("red"), 2).await;
    let (link_a, link_b) = (a.volley.cluster().unwrap(), b.volley.cluster().unwrap());
    let redis_up = async || scrape(&a, Some(TOKEN)).await.1["volley_cluster_redis_up"];
    assert_eq!(redis_up().await, 1.0);

    redis.stop();
    for link in [link_a, link_b] {
        tokio::time::timeout(WAIT, link.wait_connected(false))
            .await
            .expect("the node notices that Redis is gone");
    }
    assert_eq!(redis_up().await, 0.0);
    // Local service goes on: a broadcast on A reaches A's member, and counts as
    // dropped for the other nodes.
    let root = a.volley.of("/").unwrap();
    root.to("red").emit("alone", &1).unwrap();
    assert_eq!(next_event(&mut on_a[0].ns).await.name, "alone");
    let _: serde_json::Value = on_b[0].ns.emit_with_ack("echo", &1, WAIT).await.unwrap();
    // A join does not wait for a subscription Redis cannot make: its ack comes at
    // once (well within the 2 s bound), counted as unconfirmed.
    let joined = std::time::Instant::now();
    let _: String = on_b[0]
        .ns
        .emit_with_ack("join", &"blue", WAIT)
        .await
        .unwrap();
    assert!(
        joined.elapsed() < Duration::from_secs(1),
        "{:?}",
        joined.elapsed()
    );
    assert_eq!(link_b.stats().joins_unconfirmed, 1);

    redis.restart();
    for link in [link_a, link_b] {
        tokio::time::timeout(WAIT, link.wait_connected(true))
            .await
            .expect("the node reconnects");
    }
    // The nodes subscribe again to what they need, on the new Redis.
    redis.await_subscribers(&room_channel("red"), 2).await;
    root.to("red").emit("together", &2).unwrap();
    assert_eq!(next_event(&mut on_a[0].ns).await.name, "together");
    assert_eq!(next_event(&mut on_b[0].ns).await.name, "together");
    let stats = link_a.stats();
    assert!(stats.redis_connects >= 2, "{stats:?}");
    assert!(stats.dropped_redis_down >= 1, "{stats:?}");
    let (_, figures) = scrape(&a, Some(TOKEN)).await;
    assert_eq!(figures["volley_cluster_redis_up"], 1.0);
    assert!(figures["volley_cluster_dropped_total{reason=\"redis_down\"}"] >= 1.0);
    assert!(figures["volley_cluster_redis_connects_total"] >= 2.0);
}

#[actix_rt::test]
async fn a_dead_node_leaves_the_registry_and_the_counts_and_nothing_else_stops() {
    let Some(redis) = RedisServer::start("a_dead_node") else {
        return;
    };
    // Node A connects as its own Redis user, so that the test can cut it from Redis
    // for good: to the others it is then a dead node (no refresh, no answers).
    let url_a = redis.add_user("node-a").await;
    let ttl = Duration::from_secs(1);
    let a = node_with(RedisCluster::new(&url_a).unwrap().node_ttl(ttl)).await;
    let b = node_with(RedisCluster::new(&redis.url()).unwrap().node_ttl(ttl)).await;
    let _on_a = players(&a, WS, "/", &[("ann", &["red"])]).await;
    let mut on_b = players(&b, WS, "/", &[("bob", &["red"])]).await;
    redis.await_subscribers(&room_channel("red"), 2).await;
    let from_b = b.volley.cluster().unwrap();
    assert_eq!(from_b.room_size("/", "red").await.unwrap(), 2);

    redis.cut_user("node-a").await;
    // Within the TTL it leaves the registry, and with it the room's count.
    await_nodes(&b, 1).await;
    assert_eq!(from_b.room_size("/", "red").await.unwrap(), 1);
    assert_eq!(from_b.sessions().await.unwrap().len(), 1);
    // Nothing else stopped: B's broadcasts still reach B's members.
    b.volley
        .of("/")
        .unwrap()
        .to("red")
        .emit("news", &1)
        .unwrap();
    assert_eq!(next_event(&mut on_b[0].ns).await.name, "news");
}

/// A resume whose session may be on a node that does not answer in time is not
/// refused (the client would give its session up): the connection is closed with
/// "try again later", no `ResumeFailed`, and the client's next attempt asks again.
#[actix_rt::test]
async fn a_resume_a_silent_node_may_hold_is_closed_not_refused() {
    let Some(redis) = RedisServer::start("a_silent_node") else {
        return;
    };
    // A is cut from Redis but stays registered (a TTL far longer than the test):
    // to B it is a node that does not answer.
    let url_a = redis.add_user("node-a").await;
    let ttl = Duration::from_secs(600);
    let a = node_with(RedisCluster::new(&url_a).unwrap().node_ttl(ttl)).await;
    let b = node_with(RedisCluster::new(&redis.url()).unwrap().node_ttl(ttl)).await;
    await_nodes(&b, 2).await;
    let (on_a, open) = RawClient::open(&a.url).await;
    redis.cut_user("node-a").await;
    drop(on_a);

    let mut at_b = RawClient::resume(&b.url, &open, 0).await;
    let mut frames = Vec::new();
    while let Some(frame) = at_b.recv().await {
        frames.push(frame);
    }
    assert!(frames.is_empty(), "no verdict on the session: {frames:?}");
    assert_eq!(
        at_b.ws_close_description().as_deref(),
        Some("cluster busy: a node did not answer, try again")
    );
}

#[actix_rt::test]
async fn a_node_that_stops_leaves_the_registry_at_once() {
    let Some(redis) = RedisServer::start("a_node_that_stops") else {
        return;
    };
    // A TTL far longer than the test: only the node's goodbye can remove it.
    let cluster = || {
        RedisCluster::new(&redis.url())
            .unwrap()
            .node_ttl(Duration::from_secs(600))
    };
    let (a, b) = (node_with(cluster()).await, node_with(cluster()).await);
    await_nodes(&b, 2).await;
    drop(a);
    await_nodes(&b, 1).await;
}

#[actix_rt::test]
async fn a_relayed_session_survives_a_redis_restart_exactly_once() {
    use crate::proxy::{Cuts, FaultProxy};
    use crate::resume::{counting_namespace, every_event_in_order, server_addr, EVENTS};

    let Some(mut redis) = RedisServer::start("a_relayed_session_survives_a_redis_restart") else {
        return;
    };
    let (tx, mut received) = tokio::sync::mpsc::unbounded_channel();
    let counting = |tx| {
        let cluster = RedisCluster::new(&redis.url()).unwrap();
        Volley::builder()
            .namespace("/", counting_namespace(tx))
            .cluster(cluster)
    };
    let a = node_of(counting(tx.clone())).await;
    let b = node_of(counting(tx)).await;
    let targets = vec![server_addr(&a), server_addr(&b)];
    let proxy = FaultProxy::balance(targets, Cuts::Never, 1).await;
    let config = crate::resume::counting_config(volley::client::ClientConfig::default().transport);
    // Connection 1 reaches A (the session's node), 2 reaches B (relayed), 3 A again.
    let client = volley::client::Client::connect_with(&proxy.url(), config)
        .await
        .unwrap();
    let mut ns = client.join("/", &()).await.unwrap();
    proxy.cut_all();
    resumed(&client).await;
    assert!(
        b.volley.cluster().unwrap().stats().relayed > 0,
        "relayed by B"
    );

    // Frames both ways while Redis goes away under the relay: each node ends its
    // relays, the client resumes on A without Redis, and nothing is lost or doubled.
    ns.emit("start", &()).unwrap();
    for n in 0..EVENTS {
        ns.emit("c2s", &(n, "padding-padding-padding")).unwrap();
    }
    redis.stop();
    every_event_in_order(&mut ns, WAIT).await;
    for expected in 0..EVENTS {
        let n = tokio::time::timeout(WAIT, received.recv())
            .await
            .expect("client events keep arriving")
            .unwrap();
        assert_eq!(n, expected, "client → server out of order or duplicated");
    }
    let echoed: u32 = ns.emit_with_ack("echo", &1, WAIT).await.unwrap();
    assert_eq!(echoed, 1);
    assert!(received.try_recv().is_err(), "a duplicate arrived");
    // The relay was cut (its connection dropped) and the session resumed on A.
    resumed(&client).await;
    assert_eq!(
        a.volley.local_sessions().await.len(),
        1,
        "still one session, on A"
    );
}
