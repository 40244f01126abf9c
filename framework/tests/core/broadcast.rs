//! Broadcast operators: rooms, overlapping rooms, exclusions, namespace-wide.
//!
//! How "nobody else got it" is checked without sleeping: after the expected
//! recipients have their copy, the room actor has already posted every copy it will
//! ever post; a namespace-wide `fence` sent afterwards therefore arrives after any
//! stray copy, so each client reads until the fence and counts.

use std::collections::HashMap;

use volley::client::NamespaceClient;
use volley::{FoundSocket, SessionId, Volley};

use volley::client::Transport;

use crate::common::*;

/// A client of a test, joined to one namespace (the cluster tests use it too).
pub struct Player {
    pub name: &'static str,
    pub ns: NamespaceClient,
    _client: volley::client::Client,
}

impl Player {
    /// Shares `data` of its socket (the test namespace's `share`), acknowledged.
    pub async fn share(&self, data: serde_json::Value) {
        let () = self.ns.emit_with_ack("share", &data, WAIT).await.unwrap();
    }

    /// Its session's id.
    pub fn id(&self) -> SessionId {
        SessionId(self._client.session_id())
    }

    /// Reads its events until the server disconnects it from the namespace; the
    /// reason the server gave.
    pub async fn disconnected(&mut self) -> Option<String> {
        while tokio::time::timeout(WAIT, self.ns.next_event())
            .await
            .expect("disconnected in time")
            .is_some()
        {}
        self.ns.disconnect_reason()
    }
}

/// Each player's name and session id.
pub fn id_table(players: &[Player]) -> Vec<(&'static str, SessionId)> {
    players.iter().map(|p| (p.name, p.id())).collect()
}

/// The session id of the player `name` in an [`id_table`].
fn id_in(table: &[(&str, SessionId)], name: &str) -> SessionId {
    let (_, id) = table.iter().find(|(n, _)| *n == name).expect("a player");
    *id
}

/// What `fetch_sockets` finds of the players named, each with the rooms given,
/// from an [`id_table`]: sorted by id, their rooms sorted.
pub fn found_of(table: &[(&str, SessionId)], found: &[(&str, &[&str])]) -> Vec<FoundSocket> {
    let mut all: Vec<FoundSocket> = (found.iter())
        .map(|(name, rooms)| {
            let mut rooms: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
            rooms.sort();
            FoundSocket {
                id: id_in(table, name),
                rooms,
                data: None,
            }
        })
        .collect();
    all.sort_unstable_by_key(|s| s.id);
    all
}

/// `found` with what the players named shared of themselves (JSON text).
pub fn sharing(
    table: &[(&str, SessionId)],
    mut found: Vec<FoundSocket>,
    shared: &[(&str, &str)],
) -> Vec<FoundSocket> {
    for (name, data) in shared {
        let id = id_in(table, name);
        let socket = found.iter_mut().find(|s| s.id == id).expect("found");
        socket.data = Some(data.to_string());
    }
    found
}

/// The sorted session ids of the players named, from an [`id_table`].
pub fn ids_of(table: &[(&str, SessionId)], names: &[&str]) -> Vec<SessionId> {
    let mut ids: Vec<SessionId> = (table.iter())
        .filter(|(name, _)| names.contains(name))
        .map(|(_, id)| *id)
        .collect();
    ids.sort_unstable();
    ids
}

pub async fn players(
    server: &TestServer,
    transport: Transport,
    ns: &str,
    rooms: &[(&'static str, &[&str])],
) -> Vec<Player> {
    let mut out = Vec::new();
    for (name, joined) in rooms {
        let client = connect(server, transport).await;
        let ns = client.join(ns, &()).await.unwrap();
        for room in *joined {
            let _: String = ns.emit_with_ack("join", room, WAIT).await.unwrap();
        }
        out.push(Player {
            name,
            ns,
            _client: client,
        });
    }
    out
}

/// Waits for `expected` recipients' copies, fences, and returns how many copies of
/// event `name` each player received.
async fn deliveries(
    server: &TestServer,
    ns: &str,
    players: &mut [Player],
    name: &str,
) -> HashMap<&'static str, usize> {
    server.volley.of(ns).unwrap().emit("fence", &()).unwrap();
    let mut counts = HashMap::new();
    for p in players.iter_mut() {
        let events = until_fence(&mut p.ns).await;
        counts.insert(p.name, events.iter().filter(|e| e.name == name).count());
    }
    counts
}

fn server() -> TestServer {
    let (disconnects, _) = Disconnects::new();
    serve(
        Volley::builder()
            .namespace("/", test_namespace(disconnects.clone()))
            .namespace("/other", test_namespace(disconnects)),
    )
}

fn expect(counts: &HashMap<&'static str, usize>, want: &[(&str, usize)]) {
    for (name, n) in want {
        assert_eq!(
            counts[name], *n,
            "{name} received {} copies, expected {n}: {counts:?}",
            counts[name]
        );
    }
}

async fn room_broadcast_reaches_exactly_its_members_once(transport: Transport) {
    let server = server();
    let mut ps = players(
        &server,
        transport,
        "/",
        &[
            ("ann", &["red"]),
            ("bob", &["red"]),
            ("cat", &["blue"]),
            ("dan", &[]),
        ],
    )
    .await;
    let root = server.volley.of("/").unwrap();
    root.to("red").emit("news", &"red team").unwrap();
    // Wait for the members' copies first (see the module comment).
    for p in ps.iter_mut().filter(|p| p.name == "ann" || p.name == "bob") {
        let e = next_event(&mut p.ns).await;
        assert_eq!(
            (e.name.as_str(), e.decode::<String>().unwrap().as_str()),
            ("news", "red team")
        );
    }
    let counts = deliveries(&server, "/", &mut ps, "news").await;
    expect(&counts, &[("ann", 0), ("bob", 0), ("cat", 0), ("dan", 0)]);
}

async fn overlapping_rooms_deliver_once_and_except_excludes(transport: Transport) {
    let server = server();
    let mut ps = players(
        &server,
        transport,
        "/",
        &[
            ("ann", &["red", "blue"]),
            ("bob", &["red"]),
            ("cat", &["blue", "muted"]),
            ("dan", &["green"]),
        ],
    )
    .await;
    let root = server.volley.of("/").unwrap();
    // Several rooms or exclusions are resolved by the namespace actor, the same path
    // the fence takes, so one fence closes all three.
    root.to("red").to("blue").emit("both", &1).unwrap();
    root.to("red")
        .to("blue")
        .except("muted")
        .emit("unmuted", &2)
        .unwrap();
    root.broadcast().except("red").emit("not-red", &3).unwrap();
    root.emit("fence", &()).unwrap();
    let mut counts: HashMap<(&str, &str), usize> = HashMap::new();
    for p in ps.iter_mut() {
        for e in until_fence(&mut p.ns).await {
            let name: &'static str = match e.name.as_str() {
                "both" => "both",
                "unmuted" => "unmuted",
                "not-red" => "not-red",
                other => panic!("unexpected event {other}"),
            };
            *counts.entry((p.name, name)).or_default() += 1;
        }
    }
    let got = |who, what| counts.get(&(who, what)).copied().unwrap_or(0);
    for (who, both, unmuted, not_red) in [
        ("ann", 1, 1, 0),
        ("bob", 1, 1, 0),
        ("cat", 1, 0, 1),
        ("dan", 0, 0, 1),
    ] {
        assert_eq!(got(who, "both"), both, "{who} both: {counts:?}");
        assert_eq!(got(who, "unmuted"), unmuted, "{who} unmuted: {counts:?}");
        assert_eq!(got(who, "not-red"), not_red, "{who} not-red: {counts:?}");
    }
}

async fn socket_to_room_excludes_the_sender(transport: Transport) {
    let (disconnects, _) = Disconnects::new();
    let relay = test_namespace(disconnects).on("relay", |socket, room: String| {
        let _ = socket.to(&room).emit("relayed", &socket.id().0);
    });
    let server = serve(Volley::builder().namespace("/", relay));
    let mut ps = players(
        &server,
        transport,
        "/",
        &[("ann", &["red"]), ("bob", &["red"])],
    )
    .await;
    ps[0].ns.emit("relay", &"red").unwrap();
    let e = next_event(&mut ps[1].ns).await;
    assert_eq!(e.name, "relayed");
    let counts = deliveries(&server, "/", &mut ps, "relayed").await;
    expect(&counts, &[("ann", 0), ("bob", 0)]);
}

async fn namespace_wide_reaches_all_of_it_and_no_one_elsewhere(transport: Transport) {
    let server = server();
    let mut here = players(&server, transport, "/", &[("ann", &[]), ("bob", &["red"])]).await;
    let mut there = players(
        &server,
        transport,
        "/other",
        &[("cat", &[]), ("dan", &["red"])],
    )
    .await;
    server
        .volley
        .of("/")
        .unwrap()
        .emit("all", &"root only")
        .unwrap();
    let counts = deliveries(&server, "/", &mut here, "all").await;
    expect(&counts, &[("ann", 1), ("bob", 1)]);
    let counts = deliveries(&server, "/other", &mut there, "all").await;
    expect(&counts, &[("cat", 0), ("dan", 0)]);
}

async fn leaving_a_room_stops_its_broadcasts(transport: Transport) {
    let server = server();
    let mut ps = players(
        &server,
        transport,
        "/",
        &[("ann", &["red"]), ("bob", &["red"])],
    )
    .await;
    let _: String = ps[1].ns.emit_with_ack("leave", &"red", WAIT).await.unwrap();
    server
        .volley
        .of("/")
        .unwrap()
        .to("red")
        .emit("news", &1)
        .unwrap();
    let e = next_event(&mut ps[0].ns).await;
    assert_eq!(e.name, "news");
    let counts = deliveries(&server, "/", &mut ps, "news").await;
    expect(&counts, &[("ann", 0), ("bob", 0)]);
    let stats = server.volley.of("/").unwrap().stats().await;
    assert_eq!((stats.sockets, stats.rooms), (2, 1));
}

over_transports!(
    room_broadcast_reaches_exactly_its_members_once,
    overlapping_rooms_deliver_once_and_except_excludes,
    socket_to_room_excludes_the_sender,
    namespace_wide_reaches_all_of_it_and_no_one_elsewhere,
    leaving_a_room_stops_its_broadcasts,
);

/// One sender's broadcasts reach each member in the order sent, whichever path each
/// takes through the server (a room's own fan-out, several rooms, the whole
/// namespace) and whichever of the member's rooms it targets.
#[actix_rt::test]
async fn one_senders_broadcasts_arrive_in_order_across_paths() {
    const SENT: u64 = 3000;
    let server = server();
    let mut members = players(
        &server,
        Transport::WebSocket,
        "/",
        &[("ann", &["a", "b"]), ("bob", &["a"]), ("cat", &["b"])],
    )
    .await;
    let ns = server.volley.of("/").unwrap();
    let mut n = 0;
    while n < SENT {
        let sent = match n % 4 {
            0 => ns.to("a").emit("n", &n),
            1 => ns.to("b").emit("n", &n),
            2 => ns.to("a").to("b").emit("n", &n),
            _ => ns.emit("n", &n),
        };
        match sent {
            Ok(()) => n += 1,
            // The namespace is `max_mailbox` ahead of its rooms: let them catch up.
            Err(_) => tokio::task::yield_now().await,
        }
    }
    ns.emit("fence", &()).unwrap();
    for member in &mut members {
        let mut last = None;
        for event in until_fence(&mut member.ns).await {
            let n: u64 = event.decode().unwrap();
            assert!(
                last.is_none_or(|last| n > last),
                "{} got {n} after {last:?}",
                member.name
            );
            last = Some(n);
        }
    }
}

/// Server-side operations on the sockets a broadcast reaches (Socket.IO's
/// `fetchSockets`, `socketsJoin`, `socketsLeave`, `disconnectSockets`): the target
/// an emit would reach, each socket once, exclusions included.
#[actix_rt::test]
async fn operations_on_a_broadcast_target_reach_its_sockets_once() {
    let server = server();
    let mut ps = players(
        &server,
        Transport::WebSocket,
        "/",
        &[
            ("ann", &["red", "blue"]),
            ("bob", &["red"]),
            ("cat", &["blue"]),
            ("dan", &[]),
        ],
    )
    .await;
    let table = id_table(&ps);
    let ids = |names: &[&str]| ids_of(&table, names);
    let found = |found: &[(&str, &[&str])]| found_of(&table, found);
    let root = server.volley.of("/").unwrap();
    let rooms = root.rooms().await;
    assert_eq!(rooms, [("blue".into(), 2), ("red".into(), 2)].into());
    let everyone = found(&[
        ("ann", &["blue", "red"]),
        ("bob", &["red"]),
        ("cat", &["blue"]),
        ("dan", &[]),
    ]);
    assert_eq!(root.broadcast().fetch_sockets().await, everyone);
    assert_eq!(
        root.to("red").to("blue").fetch_sockets().await,
        found(&[
            ("ann", &["blue", "red"]),
            ("bob", &["red"]),
            ("cat", &["blue"])
        ]),
        "a socket in both rooms once"
    );
    assert_eq!(
        root.to("red").except("blue").fetch_sockets().await,
        found(&[("bob", &["red"])])
    );
    assert_eq!(root.to("nowhere").fetch_sockets().await, []);

    // What a socket shares of itself comes with it (Socket.IO's `socket.data`).
    for p in [&ps[0], &ps[2]] {
        p.share(serde_json::json!({ "name": p.name })).await;
    }
    let red = root.to("red").fetch_sockets().await;
    assert_eq!(
        red,
        sharing(
            &table,
            found(&[("ann", &["blue", "red"]), ("bob", &["red"])]),
            &[("ann", r#"{"name":"ann"}"#)]
        )
    );
    #[derive(serde::Deserialize)]
    struct Named {
        name: String,
    }
    let names: Vec<String> = (red.iter())
        .filter_map(|s| s.data_as::<Named>()?.ok())
        .map(|n| n.name)
        .collect();
    assert_eq!(names, ["ann"]);
    ps[0].share(serde_json::Value::Null).await;
    assert_eq!(
        root.to("red").fetch_sockets().await,
        found(&[("ann", &["blue", "red"]), ("bob", &["red"])]),
        "taken back"
    );

    // Red joins green: an emit to green reaches exactly them, once.
    assert_eq!(
        root.to("red").sockets_join("green").await,
        ids(&["ann", "bob"])
    );
    root.to("green").emit("hit", &()).unwrap();
    let got = deliveries(&server, "/", &mut ps, "hit").await;
    expect(&got, &[("ann", 1), ("bob", 1), ("cat", 0), ("dan", 0)]);
    // Green but ann leaves green.
    let ann = ids(&["ann"])[0];
    let left = root
        .to("green")
        .except_socket(ann)
        .sockets_leave("green")
        .await;
    assert_eq!(left, ids(&["bob"]));
    assert_eq!(
        root.to("green").fetch_sockets().await,
        found(&[("ann", &["blue", "green", "red"])])
    );

    // Blue is disconnected from the namespace: each of its clients hears why, and
    // keeps its session.
    let gone = root.to("blue").disconnect_sockets("table closed").await;
    assert_eq!(gone, ids(&["ann", "cat"]));
    for p in ps.iter_mut().filter(|p| p.name == "ann" || p.name == "cat") {
        assert_eq!(p.disconnected().await.as_deref(), Some("table closed"));
    }
    assert_eq!(
        root.broadcast().fetch_sockets().await,
        found(&[("bob", &["red"]), ("dan", &[])])
    );
    assert_eq!(root.stats().await.sockets, 2);

    // Cat had shared its name: leaving the namespace took it away, so the same
    // session joining again shows nothing.
    let cat = ps.iter_mut().find(|p| p.name == "cat").unwrap();
    cat.ns = cat._client.join("/", &()).await.unwrap();
    assert_eq!(
        root.broadcast().fetch_sockets().await,
        found(&[("bob", &["red"]), ("cat", &[]), ("dan", &[])])
    );
}
