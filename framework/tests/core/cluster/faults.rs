//! Faults: Redis restarts while nodes serve their clients.

use super::*;

#[actix_rt::test]
async fn a_redis_restart_keeps_local_service_and_cross_node_traffic_resumes() {
    let Some(mut redis) = RedisServer::start("a_redis_restart") else {
        return;
    };
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut on_a = players(&a, WS, "/", &[("ann", &["red"])]).await;
    let mut on_b = players(&b, WS, "/", &[("bob", &["red"])]).await;
    redis.await_subscribers(&room_channel("red"), 2).await;
    let (link_a, link_b) = (a.volley.cluster().unwrap(), b.volley.cluster().unwrap());

    redis.stop();
    for link in [link_a, link_b] {
        tokio::time::timeout(WAIT, link.wait_connected(false))
            .await
            .expect("the node notices that Redis is gone");
    }
    // Local service goes on: a broadcast on A reaches A's member, and counts as
    // dropped for the other nodes.
    let root = a.volley.of("/").unwrap();
    root.to("red").emit("alone", &1).unwrap();
    assert_eq!(next_event(&mut on_a[0].ns).await.name, "alone");
    let _: serde_json::Value = on_b[0].ns.emit_with_ack("echo", &1, WAIT).await.unwrap();

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
}
