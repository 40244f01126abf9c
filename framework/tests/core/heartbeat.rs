//! Server-driven heartbeat: dead peers are dropped, RTT is measured.

use std::time::{Duration, Instant};

use volley::protocol::Frame;
use volley::{DisconnectReason, Volley};

use volley::client::Transport;

use crate::common::*;

const INTERVAL: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_millis(300);

/// Without resumption, the session ends with the connection.
/// Without resumption, the session ends with the connection.
async fn a_client_that_stops_answering_pings_is_dropped_with_ping_timeout(transport: Transport) {
    dropped_after_ping_timeout(transport, Duration::ZERO, DisconnectReason::PingTimeout).await;
}

/// With resumption, the connection is dropped at once and the session expires after
/// the grace window, with the cause in the reason.
async fn a_silent_client_is_dropped_then_expires_after_the_grace_window(transport: Transport) {
    let expired = DisconnectReason::Expired(Box::new(DisconnectReason::PingTimeout));
    dropped_after_ping_timeout(transport, Duration::from_millis(300), expired).await;
}

async fn dropped_after_ping_timeout(
    transport: Transport,
    grace: Duration,
    expected: DisconnectReason,
) {
    let (disconnects, mut seen) = Disconnects::new();
    let server = serve(
        Volley::builder()
            .heartbeat(INTERVAL, TIMEOUT)
            .resume_grace(grace)
            .namespace("/", test_namespace(disconnects)),
    );
    let (mut raw, open) = Raw::open(&server.url, transport).await;
    assert_eq!(open.ping_interval_ms, 200);
    assert_eq!(open.ping_timeout_ms, 300);
    raw.send(&Frame::Connect {
        ns: "/".into(),
        auth: Default::default(),
    })
    .await;
    assert_eq!(raw.recv().await, Some(Frame::Connected { ns: "/".into() }));
    let opened = Instant::now();

    // A healthy client on the same server keeps its session throughout.
    let healthy = connect(&server, transport).await;
    let healthy_ns = healthy.join("/", &()).await.unwrap();

    // Never answer: read until the server gives up on the connection.
    let reason = raw.dropped_reason().await;
    let elapsed = opened.elapsed();
    println!("dead peer dropped after {elapsed:?} (interval {INTERVAL:?} + timeout {TIMEOUT:?})");
    let reason = reason.unwrap_or_default();
    assert!(reason.ends_with("ping timeout"), "{reason}");
    let (ns, why) = tokio::time::timeout(WAIT, seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ns.as_str(), why), ("/", expected));
    println!(
        "session ended {:?} after the drop",
        opened.elapsed() - elapsed
    );
    // Generous margin for a loaded CI machine; the bound that matters is that it is
    // not a multiple of the interval.
    assert!(
        elapsed < INTERVAL + TIMEOUT + Duration::from_secs(2),
        "{elapsed:?}"
    );

    // The healthy client answered its pings and is still served.
    let v: u32 = healthy_ns.emit_with_ack("echo", &1, WAIT).await.unwrap();
    assert_eq!(v, 1);
    assert!(!healthy.is_closed());
}

async fn rtt_is_measured_and_readable_by_handlers(transport: Transport) {
    let (disconnects, _) = Disconnects::new();
    let server = serve(
        Volley::builder()
            .heartbeat(Duration::from_millis(50), TIMEOUT)
            .namespace("/", test_namespace(disconnects)),
    );
    let client = connect(&server, transport).await;
    let ns = client.join("/", &()).await.unwrap();
    // The first pong arrives after one interval; poll a bounded number of times.
    let mut rtt = None;
    for _ in 0..100 {
        rtt = ns
            .emit_with_ack::<_, Option<u64>>("rtt", &(), WAIT)
            .await
            .unwrap();
        if rtt.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rtt = rtt.expect("an rtt after a few heartbeats");
    println!("measured rtt on loopback: {rtt} µs");
    assert!(rtt < 5_000_000);
}

over_transports!(
    a_client_that_stops_answering_pings_is_dropped_with_ping_timeout,
    a_silent_client_is_dropped_then_expires_after_the_grace_window,
    rtt_is_measured_and_readable_by_handlers,
);
