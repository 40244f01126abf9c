//! The client's frame limit and the reason of a server-side disconnect: what a
//! client announces in `Hello` is respected by every way the server sends, a frame
//! over the limit ends the client's session instead of a reconnection loop, and
//! `Socket::disconnect(reason)` reaches the client with its reason.

use std::time::Duration;

use volley::client::{Client, ClientConfig, ConnectionEvent, Transport};
use volley::protocol::{Frame, PROTOCOL_VERSION};
use volley::{Namespace, Volley};

use crate::common::*;
use crate::resume::quick_backoff;

/// What a client under test announces.
const SMALL: usize = 4096;

fn big(size: usize) -> String {
    "x".repeat(size)
}

/// Handlers that send the client payloads of the size it asks for, and report how
/// the server-side call went (`None`: sent).
pub(crate) fn sizes_namespace() -> Namespace {
    Namespace::new()
        .on_ack("send_big", |socket, size: usize, ack| {
            let refused = socket.emit("big", &big(size)).err();
            let _ = ack.send(&refused.map(|e| e.to_string()));
        })
        .on_ack("ask_big", |socket, size: usize, ack| {
            let answer = socket.emit_with_ack::<_, ()>("big", &big(size), WAIT);
            actix_rt::spawn(async move {
                let refused = answer.await.err();
                let _ = ack.send(&refused.map(|e| e.to_string()));
            });
        })
        .on_ack("answer_big", |socket, size: usize, ack| {
            if let Err(e) = ack.send(&big(size)) {
                let _ = socket.emit("answer_refused", &e.to_string());
            }
        })
        .on_ack("join", |socket, room: String, ack| {
            socket.join(&room);
            let _ = ack.send(&room);
        })
        .on("leave_me", |socket, reason: String| {
            socket.disconnect(&reason)
        })
}

fn server() -> TestServer {
    serve(Volley::builder().namespace("/", sizes_namespace()))
}

async fn client(server: &TestServer, transport: Transport, max_frame_size: usize) -> Client {
    let config = ClientConfig {
        transport,
        max_frame_size,
        backoff: quick_backoff(),
        ..ClientConfig::default()
    };
    Client::connect_with(&server.url, config).await.unwrap()
}

async fn emits_larger_than_the_client_accepts_fail_at_the_sender(transport: Transport) {
    let server = server();
    let client = client(&server, transport, SMALL).await;
    let mut ns = client.join("/", &()).await.unwrap();

    let refused: Option<String> = ns.emit_with_ack("send_big", &10_000, WAIT).await.unwrap();
    let refused = refused.expect("the emit fails");
    assert!(
        refused.contains("larger than the client accepts (4096 bytes)"),
        "{refused}"
    );
    let refused: Option<String> = ns.emit_with_ack("ask_big", &10_000, WAIT).await.unwrap();
    assert!(refused
        .expect("the ack fails")
        .contains("larger than the client accepts"));
    // An answer too large is not sent either; the handler hears why.
    let emitter = ns.emitter();
    let answer =
        emitter.emit_with_ack::<_, String>("answer_big", &10_000, Duration::from_millis(300));
    let (answer, refused) = tokio::join!(answer, next_event(&mut ns));
    assert!(answer.is_err());
    assert_eq!(refused.name, "answer_refused");

    // Within the limit, everything goes through.
    let sent: Option<String> = ns.emit_with_ack("send_big", &1_000, WAIT).await.unwrap();
    assert_eq!(sent, None);
    let event = next_event(&mut ns).await;
    assert_eq!(event.decode::<String>().unwrap(), big(1_000));
    assert!(!client.is_closed());
}

async fn a_broadcast_leaves_out_a_client_that_cannot_take_it_and_counts_it(transport: Transport) {
    let server = server();
    let small = client(&server, transport, SMALL).await;
    let large = client(&server, transport, 64 * 1024).await;
    let mut small_ns = small.join("/", &()).await.unwrap();
    let mut large_ns = large.join("/", &()).await.unwrap();
    for ns in [&small_ns, &large_ns] {
        let _: String = ns.emit_with_ack("join", &"r", WAIT).await.unwrap();
    }
    let room = server.volley.of("/").unwrap();
    room.to("r").emit("big", &big(10_000)).unwrap();
    room.to("r").emit("fence", &()).unwrap();

    let before_fence = until_fence(&mut large_ns).await;
    assert_eq!(before_fence.len(), 1);
    assert_eq!(before_fence[0].decode::<String>().unwrap(), big(10_000));
    assert!(until_fence(&mut small_ns).await.is_empty());
    assert_eq!(server.volley.frames_over_client_limit(), 1);
    // The small client's session goes on, in sequence.
    let echoed: String = small_ns.emit_with_ack("join", &"r2", WAIT).await.unwrap();
    assert_eq!(echoed, "r2");
}

async fn a_frame_over_the_limit_that_arrives_anyway_ends_the_session_with_a_reason(
    transport: Transport,
) {
    let server = server();
    // The server honours no limit below 1024 bytes, so a client announcing 100 can
    // be sent a 600-byte frame: it must stop, not reconnect into the same frame.
    let client = client(&server, transport, 100).await;
    let ns = client.join("/", &()).await.unwrap();
    ns.emit("send_big", &600).unwrap();
    let reason = tokio::time::timeout(WAIT, client.closed()).await.unwrap();
    assert!(
        reason.contains("larger than this client accepts (max_frame_size 100 bytes)"),
        "{reason}"
    );
    while let Some(event) = client.next_connection_event().await {
        assert!(
            !matches!(event, ConnectionEvent::Reconnecting { .. }),
            "{event:?}"
        );
    }
}

async fn socket_disconnect_reason_reaches_the_client(transport: Transport) {
    let server = server();
    let client = client(&server, transport, SMALL).await;
    let mut ns = client.join("/", &()).await.unwrap();
    assert_eq!(ns.disconnect_reason(), None);
    ns.emit("leave_me", &"too many messages").unwrap();
    let next = tokio::time::timeout(WAIT, ns.next_event()).await.unwrap();
    assert!(next.is_none(), "the namespace closes");
    assert_eq!(ns.disconnect_reason().as_deref(), Some("too many messages"));
    // Only the namespace: the session goes on.
    let again = client.join("/", &()).await.unwrap();
    let echoed: String = again.emit_with_ack("join", &"back", WAIT).await.unwrap();
    assert_eq!(echoed, "back");
}

/// A client that announces no limit (one written before the field existed) gets
/// the `Disconnect` it knows, without the reason; one that announces gets it.
#[actix_rt::test]
async fn the_disconnect_reason_goes_only_to_clients_that_announce_a_limit() {
    let server = server();
    for (announced, reason) in [(None, None), (Some(2048), Some("bye"))] {
        let mut raw = RawClient::connect(&server.url).await;
        raw.send(&Frame::Hello {
            version: PROTOCOL_VERSION,
            max_frame_size: announced,
        })
        .await;
        assert!(matches!(raw.recv().await, Some(Frame::Open(_))));
        raw.join("/").await;
        raw.send(&Frame::Event {
            ns: "/".into(),
            name: "leave_me".into(),
            payload: b"\"bye\"".to_vec().into(),
            ack: None,
        })
        .await;
        assert_eq!(
            raw.recv().await,
            Some(Frame::Disconnect {
                ns: "/".into(),
                reason: reason.map(str::to_owned),
            })
        );
    }
}

over_transports!(
    emits_larger_than_the_client_accepts_fail_at_the_sender,
    a_broadcast_leaves_out_a_client_that_cannot_take_it_and_counts_it,
    a_frame_over_the_limit_that_arrives_anyway_ends_the_session_with_a_reason,
    socket_disconnect_reason_reaches_the_client,
);
