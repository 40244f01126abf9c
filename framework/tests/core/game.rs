//! Game rooms: the tick loop's rate and lateness (alone and beside 200 busy rooms),
//! state per subset encoded once, seat hold across a dropped connection, bounded
//! inputs, and join-or-create. Timing figures are printed; the only timing assertion
//! is the tick count of a lone 60 Hz room (±2 ticks).

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

// ---------------------------------------------------------------- tests

#[actix_rt::test]
async fn a_60_hz_room_keeps_its_rate_alone_and_beside_200_busy_rooms() {
    let forever = RoomOptions {
        dispose_after_empty: Duration::from_secs(600),
        ..RoomOptions::default()
    };
    let rooms = GameRooms::builder()
        .game::<Ticker>("ticker", forever.clone())
        .game::<Busy>("busy", forever)
        .build();

    // Alone, 5 s.
    let alone = rooms.create(&JoinRequest::new("ticker")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let m = rooms.metrics(alone).await.unwrap();
    let expected = expected_ticks(&m);
    println!(
        "60 Hz room alone for {:?}: {} ticks (expected {expected}), {} skipped; lateness {}; tick duration {}",
        m.uptime, m.ticks, m.skipped_ticks, m.lateness, m.tick_duration
    );
    assert!(
        m.ticks.abs_diff(expected) <= 2,
        "{} ticks in {:?}, expected {expected} ± 2",
        m.ticks,
        m.uptime
    );

    // Beside 200 busy rooms (on the same threads), 3 s: a fresh room is measured.
    for _ in 0..200 {
        rooms.create(&JoinRequest::new("busy")).await.unwrap();
    }
    let measured = rooms.create(&JoinRequest::new("ticker")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = rooms.metrics(measured).await.unwrap();
    let busy: Vec<RoomMetrics> = (rooms.all_metrics().await.into_iter())
        .filter(|m| m.room_type == "busy")
        .collect();
    let worst_p99 = busy
        .iter()
        .map(|b| b.tick_duration.p99)
        .max()
        .unwrap_or_default();
    let busy_ticks: u64 = busy.iter().map(|b| b.ticks).sum();
    let busy_skipped: u64 = busy.iter().map(|b| b.skipped_ticks).sum();
    println!(
        "60 Hz room beside {} busy rooms for {:?}: {} ticks (expected {}), {} skipped; lateness {}",
        busy.len(),
        m.uptime,
        m.ticks,
        expected_ticks(&m),
        m.skipped_ticks,
        m.lateness
    );
    println!(
        "busy rooms: {busy_ticks} ticks, {busy_skipped} skipped; worst tick duration p99 {worst_p99:?}"
    );
    assert_eq!(busy.len(), 200);
    assert!(m.ticks > 0, "the measured room stopped ticking: {m:?}");
}

#[actix_rt::test]
async fn each_subset_gets_its_own_state_encoded_once_per_broadcast() {
    let rooms = game_rooms(RoomOptions::default());
    let server = game_server(&rooms, Duration::from_secs(5));
    let team = |t: &str| JoinRequest::new("teams").options(json!({ "team": t }));
    let (client_a, mut red1) = player(&server).await;
    let (client_b, mut blue) = player(&server).await;
    let (client_c, mut red2) = player(&server).await;
    let room = join(&red1, &team("red")).await.unwrap().room;
    assert_eq!(join(&blue, &team("blue")).await.unwrap().room, room);
    assert_eq!(join(&red2, &team("red")).await.unwrap().room, room);
    let (a, b, c) = (
        client_a.session_id(),
        client_b.session_id(),
        client_c.session_id(),
    );

    // Once a state shows all three players, check who sees what.
    let mut reds = vec![a, c];
    reds.sort();
    for ns in [&mut red1, &mut red2] {
        let s = state_of_three(ns).await;
        assert_eq!(
            (s.team.as_str(), &s.members, s.opponents),
            ("red", &reds, 1)
        );
    }
    let s = state_of_three(&mut blue).await;
    assert_eq!(
        (s.team.as_str(), s.members, s.opponents),
        ("blue", vec![b], 2)
    );

    // Between two snapshots only broadcasts happen: two encodes each (one per team),
    // three frames each (one per player).
    let before = rooms.metrics(room).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rooms.metrics(room).await.unwrap();
    let broadcasts = after.broadcasts - before.broadcasts;
    let encodes = after.state_encodes - before.state_encodes;
    let frames = after.frames_sent - before.frames_sent;
    println!(
        "3 players in 2 subsets: {broadcasts} broadcasts, {encodes} state encodes, {frames} frames, {} bytes",
        after.bytes_sent - before.bytes_sent
    );
    assert!(broadcasts >= 5, "20 Hz for 500 ms: {broadcasts} broadcasts");
    assert_eq!(
        encodes,
        2 * broadcasts,
        "one encode per subset per broadcast"
    );
    assert_eq!(frames, 3 * broadcasts, "one frame per player per broadcast");
}

#[actix_rt::test]
async fn a_dropped_player_keeps_its_seat_until_the_grace_window_ends() {
    let rooms = game_rooms(RoomOptions {
        tick_rate: 20,
        broadcast_rate: 2,
        ..RoomOptions::default()
    });
    let server = game_server(&rooms, Duration::from_secs(1));
    let target = server.url["ws://".len()..]
        .trim_end_matches("/volley")
        .parse()
        .unwrap();
    let proxy = FaultProxy::start(target, Cuts::Never, 1).await;
    // `Auto`, the default: an outage never makes the client fall back to polling.
    let quick = ClientConfig {
        backoff: Backoff {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(20),
            ..Backoff::default()
        },
        ..ClientConfig::default()
    };
    let (a, mut a_ns) = player_at(&proxy.url(), quick).await;
    let (_b, mut b_ns) = player(&server).await;
    let a_id = SessionId(a.session_id());
    let room = join(&a_ns, &JoinRequest::new("teams")).await.unwrap().room;
    assert_eq!(
        join(&b_ns, &JoinRequest::new("teams")).await.unwrap().room,
        room
    );
    let _: TeamState = next_state(&mut a_ns).await;

    // Cut A and keep it out: its seat is held, and the room still counts it.
    proxy.refuse(true);
    proxy.cut_all();
    let held = metrics_until(&rooms, room, |m| m.held_seats == 1).await;
    assert_eq!(held.players, 2);
    assert_eq!(rooms.list(Some("teams")).await[0].players, 2);
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(1), a_ns.next_event()).await
    {
    }

    // Let it back in: same session, same seat, and a full state at once.
    proxy.refuse(false);
    let back = Instant::now();
    loop {
        match tokio::time::timeout(WAIT, a.next_connection_event())
            .await
            .unwrap()
        {
            Some(ConnectionEvent::Reconnected { resumed, .. }) => {
                assert!(resumed, "the session resumed");
                break;
            }
            Some(
                ConnectionEvent::Reconnecting { .. } | ConnectionEvent::ReconnectFailed { .. },
            ) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let s: TeamState = next_state(&mut a_ns).await;
    println!(
        "seat hold: state {:?} after the connection came back (broadcast period 500 ms)",
        back.elapsed()
    );
    assert!(s.members.contains(&a_id.0), "still the same player: {s:?}");
    assert_eq!(SessionId(a.session_id()), a_id);
    assert_eq!(rooms.room_of(a_id), Some(room));
    let m = metrics_until(&rooms, room, |m| m.held_seats == 0).await;
    assert_eq!(
        m.full_states,
        held.full_states + 1,
        "one fresh state on resume"
    );

    // Cut again and stay out past the grace window: the seat is freed, leave runs.
    proxy.refuse(true);
    proxy.cut_all();
    let left = loop {
        let event = next_event(&mut b_ns).await;
        if event.name == "left" {
            break event.decode::<(u64, String)>().unwrap();
        }
    };
    assert_eq!(
        left,
        (
            a_id.0,
            "disconnected: session expired (transport closed)".into()
        )
    );
    assert_eq!(rooms.room_of(a_id), None);
    let m = metrics_until(&rooms, room, |m| m.players == 1).await;
    assert_eq!(m.held_seats, 0);
}

#[actix_rt::test]
async fn an_input_flood_is_bounded_and_counted_and_others_inputs_all_apply() {
    let rooms = game_rooms(RoomOptions::default());
    // The room's own input bound is under test: no session rate limit in front of it.
    let server = serve(
        Volley::builder()
            .rate_limit(volley::RateLimit::OFF)
            .namespace("/game", rooms.with_events(Namespace::new())),
    );
    let big_buffer = ClientConfig {
        send_buffer: 4096,
        ..ClientConfig::default()
    };
    let (flooder, flood_ns) = player_at(&server.url, big_buffer).await;
    let (b, b_ns) = player(&server).await;
    let (c, c_ns) = player(&server).await;
    let room = join(&flood_ns, &JoinRequest::new("teams"))
        .await
        .unwrap()
        .room;
    join(&b_ns, &JoinRequest::new("teams")).await.unwrap();
    join(&c_ns, &JoinRequest::new("teams")).await.unwrap();
    let before = rooms.metrics(room).await.unwrap();

    const FLOOD: u64 = 3_000; // a multiple of 20
    const STEADY: u64 = 30;
    let steady = |ns: &NamespaceClient| {
        let emitter = ns.emitter();
        actix_rt::spawn(async move {
            for n in 0..STEADY {
                emitter.emit(events::INPUT, &n).unwrap();
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    let (b_task, c_task) = (steady(&b_ns), steady(&c_ns));
    // The flood comes in 20 bursts of 150, about one burst per tick.
    for burst in 0..20 {
        for n in 0..FLOOD / 20 {
            flood_ns.emit(events::INPUT, &(burst * 1_000 + n)).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b_task.await.unwrap();
    c_task.await.unwrap();
    let total = FLOOD + 2 * STEADY;
    let m = metrics_until(&rooms, room, |m| {
        m.inputs_applied + m.inputs_dropped == total
    })
    .await;

    let mut b_ns = b_ns;
    let state: TeamState = loop {
        let s: TeamState = next_state(&mut b_ns).await;
        if s.applied.values().sum::<u64>() == m.inputs_applied {
            break s;
        }
    };
    let applied = |id: u64| state.applied.get(&id).copied().unwrap_or(0);
    let flooded = applied(flooder.session_id());
    let ticks = m.ticks - before.ticks;
    println!(
        "input flood: {FLOOD} sent, {flooded} applied, {} dropped over {ticks} ticks (bound 8 per tick); steady players applied {} and {} of {STEADY}",
        m.inputs_dropped,
        applied(b.session_id()),
        applied(c.session_id())
    );
    assert_eq!(applied(b.session_id()), STEADY);
    assert_eq!(applied(c.session_id()), STEADY);
    assert_eq!(
        flooded + m.inputs_dropped,
        FLOOD,
        "every flood input applied or counted"
    );
    assert!(m.inputs_dropped > 0, "the flood was bounded");
    // The same split, player by player, as an admin view reads it.
    let seat = |id: SessionId| m.seated.iter().find(|p| p.session == id).copied().unwrap();
    let (f, sb, sc) = (
        seat(SessionId(flooder.session_id())),
        seat(SessionId(b.session_id())),
        seat(SessionId(c.session_id())),
    );
    assert_eq!((f.inputs, f.inputs_dropped), (flooded, m.inputs_dropped));
    assert_eq!((sb.inputs, sb.inputs_dropped), (STEADY, 0));
    assert_eq!((sc.inputs, sc.inputs_dropped), (STEADY, 0));
    assert!(f.connected && sb.connected && sc.connected);
    assert!(
        flooded <= 8 * (ticks + 1),
        "at most 8 per tick: {flooded} in {ticks} ticks"
    );
    assert_eq!(m.inputs_invalid, 0);
}

#[actix_rt::test]
async fn join_or_create_fills_rooms_then_opens_new_ones_and_full_rooms_say_so() {
    let rooms = game_rooms(RoomOptions::default());
    let server = game_server(&rooms, Duration::from_secs(5));
    let mut players = Vec::new();
    for _ in 0..7 {
        players.push(player(&server).await);
    }
    let duel = JoinRequest::new("duel");
    let mut seated = Vec::new();
    for (_, ns) in &players[..5] {
        seated.push(join(ns, &duel).await.unwrap());
    }
    let ids: Vec<RoomId> = seated.iter().map(|j| j.room).collect();
    assert_eq!((ids[0], ids[2], ids[4]), (ids[1], ids[3], ids[4]));
    assert!(ids[0] != ids[2] && ids[2] != ids[4] && ids[0] != ids[4]);
    assert_eq!(seated[1].players, 2);
    let listing = rooms.list(Some("duel")).await;
    let counts: Vec<(usize, usize)> = listing.iter().map(|r| (r.players, r.max_players)).collect();
    assert_eq!(counts, vec![(2, 2), (2, 2), (1, 2)]);

    // A full room refuses with a clear reason; so do unknown types and rooms.
    let (_, sixth) = &players[5];
    let full = join(sixth, &JoinRequest::to_room(ids[0]))
        .await
        .unwrap_err();
    assert_eq!(full, format!("room {} is full (2/2 players)", ids[0]));
    let unknown = join(sixth, &JoinRequest::new("chess")).await.unwrap_err();
    assert_eq!(unknown, "unknown room type 'chess'");
    let again = join(&players[0].1, &duel).await.unwrap_err();
    assert_eq!(again, format!("already in room {}: leave it first", ids[0]));

    // Filters pick matching rooms only: a ranked duel opens its own room, with a
    // password its creator set; a joiner without it is refused by the game.
    let ranked = JoinRequest::new("duel")
        .filter("mode", "ranked")
        .options(json!({ "password": "pw" }));
    let r = join(sixth, &ranked).await.unwrap();
    assert!(!ids.contains(&r.room));
    let (_, seventh) = &players[6];
    let refused = join(seventh, &ranked.clone().options(json!({})))
        .await
        .unwrap_err();
    assert_eq!(refused, "refused: wrong password");
    assert_eq!(join(seventh, &ranked).await.unwrap().room, r.room);
    let listing = rooms.list(None).await;
    let metadata = listing
        .iter()
        .find(|l| l.id == r.room)
        .map(|l| l.metadata.clone());
    assert_eq!(metadata, Some(json!({ "mode": "ranked" })));
    println!(
        "lobby listing: {}",
        serde_json::to_string(&listing).unwrap()
    );

    // Everyone leaves: empty rooms are disposed of after `dispose_after_empty`.
    for (_, ns) in &players {
        let _: bool = ns.emit_with_ack(events::LEAVE, &(), WAIT).await.unwrap();
    }
    // The lobby unlists a room, then tells it to dispose of itself: wait for both.
    let deadline = Instant::now() + WAIT;
    while !rooms.list(Some("duel")).await.is_empty() || DUELS_DISPOSED.load(Ordering::SeqCst) < 4 {
        assert!(
            Instant::now() < deadline,
            "empty rooms were not disposed of ({} of 4 games told)",
            DUELS_DISPOSED.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A room the game locks is passed by join-or-create, refuses a join by its id and
/// is listed locked, while its players play on; unlocked, it takes players again.
#[actix_rt::test]
async fn a_locked_room_takes_no_new_players_until_unlocked() {
    let rooms = game_rooms(RoomOptions::default());
    let server = game_server(&rooms, Duration::from_secs(5));
    let (_c1, mut host) = player(&server).await;
    let (_c2, other) = player(&server).await;
    let (_c3, late) = player(&server).await;
    let gate = JoinRequest::new("gate");
    let room = join(&host, &gate).await.unwrap().room;
    // The game tells its players after the matchmaker knows (a room reports its
    // lock before it sends the events of the same call).
    host.emit(events::INPUT, &true).unwrap();
    told_locked(&mut host, true).await;
    let elsewhere = join(&other, &gate).await.unwrap().room;
    assert_ne!(elsewhere, room, "join-or-create passes a locked room by");
    let refused = join(&late, &JoinRequest::to_room(room)).await.unwrap_err();
    assert_eq!(
        refused,
        format!("room {room} is locked: it takes no new players")
    );
    let listed = rooms.list(Some("gate")).await;
    let lock_of = |id: RoomId| listed.iter().find(|l| l.id == id).map(|l| l.locked);
    assert_eq!(
        (lock_of(room), lock_of(elsewhere)),
        (Some(true), Some(false))
    );

    host.emit(events::INPUT, &false).unwrap();
    told_locked(&mut host, false).await;
    assert_eq!(
        join(&late, &JoinRequest::to_room(room)).await.unwrap().room,
        room
    );
}

/// Inputs the application hands over as a `Value` (`GameRooms::input`, kept as text
/// and parsed at the tick like the standard `input` event's) reach the game in
/// order; one that is not the game's `Input` is counted invalid and skipped.
#[actix_rt::test]
async fn inputs_given_as_values_reach_the_game() {
    let rooms = game_rooms(RoomOptions::default());
    let inputs = rooms.clone();
    let namespace =
        rooms
            .with_events(Namespace::new())
            .on("as_value", move |socket, value: Value| {
                let _ = inputs.input(socket, value);
            });
    let server = serve(Volley::builder().namespace("/game", namespace));
    let (_c, mut host) = player(&server).await;
    let room = join(&host, &JoinRequest::new("gate")).await.unwrap().room;
    host.emit("as_value", &json!({"not": "a bool"})).unwrap();
    host.emit("as_value", &true).unwrap();
    told_locked(&mut host, true).await;
    host.emit("as_value", &false).unwrap();
    told_locked(&mut host, false).await;
    let m = metrics_until(&rooms, room, |m| m.inputs_applied == 2).await;
    assert_eq!(m.inputs_invalid, 1);
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
