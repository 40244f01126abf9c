//! A minimal tick-loop game: a race, in teams, to push your runners furthest.
//!
//! - `Race` implements `volley::Game`. Inputs (strides) are queued per player and
//!   handed to the game before each tick; `tick` moves every runner by a fixed step,
//!   30 times a second; 10 times a second the state goes out, computed once per team
//!   (`subset`): a team sees its own runners, and only the best distance of the other.
//! - The race starts once both teams have a runner, and locks its room
//!   (`ctx.lock()`): later runners are placed in another room by join-or-create.
//! - `GameRooms` runs the rooms on their own threads; `with_events` gives a namespace
//!   the standard events: `join_game` (join-or-create), `input`, `leave_game`,
//!   `list_games`.
//!
//! Run: `cargo run -p examples --bin tick_game` (add `-- --once` to run the demo and exit).

use std::collections::BTreeMap;
use std::error::Error;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use volley::client::{Client, NamespaceClient};
use volley::{Game, GameRooms, JoinRequest, Joined, LeaveReason, Namespace, Volley};
use volley::{RoomContext, RoomOptions, RoomSetup, SessionId};

#[derive(Default)]
struct Race {
    runners: BTreeMap<SessionId, Runner>,
    tick: u64,
    started: bool,
}

struct Runner {
    team: String,
    speed: f32,
    distance: f32,
}

/// What one team sees.
#[derive(Serialize, Deserialize)]
struct TeamView {
    team: String,
    mine: BTreeMap<u64, f32>,
    rival_best: f32,
    tick: u64,
}

impl Game for Race {
    type Input = f32; // a stride, 0..=1
    type Subset = String; // the team
    type State = TeamView;

    fn create(_: &RoomSetup<'_>) -> Result<Self, String> {
        Ok(Race::default())
    }

    fn join(
        &mut self,
        ctx: &mut RoomContext,
        id: SessionId,
        options: &Value,
    ) -> Result<(), String> {
        let Some(team @ ("red" | "blue")) = options["team"].as_str() else {
            return Err("pick a team: red or blue".into());
        };
        let runner = Runner {
            team: team.into(),
            speed: 0.0,
            distance: 0.0,
        };
        self.runners.insert(id, runner);
        let teams = |t: &str| self.runners.values().any(|r| r.team == t);
        if !self.started && teams("red") && teams("blue") {
            // Both teams are in: the race starts, and takes no latecomers.
            self.started = true;
            ctx.lock();
        }
        Ok(())
    }

    fn leave(&mut self, _: &mut RoomContext, id: SessionId, _: &LeaveReason) {
        self.runners.remove(&id);
    }

    fn input(&mut self, _: &mut RoomContext, id: SessionId, stride: f32) {
        if let Some(runner) = self.runners.get_mut(&id) {
            runner.speed += stride.clamp(0.0, 1.0);
        }
    }

    fn tick(&mut self, ctx: &mut RoomContext, dt: Duration) {
        self.tick = ctx.tick();
        for runner in self.runners.values_mut() {
            runner.distance += runner.speed * dt.as_secs_f32();
            runner.speed *= 0.95; // runners tire without new strides
        }
    }

    fn subset(&self, id: SessionId) -> String {
        self.runners
            .get(&id)
            .map(|r| r.team.clone())
            .unwrap_or_default()
    }

    fn state(&self, team: &String) -> TeamView {
        let (mine, rivals): (Vec<_>, Vec<_>) =
            self.runners.iter().partition(|(_, r)| &r.team == team);
        TeamView {
            team: team.clone(),
            mine: mine.iter().map(|(id, r)| (id.0, r.distance)).collect(),
            rival_best: rivals.iter().map(|(_, r)| r.distance).fold(0.0, f32::max),
            tick: self.tick,
        }
    }
}

/// A client in a race room for `team`: join-or-create through the `join_game` event.
async fn runner(
    url: &str,
    team: &str,
) -> Result<(Client, NamespaceClient, Joined), Box<dyn Error>> {
    let client = Client::connect(url).await?;
    let game = client.join("/game", &()).await?;
    let ask = JoinRequest::new("race").options(json!({ "team": team }));
    let joined: Result<Joined, String> = game.emit_with_ack("join_game", &ask, WAIT).await?;
    Ok((client, game, joined?))
}

/// Reads states until one from after the demo's strides (tick > `after`).
async fn view_after(game: &mut NamespaceClient, after: u64) -> Result<TeamView, Box<dyn Error>> {
    loop {
        let event = examples::next_event(game).await?;
        if event.name == "state" {
            let view: TeamView = event.decode()?;
            if view.tick > after {
                return Ok(view);
            }
        }
    }
}

const WAIT: Duration = examples::SCRIPT_WAIT;

async fn demo(url: &str, rooms: &GameRooms) -> Result<(), Box<dyn Error>> {
    let (_ann, mut ann, room) = runner(url, "red").await?;
    println!(
        "ann joined race room {} ({}/{} players)",
        room.room, room.players, room.max_players
    );
    let (_bob, mut bob, joined) = runner(url, "blue").await?;
    println!(
        "bob joined race room {} ({}/{} players)",
        joined.room, joined.players, joined.max_players
    );
    if let Err(reason) = runner(url, "green").await {
        println!("cat without a team is refused: {reason}");
    }
    let (_dan, _, later) = runner(url, "red").await?;
    println!(
        "dan joined race room {}: room {} started its race and locked itself",
        later.room, room.room
    );
    for _ in 0..5 {
        ann.emit("input", &1.0)?; // ann strides twice as hard as bob
        bob.emit("input", &0.5)?;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let after = rooms.metrics(room.room).await.map_or(0, |m| m.ticks);
    for (who, game) in [("ann", &mut ann), ("bob", &mut bob)] {
        let v = view_after(game, after).await?;
        println!(
            "{who} sees team {}: {} runner(s) of its own, the rival team's best at {:.2}",
            v.team,
            v.mine.len(),
            v.rival_best
        );
    }
    for listed in rooms.list(Some("race")).await {
        let locked = if listed.locked { ", locked" } else { "" };
        println!(
            "lobby: {} room {}, {}/{} players{locked}",
            listed.room_type, listed.id, listed.players, listed.max_players
        );
    }
    if let Some(m) = rooms.metrics(room.room).await {
        println!(
            "room {}: {} ticks at {} Hz, {} broadcasts, {} state encodes (one per team), lateness {}",
            m.room, m.ticks, m.tick_rate, m.broadcasts, m.state_encodes, m.lateness
        );
    }
    let left: bool = ann.emit_with_ack("leave_game", &(), WAIT).await?;
    println!("ann left the room: {left}");
    Ok(())
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = examples::Args::parse("127.0.0.1:8084");
    examples::init_logs();

    let race = RoomOptions {
        max_players: 4,
        tick_rate: 30,
        broadcast_rate: 10,
        ..RoomOptions::default()
    };
    let rooms = GameRooms::builder().game::<Race>("race", race).build();
    let volley = Volley::builder()
        .namespace("/game", rooms.with_events(Namespace::new()))
        .build();
    let server = examples::serve(&volley, &args)?;
    println!("tick game server listening on {}", server.url);

    if let Some(url) = server.demo_url() {
        demo(url, &rooms).await?;
    }
    let how_to_connect = format!(
        "  join /game on {} and emit join_game {{\"type\": \"race\", \"options\": {{\"team\": \"red\"}}}},\n  \
         then input 1.0 (a stride); state events arrive 10 times a second",
        server.url
    );
    server.stop_or_serve(args.once, &how_to_connect).await?;
    Ok(())
}
