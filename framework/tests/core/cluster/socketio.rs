//! Socket.IO clients in a cluster, with the official client (`socket.io-client`
//! from Node, as in `socketio.rs`) behind a round-robin balancer over two nodes: its
//! Engine.IO polling requests land on either node, and its connection-state
//! recovery lands on the other node than its session's, exactly once.

use super::*;
use crate::proxy::{Cuts, FaultProxy};
use crate::resume::server_addr;
use crate::socketio::{installed, scenario_at, server_with};

/// Two nodes serving the Socket.IO suite's namespaces, behind a balancer that sends
/// each new TCP connection to the other node.
async fn behind_a_balancer(redis: &RedisServer) -> (TestServer, TestServer, FaultProxy) {
    let node = || {
        let cluster = RedisCluster::new(&redis.url()).unwrap();
        server_with(VolleyBuilder::default().cluster(cluster))
    };
    let (a, b) = (node(), node());
    for server in [&a, &b] {
        let link = server.volley.cluster().unwrap();
        tokio::time::timeout(WAIT, link.wait_connected(true))
            .await
            .expect("node connects to redis");
    }
    let targets = vec![server_addr(&a), server_addr(&b)];
    let proxy = FaultProxy::balance(targets, Cuts::Never, 0x5105).await;
    (a, b, proxy)
}

fn base(proxy: &FaultProxy) -> String {
    format!("http://{}", proxy.addr)
}

#[actix_rt::test]
async fn socketio_polling_requests_may_land_on_any_node() {
    let Some(redis) = RedisServer::start("socketio_polling_requests_may_land_on_any_node") else {
        return;
    };
    // Without the forwarding, the second request of a connection (on the other
    // node) would get "Session ID unknown".
    let (_a, _b, proxy) = behind_a_balancer(&redis).await;
    // (Not the upgrade: its probe must reach the connection's node, which a
    // round-robin balancer does only by chance; the client then keeps polling.)
    scenario_at(&base(&proxy), "basics", &["polling"]).await;
}

#[actix_rt::test]
async fn socketio_recovery_on_another_node_over_websocket() {
    let Some(redis) = RedisServer::start("socketio_recovery_on_another_node_over_websocket") else {
        return;
    };
    if !installed() {
        return; // the relay count below needs the client's scenarios to have run
    }
    let (a, b, proxy) = behind_a_balancer(&redis).await;
    scenario_at(&base(&proxy), "recovery", &["5", "5", "websocket"]).await;
    scenario_at(&base(&proxy), "recovery", &["0", "3", "websocket"]).await;
    // The reconnections reached the other node: the sessions were relayed.
    let relayed = |s: &TestServer| s.volley.cluster().unwrap().stats().relayed;
    assert!(
        relayed(&a) + relayed(&b) > 0,
        "no recovery went through a relay"
    );
}

#[actix_rt::test]
async fn socketio_recovery_after_a_drain_delivers_each_event_once() {
    let Some(redis) = RedisServer::start("socketio_recovery_after_a_drain") else {
        return;
    };
    let (_a, _b, proxy) = behind_a_balancer(&redis).await;
    // The node that holds the session drains: it moves to the other, and the client
    // recovers there (or through the drained node, relayed) with every event once.
    let args = ["3", "7", "websocket", "burst_drain"];
    scenario_at(&base(&proxy), "recovery", &args).await;
}
