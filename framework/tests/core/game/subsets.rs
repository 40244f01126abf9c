//! State per subset: each subset gets its own state, encoded once per broadcast.

use super::*;

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
