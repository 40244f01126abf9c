//! Several nodes on one real Redis (feature `cluster`): each test starts its own
//! `redis-server` on a free port and two or three Volley nodes in this process.

mod broadcast;
mod drain;
mod drain_broadcasts;
mod faults;
mod game;
mod game_drain;
mod ops;
mod redis;
mod resume;
mod socketio;

use volley::client::{ConnectionEvent, NamespaceClient, Transport};
use volley::cluster::RedisCluster;
use volley::{Namespace, Volley, VolleyBuilder};

pub use crate::broadcast::{found_of, id_table, ids_of, players, sharing, Player};
use crate::common::*;
pub use redis::RedisServer;

/// The transport of the cluster tests' clients (the nodes do not care).
pub const WS: Transport = Transport::WebSocket;

/// The sharded channel of `room` in namespace `/` (see docs/architecture.md).
pub fn room_channel(room: &str) -> String {
    format!("volley:room:1:/{room}")
}

/// The sharded channel of namespace `/`.
pub const ROOT_CHANNEL: &str = "volley:ns:/";

/// Waits until `holds` (a figure a node's own task updates, read while it runs), at
/// most [`WAIT`]; panics with `what` past it.
pub async fn until(what: &str, holds: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !holds() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// The namespace of the cluster tests: the common one, `relay` (a handler's
/// broadcast to a room, the sender left out) and `whoami` (the session id).
fn namespace() -> Namespace {
    let (disconnects, _) = Disconnects::new();
    test_namespace(disconnects)
        .on("relay", |socket, room: String| {
            let _ = socket.to(&room).emit("relayed", &socket.id().0);
        })
        .on_ack("whoami", |socket, _: (), ack| {
            let _ = ack.send(&socket.id().0);
        })
}

/// A node of the cluster on `redis`, connected to it.
pub async fn node(redis: &RedisServer) -> TestServer {
    node_with(RedisCluster::new(&redis.url()).unwrap()).await
}

/// A node joined with `cluster`, connected to its Redis.
pub async fn node_with(cluster: RedisCluster) -> TestServer {
    node_of(
        Volley::builder()
            .namespace("/", namespace())
            .cluster(cluster),
    )
    .await
}

/// A node built from `builder` (which names its cluster), connected to its Redis.
pub async fn node_of(builder: VolleyBuilder) -> TestServer {
    let server = serve(builder);
    let link = server.volley.cluster().unwrap();
    tokio::time::timeout(WAIT, link.wait_connected(true))
        .await
        .expect("node connects to redis");
    server
}

/// Waits (at most [`WAIT`]) until the registry, seen from `server`, lists `n` nodes.
pub async fn await_nodes(server: &TestServer, n: usize) {
    let link = server.volley.cluster().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let nodes = link.nodes().await.unwrap();
        if nodes.len() == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nodes: {nodes:?}, expected {n}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The connection events `client` reported so far (none awaited).
pub async fn connection_events(client: &volley::client::Client) -> Vec<ConnectionEvent> {
    let mut events = Vec::new();
    let quick = std::time::Duration::from_millis(1);
    while let Ok(Some(event)) = tokio::time::timeout(quick, client.next_connection_event()).await {
        events.push(event);
    }
    events
}

/// Panics unless every event of `who` is a reconnection that resumed its session.
pub fn assert_resumed(who: &str, events: &[ConnectionEvent]) {
    for event in events {
        assert!(
            matches!(
                event,
                ConnectionEvent::Reconnecting { .. }
                    | ConnectionEvent::ReconnectFailed { .. }
                    | ConnectionEvent::Reconnected { resumed: true, .. }
            ),
            "{who}: the session must survive, got {event:?}"
        );
    }
}

/// `from` broadcasts `news` to `room` (namespace `/`); `member` must get it.
pub async fn news_reaches(from: &TestServer, room: &str, member: &mut NamespaceClient) {
    from.volley
        .of("/")
        .unwrap()
        .to(room)
        .emit("news", &1)
        .unwrap();
    assert_eq!(next_event(member).await.name, "news");
}
