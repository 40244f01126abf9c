//! The sentences of `docs/protocol.md` where an implementer would trip, each checked
//! against the real server with raw frames: which error wins for a bad first frame,
//! the cut of close descriptions, ack id 0, acknowledgements that go backwards,
//! resumes from frames the server never sent, and the heartbeat's fixed schedule.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use volley::client::{Client, ClientConfig, Transport};
use volley::protocol::{Frame, Open};
use volley::{Namespace, SessionId, Socket, Volley};

use crate::common::*;
use crate::resume::quick_backoff;

fn server() -> TestServer {
    let (disconnects, _) = Disconnects::new();
    serve(Volley::builder().namespace("/", test_namespace(disconnects)))
}

fn event(name: &str, payload: &[u8], ack: Option<u64>) -> Frame {
    Frame::Event {
        ns: "/".into(),
        name: name.into(),
        payload: payload.to_vec().into(),
        ack,
    }
}

fn resume(open: &Open, last_seq: u64) -> Frame {
    Frame::Resume {
        sid: open.sid,
        token: open.token,
        last_seq,
        max_frame_size: None,
    }
}

/// Resumes the session of `open` from `last_seq` on a new connection, which must
/// be refused; returns the reason.
async fn resume_refused(url: &str, open: &Open, last_seq: u64) -> String {
    let mut again = RawClient::connect(url).await;
    again.send(&resume(open, last_seq)).await;
    match again.recv().await {
        Some(Frame::ResumeFailed { reason }) => reason,
        other => panic!("expected resume-failed, got {other:?}"),
    }
}

#[actix_rt::test]
async fn a_malformed_first_frame_gets_the_decode_error_not_expected_hello() {
    let server = server();
    // Decoding comes first: a first frame that does not decode is refused as such.
    for (bytes, reason) in [
        (vec![0x09, 0x05, 0x2f], "malformed frame: "),
        (vec![0x11], "unknown frame tag 17"),
        (vec![0x02, 0x00], "malformed frame: 1 trailing bytes"),
        // A frame that decodes but is not `Hello` or `Resume`.
        (
            vec![0x02],
            "expected 'hello' as the first frame, got 'ping'",
        ),
    ] {
        let mut raw = RawClient::connect(&server.url).await;
        raw.send_bytes(bytes.clone()).await;
        let got = raw.close_reason().await.expect("a close frame");
        assert!(got.starts_with(reason), "{bytes:02x?}: {got:?}");
    }
}

#[actix_rt::test]
async fn a_close_description_is_cut_to_120_bytes_on_a_character_boundary() {
    let server = server();
    let (mut raw, open) = RawClient::open(&server.url).await;
    // `kicked: ` (8 bytes) + `x` + 100 × `é` (2 bytes each): byte 120 falls inside
    // an `é`, so the description stops at 119 bytes.
    let why = format!("x{}", "é".repeat(100));
    assert!(server.volley.kick(SessionId(open.sid), &why).await);
    let reason = format!("kicked: {why}");
    assert_eq!(raw.close_reason().await.as_deref(), Some(reason.as_str()));
    let description = raw.ws_close_description().expect("a close description");
    assert_eq!(description.len(), 119);
    assert_eq!(description, reason[..119]);
}

async fn ack_id_0_is_answered_like_any_other_id(transport: Transport) {
    let server = server();
    let (mut raw, _) = Raw::open(&server.url, transport).await;
    raw.join("/").await;
    raw.send(&event("echo", b"7", Some(0))).await;
    assert_eq!(
        raw.recv().await,
        Some(Frame::Ack {
            ns: "/".into(),
            id: 0,
            payload: b"7".to_vec().into(),
        })
    );
}

#[actix_rt::test]
async fn a_pong_that_goes_backwards_changes_nothing_and_the_acknowledged_frames_are_gone() {
    let server = server();
    let (mut raw, open) = RawClient::open_in(&server.url, "/").await; // frame 1: connected
    raw.send(&event("echo", b"1", Some(1))).await;
    assert!(matches!(raw.recv().await, Some(Frame::Ack { id: 1, .. }))); // frame 2
    raw.send(&Frame::Pong { last_seq: 2 }).await;
    raw.send(&Frame::Pong { last_seq: 1 }).await;
    raw.send(&Frame::Received { last_seq: 0 }).await;
    // The session goes on: the next answer is frame 3.
    raw.send(&event("echo", b"3", Some(3))).await;
    assert!(matches!(raw.recv().await, Some(Frame::Ack { id: 3, .. })));
    raw.send(&Frame::Received { last_seq: 3 }).await;
    // Frames are handled in order: once this answer is back, so is the `Received`.
    raw.send(&event("echo", b"4", Some(4))).await;
    assert!(matches!(raw.recv().await, Some(Frame::Ack { id: 4, .. })));
    // What was acknowledged was dropped: a resume cannot go back before it.
    assert_eq!(
        resume_refused(&server.url, &open, 1).await,
        "cannot resume from frame 1: the client already acknowledged frames 1..=3"
    );
}

#[actix_rt::test]
async fn a_resume_beyond_what_the_server_sent_is_refused_naming_the_frames_it_sent() {
    let server = server();
    let (_idle, nothing_sent) = RawClient::open(&server.url).await;
    assert_eq!(
        resume_refused(&server.url, &nothing_sent, 99).await,
        "cannot resume from frame 99: the server has sent no reliable frame yet"
    );

    let (mut first, open) = RawClient::open_in(&server.url, "/").await; // frame 1
    assert_eq!(
        resume_refused(&server.url, &open, 99).await,
        "cannot resume from frame 99: the server sent only frames 1..=1"
    );
    // The refusal leaves the session alone: a resume from a frame it has works,
    // and replaces the first connection.
    let mut right = RawClient::connect(&server.url).await;
    right.send(&resume(&open, 0)).await;
    assert_eq!(
        right.recv().await,
        Some(Frame::Resumed {
            last_seq: 1, // the client's `Connect`
            replay: 1
        })
    );
    assert_eq!(
        right.recv().await,
        Some(Frame::Connected { ns: "/".into() })
    );
    assert_eq!(
        first.dropped_reason().await.as_deref(),
        Some("replaced by a resumed connection")
    );
}

/// Pings follow a fixed schedule from the last ping, however late the pongs come:
/// a client that answers each ping 60% of an interval late still gets one ping per
/// interval (counting from the pong would give one per 1.6 intervals).
#[actix_rt::test]
async fn pings_run_from_the_last_ping_not_the_last_pong() {
    let interval = Duration::from_millis(250);
    let (disconnects, _) = Disconnects::new();
    let server = serve(
        Volley::builder()
            .heartbeat(interval, interval * 2)
            .namespace("/", test_namespace(disconnects)),
    );
    let (mut raw, _) = RawClient::open(&server.url).await;
    let intervals = 12u32;
    let started = Instant::now();
    let mut pings = 0u32;
    while started.elapsed() < interval * intervals {
        if let Some(Frame::Ping) = raw.recv().await {
            pings += 1;
            actix_rt::time::sleep(interval * 3 / 5).await;
            raw.send(&Frame::Pong { last_seq: 0 }).await;
        }
    }
    assert!(
        (intervals - 1..=intervals + 1).contains(&pings),
        "{pings} pings in {intervals} intervals"
    );
}

/// A namespace that hands its sockets to the test, so that the test can ask the
/// client questions (server → client acks) at moments it chooses.
fn handing_out_sockets() -> (Namespace, mpsc::UnboundedReceiver<Socket>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let tx = Arc::new(Mutex::new(tx));
    let namespace = Namespace::new().on_connect(move |socket| {
        let _ = tx.lock().unwrap().send(socket.clone());
    });
    (namespace, rx)
}

async fn a_server_to_client_ack_crosses_a_resume_in_either_direction(transport: Transport) {
    let (namespace, mut sockets) = handing_out_sockets();
    let server = serve(Volley::builder().namespace("/", namespace));
    let config = ClientConfig {
        transport,
        backoff: quick_backoff(),
        ..ClientConfig::default()
    };
    let client = Client::connect_with(&server.url, config).await.unwrap();
    let mut ns = client.join("/", &()).await.unwrap();
    let socket = tokio::time::timeout(WAIT, sockets.recv())
        .await
        .unwrap()
        .unwrap();
    let sid = SessionId(client.session_id());

    // The question is asked while the session is detached: it waits in the outbox,
    // is replayed on resume, and the answer comes back on the new connection.
    assert!(server.volley.drop_connection(sid).await);
    let asked = socket.emit_with_ack::<_, String>("question", &"who?", WAIT);
    assert_eq!(resumed(&client).await, 1);
    let question = next_event(&mut ns).await;
    assert_eq!(question.decode::<String>().unwrap(), "who?");
    question.ack.expect("an ack id").send(&"me").unwrap();
    assert_eq!(asked.await, Ok("me".to_owned()));

    // The question arrives, then the connection drops before the answer: the answer
    // waits in the client's buffer and is resent after the resume, once.
    let asked = socket.emit_with_ack::<_, String>("question", &"again?", WAIT);
    let question = next_event(&mut ns).await;
    assert!(server.volley.drop_connection(sid).await);
    question.ack.expect("an ack id").send(&"still me").unwrap();
    resumed(&client).await;
    assert_eq!(asked.await, Ok("still me".to_owned()));
    assert_eq!(client.session_id(), sid.0, "the same session throughout");
}

over_transports!(
    ack_id_0_is_answered_like_any_other_id,
    a_server_to_client_ack_crosses_a_resume_in_either_direction,
);
