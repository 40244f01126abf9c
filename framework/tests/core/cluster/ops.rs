//! Cluster-wide operations: sessions, room sizes, kicks and cuts on another node.

use volley::client::{Client, NamespaceClient};
use volley::SessionId;

use super::*;

/// A client of `server` in namespace `/` and room `room`, with its session id.
async fn member(server: &TestServer, room: &str) -> (Client, NamespaceClient, SessionId) {
    let client = connect(server, WS).await;
    let ns = client.join("/", &()).await.unwrap();
    let _: String = ns.emit_with_ack("join", &room, WAIT).await.unwrap();
    let id: u64 = ns.emit_with_ack("whoami", &(), WAIT).await.unwrap();
    (client, ns, SessionId(id))
}

#[actix_rt::test]
async fn sessions_room_sizes_kicks_and_cuts_span_the_cluster() {
    let Some(redis) = RedisServer::start("sessions_room_sizes_kicks_and_cuts") else {
        return;
    };
    let (a, b) = (node(&redis).await, node(&redis).await);
    let (_ann, _ann_ns, ann) = member(&a, "red").await;
    let (bob_client, _bob_ns, bob) = member(&b, "red").await;
    let (cat_client, mut cat_ns, cat) = member(&b, "red").await;
    let from_a = a.volley.cluster().unwrap();
    let node_a = from_a.id();
    let node_b = b.volley.cluster().unwrap().id();
    assert_eq!(from_a.nodes().await.unwrap().len(), 2);

    let mut listed: Vec<(_, SessionId)> = from_a
        .sessions()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.node, s.info.id))
        .collect();
    listed.sort();
    let mut expected = vec![(node_a, ann), (node_b, bob), (node_b, cat)];
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(from_a.room_size("/", "red").await.unwrap(), 3);
    assert_eq!(from_a.room_size("/", "blue").await.unwrap(), 0);

    // A kicks a session of B: its client hears why.
    assert!(from_a.kick(bob, "bye").await.unwrap());
    let reason = tokio::time::timeout(WAIT, bob_client.closed())
        .await
        .unwrap();
    assert_eq!(reason, "kicked: bye");
    // A cuts another one's connection: its client resumes, still in its room.
    assert!(from_a.drop_connection(cat).await.unwrap());
    resumed(&cat_client).await;
    news_reaches(&a, "red", &mut cat_ns).await;
    assert_eq!(from_a.room_size("/", "red").await.unwrap(), 2);
    // Ids are unique across the cluster: no two sessions share one, and an id no
    // node holds is no session.
    assert_ne!(ann, bob);
    assert_ne!(ann.0 >> 32, cat.0 >> 32, "each node numbers its sessions");
    assert!(!from_a.kick(SessionId(cat.0 ^ 1 << 40), "no").await.unwrap());
}

#[actix_rt::test]
async fn volley_sessions_kick_and_cut_see_the_whole_cluster() {
    let Some(redis) = RedisServer::start("volley_sessions_kick_and_cut") else {
        return;
    };
    let (a, b) = (node(&redis).await, node(&redis).await);
    let (_ann, _ann_ns, ann) = member(&a, "red").await;
    let (bob_client, _bob_ns, bob) = member(&b, "red").await;
    let (cat_client, _cat_ns, cat) = member(&b, "red").await;

    // `sessions()` is the cluster's, `local_sessions()` the node's.
    let ids = |list: Vec<volley::SessionInfo>| {
        let mut ids: Vec<SessionId> = list.into_iter().map(|s| s.id).collect();
        ids.sort();
        ids
    };
    let mut all = vec![ann, bob, cat];
    all.sort();
    assert_eq!(ids(a.volley.sessions().await), all);
    assert_eq!(ids(b.volley.sessions().await), all);
    assert_eq!(ids(a.volley.local_sessions().await), vec![ann]);

    // A's `kick` and `drop_connection` reach B's sessions.
    assert!(a.volley.kick(bob, "bye").await);
    let reason = tokio::time::timeout(WAIT, bob_client.closed())
        .await
        .unwrap();
    assert_eq!(reason, "kicked: bye");
    assert!(a.volley.drop_connection(cat).await);
    resumed(&cat_client).await;
    assert!(!a.volley.kick(bob, "again").await, "bob is gone");
    let mut left = vec![ann, cat];
    left.sort();
    assert_eq!(ids(a.volley.sessions().await), left);
}
