//! The two ways to serve Volley. Every other test runs on Volley's own `HttpServer`,
//! whose WebSocket connections leave actix-http's HTTP/1 dispatcher at the upgrade;
//! here, the same protocol mounted into a plain actix-web `HttpServer` (where the
//! dispatcher keeps them), and what Volley's server does with the rest of the `App`
//! and with upgrade requests that are not for it.

use actix_web::{web, App};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use volley::client::Transport;
use volley::{Namespace, SessionId, Volley};

use crate::common::*;
use crate::wire::*;

const LIMIT: usize = 64 * 1024;

#[actix_rt::test]
async fn mounted_into_actix_webs_own_server_the_protocol_is_the_same() {
    let (disconnects, _) = Disconnects::new();
    let server = serve_in_actix_web(
        Volley::builder()
            .max_frame_size(LIMIT)
            .namespace("/", test_namespace(disconnects)),
    );
    for transport in [Transport::WebSocket, Transport::Polling] {
        echo_shout_and_resume(&server, transport, 1).await;
    }
    // The edge guard stands in front of actix-http's decoder here too.
    let mut ws = websocket(&server).await;
    ws.write_all(&frame_header(0x82, 10 << 20)).await.unwrap();
    assert_eq!(
        read_close(&mut ws).await,
        Some((1008, format!("frame too large (limit {LIMIT} bytes)")))
    );
}

/// Sends a raw request and reads the whole answer (the server closes after it).
async fn exchange(server: &TestServer, head: &str) -> String {
    let mut stream = tcp(server).await;
    let request = format!("{head}\r\nHost: {}\r\n\r\n", authority(server));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("the server closes after its answer")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[actix_rt::test]
async fn volleys_server_serves_the_apps_routes_and_answers_stray_upgrades() {
    let volley = Volley::builder().namespace("/", Namespace::new()).build();
    let http = volley
        .http_server(|| App::new().route("/health", web::get().to(|| async { "ok" })))
        .workers(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
    let addr = http.addrs()[0];
    let server = started(volley, addr, http.run());

    // The App's own route, beside Volley's (added by the server itself).
    let health = exchange(&server, "GET /health HTTP/1.1\r\nConnection: close").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok"), "{health}");
    let client = connect(&server, Transport::Polling).await;
    client.join("/", &()).await.unwrap();

    // Every upgrade comes to Volley: one for another path is answered, not dropped.
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13";
    let elsewhere = exchange(&server, &format!("GET /chat HTTP/1.1\r\n{upgrade}")).await;
    assert!(elsewhere.starts_with("HTTP/1.1 404"), "{elsewhere}");
    assert!(
        elsewhere.ends_with("no WebSocket endpoint at /chat"),
        "{elsewhere}"
    );
    let post = exchange(&server, &format!("POST /volley HTTP/1.1\r\n{upgrade}")).await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    assert!(post.to_ascii_lowercase().contains("allow: get"), "{post}");
    let keyless = exchange(
        &server,
        "GET /volley HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13",
    )
    .await;
    assert!(keyless.starts_with("HTTP/1.1 400"), "{keyless}");
    assert!(keyless.ends_with("unknown WebSocket key"), "{keyless}");
    // And the WebSocket itself.
    let ws = connect(&server, Transport::WebSocket).await;
    ws.join("/", &()).await.unwrap();
}

/// With an io window ([`volley::Config::io_window`]) the io threads take their
/// sockets' traffic once per window while it flows: everything still arrives, once
/// and in order, on both transports, and a dropped connection still resumes.
#[actix_rt::test]
async fn with_an_io_window_every_message_arrives_once_and_in_order() {
    let (disconnects, _) = Disconnects::new();
    let server = serve(
        Volley::builder()
            .io_window(std::time::Duration::from_millis(10))
            .namespace("/", test_namespace(disconnects)),
    );
    for transport in [Transport::WebSocket, Transport::Polling] {
        echo_shout_and_resume(&server, transport, 200).await;
    }
}

/// A client on `transport`: an echo with an ack, `shouts` events back in order,
/// and, after its connection is dropped, the same session resumed with what was sent
/// meanwhile arriving once.
async fn echo_shout_and_resume(server: &TestServer, transport: Transport, shouts: usize) {
    let client = connect(server, transport).await;
    let mut ns = client.join("/", &()).await.unwrap();
    let echoed: String = ns.emit_with_ack("echo", &"hi", WAIT).await.unwrap();
    assert_eq!(echoed, "hi");
    for i in 0..shouts {
        ns.emit("shout", &i.to_string()).unwrap();
    }
    for i in 0..shouts {
        let text = next_event(&mut ns).await.decode::<String>().unwrap();
        assert_eq!(text, i.to_string());
    }
    let sid = SessionId(client.session_id());
    assert!(server.volley.drop_connection(sid).await);
    ns.emit("shout", &"after").unwrap();
    resumed(&client).await;
    assert_eq!(
        next_event(&mut ns).await.decode::<String>().unwrap(),
        "after"
    );
    assert_eq!(
        client.session_id(),
        sid.0,
        "{transport:?}: the same session"
    );
}
