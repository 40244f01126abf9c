//! Game rooms in a cluster: a room runs on one node, and a seated player whose
//! connection lands on another node keeps its seat, its inputs and its states.

use std::time::Duration;

use volley::client::{Client, ClientConfig, NamespaceClient};
use volley::game::events;
use volley::{
    Game, GameRooms, JoinRequest, Joined, RoomContext, RoomOptions, RoomSetup, SessionId,
};

use super::*;
use crate::proxy::{Cuts, FaultProxy};
use crate::resume::{quick_backoff, server_addr};

/// Counts each player's inputs; everyone sees every count.
#[derive(Default)]
struct Tally(std::collections::BTreeMap<u64, u64>);

impl Game for Tally {
    type Input = u64;
    type Subset = ();
    type State = Vec<(u64, u64)>;
    fn create(_: &RoomSetup<'_>) -> Result<Self, String> {
        Ok(Tally::default())
    }
    fn input(&mut self, _: &mut RoomContext, player: SessionId, _: u64) {
        *self.0.entry(player.0).or_default() += 1;
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
    let targets = vec![server_addr(&a), server_addr(&b)];
    let proxy = FaultProxy::balance(targets, Cuts::Never, 1).await;
    let config = ClientConfig {
        backoff: quick_backoff(),
        ..ClientConfig::default()
    };
    // Seated on A (the first connection goes there).
    let client = Client::connect_with(&proxy.url(), config).await.unwrap();
    let mut ns = client.join("/game", &()).await.unwrap();
    let me = client.session_id();
    let joined: Result<Joined, String> = ns
        .emit_with_ack(events::JOIN, &JoinRequest::new("tally"), WAIT)
        .await
        .unwrap();
    let room = joined.unwrap().room;
    ns.emit(events::INPUT, &1u64).unwrap();
    state_with(&mut ns, me, 1).await;

    // The next connection reaches B: the session, its seat and its room stay on A.
    proxy.cut_all();
    resumed(&client).await;
    assert!(
        b.volley.cluster().unwrap().stats().relayed > 0,
        "relayed by B"
    );
    assert_eq!(rooms_a.room_of(SessionId(me)), Some(room));
    assert_eq!(rooms_b.list(None).await.len(), 0, "no room on B");
    ns.emit(events::INPUT, &2u64).unwrap();
    state_with(&mut ns, me, 2).await;
}
