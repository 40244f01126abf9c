//! The tick loop: its rate and lateness alone and beside 200 busy rooms, bounded
//! inputs under a flood, inputs given as JSON values.

use super::*;

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
