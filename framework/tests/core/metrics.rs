//! `GET /metrics`: scraped over HTTP while a scripted session runs, the figures move
//! as the session does; without the bearer token the route refuses.

use std::collections::HashMap;
use std::time::Duration;

use volley::client::Transport;
use volley::protocol::Frame;
use volley::{
    DisconnectReason, GameRooms, JoinRequest, MetricsRoute, RoomOptions, Volley, VolleyBuilder,
};

use crate::common::*;

pub(crate) const TOKEN: &str = "scrape-secret";

/// Scrapes the server's `/metrics` with `token`: the status and the figures by
/// series (`name{labels}`).
pub(crate) async fn scrape(
    server: &TestServer,
    token: Option<&str>,
) -> (u16, HashMap<String, f64>) {
    let url = server
        .url
        .replace("ws://", "http://")
        .replace("/volley", "/metrics");
    let mut req = awc::Client::new().get(url).timeout(WAIT);
    if let Some(token) = token {
        req = req.insert_header(("Authorization", format!("Bearer {token}")));
    }
    let mut res = req.send().await.expect("scrape answers");
    let body = res.body().await.expect("scrape body");
    let text = String::from_utf8(body.to_vec()).expect("utf-8");
    let series = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
        .collect();
    (res.status().as_u16(), series)
}

/// A server builder with the metrics route on, behind [`TOKEN`].
pub(crate) fn metered() -> VolleyBuilder {
    Volley::builder().metrics(MetricsRoute::token(TOKEN))
}

fn get(series: &HashMap<String, f64>, key: &str) -> f64 {
    series.get(key).copied().unwrap_or(0.0)
}

async fn figures(server: &TestServer) -> HashMap<String, f64> {
    let (status, series) = scrape(server, Some(TOKEN)).await;
    assert_eq!(status, 200);
    series
}

async fn scrape_follows_a_session(transport: Transport) {
    let (disconnects, mut gone) = Disconnects::new();
    let server = serve(metered().namespace("/", test_namespace(disconnects)));
    assert_eq!(scrape(&server, None).await.0, 401);
    assert_eq!(scrape(&server, Some("wrong")).await.0, 401);

    let before = figures(&server).await;
    assert_eq!(get(&before, "volley_sessions_attached"), 0.0);

    let client = connect(&server, transport).await;
    let mut ns = client.join("/", &()).await.unwrap();
    let label = match transport {
        Transport::WebSocket => "websocket",
        _ => "polling",
    };
    let connected = figures(&server).await;
    assert_eq!(get(&connected, "volley_sessions_attached"), 1.0);
    assert_eq!(get(&connected, "volley_sessions_opened_total"), 1.0);
    let ok = "volley_namespace_connects_total{result=\"ok\"}";
    assert_eq!(get(&connected, ok), 1.0);
    let open = format!("volley_connections{{transport=\"{label}\"}}");
    assert!(get(&connected, &open) >= 1.0, "{open} in {connected:?}");

    // An emit answered by the server: it was counted before its handler ran.
    let _: serde_json::Value = ns.emit_with_ack("echo", &1, WAIT).await.unwrap();
    let emitted = figures(&server).await;
    let frames_in = "volley_frames_received_total";
    assert!(get(&emitted, frames_in) >= get(&connected, frames_in) + 1.0);
    assert!(
        get(&emitted, "volley_received_bytes_total")
            > get(&connected, "volley_received_bytes_total")
    );

    // A broadcast to a room the client joined: one delivery more.
    let _: String = ns.emit_with_ack("join", &"lobby", WAIT).await.unwrap();
    let joined = figures(&server).await;
    server
        .volley
        .of("/")
        .unwrap()
        .to("lobby")
        .emit("news", &"hi")
        .unwrap();
    assert_eq!(next_event(&mut ns).await.name, "news");
    let broadcast = figures(&server).await;
    let deliveries = "volley_broadcast_deliveries_total";
    assert_eq!(get(&broadcast, deliveries), get(&joined, deliveries) + 1.0);
    let broadcasts = "volley_broadcasts_total";
    assert_eq!(get(&broadcast, broadcasts), get(&joined, broadcasts) + 1.0);
    assert!(get(&broadcast, "volley_frames_sent_total") > get(&joined, "volley_frames_sent_total"));

    // The connection drops and the client resumes: one detach, one resume, and as
    // many frames replayed as the client was told (the event emitted meanwhile, or
    // none if it beat the drop).
    let sid = volley::SessionId(client.session_id());
    assert!(server.volley.drop_connection(sid).await);
    server
        .volley
        .of("/")
        .unwrap()
        .to("lobby")
        .emit("news", &"again")
        .unwrap();
    let replayed = resumed(&client).await;
    assert_eq!(next_event(&mut ns).await.name, "news");
    let back = figures(&server).await;
    assert_eq!(get(&back, "volley_session_detaches_total"), 1.0);
    assert_eq!(get(&back, "volley_resumes_total{result=\"ok\"}"), 1.0);
    assert_eq!(get(&back, "volley_frames_replayed_total"), replayed as f64);
    assert_eq!(get(&back, "volley_sessions_attached"), 1.0);
    assert_eq!(get(&back, "volley_sessions_detached"), 0.0);

    // The client leaves: the disconnect hook runs after the session was counted.
    client.close().await;
    let (_, reason) = tokio::time::timeout(WAIT, gone.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reason, DisconnectReason::ClientLeft);
    let left = figures(&server).await;
    assert_eq!(
        get(&left, "volley_disconnects_total{reason=\"client_left\"}"),
        1.0
    );
    assert_eq!(get(&left, "volley_sessions_attached"), 0.0);
    assert_eq!(get(&left, "volley_sessions_detached"), 0.0);
}

over_transports!(scrape_follows_a_session);

/// Refused input and acknowledgements that time out are counted by reason.
#[actix_rt::test]
async fn refusals_and_ack_timeouts_are_counted() {
    let (disconnects, _gone) = Disconnects::new();
    let server = serve(
        metered()
            .max_frame_size(1024)
            .namespace("/", test_namespace(disconnects))
            .namespace("/admin", admin_namespace("let-me-in")),
    );
    let (mut raw, _) = RawClient::open(&server.url).await;
    raw.send_bytes(vec![200, 1, 2, 3]).await;
    assert_eq!(raw.close_reason().await.unwrap(), "unknown frame tag 200");
    let (mut raw, _) = RawClient::open(&server.url).await;
    raw.send_bytes(vec![0; 1025]).await;
    assert!(raw
        .close_reason()
        .await
        .unwrap()
        .starts_with("frame too large"));
    // A resume with a wrong token.
    let (_raw, open) = RawClient::open(&server.url).await;
    let mut wrong = open.token;
    wrong[0] ^= 1;
    let mut again = RawClient::connect(&server.url).await;
    let resume = Frame::Resume {
        sid: open.sid,
        token: wrong,
        last_seq: 0,
        max_frame_size: None,
    };
    again.send(&resume).await;
    assert!(matches!(
        again.recv().await,
        Some(Frame::ResumeFailed { .. })
    ));
    let refused = figures(&server).await;
    let bad_token = "volley_resumes_total{result=\"bad_token\"}";
    assert_eq!(get(&refused, bad_token), 1.0);
    assert_eq!(
        get(&refused, "volley_refused_total{reason=\"bad_frame\"}"),
        1.0
    );
    assert_eq!(
        get(&refused, "volley_refused_total{reason=\"frame_too_large\"}"),
        1.0
    );

    // The server asks a question the client never answers.
    let client = connect(&server, Transport::WebSocket).await;
    let mut ns = client.join("/", &()).await.unwrap();
    let emitter = ns.emitter();
    let asked = emitter.emit_with_ack::<_, String>("ask", &50u64, WAIT);
    let ignore = async { assert_eq!(next_event(&mut ns).await.name, "question") };
    let (outcome, ()) = tokio::join!(asked, ignore);
    assert_eq!(outcome.unwrap(), "error: ack timed out");
    let timed_out = figures(&server).await;
    assert_eq!(get(&timed_out, "volley_acks_timed_out_total"), 1.0);

    // Connects the middleware refuses, and connects to nowhere.
    assert!(client.join("/admin", &()).await.is_err());
    assert!(client.join("/nowhere", &()).await.is_err());
    let connects = figures(&server).await;
    let result = |r: &str| {
        get(
            &connects,
            &format!("volley_namespace_connects_total{{result=\"{r}\"}}"),
        )
    };
    assert_eq!(
        (result("ok"), result("unauthorized"), result("refused")),
        (1.0, 1.0, 1.0)
    );
}

/// A pong lands in the RTT histogram before the frames that follow it are answered.
#[actix_rt::test]
async fn ping_round_trips_are_observed() {
    let server = serve(metered().heartbeat(Duration::from_millis(100), WAIT));
    let (mut raw, _) = RawClient::open(&server.url).await;
    while raw.recv().await.expect("connection open") != Frame::Ping {}
    raw.send(&Frame::Pong { last_seq: 0 }).await;
    raw.send(&connect_to("/nowhere")).await;
    while !matches!(
        raw.recv().await.expect("connection open"),
        Frame::ConnectError { .. }
    ) {}
    let rtt = figures(&server).await;
    assert_eq!(get(&rtt, "volley_ping_rtt_seconds_count"), 1.0);
    assert!(get(&rtt, "volley_ping_rtt_seconds_sum") > 0.0);
}

/// Game rooms a server watches are reported by room type.
#[actix_rt::test]
async fn watched_game_rooms_are_reported_by_type() {
    let server = serve(metered());
    let kept = RoomOptions {
        dispose_after_empty: Duration::from_secs(600),
        ..RoomOptions::default()
    };
    let rooms = GameRooms::builder()
        .game::<crate::game::Ticker>("ticker", kept)
        .build();
    server.volley.watch_game_rooms(&rooms);
    assert_eq!(
        get(
            &figures(&server).await,
            "volley_game_rooms{room_type=\"ticker\"}"
        ),
        0.0
    );
    for _ in 0..2 {
        rooms.create(&JoinRequest::new("ticker")).await.unwrap();
    }
    let two = figures(&server).await;
    assert_eq!(get(&two, "volley_game_rooms{room_type=\"ticker\"}"), 2.0);
    assert_eq!(get(&two, "volley_game_players{room_type=\"ticker\"}"), 0.0);
    assert!(two.contains_key("volley_game_ticks_total{room_type=\"ticker\"}"));
    let lateness = "volley_game_tick_lateness_seconds_bucket{le=\"+Inf\",room_type=\"ticker\"}";
    assert!(two.contains_key(lateness), "{two:?}");
    // No join under way: the matchmaker's queue is empty (counted in game::seats).
    assert_eq!(two.get("volley_matchmaker_joins_waiting"), Some(&0.0));
}

/// Two servers in one process keep their own figures.
#[actix_rt::test]
async fn servers_do_not_share_metrics() {
    let (disconnects, _gone) = Disconnects::new();
    let a = serve(metered().namespace("/", test_namespace(disconnects.clone())));
    let b = serve(metered().namespace("/", test_namespace(disconnects)));
    let client = connect(&a, Transport::WebSocket).await;
    let _ns = client.join("/", &()).await.unwrap();
    assert_eq!(get(&figures(&a).await, "volley_sessions_attached"), 1.0);
    assert_eq!(get(&figures(&b).await, "volley_sessions_attached"), 0.0);
}

/// Only listed addresses may scrape when the route names addresses; with neither a
/// token nor addresses, loopback may.
#[actix_rt::test]
async fn unlisted_addresses_are_refused() {
    let other: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    let server = serve(Volley::builder().metrics(MetricsRoute::from_addresses(&[other])));
    assert_eq!(scrape(&server, None).await.0, 403);
    let loopback = serve(Volley::builder().metrics(MetricsRoute::default()));
    assert_eq!(scrape(&loopback, None).await.0, 200);
}

/// Requests refused before any connection exists are counted by reason: a foreign
/// origin, an oversized poll body, a batch that does not decode, a wrong method, a
/// plain GET on the WebSocket endpoint.
#[actix_rt::test]
async fn refused_requests_are_counted() {
    let config = volley::Config {
        max_poll_body: 4096,
        ..volley::Config::default()
    };
    let server = serve(
        Volley::builder()
            .config(config)
            .metrics(MetricsRoute::token(TOKEN)),
    );
    let poll = format!("{}/poll", server.url.replacen("ws://", "http://", 1));
    let http = awc::Client::builder().timeout(WAIT).finish();
    let status = |r: &awc::ClientResponse<_>| r.status().as_u16();
    let foreign = http
        .post(&poll)
        .insert_header(("Origin", "http://evil.example"))
        .send_body(vec![])
        .await
        .unwrap();
    assert_eq!(status(&foreign), 403);
    let large = http.post(&poll).send_body(vec![0u8; 5000]).await.unwrap();
    assert_eq!(status(&large), 413);
    let bad = http.post(&poll).send_body(vec![0xff; 8]).await.unwrap();
    assert_eq!(status(&bad), 400);
    let method = http.put(&poll).send_body(vec![]).await.unwrap();
    assert_eq!(status(&method), 405);
    let endpoint = server.url.replacen("ws://", "http://", 1);
    let not_upgrade = http.get(&endpoint).send().await.unwrap();
    assert_eq!(status(&not_upgrade), 400);

    let refused = figures(&server).await;
    let reason = |r: &str| get(&refused, &format!("volley_refused_total{{reason=\"{r}\"}}"));
    assert_eq!(reason("foreign_origin"), 1.0, "{refused:?}");
    assert_eq!(reason("body_too_large"), 1.0);
    assert_eq!(reason("bad_batch"), 1.0);
    assert_eq!(reason("method_not_allowed"), 1.0);
    assert_eq!(reason("bad_handshake"), 1.0);
}

/// Each confirmation from the client observes the frames its session still keeps.
#[actix_rt::test]
async fn confirmations_observe_the_outbox() {
    let server = serve(metered());
    let (mut raw, _) = RawClient::open(&server.url).await;
    let refused = |frame: Frame| matches!(frame, Frame::ConnectError { .. });
    raw.send(&connect_to("/nowhere")).await;
    while !refused(raw.recv().await.expect("connection open")) {}
    // One reliable frame unconfirmed; the connect that follows is answered after the
    // confirmation was handled.
    raw.send(&Frame::Received { last_seq: 0 }).await;
    raw.send(&connect_to("/nowhere")).await;
    while !refused(raw.recv().await.expect("connection open")) {}
    let seen = figures(&server).await;
    assert_eq!(get(&seen, "volley_outbox_frames_count"), 1.0, "{seen:?}");
    assert_eq!(get(&seen, "volley_outbox_frames_sum"), 1.0);
    assert_eq!(get(&seen, "volley_outbox_bytes_count"), 1.0);
    assert!(get(&seen, "volley_outbox_bytes_sum") > 0.0);
}
