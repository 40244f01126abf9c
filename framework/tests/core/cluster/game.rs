//! Game rooms in a cluster: a room runs on one node, listings and join-or-create see
//! every node's rooms, a player connected to any node plays in a room of any node,
//! and a seated player whose connection lands on another node keeps its seat, its
//! inputs and its states.

use std::time::Duration;

use serde_json::Value;
use volley::client::{Client, ClientConfig, NamespaceClient};
use volley::game::events;
use volley::RoomId;
use volley::{
    Game, GameRooms, JoinRequest, Joined, RoomContext, RoomOptions, RoomSetup, SessionId,
};

use super::*;
use crate::proxy::{Cuts, FaultProxy};
use crate::resume::{quick_backoff, server_addr};

/// Counts each player's inputs; everyone sees every count. Input 0 locks the room.
#[derive(Default)]
struct Tally(std::collections::BTreeMap<u64, u64>);

impl Game for Tally {
    type Input = u64;
    type Subset = ();
    type State = Vec<(u64, u64)>;
    fn create(_: &RoomSetup<'_>) -> Result<Self, String> {
        Ok(Tally::default())
    }
    fn join(&mut self, ctx: &mut RoomContext, player: SessionId, _: &Value) -> Result<(), String> {
        // A reliable event at once: it reaches a player of another node too.
        ctx.emit_to(player, "welcome", &ctx.room())
            .map_err(|e| e.to_string())
    }
    fn input(&mut self, ctx: &mut RoomContext, player: SessionId, n: u64) {
        *self.0.entry(player.0).or_default() += 1;
        if n == 0 {
            // Input 0 locks the room, and says so.
            ctx.lock();
            ctx.emit_all("locked", &ctx.room()).unwrap();
        }
    }
    fn tick(&mut self, _: &mut RoomContext, _: Duration) {}
    fn subset(&self, _: SessionId) {}
    fn state(&self, _: &()) -> Vec<(u64, u64)> {
        self.0.iter().map(|(p, n)| (*p, *n)).collect()
    }
}

fn tally_rooms() -> GameRooms {
    let options = RoomOptions {
        tick_rate: 20,
        broadcast_rate: 20,
        ..RoomOptions::default()
    };
    GameRooms::builder().game::<Tally>("tally", options).build()
}

/// Waits for the game's `welcome` to room `room`.
async fn welcomed(ns: &mut NamespaceClient, room: RoomId) {
    loop {
        let event = next_event(ns).await;
        if event.name == "welcome" {
            assert_eq!(event.decode::<RoomId>().unwrap(), room);
            return;
        }
    }
}

/// The next state that shows `inputs` inputs of `player`.
async fn state_with(ns: &mut NamespaceClient, player: u64, inputs: u64) {
    loop {
        let event = next_event(ns).await;
        if event.name != "state" {
            continue;
        }
        let state: Vec<(u64, u64)> = event.decode().unwrap();
        if state.contains(&(player, inputs)) {
            return;
        }
    }
}

#[actix_rt::test]
async fn a_seated_player_plays_on_through_another_node() {
    let Some(redis) = RedisServer::start("a_seated_player_plays_on_through_another_node") else {
        return;
    };
    let (rooms_a, rooms_b) = (tally_rooms(), tally_rooms());
    let node = |rooms: &GameRooms| {
        Volley::builder()
            .namespace("/game", rooms.with_events(Namespace::new()))
            .cluster(RedisCluster::new(&redis.url()).unwrap())
    };
    let a = node_of(node(&rooms_a)).await;
    let b = node_of(node(&rooms_b)).await;
    // Seated on A (the first connection goes there).
    let targets = vec![server_addr(&a), server_addr(&b)];
    let (mut player, room) = Relayed::seat(targets, &JoinRequest::new("tally")).await;
    // The next connection reaches B: the session, its seat and its room stay on A.
    player.plays_on_through(&b, &[&rooms_a], room).await;
    assert_eq!(rooms_b.list(None).await.len(), 0, "no room on B");
}

/// A player behind a round-robin balancer (no stickiness) over some nodes.
struct Relayed {
    proxy: FaultProxy,
    client: Client,
    ns: NamespaceClient,
    me: u64,
}

impl Relayed {
    /// The player's first connection reaches the first of `targets`; it joins a
    /// room by `request` and plays one input.
    async fn seat(targets: Vec<std::net::SocketAddr>, request: &JoinRequest) -> (Self, RoomId) {
        let proxy = FaultProxy::balance(targets, Cuts::Never, 1).await;
        let config = ClientConfig {
            backoff: quick_backoff(),
            ..ClientConfig::default()
        };
        let client = Client::connect_with(&proxy.url(), config).await.unwrap();
        let mut ns = client.join("/game", &()).await.unwrap();
        let me = client.session_id();
        let room = join(&ns, request).await.unwrap().room;
        ns.emit(events::INPUT, &1u64).unwrap();
        state_with(&mut ns, me, 1).await;
        let player = Relayed {
            proxy,
            client,
            ns,
            me,
        };
        (player, room)
    }

    /// Cuts the connection: the next one reaches `via`, which relays it to the
    /// session; the seat stays in `room` (as `seated` see it) and the player plays on.
    async fn plays_on_through(&mut self, via: &TestServer, seated: &[&GameRooms], room: RoomId) {
        self.proxy.cut_all();
        resumed(&self.client).await;
        let relayed = via.volley.cluster().unwrap().stats().relayed;
        assert!(relayed > 0, "relayed by the node the connection reached");
        for rooms in seated {
            assert_eq!(rooms.room_of(SessionId(self.me)), Some(room));
        }
        self.ns.emit(events::INPUT, &2u64).unwrap();
        state_with(&mut self.ns, self.me, 2).await;
    }
}

/// A node of `redis` (as Redis user `user`, if given) whose tally rooms are shared
/// with the cluster's other nodes, and those rooms.
async fn game_node(redis: &RedisServer, user: Option<&str>) -> (TestServer, GameRooms) {
    let url = match user {
        Some(user) => redis.add_user(user).await,
        None => redis.url(),
    };
    let ttl = Duration::from_secs(1);
    game_node_in(RedisCluster::new(&url).unwrap().node_ttl(ttl)).await
}

/// A node of `cluster` whose tally rooms are shared, and those rooms.
async fn game_node_in(cluster: RedisCluster) -> (TestServer, GameRooms) {
    let rooms = tally_rooms();
    let builder = Volley::builder()
        .namespace("/game", rooms.with_events(Namespace::new()))
        .cluster(cluster);
    let server = node_of(builder).await;
    rooms.share_in(&server.volley);
    (server, rooms)
}

/// A client of `server` in `/game`, and its session id. `spare` clients are opened
/// (and kept in the returned list) first, so that session ids differ from those of
/// the other nodes (each node numbers its sessions from the same start).
async fn gamer(server: &TestServer, spare: usize) -> (Vec<Client>, NamespaceClient, u64) {
    let mut clients = Vec::new();
    for _ in 0..spare {
        clients.push(connect(server, WS).await);
    }
    let client = connect(server, WS).await;
    let ns = client.join("/game", &()).await.unwrap();
    let me = client.session_id();
    clients.push(client);
    (clients, ns, me)
}

/// The rooms running on the node of `rooms` (its metrics are its own).
async fn here(rooms: &GameRooms) -> Vec<RoomId> {
    rooms.all_metrics().await.iter().map(|m| m.room).collect()
}

async fn join(ns: &NamespaceClient, request: &JoinRequest) -> Result<Joined, String> {
    ns.emit_with_ack(events::JOIN, request, WAIT).await.unwrap()
}

#[actix_rt::test]
async fn join_or_create_from_two_nodes_lands_in_one_room_and_both_play() {
    let Some(redis) = RedisServer::start("join_or_create_from_two_nodes") else {
        return;
    };
    let (a, rooms_a) = game_node(&redis, None).await;
    let (b, rooms_b) = game_node(&redis, None).await;
    await_nodes(&b, 2).await;
    let (_ka, mut on_a, ann) = gamer(&a, 0).await;
    let (_kb, mut on_b, bob) = gamer(&b, 1).await;
    assert_ne!(ann, bob);
    let first = join(&on_a, &JoinRequest::new("tally")).await.unwrap();
    // B has no room: join-or-create finds A's, which has a free seat.
    let second = join(&on_b, &JoinRequest::new("tally")).await.unwrap();
    assert_eq!(second.room, first.room);
    assert_eq!(second.players, 2);
    assert_eq!(rooms_b.room_of(SessionId(bob)), Some(first.room));
    welcomed(&mut on_b, first.room).await;
    // Either node lists the one room with both players.
    for rooms in [&rooms_a, &rooms_b] {
        let listing = rooms.list(Some("tally")).await;
        assert_eq!(listing.len(), 1, "{listing:?}");
        assert_eq!((listing[0].id, listing[0].players), (first.room, 2));
    }
    // Bob plays from B: his inputs reach the room on A, its states reach him and Ann.
    on_b.emit(events::INPUT, &1u64).unwrap();
    on_b.emit(events::INPUT, &2u64).unwrap();
    state_with(&mut on_b, bob, 2).await;
    state_with(&mut on_a, bob, 2).await;
    on_a.emit(events::INPUT, &1u64).unwrap();
    state_with(&mut on_b, ann, 1).await;
    let metrics = rooms_a.metrics(first.room).await.unwrap();
    assert_eq!(metrics.inputs_applied, 3);
    // Bob leaves from B: the seat on A is freed, and he may join again.
    let left: bool = on_b.emit_with_ack(events::LEAVE, &(), WAIT).await.unwrap();
    assert!(left);
    assert_eq!(rooms_b.room_of(SessionId(bob)), None);
    assert_eq!(rooms_a.room_of(SessionId(bob)), None);
    let again = join(&on_b, &JoinRequest::to_room(first.room))
        .await
        .unwrap();
    assert_eq!(again.room, first.room);
}

/// A join-or-create that the registry sends to a room which locked itself since
/// it was listed (the registry lags the room's node by up to 100 ms) is refused
/// there, looks again without it, and opens a room of its own.
#[actix_rt::test]
async fn join_or_create_passes_by_a_room_locked_since_it_was_listed() {
    let Some(redis) = RedisServer::start("join_or_create_passes_by_a_locked_room") else {
        return;
    };
    let (a, _rooms_a) = game_node(&redis, None).await;
    let (b, rooms_b) = game_node(&redis, None).await;
    await_nodes(&b, 2).await;
    let (_ka, mut on_a, _) = gamer(&a, 0).await;
    let (_kb, on_b, bob) = gamer(&b, 1).await;
    // Listed at once after the join through A (open, one seat taken).
    let first = join(&on_a, &JoinRequest::new("tally")).await.unwrap();
    on_a.emit(events::INPUT, &0u64).unwrap();
    loop {
        let event = next_event(&mut on_a).await;
        if event.name == "locked" {
            break;
        }
    }
    let second = join(&on_b, &JoinRequest::new("tally")).await.unwrap();
    assert_ne!(second.room, first.room, "a locked room takes no one new");
    assert_eq!(rooms_b.room_of(SessionId(bob)), Some(second.room));
}

#[actix_rt::test]
async fn join_or_create_at_once_on_two_nodes_opens_one_room() {
    let Some(redis) = RedisServer::start("join_or_create_at_once_on_two_nodes") else {
        return;
    };
    let (a, _rooms_a) = game_node(&redis, None).await;
    let (b, _rooms_b) = game_node(&redis, None).await;
    await_nodes(&b, 2).await;
    let (_ka, on_a, _) = gamer(&a, 0).await;
    let (_kb, on_b, _) = gamer(&b, 1).await;
    // No room yet, both nodes equally loaded: each would make its own.
    let request = JoinRequest::new("tally").filter("mode", "rush");
    let (ann, bob) = tokio::join!(join(&on_a, &request), join(&on_b, &request));
    assert_eq!(ann.unwrap().room, bob.unwrap().room);
}

#[actix_rt::test]
async fn new_rooms_go_to_the_least_loaded_node() {
    let Some(redis) = RedisServer::start("new_rooms_go_to_the_least_loaded_node") else {
        return;
    };
    let (a, rooms_a) = game_node(&redis, None).await;
    let (_b, rooms_b) = game_node(&redis, None).await;
    await_nodes(&a, 2).await;
    // A gets a full-ish room of its own (its players count as its load).
    let (_ka, on_a, _) = gamer(&a, 0).await;
    let solo = JoinRequest::new("tally").filter("mode", "solo");
    let on_a_room = join(&on_a, &solo).await.unwrap().room;
    // A join-or-create for a room nobody has, asked on A, makes it on B.
    let (_kc, on_a2, carl) = gamer(&a, 0).await;
    let duel = JoinRequest::new("tally").filter("mode", "duel");
    let duel_room = join(&on_a2, &duel).await.unwrap().room;
    assert_ne!(duel_room, on_a_room);
    assert_eq!(here(&rooms_b).await, vec![duel_room]);
    assert_eq!(rooms_a.room_of(SessionId(carl)), Some(duel_room));
    let listing = rooms_a.list(None).await;
    let ids: Vec<RoomId> = listing.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 2, "{listing:?}");
    // A room id's high bits are its node's number from Redis (as a session id's):
    // A took 1 and B 2 from a fresh Redis, so the two nodes' ids never meet.
    let number = |id: u64| id >> 32;
    assert_eq!(number(carl), 1);
    assert_eq!((number(on_a_room.0), number(duel_room.0)), (1, 2));
}

#[actix_rt::test]
async fn a_dead_nodes_rooms_leave_the_listings() {
    let Some(redis) = RedisServer::start("a_dead_nodes_rooms_leave_the_listings") else {
        return;
    };
    let (a, _rooms_a) = game_node(&redis, Some("node-a")).await;
    let (b, rooms_b) = game_node(&redis, None).await;
    await_nodes(&b, 2).await;
    let (_ka, on_a, _) = gamer(&a, 0).await;
    let room = join(&on_a, &JoinRequest::new("tally")).await.unwrap().room;
    assert_eq!(rooms_b.list(None).await.len(), 1);
    // A is cut from Redis for good: to B it is dead.
    redis.cut_user("node-a").await;
    await_nodes(&b, 1).await;
    assert_eq!(rooms_b.list(None).await, vec![]);
    // Join-or-create on B now makes a room on B.
    let (_kb, on_b, _) = gamer(&b, 0).await;
    let fresh = join(&on_b, &JoinRequest::new("tally")).await.unwrap().room;
    assert_ne!(fresh, room);
    assert_eq!(here(&rooms_b).await, vec![fresh]);
}

#[actix_rt::test]
async fn a_player_seated_across_nodes_resumes_on_a_third_and_keeps_playing() {
    let Some(redis) = RedisServer::start("seated_across_nodes_resumes_on_a_third") else {
        return;
    };
    let (a, rooms_a) = game_node(&redis, None).await;
    let (b, rooms_b) = game_node(&redis, None).await;
    let (c, _rooms_c) = game_node(&redis, None).await;
    await_nodes(&a, 3).await;
    // The room is on A.
    let (_ka, on_a, _) = gamer(&a, 0).await;
    let room = join(&on_a, &JoinRequest::new("tally")).await.unwrap().room;
    // The player's session is on B (behind a balancer that sends the next
    // connection to C); its ids differ from A's.
    let _spare = connect(&b, WS).await;
    let targets = vec![server_addr(&b), server_addr(&c)];
    let (mut player, joined) = Relayed::seat(targets, &JoinRequest::to_room(room)).await;
    assert_eq!(joined, room);
    // The connection lands on C: relayed to the session on B, seated on A.
    player
        .plays_on_through(&c, &[&rooms_b, &rooms_a], room)
        .await;
}

/// Waits (at most [`WAIT`]) until `player` has no seat in `rooms`.
async fn unseated(rooms: &GameRooms, player: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while rooms.room_of(SessionId(player)).is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{player} still seated"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn seats_across_a_dead_node_are_freed_on_both_sides() {
    let Some(redis) = RedisServer::start("seats_across_a_dead_node_are_freed") else {
        return;
    };
    let (a, _rooms_a) = game_node(&redis, Some("node-a")).await;
    let (b, rooms_b) = game_node(&redis, None).await;
    await_nodes(&b, 2).await;
    // Room "a" on A with Bob of B as a guest; room "b" on B (A is the busier node
    // then) with Dan of A as a guest. Two spare sessions on B keep its ids apart
    // from A's.
    let mode = |m: &str| JoinRequest::new("tally").filter("mode", m);
    let (_ka, on_a, _) = gamer(&a, 0).await;
    let room_a = join(&on_a, &mode("a")).await.unwrap().room;
    let (_kb, on_b, bob) = gamer(&b, 2).await;
    assert_eq!(join(&on_b, &mode("a")).await.unwrap().room, room_a);
    let (_kc, on_b2, _) = gamer(&b, 0).await;
    let room_b = join(&on_b2, &mode("b")).await.unwrap().room;
    assert_eq!(here(&rooms_b).await, vec![room_b]);
    let (_kd, on_a2, dan) = gamer(&a, 0).await;
    assert_eq!(join(&on_a2, &mode("b")).await.unwrap().room, room_b);
    assert_eq!(rooms_b.room_of(SessionId(dan)), Some(room_b));

    // A dies: Bob's seat in A's room goes, and so does Dan's in B's room (the game
    // sees him leave: B's listing counts one player again).
    redis.cut_user("node-a").await;
    await_nodes(&b, 1).await;
    unseated(&rooms_b, bob).await;
    unseated(&rooms_b, dan).await;
    let listing = rooms_b.list(None).await;
    assert_eq!(listing.len(), 1, "{listing:?}");
    assert_eq!((listing[0].id, listing[0].players), (room_b, 1));
    // Bob joins again, on a room of a live node.
    assert_eq!(join(&on_b, &mode("b")).await.unwrap().room, room_b);
}

#[actix_rt::test]
async fn a_stopped_nodes_rooms_leave_the_listings_at_once() {
    let Some(redis) = RedisServer::start("a_stopped_nodes_rooms_leave_the_listings") else {
        return;
    };
    // A TTL far longer than the test: only the node's goodbye can remove it.
    let cluster = || {
        RedisCluster::new(&redis.url())
            .unwrap()
            .node_ttl(Duration::from_secs(600))
    };
    let (a, rooms_a) = game_node_in(cluster()).await;
    let (b, rooms_b) = game_node_in(cluster()).await;
    await_nodes(&b, 2).await;
    let (ka, on_a, _) = gamer(&a, 0).await;
    join(&on_a, &JoinRequest::new("tally")).await.unwrap();
    assert_eq!(rooms_b.list(None).await.len(), 1);
    // The server and its rooms go: the node says goodbye.
    drop((ka, on_a, a, rooms_a));
    await_nodes(&b, 1).await;
    assert_eq!(rooms_b.list(None).await, vec![]);
}
