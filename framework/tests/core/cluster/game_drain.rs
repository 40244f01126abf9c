//! Seats that move with their sessions: a seated player whose node drains keeps its
//! seat, in a room of another node or of the draining node itself, and plays on
//! from the node its session moves to; a draining node takes no new rooms; and with
//! `move_on_resume` a seated player's session moves, seat and all, to the node its
//! client resumes on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use volley::client::{Client, ClientConfig, NamespaceClient};
use volley::game::events;
use volley::{
    Game, GameRooms, JoinRequest, RoomContext, RoomId, RoomOptions, RoomSetup, SessionId,
};

use super::*;
use crate::proxy::{Cuts, FaultProxy};
use crate::resume::{quick_backoff, server_addr};

/// Inputs each player sends, in bursts of [`BURST`]; A drains a third of the way.
const INPUTS: u64 = 150;
const BURST: u64 = 5;

/// Answers each input `n` with a reliable `got n` to its player; the state is each
/// player's last input.
#[derive(Default)]
struct Echo(std::collections::BTreeMap<u64, u64>);

impl Game for Echo {
    type Input = u64;
    type Subset = ();
    type State = Vec<(u64, u64)>;
    fn create(_: &RoomSetup<'_>) -> Result<Self, String> {
        Ok(Echo::default())
    }
    fn join(&mut self, _: &mut RoomContext, _: SessionId, _: &Value) -> Result<(), String> {
        Ok(())
    }
    fn input(&mut self, ctx: &mut RoomContext, player: SessionId, n: u64) {
        self.0.insert(player.0, n);
        let _ = ctx.emit_to(player, "got", &n);
    }
    fn tick(&mut self, _: &mut RoomContext, _: Duration) {}
    fn subset(&self, _: SessionId) {}
    fn state(&self, _: &()) -> Vec<(u64, u64)> {
        self.0.iter().map(|(p, n)| (*p, *n)).collect()
    }
}

/// A node whose echo rooms are shared with the cluster, and those rooms.
async fn echo_node(redis: &RedisServer) -> (TestServer, GameRooms) {
    echo_node_in(RedisCluster::new(&redis.url()).unwrap()).await
}

/// A node of `cluster` whose echo rooms are shared, and those rooms.
async fn echo_node_in(cluster: RedisCluster) -> (TestServer, GameRooms) {
    let options = RoomOptions {
        tick_rate: 30,
        broadcast_rate: 10,
        max_inputs_per_tick: 32,
        ..RoomOptions::default()
    };
    let rooms = GameRooms::builder()
        .threads(1)
        .game::<Echo>("echo", options)
        .build();
    let builder = Volley::builder()
        .heartbeat(Duration::from_secs(2), Duration::from_secs(2))
        .namespace("/game", rooms.with_events(Namespace::new()))
        .cluster(cluster);
    let server = node_of(builder).await;
    rooms.share_in(&server.volley);
    (server, rooms)
}

/// A player whose first connection reaches `first` and every later one `then`
/// (a round-robin balancer over the two), seated in `room`.
async fn player(
    first: &TestServer,
    then: &TestServer,
    room: RoomId,
) -> (Client, NamespaceClient, FaultProxy) {
    let targets = vec![server_addr(first), server_addr(then)];
    let proxy = FaultProxy::balance(targets, Cuts::Never, 7).await;
    let config = ClientConfig {
        backoff: quick_backoff(),
        ..ClientConfig::default()
    };
    let client = Client::connect_with(&proxy.url(), config).await.unwrap();
    let ns = client.join("/game", &()).await.unwrap();
    let joined: Result<volley::Joined, String> = ns
        .emit_with_ack(events::JOIN, &JoinRequest::to_room(room), WAIT)
        .await
        .unwrap();
    assert_eq!(joined.unwrap().room, room);
    (client, ns, proxy)
}

/// Sends the inputs 1..=INPUTS in bursts, checking that each `got n` comes back once
/// and in order (states in between are skipped); `done` counts the answers. Then
/// waits for a state that shows the last input.
async fn plays(mut ns: NamespaceClient, me: u64, done: Arc<AtomicU64>) -> NamespaceClient {
    let mut next = 1;
    for burst in (1..=INPUTS).collect::<Vec<_>>().chunks(BURST as usize) {
        for n in burst {
            ns.emit(events::INPUT, n).unwrap();
        }
        while next <= *burst.last().unwrap() {
            let event = next_event(&mut ns).await;
            if event.name != "got" {
                continue;
            }
            let n: u64 = event.decode().unwrap();
            assert_eq!(n, next, "player {me}: a room event lost or twice");
            next += 1;
            done.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    loop {
        let event = next_event(&mut ns).await;
        if event.name == "state"
            && event
                .decode::<Vec<(u64, u64)>>()
                .unwrap()
                .contains(&(me, INPUTS))
        {
            return ns;
        }
        assert_ne!(event.name, "got", "a room event twice");
    }
}

#[actix_rt::test]
async fn seated_players_keep_their_seats_and_play_on_across_a_drain() {
    let Some(redis) = RedisServer::start("seated_players_keep_their_seats_across_a_drain") else {
        return;
    };
    let (a, rooms_a) = echo_node(&redis).await;
    let (b, rooms_b) = echo_node(&redis).await;
    let (_c, rooms_c) = echo_node(&redis).await;
    await_nodes(&a, 3).await;
    // One room on C, one on the node that will drain (A).
    let on_c = rooms_c
        .create(&JoinRequest::new("echo").filter("at", "c"))
        .await
        .unwrap();
    let on_a = rooms_a
        .create(&JoinRequest::new("echo").filter("at", "a"))
        .await
        .unwrap();
    listed(&rooms_a, &[on_c, on_a]).await;
    // Both players' sessions are on A (their next connections reach B): Cleo sits
    // in C's room as A's guest, Abe in A's own room.
    let (cleo_client, cleo, _cleo_proxy) = player(&a, &b, on_c).await;
    let (abe_client, abe, _abe_proxy) = player(&a, &b, on_a).await;
    let (cleo_id, abe_id) = (cleo_client.session_id(), abe_client.session_id());
    assert_eq!(rooms_a.room_of(SessionId(cleo_id)), Some(on_c));
    let (cleo_done, abe_done) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let playing = futures_util::future::join(
        plays(cleo, cleo_id, cleo_done.clone()),
        plays(abe, abe_id, abe_done.clone()),
    );
    let drain = async {
        let deadline = tokio::time::Instant::now() + WAIT;
        while cleo_done.load(Ordering::Relaxed) < INPUTS / 3
            || abe_done.load(Ordering::Relaxed) < INPUTS / 3
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the players do not play"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        a.volley.cluster().unwrap().drain().await.unwrap()
    };
    let ((_cleo, abe), report) = tokio::join!(playing, drain);
    assert_eq!((report.moved, report.stayed), (2, 0), "{report:?}");
    assert!(a.volley.local_sessions().await.is_empty());

    // Every input reached its room once (each answered once, in order, above).
    for (rooms, room) in [(&rooms_c, on_c), (&rooms_a, on_a)] {
        let metrics = rooms.metrics(room).await.unwrap();
        assert_eq!(
            (metrics.players, metrics.inputs_applied),
            (1, INPUTS),
            "{metrics:?}"
        );
    }
    // The seats: in their rooms on C and A, and held now by the nodes the sessions
    // moved to (B or C); A keeps none for Cleo.
    assert_eq!(rooms_c.room_of(SessionId(cleo_id)), Some(on_c));
    assert_eq!(rooms_a.room_of(SessionId(abe_id)), Some(on_a));
    assert_eq!(rooms_a.room_of(SessionId(cleo_id)), None);
    let sessions = b.volley.cluster().unwrap().sessions().await.unwrap();
    for (id, room) in [(cleo_id, on_c), (abe_id, on_a)] {
        let node = sessions
            .iter()
            .find(|s| s.info.id.0 == id)
            .expect("moved")
            .node;
        let rooms = if node == b.volley.cluster().unwrap().id() {
            &rooms_b
        } else {
            &rooms_c
        };
        assert_eq!(rooms.room_of(SessionId(id)), Some(room), "on its new node");
    }

    // A drains: a join-or-create, from any node, places nothing there, not even in
    // its room with free seats.
    for node in [&a, &b] {
        let client = connect(node, WS).await;
        let ns = client.join("/game", &()).await.unwrap();
        for at in ["a", "new"] {
            let joined: Result<volley::Joined, String> = ns
                .emit_with_ack(
                    events::JOIN,
                    &JoinRequest::new("echo").filter("at", at),
                    WAIT,
                )
                .await
                .unwrap();
            let room = joined.unwrap().room;
            assert_ne!(room, on_a);
            assert!(
                !here(&rooms_a).await.contains(&room),
                "room {room} placed on A"
            );
            let _: bool = ns.emit_with_ack(events::LEAVE, &(), WAIT).await.unwrap();
        }
    }
    assert_eq!(here(&rooms_a).await, vec![on_a], "A runs its room on");
    // Until its last player leaves (from the node its session is on now): then a
    // stopping A need not wait for its deadline.
    let cluster_a = a.volley.cluster().unwrap();
    assert_eq!(cluster_a.wait_rooms_empty(Duration::ZERO).await, 1);
    let left: bool = abe.emit_with_ack(events::LEAVE, &(), WAIT).await.unwrap();
    assert!(left);
    assert_eq!(cluster_a.wait_rooms_empty(WAIT).await, 0);
}

#[actix_rt::test]
async fn a_seated_player_moves_with_its_seat_to_the_node_it_resumes_on() {
    let Some(redis) = RedisServer::start("a_seated_player_moves_with_its_seat") else {
        return;
    };
    let cluster = || {
        RedisCluster::new(&redis.url())
            .unwrap()
            .move_on_resume(true)
    };
    let (a, rooms_a) = echo_node_in(cluster()).await;
    let (b, rooms_b) = echo_node_in(cluster()).await;
    let (_c, rooms_c) = echo_node_in(cluster()).await;
    await_nodes(&a, 3).await;
    // One room on each node; a player of A in each (a guest of B and of C in
    // theirs). Their next connections reach B.
    let on_a = rooms_a
        .create(&JoinRequest::new("echo").filter("at", "a"))
        .await
        .unwrap();
    let on_b = rooms_b
        .create(&JoinRequest::new("echo").filter("at", "b"))
        .await
        .unwrap();
    let on_c = rooms_c
        .create(&JoinRequest::new("echo").filter("at", "c"))
        .await
        .unwrap();
    listed(&rooms_a, &[on_a, on_b, on_c]).await;
    // (The room, its node's rooms, the seat A's table shows after the move.)
    for (room, owner, on_a_after) in [
        (on_a, &rooms_a, Some(on_a)),
        (on_b, &rooms_b, None),
        (on_c, &rooms_c, None),
    ] {
        let (client, mut ns, proxy) = player(&a, &b, room).await;
        let me = SessionId(client.session_id());
        ns.emit(events::INPUT, &1u64).unwrap();
        assert_eq!(got(&mut ns).await, 1);
        proxy.cut_all();
        resumed(&client).await;
        // The session is B's now, seated there (as A's or C's guest, or in B's own
        // room); it plays on.
        let sessions = a.volley.cluster().unwrap().sessions().await.unwrap();
        let session = sessions.iter().find(|s| s.info.id == me).expect("listed");
        assert_eq!(session.node, b.volley.cluster().unwrap().id());
        assert_eq!(rooms_b.room_of(me), Some(room));
        assert_eq!(owner.room_of(me), Some(room));
        assert_eq!(rooms_a.room_of(me), on_a_after);
        ns.emit(events::INPUT, &2u64).unwrap();
        assert_eq!(got(&mut ns).await, 2);
        let metrics = owner.metrics(room).await.unwrap();
        assert_eq!((metrics.players, metrics.inputs_applied), (1, 2));
    }
}

/// The next `got` event's number (states skipped).
async fn got(ns: &mut NamespaceClient) -> u64 {
    loop {
        let event = next_event(ns).await;
        if event.name == "got" {
            return event.decode().unwrap();
        }
    }
}

/// The rooms running on the node of `rooms`.
async fn here(rooms: &GameRooms) -> Vec<RoomId> {
    rooms.all_metrics().await.iter().map(|m| m.room).collect()
}

/// Waits (at most [`WAIT`]) until `rooms` lists `ids` (the registry is written
/// within 100 ms of a room made).
async fn listed(rooms: &GameRooms, ids: &[RoomId]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let listing: Vec<RoomId> = rooms.list(None).await.iter().map(|r| r.id).collect();
        if ids.iter().all(|id| listing.contains(id)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "listed: {listing:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
