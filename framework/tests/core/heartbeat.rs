//! Server-driven heartbeat: dead peers are dropped, RTT is measured.

use std::time::{Duration, Instant};

use volley::protocol::Frame;
use volley::{DisconnectReason, Volley};

use volley::client::Transport;

use crate::common::*;

const INTERVAL: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_millis(300);

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
    // The registry shows the same measurement (it may have moved on since).
    let sessions = server.volley.sessions().await;
    let me = sessions
        .iter()
        .find(|s| s.id.0 == client.session_id())
        .expect("session listed");
    assert!(me.rtt.is_some_and(|rtt| rtt < Duration::from_secs(5)));
}

/// Pings counted end to end: the schedule is checked by what reaches the client.
/// Long enough that a pong over long-polling on a loaded CI machine stays in time.
const COUNT_INTERVAL: Duration = Duration::from_millis(400);
/// Shorter than the interval, the setting under which the pings used to multiply.
const COUNT_TIMEOUT: Duration = Duration::from_millis(300);
const INTERVALS: u32 = 20;

/// A raw client that keeps count of the server's reliable frames, to answer pings as
/// a real client does.
struct Pinged {
    raw: Raw,
    received: u64,
}

impl Pinged {
    /// The next ping, answering nothing; counts reliable frames on the way.
    async fn next_ping(&mut self) -> Instant {
        loop {
            let frame = self.raw.recv().await;
            match frame.expect("the connection stays up while pings are answered") {
                Frame::Ping => return Instant::now(),
                frame if frame.is_reliable() => self.received += 1,
                _ => {}
            }
        }
    }

    async fn pong(&mut self) {
        let last_seq = self.received;
        self.raw.send(&Frame::Pong { last_seq }).await;
    }

    /// Answers every ping for `INTERVALS` intervals from the first one, then leaves
    /// the next ping unanswered. Returns how many pings arrived in the window and how
    /// long after the unanswered one the server dropped the connection. The client
    /// reads all along (nothing is cancelled midway, which would lose a polling
    /// response), so every ping is seen.
    async fn count_then_go_silent(&mut self) -> (u32, Duration) {
        let first = self.next_ping().await;
        // Half an interval short of the next slot, so the count does not depend on
        // which side of the window edge a ping lands.
        let end = first + COUNT_INTERVAL * INTERVALS - COUNT_INTERVAL / 2;
        let mut pings = 0;
        let unanswered = loop {
            pings += 1;
            self.pong().await;
            let at = self.next_ping().await;
            if at >= end {
                break at;
            }
        };
        let reason = self.raw.dropped_reason().await.unwrap_or_default();
        let after = unanswered.elapsed();
        assert!(reason.ends_with("ping timeout"), "{reason}");
        (pings, after)
    }
}

/// Opens a session on `transport`, joined to "/", then moves it to a new connection
/// `resumes` times (each new connection replaces the previous one).
async fn pinged_session(server: &TestServer, transport: Transport, resumes: u32) -> Pinged {
    let (mut raw, open) = Raw::open(&server.url, transport).await;
    raw.send(&Frame::Connect {
        ns: "/".into(),
        auth: Default::default(),
    })
    .await;
    assert_eq!(raw.recv().await, Some(Frame::Connected { ns: "/".into() }));
    let mut pinged = Pinged { raw, received: 1 };
    for _ in 0..resumes {
        let resume = Frame::Resume {
            sid: open.sid,
            token: open.token,
            last_seq: pinged.received,
            max_frame_size: None,
        };
        let mut raw = Raw::start(&server.url, transport, &resume).await;
        match raw.recv().await {
            Some(Frame::Resumed { replay: 0, .. }) => {}
            other => panic!("expected resumed, got {other:?}"),
        }
        pinged.raw = raw;
    }
    pinged
}

/// Exactly one ping per interval reaches an attached client that answers them, and
/// one that then stops answering is dropped `ping_timeout` after the unanswered ping;
/// the same after one resume and after several (a resume must not start a second
/// schedule).
async fn one_ping_per_interval_then_drop_after_timeout(transport: Transport, resumes: u32) {
    let (disconnects, _) = Disconnects::new();
    let server = serve(
        Volley::builder()
            .heartbeat(COUNT_INTERVAL, COUNT_TIMEOUT)
            .namespace("/", test_namespace(disconnects)),
    );
    let mut client = pinged_session(&server, transport, resumes).await;
    let (pings, dropped_after) = client.count_then_go_silent().await;
    println!("{pings} pings in {INTERVALS} intervals after {resumes} resumes");
    assert!(
        (INTERVALS - 1..=INTERVALS + 1).contains(&pings),
        "{pings} pings in {INTERVALS} intervals of {COUNT_INTERVAL:?}"
    );
    println!("dropped {dropped_after:?} after the unanswered ping (timeout {COUNT_TIMEOUT:?})");
    // The margin absorbs a loaded CI machine; the point is that the drop follows the
    // ping by the timeout, not by an interval (or several) on top of it.
    assert!(
        dropped_after >= COUNT_TIMEOUT / 2 && dropped_after < COUNT_TIMEOUT + COUNT_INTERVAL,
        "{dropped_after:?}"
    );
}

async fn one_ping_per_interval(transport: Transport) {
    one_ping_per_interval_then_drop_after_timeout(transport, 0).await;
}

async fn one_ping_per_interval_after_a_resume(transport: Transport) {
    one_ping_per_interval_then_drop_after_timeout(transport, 1).await;
}

async fn one_ping_per_interval_after_several_resumes(transport: Transport) {
    one_ping_per_interval_then_drop_after_timeout(transport, 5).await;
}

over_transports!(
    one_ping_per_interval,
    one_ping_per_interval_after_a_resume,
    one_ping_per_interval_after_several_resumes,
    a_client_that_stops_answering_pings_is_dropped_with_ping_timeout,
    a_silent_client_is_dropped_then_expires_after_the_grace_window,
    rtt_is_measured_and_readable_by_handlers,
);
