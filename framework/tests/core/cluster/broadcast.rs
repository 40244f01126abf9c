//! Broadcasts across nodes: every member of the target on every node gets each one
//! exactly once, in the order one sender sent them, and a node gets only what its
//! members need.
//!
//! "Nobody else got it" without sleeping: every broadcast of one origin reaches each
//! node in the order it was published, and a namespace-wide `fence` from the same
//! origin is handled by each node's namespace after all of them; each client reads
//! until the fence and counts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;

/// Reads each player's events up to the fence and until the copies of one-room
/// broadcasts in `room_copies` (player, event, count) are in too (one is fanned
/// out by its room actor and may come after a later namespace-wide fence; once the
/// expected copies are in, the room has posted every copy it ever will).
async fn until_fences(
    groups: &mut [&mut Vec<Player>],
    room_copies: &[(&str, &str, usize)],
) -> HashMap<(&'static str, String), Vec<serde_json::Value>> {
    let mut got: HashMap<(&'static str, String), Vec<serde_json::Value>> = HashMap::new();
    for group in groups.iter_mut() {
        for p in group.iter_mut() {
            let mut wanted: Vec<(&str, usize)> = room_copies
                .iter()
                .filter(|(who, _, _)| *who == p.name)
                .map(|(_, event, n)| (*event, *n))
                .collect();
            let mut fenced = false;
            while !fenced || wanted.iter().any(|(_, n)| *n > 0) {
                let e = next_event(&mut p.ns).await;
                match e.name.as_str() {
                    "fence" => fenced = true,
                    name => {
                        if let Some((_, n)) = wanted.iter_mut().find(|(w, _)| *w == name) {
                            *n = n.saturating_sub(1);
                        }
                        let value = e.decode::<serde_json::Value>().unwrap();
                        got.entry((p.name, e.name)).or_default().push(value);
                    }
                }
            }
        }
    }
    got
}

#[actix_rt::test]
async fn broadcasts_reach_every_node_exactly_once_in_order() {
    let Some(redis) = RedisServer::start("broadcasts_reach_every_node") else {
        return;
    };
    let (a, b, c) = (node(&redis).await, node(&redis).await, node(&redis).await);
    let mut on_a = players(&a, WS, "/", &[("ann", &["red", "blue"]), ("bob", &["red"])]).await;
    let mut on_b = players(
        &b,
        WS,
        "/",
        &[
            ("cat", &["blue", "muted"]),
            ("dan", &["green"]),
            ("eve", &["red", "blue"]),
        ],
    )
    .await;
    let mut on_c = players(&c, WS, "/", &[("fay", &[])]).await;
    // Interest: a node subscribes to a room's channel while it has members there.
    for (room, nodes) in [("red", 2), ("blue", 2), ("green", 1), ("muted", 1)] {
        redis.await_subscribers(&room_channel(room), nodes).await;
    }
    redis.await_subscribers(ROOT_CHANNEL, 3).await;

    let root = a.volley.of("/").unwrap();
    root.to("red").to("blue").emit("both", &1).unwrap();
    root.to("red")
        .to("blue")
        .except("muted")
        .emit("unmuted", &2)
        .unwrap();
    root.broadcast().except("red").emit("not-red", &3).unwrap();
    root.to("green").volatile().emit("radar", &4).unwrap();
    for i in 0..20 {
        root.to("red").emit("seq", &i).unwrap();
    }
    root.emit("fence", &()).unwrap();

    let copies = [
        ("ann", "seq", 20),
        ("bob", "seq", 20),
        ("eve", "seq", 20),
        ("dan", "radar", 1),
    ];
    let got = until_fences(&mut [&mut on_a, &mut on_b, &mut on_c], &copies).await;
    let count =
        |who: &'static str, what: &str| got.get(&(who, what.to_owned())).map(Vec::len).unwrap_or(0);
    for (who, both, unmuted, not_red, radar, seq) in [
        ("ann", 1, 1, 0, 0, 20),
        ("bob", 1, 1, 0, 0, 20),
        ("cat", 1, 0, 1, 0, 0),
        ("dan", 0, 0, 1, 1, 0),
        ("eve", 1, 1, 0, 0, 20),
        ("fay", 0, 0, 1, 0, 0),
    ] {
        let counts = [
            count(who, "both"),
            count(who, "unmuted"),
            count(who, "not-red"),
            count(who, "radar"),
            count(who, "seq"),
        ];
        assert_eq!(
            counts,
            [both, unmuted, not_red, radar, seq],
            "{who}: both, unmuted, not-red, radar, seq"
        );
    }
    // One sender's order holds on its own node and on the others.
    let in_order: Vec<serde_json::Value> = (0..20).map(serde_json::Value::from).collect();
    assert_eq!(got[&("ann", "seq".to_owned())], in_order);
    assert_eq!(got[&("eve", "seq".to_owned())], in_order);

    // Redis traffic: one message per target room, one for a namespace-wide broadcast.
    // The publisher counts once Redis has answered its pipeline, which may be after
    // the receivers got the messages.
    let link_a = a.volley.cluster().unwrap();
    until("A never counted its 25 broadcasts published", || {
        link_a.stats().broadcasts_published >= 25
    })
    .await;
    let sent = link_a.stats();
    assert_eq!(sent.broadcasts_published, 25);
    assert_eq!(sent.messages_published, 2 + 2 + 1 + 1 + 20 + 1);
    // B got both copies of each two-room broadcast and took one.
    let b_got = b.volley.cluster().unwrap().stats();
    assert_eq!((b_got.messages_received, b_got.duplicates), (27, 2));
    // C has no member in any room: only the namespace-wide broadcasts reached it.
    let c_got = c.volley.cluster().unwrap().stats();
    assert_eq!((c_got.messages_received, c_got.duplicates), (2, 0));
}

#[actix_rt::test]
async fn a_session_left_out_by_id_is_left_out_on_every_node() {
    let Some(redis) = RedisServer::start("a_handlers_broadcast_leaves_only_its_sender_out") else {
        return;
    };
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut on_a = players(&a, WS, "/", &[("ann", &["red"])]).await;
    // A handler's broadcast leaves its sender out by id, which no session of
    // another node shares.
    let mut on_b = players(&b, WS, "/", &[("bob", &["red"]), ("cat", &["red"])]).await;
    redis.await_subscribers(&room_channel("red"), 2).await;

    on_b[1].ns.emit("relay", &"red").unwrap();
    for p in on_a.iter_mut().chain(on_b.iter_mut().take(1)) {
        assert_eq!(next_event(&mut p.ns).await.name, "relayed", "{}", p.name);
    }
    b.volley.of("/").unwrap().emit("fence", &()).unwrap();
    let got = until_fences(&mut [&mut on_a, &mut on_b], &[]).await;
    assert!(got.is_empty(), "after the first copies: {got:?}");

    // Emitted on A, leaving out a session of B by its id.
    let bob: u64 = on_b[0].ns.emit_with_ack("whoami", &(), WAIT).await.unwrap();
    let except = volley::SessionId(bob);
    let root = a.volley.of("/").unwrap();
    root.to("red")
        .except_socket(except)
        .emit("news", &1)
        .unwrap();
    root.broadcast()
        .except_socket(except)
        .emit("all", &2)
        .unwrap();
    root.emit("fence", &()).unwrap();
    let copies = [("ann", "news", 1), ("cat", "news", 1)];
    let got = until_fences(&mut [&mut on_a, &mut on_b], &copies).await;
    let count =
        |who: &'static str, what: &str| got.get(&(who, what.to_owned())).map_or(0, Vec::len);
    for (who, n) in [("ann", 1), ("bob", 0), ("cat", 1)] {
        assert_eq!((count(who, "news"), count(who, "all")), (n, n), "{who}");
    }
}

#[actix_rt::test]
async fn interest_follows_membership() {
    let Some(redis) = RedisServer::start("interest_follows_membership") else {
        return;
    };
    let (a, b) = (node(&redis).await, node(&redis).await);
    let on_a = players(&a, WS, "/", &[("ann", &["red"])]).await;
    let on_b = players(&b, WS, "/", &[("bob", &["red"])]).await;
    redis.await_subscribers(&room_channel("red"), 2).await;
    redis.await_subscribers(ROOT_CHANNEL, 2).await;

    // The last member on B leaves the room: B drops the room's channel.
    let _: String = on_b[0]
        .ns
        .emit_with_ack("leave", &"red", WAIT)
        .await
        .unwrap();
    redis.await_subscribers(&room_channel("red"), 1).await;
    // And the namespace's, once its last socket is gone.
    drop(on_b);
    redis.await_subscribers(ROOT_CHANNEL, 1).await;

    // A broadcast to red now costs one Redis message and reaches no other node.
    let before = b.volley.cluster().unwrap().stats().messages_received;
    let mut on_a = on_a;
    news_reaches(&a, "red", &mut on_a[0].ns).await;
    a.volley.of("/").unwrap().emit("fence", &()).unwrap();
    until_fence(&mut on_a[0].ns).await;
    assert_eq!(
        b.volley.cluster().unwrap().stats().messages_received,
        before
    );
}

/// Rounds of join-then-broadcast: without the join's ack waiting for B's
/// subscription, several of them lose the broadcast on a loopback Redis.
const JOIN_ROUNDS: usize = 100;

#[actix_rt::test]
async fn a_broadcast_sent_after_a_join_is_acked_reaches_the_member_exactly_once() {
    let Some(redis) = RedisServer::start("a_broadcast_after_a_join") else {
        return;
    };
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut on_b = players(&b, WS, "/", &[("bob", &[])]).await;
    redis.await_subscribers(ROOT_CHANNEL, 1).await;
    let root = a.volley.of("/").unwrap();
    let bob = &mut on_b[0].ns;
    let link_b = b.volley.cluster().unwrap();
    for round in 0..JOIN_ROUNDS {
        // Joined and left again: B subscribes anew each round (or keeps a
        // subscription it was about to drop), then A broadcasts at once.
        let room = format!("window{}", round % 2);
        let before = link_b.stats().messages_received;
        let _: String = bob.emit_with_ack("join", &room, WAIT).await.unwrap();
        root.to(&room).emit("hit", &round).unwrap();
        // Published after the hit, so B's link takes it in after the hit (if B was
        // subscribed in time).
        root.emit("fence", &()).unwrap();
        let mut hits: Vec<usize> = until_fence(bob)
            .await
            .iter()
            .map(|e| e.decode::<usize>().unwrap())
            .collect();
        let received = link_b.stats().messages_received - before;
        assert_eq!(received, 2, "round {round}: B got the hit from Redis");
        // B's room actor fans the hit out and may post it after the fence.
        if hits.is_empty() {
            hits.push(next_event(bob).await.decode::<usize>().unwrap());
        }
        // A second copy would show up in the next round's events.
        assert_eq!(hits, [round], "round {round}");
        let _: String = bob.emit_with_ack("leave", &room, WAIT).await.unwrap();
    }
    // Nothing came after the last round's hit.
    root.emit("fence", &()).unwrap();
    assert!(until_fence(bob).await.is_empty());
    assert_eq!(b.volley.cluster().unwrap().stats().joins_unconfirmed, 0);
}

/// Rounds of a client joining a namespace the dynamic factory makes, on B, and
/// leaving it again.
const TABLE_ROUNDS: usize = 12;

/// The rounds' `hit`s a client got before the `fence`.
async fn hits_until_fence(ns: &mut NamespaceClient) -> Vec<usize> {
    until_fence(ns)
        .await
        .iter()
        .map(|e| e.decode::<usize>().unwrap())
        .collect()
}

/// On a node of a cluster too, a namespace the dynamic factory made goes once
/// nothing uses it, and its channels with it; made again for the next client, it
/// takes the other nodes' broadcasts exactly once, also when the client is back
/// before the old namespace has let go of the room's channel.
#[actix_rt::test]
async fn a_dynamic_namespace_goes_when_unused_and_made_again_hears_the_other_nodes() {
    let Some(redis) = RedisServer::start("a_dynamic_namespace_on_a_cluster") else {
        return;
    };
    let made = Arc::new(AtomicUsize::new(0));
    let tables = |made: Arc<AtomicUsize>| {
        Volley::builder()
            .namespace("/", namespace())
            .cluster(RedisCluster::new(&redis.url()).unwrap())
            .dynamic_namespaces(move |name| {
                made.fetch_add(1, Ordering::Relaxed);
                name.starts_with("/table-").then(namespace)
            })
    };
    let a = node_of(tables(Arc::new(AtomicUsize::new(0)))).await;
    let b = node_of(tables(made.clone())).await;
    // Held on A, which has no member: A publishes, only B subscribes.
    let table = a.volley.of("/table-1").unwrap();
    let channel = "volley:room:8:/table-1red";
    let client = connect(&b, WS).await;
    for round in 0..TABLE_ROUNDS {
        let mut ns = client.join("/table-1", &()).await.unwrap();
        // The ack waits until B is subscribed to the room's channel.
        let _: String = ns.emit_with_ack("join", &"red", WAIT).await.unwrap();
        table.to("red").emit("hit", &round).unwrap();
        // Published after the hit on the same channel: it arrives after it.
        table.to("red").emit("fence", &()).unwrap();
        let hits = hits_until_fence(&mut ns).await;
        assert_eq!(hits, [round], "round {round}");
        ns.leave().unwrap();
        // Every other round the client comes back at once, while the old namespace
        // may still be letting go of the channel; otherwise once it has.
        if round % 2 == 0 {
            redis.await_subscribers(channel, 0).await;
        }
    }
    // Made anew for every join: none was kept while unused.
    assert_eq!(made.load(Ordering::Relaxed), TABLE_ROUNDS);
    redis.await_subscribers(channel, 0).await;
    redis.await_subscribers("volley:ns:/table-1", 0).await;
}

/// A client that has `Connected` gets every namespace-wide broadcast any node sends
/// after that, also as the namespace's first socket on its node: the connect waits
/// for the node's subscription to the namespace's channel. Each round starts with
/// the channel unsubscribed, and the other node broadcasts the moment the join
/// returns (without the wait, most rounds lost their `hit`).
#[actix_rt::test]
async fn a_namespace_connect_hears_the_other_nodes_from_connected_on() {
    let Some(redis) = RedisServer::start("a_namespace_connect_hears") else {
        return;
    };
    let tables = || {
        Volley::builder()
            .namespace("/", namespace())
            .cluster(RedisCluster::new(&redis.url()).unwrap())
            .dynamic_namespaces(|name| name.starts_with("/table-").then(namespace))
    };
    let a = node_of(tables()).await;
    let b = node_of(tables()).await;
    // Held on A, which has no socket there: A publishes, only B subscribes.
    let table = a.volley.of("/table-1").unwrap();
    let channel = "volley:ns:/table-1";
    let client = connect(&b, WS).await;
    for round in 0..CONNECT_ROUNDS {
        let mut ns = client.join("/table-1", &()).await.unwrap();
        table.emit("hit", &round).unwrap();
        table.emit("fence", &()).unwrap();
        let hits = hits_until_fence(&mut ns).await;
        assert_eq!(hits, [round], "round {round}");
        ns.leave().unwrap();
        redis.await_subscribers(channel, 0).await;
    }
}

const CONNECT_ROUNDS: usize = 8;

/// The operations on a broadcast's sockets reach every node's: asked on A, B's
/// sockets are listed, joined (effective on B when the join returns: A's emit right
/// after it reaches them once), taken out of a room and disconnected.
#[actix_rt::test]
async fn operations_on_a_broadcast_target_reach_every_node() {
    let Some(redis) = RedisServer::start("operations_on_a_broadcast_target") else {
        return;
    };
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut on_a = players(&a, WS, "/", &[("ann", &["red"]), ("bob", &["blue"])]).await;
    let mut on_b = players(&b, WS, "/", &[("cat", &["red", "blue"]), ("dan", &[])]).await;
    let table: Vec<_> = id_table(&on_a).into_iter().chain(id_table(&on_b)).collect();
    let ids = |names: &[&str]| ids_of(&table, names);
    let found = |found: &[(&str, &[&str])]| found_of(&table, found);
    let root = a.volley.of("/").unwrap();
    // Each node's members added up.
    let rooms = root.rooms().await;
    assert_eq!(rooms, [("blue".into(), 2), ("red".into(), 2)].into());
    // Each node's sockets with their rooms, and what they shared of themselves.
    on_b[0].share(serde_json::json!({ "name": "cat" })).await;
    assert_eq!(
        root.broadcast().fetch_sockets().await,
        sharing(
            &table,
            found(&[
                ("ann", &["red"]),
                ("bob", &["blue"]),
                ("cat", &["blue", "red"]),
                ("dan", &[]),
            ]),
            &[("cat", r#"{"name":"cat"}"#)]
        )
    );
    on_b[0].share(serde_json::Value::Null).await;
    assert_eq!(
        root.to("red").fetch_sockets().await,
        found(&[("ann", &["red"]), ("cat", &["blue", "red"])])
    );
    assert_eq!(
        root.to("blue").except("red").fetch_sockets().await,
        found(&[("bob", &["blue"])])
    );

    // B has no member of green yet: the join returns once B is subscribed.
    assert_eq!(
        root.to("red").sockets_join("green").await,
        ids(&["ann", "cat"])
    );
    root.to("green").emit("hit", &()).unwrap();
    root.emit("fence", &()).unwrap();
    let got = until_fences(&mut [&mut on_a, &mut on_b], &[]).await;
    for (who, hits) in [("ann", 1), ("bob", 0), ("cat", 1), ("dan", 0)] {
        let n = got.get(&(who, "hit".to_owned())).map_or(0, Vec::len);
        assert_eq!(n, hits, "{who}: {got:?}");
    }
    assert_eq!(
        root.to("green").sockets_leave("green").await,
        ids(&["ann", "cat"])
    );
    assert_eq!(root.to("green").fetch_sockets().await, []);
    redis.await_subscribers(&room_channel("green"), 0).await;

    let gone = root.to("blue").disconnect_sockets("table closed").await;
    assert_eq!(gone, ids(&["bob", "cat"]));
    let cat = on_b.iter_mut().find(|p| p.name == "cat").unwrap();
    assert_eq!(cat.disconnected().await.as_deref(), Some("table closed"));
    assert_eq!(
        root.broadcast().fetch_sockets().await,
        found(&[("ann", &["red"]), ("dan", &[])])
    );
}
