//! Long-polling fallback, resuming across transports, and the polling endpoint's
//! limits.

use std::time::Duration;

use tokio::sync::mpsc;
use volley::client::{Client, ClientConfig, ConnectionEvent, Transport};
use volley::protocol::{self, Frame};
use volley::Volley;

use crate::common::*;
use crate::proxy::{Cuts, FaultProxy};
use crate::resume::{counting_config, counting_namespace, quick_backoff, server_addr};

#[actix_rt::test]
async fn through_a_proxy_that_refuses_websocket_the_client_falls_back_to_polling() {
    let (disconnects, _) = Disconnects::new();
    let server = serve(Volley::builder().namespace("/", test_namespace(disconnects)));
    let proxy = FaultProxy::start(server_addr(&server), Cuts::Never, 1).await;
    proxy.block_websocket(true);

    let client = Client::connect(&proxy.url())
        .await
        .expect("connects by polling");
    assert_eq!(client.transport(), Transport::Polling);
    match client.next_connection_event().await {
        Some(ConnectionEvent::FellBack { reason }) => println!("fell back: {reason}"),
        other => panic!("expected a fallback event, got {other:?}"),
    }

    // Events and acks both ways over polling.
    let mut ns = client.join("/", &()).await.unwrap();
    ns.emit("shout", &"over http").unwrap();
    let event = next_event(&mut ns).await;
    assert_eq!(event.decode::<String>().unwrap(), "over http");
    let echoed: Vec<u8> = ns.emit_with_ack("echo", &vec![1, 2], WAIT).await.unwrap();
    assert_eq!(echoed, vec![1, 2]);
    let emitter = ns.emitter();
    let asked = emitter.emit_with_ack::<_, String>("ask", &5_000u64, WAIT);
    let answer = async {
        let question = next_event(&mut ns).await;
        question.ack.unwrap().send(&"poller").unwrap();
    };
    let (outcome, ()) = tokio::join!(asked, answer);
    assert_eq!(outcome.unwrap(), "answer: poller");
}

/// Runs the numbered exchange of `counting_namespace` while `switch` moves the
/// connection to another transport; checks both directions exactly once, in order.
async fn exchange_across_a_switch(
    client: &Client,
    received: &mut mpsc::UnboundedReceiver<u64>,
    switch: impl FnOnce(),
) {
    let mut ns = client.join("/", &()).await.unwrap();
    ns.emit("start", &()).unwrap();
    let mut switch = Some(switch);
    for n in 0..crate::resume::EVENTS {
        ns.emit("c2s", &(n, "pad")).unwrap();
        if n == crate::resume::EVENTS / 3 {
            if let Some(switch) = switch.take() {
                switch();
            }
        }
    }
    let mut next = 0;
    loop {
        let event = next_event(&mut ns).await;
        if event.name == "done" {
            break;
        }
        let (n, _): (u64, String) = event.decode().unwrap();
        assert_eq!(n, next, "server → client lost or duplicated");
        next += 1;
    }
    assert_eq!(next, crate::resume::EVENTS);
    for expected in 0..crate::resume::EVENTS {
        let n = tokio::time::timeout(WAIT, received.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, expected, "client → server lost or duplicated");
    }
    let _: u8 = ns.emit_with_ack("echo", &0, WAIT).await.unwrap();
    assert!(received.try_recv().is_err(), "a duplicate arrived");
}

#[actix_rt::test]
async fn a_session_started_on_websocket_resumes_over_polling() {
    let (tx, mut received) = mpsc::unbounded_channel();
    let server = serve(Volley::builder().namespace("/", counting_namespace(tx)));
    let proxy = FaultProxy::start(server_addr(&server), Cuts::Never, 1).await;
    let config = counting_config(ClientConfig::default().transport);
    let client = Client::connect_with(&proxy.url(), config).await.unwrap();
    assert_eq!(client.transport(), Transport::WebSocket);
    let sid = client.session_id();

    exchange_across_a_switch(&client, &mut received, || {
        // WebSocket stops working mid-stream.
        proxy.block_websocket(true);
        proxy.cut_all();
    })
    .await;

    assert_eq!(client.transport(), Transport::Polling);
    assert_eq!(client.session_id(), sid, "the same session continued");
    let (mut resumed, mut fell_back) = (false, false);
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(1), client.next_connection_event()).await
    {
        match event {
            ConnectionEvent::Reconnected { resumed: r, .. } => resumed |= r,
            ConnectionEvent::FellBack { reason } => {
                assert!(
                    reason.contains("WebSocket upgrade refused (403"),
                    "{reason}"
                );
                fell_back = true;
            }
            ConnectionEvent::SessionLost { reason, .. } => panic!("session lost: {reason}"),
            _ => {}
        }
    }
    assert!(resumed);
    assert!(fell_back, "the refused upgrade was reported");
}

/// A plain outage (nothing answers, neither WebSocket nor HTTP) is not a blocked
/// WebSocket: the client keeps reconnecting over WebSocket and never reports a
/// fallback. (Whatever the timing: a WebSocket attempt that gets no HTTP answer does
/// not try long-polling.)
#[actix_rt::test]
async fn an_outage_does_not_make_the_client_fall_back() {
    let (disconnects, _) = Disconnects::new();
    let server = serve(Volley::builder().namespace("/", test_namespace(disconnects)));
    let proxy = FaultProxy::start(server_addr(&server), Cuts::Never, 1).await;
    let config = ClientConfig {
        backoff: quick_backoff(),
        ..ClientConfig::default()
    };
    let client = Client::connect_with(&proxy.url(), config).await.unwrap();
    assert_eq!(client.transport(), Transport::WebSocket);
    let ns = client.join("/", &()).await.unwrap();

    proxy.refuse(true);
    proxy.cut_all();
    let next = || async {
        tokio::time::timeout(WAIT, client.next_connection_event())
            .await
            .expect("a connection event")
            .expect("the client runs")
    };
    // Three attempts fail during the outage (each waits for its back-off delay after
    // its `Reconnecting` event, so none is in flight when the outage ends below)...
    // Each failed attempt is reported with what went wrong, before the next one.
    let mut started = 0;
    loop {
        match next().await {
            ConnectionEvent::Reconnecting { attempt, .. } if attempt >= 4 => break,
            ConnectionEvent::Reconnecting { attempt, .. } => started = attempt,
            ConnectionEvent::ReconnectFailed { attempt, error } => {
                assert_eq!(attempt, started, "the failure of the attempt just started");
                assert!(error.contains("connect"), "says what failed: {error}");
            }
            other => panic!("expected reconnection attempts, got {other:?}"),
        }
    }
    // ...and it ends between two connections: the next one is refused (a WebSocket
    // attempt, nothing answers) and the one after it gets through. That must not be
    // read as "WebSocket blocked, HTTP works": the session resumes on WebSocket.
    proxy.refuse_next(1);
    proxy.refuse(false);
    loop {
        match next().await {
            ConnectionEvent::Reconnecting { .. } | ConnectionEvent::ReconnectFailed { .. } => {}
            ConnectionEvent::Reconnected { resumed, .. } => {
                assert!(resumed, "the same session continued");
                break;
            }
            other => panic!("expected a resume on WebSocket, got {other:?}"),
        }
    }
    assert_eq!(client.transport(), Transport::WebSocket);
    let echoed: u8 = ns.emit_with_ack("echo", &5, WAIT).await.unwrap();
    assert_eq!(echoed, 5);
}

#[actix_rt::test]
async fn a_session_started_on_polling_resumes_over_websocket() {
    let (disconnects, _) = Disconnects::new();
    let server = serve(Volley::builder().namespace("/", test_namespace(disconnects)));
    let (mut poller, open) = Raw::open(&server.url, Transport::Polling).await;
    poller
        .send(&Frame::Connect {
            ns: "/".into(),
            auth: Default::default(),
        })
        .await;
    assert_eq!(
        poller.recv().await,
        Some(Frame::Connected { ns: "/".into() })
    ); // seq 1
    poller
        .send(&Frame::Event {
            ns: "/".into(),
            name: "echo".into(),
            payload: b"7".to_vec().into(),
            ack: Some(1),
        })
        .await;
    // The ack (seq 2) arrives over polling, but this client "loses" it: it will claim
    // to have processed frame 1 only.
    assert!(matches!(
        poller.recv().await,
        Some(Frame::Ack { id: 1, .. })
    ));
    // A broadcast while the client moves (seq 3); the stats round trip makes sure it
    // reached the session before the resume does.
    server
        .volley
        .of("/")
        .unwrap()
        .emit("news", &"while moving")
        .unwrap();
    server.volley.of("/").unwrap().stats().await;

    // The client claims frame 1 only; the server replays 2 and 3, and says it got
    // both of the client's frames (Connect, Event), so nothing is resent.
    let mut ws = RawClient::resume(&server.url, &open, 1).await;
    assert_eq!(
        ws.recv().await,
        Some(Frame::Resumed {
            last_seq: 2,
            replay: 2
        })
    );
    assert_eq!(
        ws.recv().await,
        Some(Frame::Ack {
            ns: "/".into(),
            id: 1,
            payload: b"7".to_vec().into()
        })
    );
    match ws.recv().await {
        Some(Frame::Event { name, payload, .. }) => {
            assert_eq!(
                (name.as_str(), &payload[..]),
                ("news", &b"\"while moving\""[..])
            );
        }
        other => panic!("expected the broadcast, got {other:?}"),
    }
    // And the session carries on over WebSocket.
    ws.send(&Frame::Event {
        ns: "/".into(),
        name: "echo".into(),
        payload: b"8".to_vec().into(),
        ack: Some(2),
    })
    .await;
    assert_eq!(
        ws.recv().await,
        Some(Frame::Ack {
            ns: "/".into(),
            id: 2,
            payload: b"8".to_vec().into()
        })
    );
    // The replaced polling connection is gone.
    let Raw::Poll(mut poller) = poller else {
        unreachable!()
    };
    let gone = loop {
        match poller.recv().await {
            Ok(_) => continue,
            Err(body) => break body,
        }
    };
    assert!(
        gone.contains("replaced by a resumed connection")
            || gone.contains("unknown or expired polling id"),
        "{gone}"
    );
}

#[actix_rt::test]
async fn the_polling_endpoint_refuses_bad_requests_and_keeps_serving() {
    let (disconnects, _) = Disconnects::new();
    let server = serve(
        Volley::builder()
            .config(volley::Config {
                max_poll_body: 4096,
                poll_hold: Duration::from_secs(5),
                ..volley::Config::default()
            })
            .namespace("/", test_namespace(disconnects)),
    );
    let base = format!("{}/poll", server.url.replacen("ws://", "http://", 1));
    let http = awc::Client::builder().timeout(WAIT).finish();
    let healthy = connect(&server, Transport::Polling).await;
    let healthy_ns = healthy.join("/", &()).await.unwrap();
    let still_works = || async {
        let v: String = healthy_ns.emit_with_ack("echo", &"ok", WAIT).await.unwrap();
        assert_eq!(v, "ok");
    };

    // Oversized body: 413 with the reason.
    let mut response = http.post(&base).send_body(vec![0u8; 5000]).await.unwrap();
    assert_eq!(response.status().as_u16(), 413);
    assert_eq!(
        response.body().await.unwrap(),
        "request body too large (limit 4096 bytes)"
    );
    still_works().await;

    // Unknown polling id: 400, for GET and POST.
    let mut response = http.get(format!("{base}?pid=00ff")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(
        response.body().await.unwrap(),
        "unknown or expired polling id"
    );
    let mut response = http
        .post(format!("{base}?pid=00ff"))
        .send_body(vec![])
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(
        response.body().await.unwrap(),
        "unknown or expired polling id"
    );

    // A malformed batch: 400 with the reason.
    let mut response = http.post(&base).send_body(vec![9, 1]).await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body = response.body().await.unwrap();
    assert!(
        String::from_utf8_lossy(&body).starts_with("malformed batch"),
        "{body:?}"
    );

    // Two GETs at once on one connection: one waits, the other gets 409.
    let hello = protocol::encode(&Frame::Hello {
        version: 1,
        max_frame_size: None,
    });
    let mut opened = http
        .post(&base)
        .send_body(protocol::encode_batch(&[hello]))
        .await
        .unwrap();
    let pid = String::from_utf8(opened.body().await.unwrap().to_vec()).unwrap();
    let poll_url = format!("{base}?pid={pid}");
    // The first GET takes the Open frame; after that, GETs wait for frames.
    let first = http.get(&poll_url).send().await.unwrap();
    assert!(first.status().is_success());
    let one = Box::pin(http.get(&poll_url).send());
    let two = Box::pin(http.get(&poll_url).send());
    let (refused, parked) = match futures_util::future::select(one, two).await {
        futures_util::future::Either::Left((done, other)) => (done, other),
        futures_util::future::Either::Right((done, other)) => (done, other),
    };
    let mut refused = refused.unwrap();
    assert_eq!(refused.status().as_u16(), 409);
    assert_eq!(
        refused.body().await.unwrap(),
        "another poll is already waiting on this connection"
    );
    // A frame for the client releases the waiting GET.
    let connect = protocol::encode(&Frame::Connect {
        ns: "/".into(),
        auth: Default::default(),
    });
    let posted = http
        .post(&poll_url)
        .send_body(protocol::encode_batch(&[connect]))
        .await
        .unwrap();
    assert!(posted.status().is_success());
    let mut parked = parked.await.unwrap();
    assert!(parked.status().is_success());
    let body = parked.body().await.unwrap();
    let frames = protocol::split_batch(&body, 10).unwrap();
    assert_eq!(
        protocol::decode(&frames[0]).unwrap(),
        Frame::Connected { ns: "/".into() }
    );
    still_works().await;
}
