//! Namespaces multiplexed over one connection, events and acks both ways, auth.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use volley::client::ClientError;
use volley::protocol::Frame;
use volley::{AckError, Namespace, NamespaceStats, Volley};

use volley::client::Transport;

use crate::common::*;

fn server() -> TestServer {
    let (disconnects, _) = Disconnects::new();
    serve(
        Volley::builder()
            .namespace("/", test_namespace(disconnects.clone()))
            .namespace("/chat", test_namespace(disconnects))
            .namespace("/admin", admin_namespace("let-me-in")),
    )
}

async fn one_connection_two_namespaces_events_and_acks_both_ways(transport: Transport) {
    let server = server();
    let client = connect(&server, transport).await;
    let mut main = client.join("/", &()).await.unwrap();
    let mut chat = client.join("/chat", &()).await.unwrap();

    for ns in [&mut main, &mut chat] {
        // client → server event, server → client event
        ns.emit("shout", &format!("hello {}", ns.namespace()))
            .unwrap();
        let event = next_event(ns).await;
        assert_eq!(event.name, "shout");
        assert_eq!(
            event.decode::<String>().unwrap(),
            format!("hello {}", ns.namespace())
        );

        // client → server ack
        let echoed: Vec<u32> = ns
            .emit_with_ack("echo", &vec![1, 2, 3], WAIT)
            .await
            .unwrap();
        assert_eq!(echoed, vec![1, 2, 3]);
    }

    // server → client ack, in each namespace: the server asks, we answer.
    for ns in [&mut main, &mut chat] {
        let emitter = ns.emitter();
        let asked = emitter.emit_with_ack::<_, String>("ask", &5_000u64, WAIT);
        let answered = async {
            let question = next_event(ns).await;
            assert_eq!(question.name, "question");
            let name = format!("player in {}", ns.namespace());
            question
                .ack
                .expect("server asked for an ack")
                .send(&name)
                .unwrap();
        };
        let (outcome, ()) = tokio::join!(asked, answered);
        assert_eq!(
            outcome.unwrap(),
            format!("answer: player in {}", ns.namespace())
        );
    }

    // Leaving one namespace keeps the other.
    main.leave().unwrap();
    let still: String = chat
        .emit_with_ack("echo", &"still here", WAIT)
        .await
        .unwrap();
    assert_eq!(still, "still here");
    // And joining it again, the two are in: each event reaches its own.
    let main = client.join("/", &()).await.unwrap();
    for (ns, text) in [(&main, "main again"), (&chat, "chat still")] {
        let echoed: String = ns.emit_with_ack("echo", &text, WAIT).await.unwrap();
        assert_eq!(echoed, text);
    }
}

async fn unanswered_acks_time_out_in_both_directions(transport: Transport) {
    let server = server();
    let client = connect(&server, transport).await;
    let mut ns = client.join("/", &()).await.unwrap();

    // client → server: the handler never answers.
    let result = ns
        .emit_with_ack::<_, String>("ignore", &1, Duration::from_millis(200))
        .await;
    assert_eq!(result, Err(AckError::Timeout));

    // server → client: we never answer the question; the server's ack times out and
    // it tells us so.
    let emitter = ns.emitter();
    let asked = emitter.emit_with_ack::<_, String>("ask", &200u64, WAIT);
    let ignore = async {
        let question = next_event(&mut ns).await;
        assert_eq!(question.name, "question");
        drop(question);
    };
    let (outcome, ()) = tokio::join!(asked, ignore);
    assert_eq!(outcome.unwrap(), "error: ack timed out");
}

async fn admin_namespace_refuses_without_token_and_accepts_with_it(transport: Transport) {
    let server = server();
    let client = connect(&server, transport).await;

    let refused = client.join("/admin", &()).await.unwrap_err();
    assert_eq!(refused, ClientError::Refused("admin token required".into()));

    let wrong = serde_json::json!({ "token": "guess", "name": "mallory" });
    let refused = client.join("/admin", &wrong).await.unwrap_err();
    assert_eq!(refused, ClientError::Refused("invalid admin token".into()));

    let right = serde_json::json!({ "token": "let-me-in", "name": "alice" });
    let admin = client.join("/admin", &right).await.unwrap();
    // The middleware's data is attached to the socket and readable by handlers.
    let me: Option<String> = admin.emit_with_ack("whoami", &(), WAIT).await.unwrap();
    assert_eq!(me.as_deref(), Some("alice"));

    // The refusals did not hurt the session: other namespaces work.
    let main = client.join("/", &()).await.unwrap();
    let ok: u8 = main.emit_with_ack("echo", &7, WAIT).await.unwrap();
    assert_eq!(ok, 7);
}

async fn unknown_namespace_is_refused_and_dynamic_ones_are_created(transport: Transport) {
    let (disconnects, _) = Disconnects::new();
    let server = serve(Volley::builder().dynamic_namespaces(move |name| {
        name.starts_with("/table-")
            .then(|| test_namespace(disconnects.clone()))
    }));
    let client = connect(&server, transport).await;
    let refused = client.join("/nowhere", &()).await.unwrap_err();
    assert_eq!(
        refused,
        ClientError::Refused("unknown namespace '/nowhere'".into())
    );

    let table = client.join("/table-7", &()).await.unwrap();
    let echoed: String = table.emit_with_ack("echo", &"dyn", WAIT).await.unwrap();
    assert_eq!(echoed, "dyn");
    assert!(server.volley.of("/table-7").is_some());

    // The application can hold a dynamic namespace before any client joins it: `of`
    // makes it through the factory, and the players who come later land in it.
    assert!(server.volley.of("/nowhere").is_none());
    let early = server
        .volley
        .of("/table-9")
        .expect("the factory makes it on first use");
    assert_eq!(early.stats().await, NamespaceStats::default());
    let mut nine = client.join("/table-9", &()).await.unwrap();
    early.emit("shout", &"dealt").unwrap();
    let dealt = next_event(&mut nine).await;
    assert_eq!(dealt.decode::<String>().unwrap(), "dealt");
    assert_eq!(early.stats().await.sockets, 1);
}

async fn sessions_are_listed_and_can_be_kicked(transport: Transport) {
    let server = server();
    let client = connect(&server, transport).await;
    let _ns = client.join("/chat", &()).await.unwrap();
    let sessions = server.volley.sessions().await;
    let me = sessions
        .iter()
        .find(|s| s.id.0 == client.session_id())
        .expect("session listed");
    assert_eq!(me.namespaces, vec!["/chat".to_owned()]);
    assert_eq!(server.volley.local_session_count().await, sessions.len());

    assert!(server.volley.kick(me.id, "bye").await);
    let reason = tokio::time::timeout(WAIT, client.closed()).await.unwrap();
    assert_eq!(reason, "kicked: bye");
}

/// A middleware that answers when the test says so: it reports each request on
/// `asked`, then waits for a permit of `gate` (or forever for the token `never`).
struct SlowAuth {
    asked: tokio::sync::mpsc::UnboundedReceiver<String>,
    gate: Arc<Semaphore>,
}

fn slow_auth_server(timeout: Duration) -> (TestServer, SlowAuth) {
    let (asked_tx, asked) = tokio::sync::mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(0));
    let permits = gate.clone();
    let slow = Namespace::new()
        .authorize_async(move |req| {
            let (asked, gate) = (asked_tx.clone(), permits.clone());
            async move {
                let token: String = req.auth()?;
                let _ = asked.send(token.clone());
                if token == "never" {
                    std::future::pending::<()>().await;
                }
                gate.acquire().await.map_err(|e| e.to_string())?.forget();
                match token.as_str() {
                    "good" => Ok(format!("user of sid {}", req.sid.0)),
                    _ => Err(format!("unknown token '{token}'")),
                }
            }
        })
        .authorize_timeout(timeout)
        .on_ack("whoami", |socket, (): (), ack| {
            let _ = ack.send(&socket.data::<String>().map(|s| s.as_str()));
        });
    let (disconnects, _) = Disconnects::new();
    let server = serve(
        Volley::builder()
            .namespace("/", test_namespace(disconnects))
            .namespace("/slow", slow),
    );
    (server, SlowAuth { asked, gate })
}

async fn async_middleware_accepts_after_an_await_while_the_session_goes_on(transport: Transport) {
    let (server, mut auth) = slow_auth_server(WAIT);
    let client = connect(&server, transport).await;
    let main = client.join("/", &()).await.unwrap();
    let joining = client.join("/slow", &"good");
    let meanwhile = async {
        assert_eq!(auth.asked.recv().await.as_deref(), Some("good"));
        // The middleware is waiting: the session still answers on another namespace.
        let echoed: String = main
            .emit_with_ack("echo", &"still here", WAIT)
            .await
            .unwrap();
        assert_eq!(echoed, "still here");
        auth.gate.add_permits(1);
    };
    let (joined, ()) = tokio::join!(joining, meanwhile);
    let slow = joined.unwrap();
    let me: Option<String> = slow.emit_with_ack("whoami", &(), WAIT).await.unwrap();
    assert_eq!(me, Some(format!("user of sid {}", client.session_id())));
}

async fn async_middleware_refuses_and_times_out(transport: Transport) {
    let (server, mut auth) = slow_auth_server(Duration::from_millis(200));
    let client = connect(&server, transport).await;
    auth.gate.add_permits(1);
    let refused = client.join("/slow", &"bad").await.unwrap_err();
    assert_eq!(refused, ClientError::Refused("unknown token 'bad'".into()));
    assert_eq!(auth.asked.recv().await.as_deref(), Some("bad"));

    let timed_out = client.join("/slow", &"never").await.unwrap_err();
    assert_eq!(
        timed_out,
        ClientError::Refused("authorization timed out after 200ms".into())
    );
    // Neither refusal hurt the session.
    let main = client.join("/", &()).await.unwrap();
    let ok: u8 = main.emit_with_ack("echo", &7, WAIT).await.unwrap();
    assert_eq!(ok, 7);
}

/// Events sent right after `Connect` wait for the middleware's answer, then are
/// handled as they would be with a synchronous one: dispatched once joined, refused
/// as "not joined" after a refusal.
/// The next frame that is not a ping.
async fn next(raw: &mut RawClient) -> Option<Frame> {
    loop {
        match raw.recv().await {
            Some(Frame::Ping) => continue,
            other => return other,
        }
    }
}

#[actix_rt::test]
async fn events_sent_before_an_async_answer_are_held_until_it() {
    let (server, mut auth) = slow_auth_server(WAIT);
    let (mut raw, _) = RawClient::open(&server.url).await;
    let whoami = |id| Frame::Event {
        ns: "/slow".into(),
        name: "whoami".into(),
        payload: Default::default(),
        ack: Some(id),
    };
    let connect = |token: &str| Frame::Connect {
        ns: "/slow".into(),
        auth: serde_bytes::ByteBuf::from(serde_json::to_vec(token).unwrap()),
    };
    raw.send(&connect("bad")).await;
    raw.send(&whoami(1)).await;
    assert_eq!(auth.asked.recv().await.as_deref(), Some("bad"));
    auth.gate.add_permits(1);
    assert!(matches!(
        next(&mut raw).await,
        Some(Frame::ConnectError { .. })
    ));
    assert_eq!(
        next(&mut raw).await,
        Some(Frame::Error {
            ns: "/slow".into(),
            reason: "namespace '/slow' not joined: connect to it first".into()
        })
    );

    raw.send(&connect("good")).await;
    raw.send(&whoami(2)).await;
    assert_eq!(auth.asked.recv().await.as_deref(), Some("good"));
    auth.gate.add_permits(1);
    assert_eq!(
        next(&mut raw).await,
        Some(Frame::Connected { ns: "/slow".into() })
    );
    match next(&mut raw).await {
        Some(Frame::Ack { id: 2, payload, .. }) => assert!(payload.starts_with(b"\"user of sid")),
        other => panic!("expected the held event's ack, got {other:?}"),
    }
}

/// `on_json` lends the payload's text as the client sent it (spacing and all), gives
/// `null` for an event without one, and refuses what is not JSON as `on` does.
#[actix_rt::test]
async fn on_json_lends_the_payload_text_as_it_came() {
    let relay = Namespace::new().on_json("relay", |socket, text| {
        let _ = socket.emit("relayed", &text);
    });
    let server = serve(Volley::builder().namespace("/", relay));
    let (mut raw, _) = RawClient::open(&server.url).await;
    raw.send(&connect_to("/")).await;
    assert_eq!(
        next(&mut raw).await,
        Some(Frame::Connected { ns: "/".into() })
    );
    let relay = |payload: &[u8]| Frame::Event {
        ns: "/".into(),
        name: "relay".into(),
        payload: serde_bytes::ByteBuf::from(payload.to_vec()),
        ack: None,
    };
    for (sent, relayed) in [
        (
            &br#"{ "x" : [1, 2.50],"y":"\u00e9" }"#[..],
            &br#"{ "x" : [1, 2.50],"y":"\u00e9" }"#[..],
        ),
        (b"", b"null"),
    ] {
        raw.send(&relay(sent)).await;
        match next(&mut raw).await {
            Some(Frame::Event { name, payload, .. }) => {
                assert_eq!(name, "relayed");
                assert_eq!(&payload[..], relayed);
            }
            other => panic!("expected the relayed text, got {other:?}"),
        }
    }
    raw.send(&relay(b"{oops")).await;
    match next(&mut raw).await {
        Some(Frame::Error { ns, reason }) => {
            assert_eq!(ns, "/");
            assert!(
                reason.starts_with("event 'relay': payload does not match"),
                "{reason}"
            );
        }
        other => panic!("expected an error frame, got {other:?}"),
    }
    // The session goes on.
    raw.send(&relay(b"7")).await;
    assert!(
        matches!(next(&mut raw).await, Some(Frame::Event { payload, .. }) if &payload[..] == b"7")
    );
}

/// A client's frames are taken in the order it sent them, however each reaches its
/// socket: events for joined namespaces are handled where the connection reads them,
/// a `Connect` or a `Disconnect` by the session's actor, and events sent right
/// behind a join or a leave (read in the same write) still come after it.
#[actix_rt::test]
async fn events_right_behind_a_join_or_a_leave_are_taken_in_order() {
    let server = server();
    let (mut raw, _) = RawClient::open(&server.url).await;
    let ns = || "/chat".to_owned();
    let echo = |id: u64| Frame::Event {
        ns: ns(),
        name: "echo".into(),
        payload: serde_bytes::ByteBuf::from(serde_json::to_vec(&id).unwrap()),
        ack: Some(id),
    };
    const ROUNDS: u64 = 20;
    // Each round in one write, and the rounds one after the other without waiting:
    // some frames find the session's mailbox empty, some behind others.
    for round in 0..ROUNDS {
        let frames = [
            connect_to(&ns()),
            echo(2 * round),
            echo(2 * round + 1),
            Frame::Disconnect {
                ns: ns(),
                reason: None,
            },
            echo(1000 + round),
        ];
        raw.send_together(&frames).await;
    }
    // Acks go out through the socket's mailbox, so they may come after later
    // frames; what each event met is what counts: joined (acked) or not (refused).
    let mut acked = Vec::new();
    let mut told = Vec::new();
    // Each event is acked or refused, each join answered: four frames a round.
    while acked.len() + told.len() < 4 * ROUNDS as usize {
        match next(&mut raw).await {
            Some(Frame::Ack { id, .. }) => acked.push(id),
            Some(Frame::Connected { ns }) => told.push(format!("connected to {ns}")),
            Some(Frame::Error { ns, reason }) => told.push(format!("{ns}: {reason}")),
            Some(Frame::Received { .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    acked.sort_unstable();
    assert_eq!(acked, (0..2 * ROUNDS).collect::<Vec<_>>());
    let rounds = [
        "connected to /chat",
        "/chat: namespace '/chat' not joined: connect to it first",
    ];
    assert_eq!(told, rounds.repeat(ROUNDS as usize));
}

/// A namespace the factory made goes once nothing uses it, and the next join asks
/// the factory again; one the application holds (`of`) stays.
#[actix_rt::test]
async fn a_dynamic_namespace_nothing_uses_is_dropped_and_made_again_on_demand() {
    let made = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (disconnects, _) = Disconnects::new();
    let factory_made = made.clone();
    let server = serve(Volley::builder().dynamic_namespaces(move |name| {
        let table = name.starts_with("/table-");
        if table {
            factory_made.lock().unwrap().push(name.to_owned());
        }
        table.then(|| test_namespace(disconnects.clone()))
    }));
    let made = move || made.lock().unwrap().clone();
    let (mut raw, _) = RawClient::open(&server.url).await;
    let leave = |ns: &str| Frame::Disconnect {
        ns: ns.to_owned(),
        reason: None,
    };

    // Joined, left, joined again: made twice, the first one gone with its socket.
    // (One session takes its frames in order: the leave is done before the join.)
    raw.join("/table-1").await;
    raw.send(&leave("/table-1")).await;
    raw.join("/table-1").await;
    assert_eq!(made(), ["/table-1", "/table-1"]);

    // Many names, one after the other: each made, none kept. (Fewer than 64
    // frames in all: the session's `Received` report would come between answers.)
    for n in 0..20 {
        let ns = format!("/table-x{n}");
        raw.join(&ns).await;
        raw.send(&leave(&ns)).await;
    }
    raw.join("/table-x0").await;
    assert_eq!(made().iter().filter(|n| *n == "/table-x0").count(), 2);

    // Held by the application: it stays through a join and a leave.
    let held = server.volley.of("/table-2").expect("made by the factory");
    raw.join("/table-2").await;
    raw.send(&leave("/table-2")).await;
    raw.join("/table-2").await;
    assert_eq!(made().iter().filter(|n| *n == "/table-2").count(), 1);
    assert_eq!(held.stats().await.sockets, 1);
    // And let go of: the client leaves, nothing holds it, the next join makes it.
    drop(held);
    raw.send(&leave("/table-2")).await;
    raw.join("/table-2").await;
    assert_eq!(made().iter().filter(|n| *n == "/table-2").count(), 2);
}

over_transports!(
    async_middleware_accepts_after_an_await_while_the_session_goes_on,
    async_middleware_refuses_and_times_out,
    one_connection_two_namespaces_events_and_acks_both_ways,
    unanswered_acks_time_out_in_both_directions,
    admin_namespace_refuses_without_token_and_accepts_with_it,
    unknown_namespace_is_refused_and_dynamic_ones_are_created,
    sessions_are_listed_and_can_be_kicked,
);

/// Which address a middleware let in, or why not.
fn only_from(allowed: std::net::IpAddr, address: Option<std::net::IpAddr>) -> Result<(), String> {
    match address {
        Some(address) if address == allowed => Ok(()),
        other => Err(format!("not from {other:?}")),
    }
}

/// Connect middleware, synchronous or not, sees the client's address (behind a
/// trusted proxy, the one `X-Forwarded-For` names): a ban list, or an admin
/// namespace open to one network only.
#[actix_rt::test]
async fn connect_middleware_sees_the_client_address() {
    let allowed: std::net::IpAddr = "198.51.100.1".parse().unwrap();
    let server = serve(
        Volley::builder()
            .trusted_proxies(&["127.0.0.1".parse().unwrap()])
            .namespace(
                "/now",
                Namespace::new().authorize(move |hs| only_from(allowed, hs.address)),
            )
            .namespace(
                "/later",
                Namespace::new()
                    .authorize_async(move |req| async move { only_from(allowed, req.address) }),
            ),
    );
    for ns in ["/now", "/later"] {
        let (mut ok, _) = RawClient::open_for(&server.url, Some("198.51.100.1")).await;
        ok.join(ns).await;
        let (mut other, _) = RawClient::open_for(&server.url, Some("203.0.113.7")).await;
        other.send(&connect_to(ns)).await;
        assert_eq!(
            other.recv().await,
            Some(Frame::ConnectError {
                ns: ns.into(),
                reason: "not from Some(203.0.113.7)".into()
            })
        );
    }
}
