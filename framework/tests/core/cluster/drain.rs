//! Draining a node: its sessions move to the other nodes and their clients resume
//! there, so a rolling restart under traffic loses and duplicates nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use volley::client::{Client, ClientConfig, ConnectionEvent, NamespaceClient, Transport};
use volley::cluster::ClusterError;

use super::*;
use crate::proxy::{Cuts, FaultProxy};
use crate::resume::{quick_backoff, server_addr};

/// Clients, and numbered events each sends (and gets back).
const CLIENTS: u64 = 6;
const PER_CLIENT: u64 = 300;

/// `c2s (client, n)`: the server records it and answers `s2c n` to that socket;
/// `join` puts the socket in a room; `whoami` answers its session id.
fn numbered(received: mpsc::UnboundedSender<(u64, u64)>) -> Namespace {
    let received = Arc::new(Mutex::new(received));
    Namespace::new()
        .authorize(|hs| {
            // The middleware runs again on the node a session moves to.
            hs.auth::<String>()
        })
        .on("c2s", move |socket, (client, n): (u64, u64)| {
            let _ = received.lock().unwrap().send((client, n));
            socket.emit("s2c", &n).unwrap();
        })
        .on_ack("join", |socket, room: String, ack| {
            socket.join(&room);
            // Shared once, here: a moved session brings it along.
            let name = socket.data::<String>().cloned().unwrap_or_default();
            socket.share_data(&name).unwrap();
            let _ = ack.send(&room);
        })
        .on_ack("whoami", |socket, _: (), ack| {
            let name = socket.data::<String>().cloned().unwrap_or_default();
            let _ = ack.send(&(socket.id().0, name));
        })
}

fn numbered_node(redis: &RedisServer, tx: mpsc::UnboundedSender<(u64, u64)>) -> VolleyBuilder {
    Volley::builder()
        .heartbeat(Duration::from_secs(2), Duration::from_secs(2))
        .namespace("/", numbered(tx))
        .cluster(RedisCluster::new(&redis.url()).unwrap())
}

/// One client: joins through `url` as `client`, sends its numbers in small bursts,
/// and checks each answer comes back once, in order. Answers the client (still
/// connected) and its connection events.
async fn numbered_client(
    url: String,
    transport: Transport,
    client_no: u64,
) -> (Client, Vec<ConnectionEvent>) {
    let config = crate::resume::counting_config(transport);
    let client = Client::connect_with(&url, config).await.expect("connect");
    let mut ns: NamespaceClient = client
        .join("/", &format!("client-{client_no}"))
        .await
        .expect("join");
    let _: String = ns.emit_with_ack("join", &"all", WAIT).await.unwrap();
    let mut next = 0;
    for burst in (0..PER_CLIENT).collect::<Vec<_>>().chunks(10) {
        for n in burst {
            ns.emit("c2s", &(client_no, *n)).unwrap();
        }
        for _ in burst {
            let event = tokio::time::timeout(WAIT, ns.next_event())
                .await
                .expect("answers keep coming")
                .expect("namespace open");
            assert_eq!(event.name, "s2c");
            let n: u64 = event.decode().unwrap();
            assert_eq!(n, next, "client {client_no}: answer out of order or twice");
            next += 1;
        }
        // Traffic spread over the drains, not a pause for them.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Still the same socket, authorized on whichever node holds it now.
    let (_, name): (u64, String) = ns.emit_with_ack("whoami", &(), WAIT).await.unwrap();
    assert_eq!(name, format!("client-{client_no}"));
    let events = connection_events(&client).await;
    (client, events)
}

#[actix_rt::test]
async fn a_rolling_restart_under_traffic_loses_and_duplicates_nothing() {
    rolling_restart(Transport::WebSocket).await;
}

#[actix_rt::test]
async fn a_rolling_restart_loses_nothing_for_polling_clients() {
    rolling_restart(Transport::Polling).await;
}

/// Three nodes behind a round-robin balancer, clients sending and receiving
/// numbered events; A drains, stops and comes back, then B drains and stops: every
/// session ends up on A2 or C, every number arrived once each way.
async fn rolling_restart(transport: Transport) {
    let Some(redis) = RedisServer::start("a_rolling_restart_under_traffic") else {
        return;
    };
    let (tx, mut received) = mpsc::unbounded_channel();
    let a = node_of(numbered_node(&redis, tx.clone())).await;
    let b = node_of(numbered_node(&redis, tx.clone())).await;
    let c = node_of(numbered_node(&redis, tx.clone())).await;
    await_nodes(&c, 3).await;
    // A round-robin balancer, no stickiness: a node that is gone refuses, and the
    // client's next attempt goes to the next one.
    let targets = vec![server_addr(&a), server_addr(&b), server_addr(&c)];
    let proxy = FaultProxy::balance(targets, Cuts::Never, 0xd2a1).await;
    let clients = (0..CLIENTS).map(|i| numbered_client(proxy.url(), transport, i));
    let clients = futures_util::future::join_all(clients);

    // The rolling restart, driven by what the servers received: A goes at a third of
    // the traffic and comes back as A2 (a new node, on a new address the balancer
    // does not know: its clients reach it through C, relayed); B goes at two
    // thirds, its sessions move to A2 and C.
    let total = CLIENTS * PER_CLIENT;
    let mut next: HashMap<u64, u64> = HashMap::new();
    let restart = async {
        let mut nodes = [Some(a), Some(b)];
        let mut moved = 0;
        let mut restarted = None;
        for count in 0..total {
            let (client, n) = tokio::time::timeout(WAIT, received.recv())
                .await
                .expect("events keep arriving")
                .unwrap();
            let expected = next.entry(client).or_default();
            assert_eq!(
                n, *expected,
                "client {client}: event lost or twice at the server"
            );
            *expected += 1;
            let going = match count {
                c if c == total / 3 => 0,
                c if c == 2 * total / 3 => 1,
                _ => continue,
            };
            let node = nodes[going].take().unwrap();
            let report = node.volley.cluster().unwrap().drain().await.unwrap();
            assert_eq!(report.stayed, 0, "{report:?}");
            moved += report.moved;
            assert!(node.volley.local_sessions().await.is_empty());
            drop(node);
            if going == 0 {
                restarted = Some(node_of(numbered_node(&redis, tx.clone())).await);
            }
        }
        (moved, restarted)
    };
    let (events, (moved, a2)) = tokio::join!(clients, restart);
    for (i, (_, events)) in events.iter().enumerate() {
        assert_resumed(&format!("client {i}"), events);
    }
    // Every session moved at least once (those on A twice, if they went to B).
    assert!(
        moved >= CLIENTS as usize - (CLIENTS as usize / 3),
        "moved {moved}"
    );
    assert!(
        received.try_recv().is_err(),
        "a duplicate after the last event"
    );
    // All on A2 and C now, with the ids they were opened with.
    let a2 = a2.expect("A came back");
    let on_a2_and_c =
        a2.volley.local_sessions().await.len() + c.volley.local_sessions().await.len();
    assert_eq!(on_a2_and_c, CLIENTS as usize);
    let in_room = c
        .volley
        .cluster()
        .unwrap()
        .room_size("/", "all")
        .await
        .unwrap();
    assert_eq!(in_room, CLIENTS as usize);
    // What each socket shared on its first node came along every move.
    let found = c.volley.of("/").unwrap().to("all").fetch_sockets().await;
    let mut names: Vec<String> = (found.iter())
        .map(|s| s.data_as::<String>().expect("shared").unwrap())
        .collect();
    names.sort();
    let expected: Vec<String> = (0..CLIENTS).map(|i| format!("client-{i}")).collect();
    assert_eq!(names, expected);
}

#[actix_rt::test]
async fn a_drain_with_no_other_node_says_so_and_keeps_its_sessions() {
    let Some(redis) = RedisServer::start("a_drain_with_no_other_node") else {
        return;
    };
    let a = node(&redis).await;
    let client = connect(&a, WS).await;
    let _ns = client.join("/", &()).await.unwrap();
    let drained = a.volley.cluster().unwrap().drain().await;
    assert!(matches!(drained, Err(ClusterError::NoOtherNode)));
    assert_eq!(a.volley.local_sessions().await.len(), 1);
}

/// A move whose answer is lost (Redis holds every publish for longer than a node
/// waits for an answer, so the `MoveIn` reaches B and B's answer reaches A after A
/// gave up): A cancels the move on B, so the session is never held by both, and
/// the next pass moves it for good.
#[actix_rt::test]
async fn a_move_whose_answer_is_lost_is_cancelled_and_one_node_holds_the_session() {
    let Some(held) = HeldMove::start("a_move_whose_answer_is_lost").await else {
        return;
    };
    let HeldMove { a, b, ns, sid, .. } = &held;
    let report = a.volley.cluster().unwrap().drain().await.unwrap();
    // The first answer came too late (the node waits 2 s): the move went through
    // the cancel, then again.
    assert!(
        report.millis >= 2000,
        "the pause did not hold the move: {report:?}"
    );
    assert_eq!((report.moved, report.stayed), (1, 0), "{report:?}");
    assert!(a.volley.local_sessions().await.is_empty());
    assert_eq!(held_by(b).await, [*sid]);
    // The client resumes it (through A, relayed to B) and carries on.
    let (again, name): (u64, String) = ns.emit_with_ack("whoami", &(), WAIT).await.unwrap();
    assert_eq!((again, name.as_str()), (*sid, "ann"));
}

/// A client whose resume arrives while its session is on its way to another node
/// (Redis holds the move for 2.8 s) waits for the move's outcome and resumes the
/// same session, instead of being refused and starting a new one.
#[actix_rt::test]
async fn a_resume_during_a_move_waits_for_it_and_keeps_the_session() {
    let Some(held) = HeldMove::start("a_resume_during_a_move").await else {
        return;
    };
    let HeldMove {
        a,
        b,
        client,
        ns,
        sid,
        ..
    } = &held;
    let cluster = a.volley.cluster().unwrap().clone();
    let drain = actix_rt::spawn(async move { cluster.drain().await });
    // The move then waits for Redis for seconds: once the session is frozen (in the
    // `sessions_moving` gauge), the client's connection drops inside that window and it
    // resumes on A at once.
    let link_a = a.volley.cluster().unwrap();
    until("the session never froze for its move", || {
        link_a.stats().sessions_moving > 0
    })
    .await;
    assert!(a.volley.drop_connection(volley::SessionId(*sid)).await);
    let report = drain.await.unwrap().unwrap();
    assert_eq!((report.moved, report.stayed), (1, 0), "{report:?}");
    let (again, name): (u64, String) = ns.emit_with_ack("whoami", &(), WAIT).await.unwrap();
    assert_eq!((again, name.as_str()), (*sid, "ann"));
    assert_eq!(held_by(b).await, [*sid]);
    assert_resumed("ann", &connection_events(client).await);
}

/// A move whose answer and cancel are both lost (Redis stops while B's middleware
/// holds the moved session, and A gives the move up and keeps the session): B's copy,
/// whose old node's window never comes, asks A whether it kept the session, and
/// goes; the client carries on with A's.
#[actix_rt::test]
async fn a_move_whose_answer_and_cancel_are_lost_leaves_no_copy_behind() {
    let Some(mut redis) = RedisServer::start("a_move_whose_answer_and_cancel_are_lost") else {
        return;
    };
    let (tx, _) = mpsc::unbounded_channel();
    let a = node_of(numbered_node(&redis, tx)).await;
    // B's middleware says when a session is joining and answers when told.
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let held = gate.clone();
    let gated = Namespace::new().authorize_async(move |_| {
        let (entered, gate) = (entered_tx.clone(), held.clone());
        async move {
            let _ = entered.send(());
            gate.acquire().await.map_err(|e| e.to_string())?.forget();
            Ok(())
        }
    });
    let b = node_of(
        Volley::builder()
            .namespace("/", gated)
            .cluster(RedisCluster::new(&redis.url()).unwrap()),
    )
    .await;
    await_nodes(&a, 2).await;
    let client = Client::connect_with(&a.url, ClientConfig::default())
        .await
        .unwrap();
    let ns = client.join("/", &"ann".to_owned()).await.unwrap();
    let (sid, _): (u64, String) = ns.emit_with_ack("whoami", &(), WAIT).await.unwrap();

    let cluster = a.volley.cluster().unwrap().clone();
    let drain = actix_rt::spawn(async move { cluster.drain().await });
    // The session is on B (registered, its middleware waiting): Redis goes away, so
    // neither B's answer nor A's cancel can cross, and A keeps the session.
    tokio::time::timeout(WAIT, entered.recv()).await.unwrap();
    assert_eq!(held_by(&b).await, [sid]);
    redis.stop();
    let report = drain.await.unwrap().unwrap();
    assert_eq!((report.moved, report.stayed), (0, 1), "{report:?}");
    redis.restart();
    for node in [&a, &b] {
        let link = node.volley.cluster().unwrap();
        tokio::time::timeout(WAIT, link.wait_connected(true))
            .await
            .expect("back on Redis");
    }
    // B's copy lands now; its answer finds no one waiting.
    gate.add_permits(1);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !held_by(&b).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "B keeps a copy of a session A kept"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(held_by(&a).await, [sid]);
    let (again, name): (u64, String) = ns.emit_with_ack("whoami", &(), WAIT).await.unwrap();
    assert_eq!((again, name.as_str()), (sid, "ann"));
    assert_resumed("ann", &connection_events(&client).await);
}

/// Two nodes, a client `ann` on A, and Redis holding every publish for 2.8 s from
/// now: longer than a node waits for an answer (2 s), so a move started now is
/// answered late.
struct HeldMove {
    _redis: RedisServer,
    a: TestServer,
    b: TestServer,
    client: Client,
    ns: NamespaceClient,
    sid: u64,
}

impl HeldMove {
    async fn start(test: &str) -> Option<HeldMove> {
        let redis = RedisServer::start(test)?;
        let (tx, _) = mpsc::unbounded_channel();
        let a = node_of(numbered_node(&redis, tx.clone())).await;
        let b = node_of(numbered_node(&redis, tx)).await;
        await_nodes(&a, 2).await;
        let config = ClientConfig {
            transport: WS,
            backoff: quick_backoff(),
            ..ClientConfig::default()
        };
        let client = Client::connect_with(&a.url, config).await.unwrap();
        let ns = client.join("/", &"ann".to_owned()).await.unwrap();
        let (sid, _): (u64, String) = ns.emit_with_ack("whoami", &(), WAIT).await.unwrap();
        let mut admin = redis.connection().await;
        ::redis::cmd("CLIENT")
            .arg(&["PAUSE", "2800", "WRITE"])
            .exec_async(&mut admin)
            .await
            .unwrap();
        Some(HeldMove {
            _redis: redis,
            a,
            b,
            client,
            ns,
            sid,
        })
    }
}

/// The ids of the sessions `node` holds.
async fn held_by(node: &TestServer) -> Vec<u64> {
    let held = node.volley.local_sessions().await;
    held.iter().map(|s| s.id.0).collect()
}
