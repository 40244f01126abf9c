//! The Socket.IO endpoint with the official client: `socket.io-client` 4.8 from Node
//! (`tests/socketio/client.mjs`, pinned by `tests/socketio/package-lock.json`; `npm ci
//! --prefix framework/tests/socketio`) against the real server, next to native
//! clients in the same namespaces and rooms. Skipped, saying so, without Node.js or
//! the package, unless `VOLLEY_REQUIRE_NODE` is set (as in CI).

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use volley::client::Transport;
use volley::game::events;
use volley::{JoinRequest, Joined, RoomOptions};
use volley::{Namespace, Volley, VolleyBuilder};

use crate::browser_client::run_node;
use crate::common::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/socketio/client.mjs");

/// Whether the client package is installed; if not, says so (or fails under
/// `VOLLEY_REQUIRE_NODE`).
pub(crate) fn installed() -> bool {
    let package = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/socketio/node_modules/socket.io-client"
    );
    if Path::new(package).exists() {
        return true;
    }
    let why = "socket.io-client is not installed (npm ci --prefix framework/tests/socketio)";
    assert!(std::env::var_os("VOLLEY_REQUIRE_NODE").is_none(), "{why}");
    eprintln!("SKIPPED: {why}");
    false
}

/// `/chat` with the handlers of the other suites plus what Socket.IO clients test:
/// bytes, saying something to a room, and a burst of events around a dropped
/// connection (the server's `volley`, set once built).
fn chat(volley: Arc<OnceLock<Volley>>) -> Namespace {
    let (disconnects, _) = Disconnects::new();
    let namespace = test_namespace(disconnects);
    // In a cluster: all the events at once, then this node drains (the session
    // moves to another node, with what its client has not acknowledged).
    #[cfg(feature = "cluster")]
    let namespace = {
        let volley = volley.clone();
        namespace.on_ack(
            "burst_drain",
            move |socket, (before, after): (u64, u64), ack| {
                for n in 1..=before + after {
                    let _ = socket.emit("n", &n);
                }
                let _ = ack.send(&());
                let volley = volley.get().cloned();
                actix_rt::spawn(async move {
                    // Only a move drops the client's connection: the scenario waits
                    // for that (`transport close`), then for its recovery.
                    if let Some(cluster) = volley.as_ref().and_then(Volley::cluster) {
                        let _ = cluster.drain().await;
                    }
                });
            },
        )
    };
    namespace
        .on_ack("bytes", |_, bytes: Vec<u8>, ack| {
            let _ = ack.send(&bytes);
        })
        .on("kick_me", |socket, _: ()| socket.disconnect("bye"))
        .on_ack("to_room", |socket, (room, text): (String, String), ack| {
            let sent = socket.to(&room).emit("said", &text).is_ok();
            let _ = ack.send(&sent);
        })
        .on_ack("burst", move |socket, (before, after): (u64, u64), ack| {
            for n in 1..=before {
                let _ = socket.emit("n", &n);
            }
            let _ = ack.send(&());
            let volley = volley.get().cloned();
            let socket = socket.clone();
            actix_rt::spawn(async move {
                if let Some(volley) = volley {
                    volley.drop_connection(socket.id()).await;
                }
                // Sent while the client is away: kept in the outbox for its recovery.
                for n in before + 1..=before + after {
                    let _ = socket.emit("n", &n);
                }
            });
        })
}

pub(crate) fn server_with(builder: VolleyBuilder) -> TestServer {
    server_in(serve, builder)
}

/// The test server of `start` (Volley's own server, or mounted into actix-web's).
fn server_in(start: fn(VolleyBuilder) -> TestServer, builder: VolleyBuilder) -> TestServer {
    let volley = Arc::new(OnceLock::new());
    let server = start(
        builder
            .namespace("/chat", chat(volley.clone()))
            .namespace("/admin", admin_namespace("s3cret")),
    );
    let _ = volley.set(server.volley.clone());
    server
}

/// The server's http:// base URL (the tests' `url` is the native ws:// endpoint).
fn base(server: &TestServer) -> String {
    let url = server.url.replacen("ws://", "http://", 1);
    url.trim_end_matches("/volley").to_owned()
}

async fn scenario(server: &TestServer, name: &str, args: &[&str]) {
    scenario_at(&base(server), name, args).await;
}

/// Runs scenario `name` of `client.mjs` against the server(s) at `base`
/// (`http://host:port`).
pub(crate) async fn scenario_at(base: &str, name: &str, args: &[&str]) {
    if !installed() {
        return;
    }
    let mut all = vec![name, base];
    all.extend_from_slice(args);
    run_node(SCRIPT, &all).await;
}

#[actix_rt::test]
async fn socketio_client_over_polling() {
    let server = server_with(VolleyBuilder::default());
    scenario(&server, "basics", &["polling"]).await;
}

#[actix_rt::test]
async fn socketio_client_over_websocket_only() {
    let server = server_with(VolleyBuilder::default());
    scenario(&server, "basics", &["websocket"]).await;
}

#[actix_rt::test]
async fn socketio_client_upgrades_from_polling_to_websocket() {
    let server = server_with(VolleyBuilder::default());
    scenario(&server, "basics", &["upgrade"]).await;
}

#[actix_rt::test]
async fn socketio_client_upgrades_under_actix_webs_own_server() {
    let server = server_in(serve_in_actix_web, VolleyBuilder::default());
    scenario(&server, "basics", &["upgrade"]).await;
    scenario(&server, "basics", &["websocket"]).await;
}

#[actix_rt::test]
async fn socketio_namespace_auth_accepted_and_refused() {
    let server = server_with(VolleyBuilder::default());
    scenario(&server, "auth", &[]).await;
}

#[actix_rt::test]
async fn socketio_and_native_clients_share_a_room() {
    let server = server_with(VolleyBuilder::default());
    if !installed() {
        return;
    }
    let client = connect(&server, Transport::WebSocket).await;
    let mut chat = client
        .join("/chat", &())
        .await
        .expect("native client joins /chat");
    let joined: String = chat.emit_with_ack("join", &"r", WAIT).await.expect("join");
    assert_eq!(joined, "r");
    let node = scenario(&server, "room", &["r"]);
    let native = async {
        // The Socket.IO client's words reach us; ours reach it.
        loop {
            let event = next_event(&mut chat).await;
            if event.name == "said" && event.decode::<String>().ok().as_deref() == Some("from-sio")
            {
                break;
            }
        }
        let sent: bool = chat
            .emit_with_ack("to_room", &("r", "from-native"), WAIT)
            .await
            .expect("to_room");
        assert!(sent);
    };
    tokio::join!(node, native);
}

#[actix_rt::test]
async fn socketio_recovery_after_a_cut_delivers_each_event_once_over_polling() {
    let server = server_with(VolleyBuilder::default());
    scenario(&server, "recovery", &["5", "5", "polling"]).await;
}

#[actix_rt::test]
async fn socketio_recovery_after_a_cut_delivers_each_event_once_over_websocket() {
    let server = server_with(VolleyBuilder::default());
    scenario(&server, "recovery", &["5", "5", "websocket"]).await;
}

#[actix_rt::test]
async fn socketio_recovery_when_nothing_was_sent_before_the_cut() {
    let server = server_with(VolleyBuilder::default());
    scenario(&server, "recovery", &["0", "3", "websocket"]).await;
}

#[actix_rt::test]
async fn socketio_heartbeat_timeout_drops_and_recovers() {
    let heartbeat = Duration::from_millis(300);
    let server = server_with(VolleyBuilder::default().heartbeat(heartbeat, heartbeat));
    scenario(&server, "heartbeat", &[]).await;
}

#[actix_rt::test]
async fn socketio_client_plays_a_game_room_beside_a_native_player() {
    let rooms = crate::game::game_rooms(RoomOptions::default());
    let server = serve(Volley::builder().namespace("/game", rooms.with_events(Namespace::new())));
    if !installed() {
        return;
    }
    let client = connect(&server, Transport::WebSocket).await;
    let mut game = client.join("/game", &()).await.expect("joins /game");
    let request = JoinRequest::new("teams").options(serde_json::json!({ "team": "red" }));
    let joined: Result<Joined, String> = game
        .emit_with_ack(events::JOIN, &request, WAIT)
        .await
        .expect("join_game answered");
    joined.expect("seated");
    let node = scenario(&server, "game", &[]);
    let native = async {
        // The Socket.IO player sits in our room: our team's state lists both of us.
        loop {
            let event = next_event(&mut game).await;
            if event.name != "state" {
                continue;
            }
            let state: serde_json::Value = event.decode().expect("state is JSON");
            if state["members"].as_array().is_some_and(|m| m.len() == 2) {
                break;
            }
        }
    };
    tokio::join!(node, native);
}

/// A Rust Socket.IO client (`rust_socketio` 0.6, its blocking client) on its own
/// thread: an event and an ack answered, so the endpoint is covered without Node.
#[actix_rt::test]
async fn rust_socketio_client_gets_events_and_acks() {
    use rust_socketio::{ClientBuilder, Payload};
    use std::sync::mpsc;

    let server = server_with(VolleyBuilder::default());
    let base = base(&server);
    let talk = tokio::task::spawn_blocking(move || {
        let (events, heard) = mpsc::channel();
        let client = ClientBuilder::new(base)
            .namespace("/chat")
            .on("shout", move |payload, _| {
                let _ = events.send(payload);
            })
            .connect()
            .expect("rust_socketio connects");
        let (acks, answered) = mpsc::channel();
        client
            .emit_with_ack(
                "echo",
                serde_json::json!({ "a": 1 }),
                WAIT,
                move |payload, _| {
                    let _ = acks.send(payload);
                },
            )
            .expect("emit with ack");
        let echoed = answered.recv_timeout(WAIT).expect("the ack comes back");
        client
            .emit("shout", serde_json::json!("hey"))
            .expect("emit");
        let shouted = heard.recv_timeout(WAIT).expect("the event comes back");
        let _ = client.disconnect();
        (echoed, shouted)
    });
    let (echoed, shouted) = tokio::time::timeout(WAIT * 2, talk)
        .await
        .expect("in time")
        .expect("the client thread ends");
    let Payload::Text(echoed) = echoed else {
        panic!("ack payload: {echoed:?}");
    };
    // `43/chat,<id>[{"a":1}]`, as Socket.IO's server writes it: rust_socketio hands an
    // ack's argument array over as one value.
    assert_eq!(echoed, vec![serde_json::json!([{ "a": 1 }])]);
    let Payload::Text(shouted) = shouted else {
        panic!("event payload: {shouted:?}");
    };
    // The payload, then its recovery offset.
    assert_eq!(shouted.first(), Some(&serde_json::json!("hey")));
}
