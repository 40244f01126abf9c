//! Seat hold: a dropped player keeps its seat until the grace window ends.

use super::*;

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
