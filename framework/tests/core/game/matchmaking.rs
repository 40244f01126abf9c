//! Join-or-create, full rooms, locked rooms.

use super::*;

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
