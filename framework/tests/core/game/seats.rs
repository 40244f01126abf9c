//! Seats: a dropped player keeps its seat until the grace window ends; a player who
//! leaves and sits again has its inputs reach the new seat.

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

/// A socket keeps its seat's input gate (no shared table on the input path); a freed
/// seat closes it, so inputs after leaving and sitting again reach the new seat.
#[actix_rt::test]
async fn inputs_reach_the_new_seat_after_leaving_and_sitting_again() {
    let rooms = game_rooms(RoomOptions {
        tick_rate: 50,
        broadcast_rate: 50,
        ..RoomOptions::default()
    });
    let server = game_server(&rooms, Duration::from_secs(5));
    let (a, mut a_ns) = player(&server).await;
    let (_b, b_ns) = player(&server).await;
    let me = a.session_id();
    let room = join(&a_ns, &JoinRequest::new("teams")).await.unwrap().room;
    // B keeps the room alive while A is out of it.
    assert_eq!(
        join(&b_ns, &JoinRequest::new("teams")).await.unwrap().room,
        room
    );
    // The count of A's inputs the room applied, once it reaches `n` (bounded: the
    // states keep coming whether or not the input arrived).
    async fn applied_reaches(ns: &mut NamespaceClient, me: u64, n: u64) -> u64 {
        let wait = async {
            loop {
                let s: TeamState = next_state(ns).await;
                let count = s.applied.get(&me).copied().unwrap_or(0);
                if count >= n {
                    return count;
                }
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("the room never applied input {n}"))
    }

    a_ns.emit(events::INPUT, &1u32).unwrap();
    assert_eq!(applied_reaches(&mut a_ns, me, 1).await, 1);

    let left: bool = a_ns.emit_with_ack(events::LEAVE, &(), WAIT).await.unwrap();
    assert!(left);
    assert_eq!(rooms.room_of(SessionId(me)), None);
    // Sits again: a new seat (and gate) in the same room.
    assert_eq!(
        join(&a_ns, &JoinRequest::new("teams")).await.unwrap().room,
        room
    );
    a_ns.emit(events::INPUT, &2u32).unwrap();
    assert_eq!(
        applied_reaches(&mut a_ns, me, 2).await,
        2,
        "the input after sitting again was applied once"
    );
}
