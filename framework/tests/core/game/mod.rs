//! Game rooms against a real server: the test games and helpers here, the tests by
//! subject in the modules below. Timing figures are printed; the only timing
//! assertion is the tick count of a lone 60 Hz room (±2 ticks).

mod matchmaking;
mod seats;
mod subsets;
mod ticks;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use volley::client::{Backoff, Client, ClientConfig, ConnectionEvent, NamespaceClient};
use volley::game::events;
use volley::{
    Game, GameRooms, JoinRequest, Joined, LeaveReason, Namespace, RoomContext, RoomId, RoomMetrics,
    RoomOptions, RoomSetup, SessionId, Volley,
};

use crate::common::*;
use crate::proxy::{Cuts, FaultProxy};

// ---------------------------------------------------------------- test games

/// Counts its ticks; nothing else. The room whose rate is measured.
pub struct Ticker;

impl Game for Ticker {
    type Input = ();
    type Subset = ();
    type State = ();
    fn create(_: &RoomSetup<'_>) -> Result<Self, String> {
        Ok(Ticker)
    }
    fn input(&mut self, _: &mut RoomContext, _: SessionId, _: ()) {}
    fn tick(&mut self, _: &mut RoomContext, _: Duration) {}
    fn subset(&self, _: SessionId) {}
    fn state(&self, _: &()) {}
}

/// Does a little real work every tick (a few thousand arithmetic steps).
struct Busy(u64);

impl Game for Busy {
    type Input = ();
    type Subset = ();
    type State = u64;
    fn create(setup: &RoomSetup<'_>) -> Result<Self, String> {
        Ok(Busy(setup.id.0 | 1))
    }
    fn input(&mut self, _: &mut RoomContext, _: SessionId, _: ()) {}
    fn tick(&mut self, _: &mut RoomContext, _: Duration) {
        for _ in 0..2_000 {
            // xorshift: cheap work the optimiser cannot drop (the state is read).
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
        }
    }
    fn subset(&self, _: SessionId) {}
    fn state(&self, _: &()) -> u64 {
        self.0
    }
}

/// Players pick a team (`options: {"team": ..}`); each team sees its own roster and
/// the number of opponents, never the opponents' names. `input` counts per player;
/// leaving is announced to the others with the reason.
#[derive(Default)]
struct Teams {
    team_of: BTreeMap<SessionId, String>,
    applied: BTreeMap<SessionId, u64>,
    tick: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct TeamState {
    team: String,
    members: Vec<u64>,
    opponents: usize,
    applied: BTreeMap<u64, u64>,
    tick: u64,
}

impl Game for Teams {
    type Input = u32;
    type Subset = String;
    type State = TeamState;
    fn create(_: &RoomSetup<'_>) -> Result<Self, String> {
        Ok(Teams::default())
    }
    fn join(
        &mut self,
        _: &mut RoomContext,
        player: SessionId,
        options: &Value,
    ) -> Result<(), String> {
        let team = options["team"].as_str().unwrap_or("red").to_owned();
        self.team_of.insert(player, team);
        Ok(())
    }
    fn leave(&mut self, ctx: &mut RoomContext, player: SessionId, reason: &LeaveReason) {
        self.team_of.remove(&player);
        let _ = ctx.emit_all("left", &(player.0, reason.to_string()));
    }
    fn input(&mut self, _: &mut RoomContext, player: SessionId, _: u32) {
        *self.applied.entry(player).or_default() += 1;
    }
    fn tick(&mut self, ctx: &mut RoomContext, _: Duration) {
        self.tick = ctx.tick();
    }
    fn subset(&self, player: SessionId) -> String {
        self.team_of.get(&player).cloned().unwrap_or_default()
    }
    fn state(&self, team: &String) -> TeamState {
        let members: Vec<u64> = (self.team_of.iter())
            .filter(|(_, t)| *t == team)
            .map(|(id, _)| id.0)
            .collect();
        TeamState {
            team: team.clone(),
            opponents: self.team_of.len() - members.len(),
            members,
            applied: self.applied.iter().map(|(id, n)| (id.0, *n)).collect(),
            tick: self.tick,
        }
    }
}

static DUELS_DISPOSED: AtomicUsize = AtomicUsize::new(0);

/// Two seats; a room created with `{"password": p}` refuses joins without it.
struct Duel {
    password: Option<String>,
}

impl Game for Duel {
    type Input = ();
    type Subset = ();
    type State = ();
    fn create(setup: &RoomSetup<'_>) -> Result<Self, String> {
        let password = setup.options["password"].as_str().map(str::to_owned);
        Ok(Duel { password })
    }
    fn join(&mut self, _: &mut RoomContext, _: SessionId, options: &Value) -> Result<(), String> {
        match &self.password {
            Some(p) if options["password"].as_str() != Some(p) => Err("wrong password".into()),
            _ => Ok(()),
        }
    }
    fn input(&mut self, _: &mut RoomContext, _: SessionId, _: ()) {}
    fn tick(&mut self, _: &mut RoomContext, _: Duration) {}
    fn subset(&self, _: SessionId) {}
    fn state(&self, _: &()) {}
    fn dispose(&mut self, _: &mut RoomContext) {
        DUELS_DISPOSED.fetch_add(1, Ordering::SeqCst);
    }
}

/// Locks itself on input `true` and unlocks on `false`, telling its players which.
struct Gate;

impl Game for Gate {
    type Input = bool;
    type Subset = ();
    type State = ();
    fn create(_: &RoomSetup<'_>) -> Result<Self, String> {
        Ok(Gate)
    }
    fn input(&mut self, ctx: &mut RoomContext, _: SessionId, lock: bool) {
        if lock {
            ctx.lock();
        } else {
            ctx.unlock();
        }
        ctx.emit_all("locked", &lock).unwrap();
    }
    fn tick(&mut self, _: &mut RoomContext, _: Duration) {}
    fn subset(&self, _: SessionId) {}
    fn state(&self, _: &()) {}
}

// ---------------------------------------------------------------- helpers

pub(crate) fn game_rooms(options: RoomOptions) -> GameRooms {
    GameRooms::builder()
        .game::<Teams>("teams", options.clone())
        .game::<Gate>("gate", options.clone())
        .game::<Duel>(
            "duel",
            RoomOptions {
                max_players: 2,
                dispose_after_empty: Duration::from_millis(200),
                ..options
            },
        )
        .build()
}

fn game_server(rooms: &GameRooms, grace: Duration) -> TestServer {
    serve(
        Volley::builder()
            .resume_grace(grace)
            .namespace("/game", rooms.with_events(Namespace::new())),
    )
}

async fn player_at(url: &str, config: ClientConfig) -> (Client, NamespaceClient) {
    let client = Client::connect_with(url, config).await.expect("connects");
    let ns = client.join("/game", &()).await.expect("joins /game");
    (client, ns)
}

async fn player(server: &TestServer) -> (Client, NamespaceClient) {
    player_at(&server.url, ClientConfig::default()).await
}

async fn join(ns: &NamespaceClient, request: &JoinRequest) -> Result<Joined, String> {
    ns.emit_with_ack(events::JOIN, request, WAIT).await.unwrap()
}

/// The next `state` event (other events are skipped).
async fn next_state<T: serde::de::DeserializeOwned>(ns: &mut NamespaceClient) -> T {
    loop {
        let event = next_event(ns).await;
        if event.name == "state" {
            assert!(event.volatile, "state is sent as volatile events");
            return event.decode().unwrap();
        }
    }
}

/// The first state that counts three players (earlier ones predate the last join).
async fn state_of_three(ns: &mut NamespaceClient) -> TeamState {
    loop {
        let s: TeamState = next_state(ns).await;
        if s.members.len() + s.opponents == 3 {
            return s;
        }
    }
}

/// Polls the room's metrics until `done` holds.
async fn metrics_until(
    rooms: &GameRooms,
    room: RoomId,
    done: impl Fn(&RoomMetrics) -> bool,
) -> RoomMetrics {
    let deadline = Instant::now() + WAIT;
    loop {
        let m = rooms.metrics(room).await.expect("room exists");
        if done(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "condition not reached: {m:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn expected_ticks(m: &RoomMetrics) -> u64 {
    (m.uptime.as_secs_f64() * f64::from(m.tick_rate)).floor() as u64
}

/// Waits for the `Gate` game's `locked` event, which must say `want`.
async fn told_locked(ns: &mut NamespaceClient, want: bool) {
    loop {
        let event = next_event(ns).await;
        if event.name == "locked" {
            assert_eq!(event.decode::<bool>().unwrap(), want);
            return;
        }
    }
}
