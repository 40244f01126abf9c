//! Bad input on the Socket.IO endpoint, over raw HTTP: Engine.IO's refusals (version,
//! transport, sid), the body and batch limits, a malformed packet or a packet before
//! any namespace (the connection closes, the server goes on), and the same origin
//! check, connection limits and rate limit as the native endpoint.

use volley::{Volley, VolleyBuilder};

use crate::common::*;
use crate::security::{addr, request};

fn server() -> TestServer {
    let (disconnects, _) = Disconnects::new();
    serve(
        Volley::builder()
            .max_frame_size(1024)
            .namespace("/chat", test_namespace(disconnects)),
    )
}

/// Opens an Engine.IO polling connection; returns its sid.
async fn handshake(server: &TestServer) -> String {
    let answer = request(
        addr(server),
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        &[],
        b"",
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let open: serde_json::Value =
        serde_json::from_str(answer.body.strip_prefix('0').expect("an open packet")).unwrap();
    assert_eq!(open["upgrades"], serde_json::json!(["websocket"]));
    open["sid"].as_str().unwrap().to_owned()
}

async fn post(server: &TestServer, sid: &str, body: &str) -> (u16, String) {
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let answer = request(addr(server), "POST", &path, &[], body.as_bytes()).await;
    (answer.status, answer.body)
}

async fn poll(server: &TestServer, sid: &str) -> (u16, String) {
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let answer = request(addr(server), "GET", &path, &[], b"").await;
    (answer.status, answer.body)
}

#[actix_rt::test]
async fn engine_io_refusals_say_what_is_wrong() {
    let server = server();
    let refused = |path: &'static str| {
        let addr = addr(&server);
        async move { request(addr, "GET", path, &[], b"").await }
    };
    let old = refused("/socket.io/?EIO=3&transport=polling").await;
    assert_eq!(
        (old.status, old.body.as_str()),
        (
            400,
            r#"{"code":5,"message":"Unsupported protocol version"}"#
        )
    );
    let unknown = refused("/socket.io/?EIO=4&transport=pigeon").await;
    assert_eq!(
        (unknown.status, unknown.body.as_str()),
        (400, r#"{"code":0,"message":"Transport unknown"}"#)
    );
    let no_sid = refused("/socket.io/?EIO=4&transport=polling&sid=nope").await;
    assert_eq!(
        (no_sid.status, no_sid.body.as_str()),
        (400, r#"{"code":1,"message":"Session ID unknown"}"#)
    );
    assert_eq!(post(&server, "nope", "40").await.0, 400);
}

#[actix_rt::test]
async fn bodies_over_max_payload_and_overfull_batches_are_refused() {
    let server = server();
    let sid = handshake(&server).await;
    let (status, body) = post(&server, &sid, &format!("4{}", "x".repeat(2000))).await;
    assert_eq!(
        (status, body.as_str()),
        (413, "request body too large (limit 1024 bytes)")
    );
    let batch = vec!["6"; 300].join("\u{1e}");
    let (status, body) = post(&server, &sid, &batch).await;
    assert_eq!(
        (status, body.as_str()),
        (400, "too many packets in one request (limit 256)")
    );
    let (status, body) = post(&server, &sid, "9nonsense").await;
    assert_eq!((status, body.as_str()), (400, "unknown packet type \"9\""));
}

#[actix_rt::test]
async fn a_malformed_packet_closes_its_connection_and_the_server_goes_on() {
    let server = server();
    for bad in ["4{not a packet", "42/chat,[\"x\"]", "40/chat,[1,2]"] {
        let sid = handshake(&server).await;
        // The first two come before any namespace (an event), the last is an auth
        // that is not an object: each is a protocol error.
        let (status, _) = post(&server, &sid, bad).await;
        assert_eq!(status, 200, "the body itself is well-formed");
        assert_eq!(
            poll(&server, &sid).await,
            (200, "1".to_owned()),
            "{bad}: closed"
        );
    }
    // A well-behaved client is served as before.
    let sid = handshake(&server).await;
    assert_eq!(
        post(&server, &sid, "40/chat,").await,
        (200, "ok".to_owned())
    );
    let (status, body) = poll(&server, &sid).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("40/chat,{\""), "{body}");
}

#[actix_rt::test]
async fn a_foreign_origin_is_refused() {
    let server = server();
    let answer = request(
        addr(&server),
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        &["Origin: http://evil.example"],
        b"",
    )
    .await;
    assert_eq!(answer.status, 403, "{}", answer.body);
}

#[actix_rt::test]
async fn the_endpoint_can_be_moved_or_turned_off() {
    let off = serve(VolleyBuilder::default().socketio(None));
    let answer = request(
        addr(&off),
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        &[],
        b"",
    )
    .await;
    assert_eq!(answer.status, 404);
    let moved = serve(VolleyBuilder::default().socketio(Some(volley::SocketIo {
        path: "/game.io/".into(),
        ..volley::SocketIo::default()
    })));
    let answer = request(
        addr(&moved),
        "GET",
        "/game.io/?EIO=4&transport=polling",
        &[],
        b"",
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[actix_rt::test]
async fn the_same_rate_limit_ends_a_flooding_socketio_session() {
    let (disconnects, mut seen) = Disconnects::new();
    let server = serve(
        Volley::builder()
            .rate_limit(volley::RateLimit {
                frames_per_sec: 1,
                frame_burst: 5,
                ..volley::RateLimit::default()
            })
            .namespace("/chat", test_namespace(disconnects)),
    );
    let sid = handshake(&server).await;
    assert_eq!(post(&server, &sid, "40/chat,").await.0, 200);
    assert!(poll(&server, &sid).await.1.starts_with("40/chat,"));
    let flood = vec!["42/chat,[\"shout\",\"x\"]"; 20].join("\u{1e}");
    assert_eq!(post(&server, &sid, &flood).await.0, 200);
    let (reason_ns, reason) = tokio::time::timeout(WAIT, seen.recv())
        .await
        .expect("in time")
        .expect("a disconnect");
    assert_eq!(
        (reason_ns.as_str(), reason.to_string().as_str()),
        ("/chat", "rate limited")
    );
    // The client hears of it: its namespace is left, then the connection closes.
    let mut heard = String::new();
    while !heard.ends_with('1') {
        let (status, body) = poll(&server, &sid).await;
        assert_eq!(status, 200, "{body}");
        heard.push_str(&body);
    }
    assert!(heard.contains("41/chat,"), "{heard}");
}

#[actix_rt::test]
async fn the_same_connection_limits_apply() {
    let server = serve(Volley::builder().max_connections(1, 1));
    let _first = handshake(&server).await;
    let answer = request(
        addr(&server),
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        &[],
        b"",
    )
    .await;
    assert_eq!(answer.status, 503, "{}", answer.body);
}
