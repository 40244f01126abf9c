//! Namespaces multiplexed over one connection, events and acks both ways, auth.

use std::time::Duration;

use volley::client::ClientError;
use volley::{AckError, Volley};

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

    assert!(server.volley.kick(me.id, "bye").await);
    let reason = tokio::time::timeout(WAIT, client.closed()).await.unwrap();
    assert_eq!(reason, "kicked: bye");
}

over_transports!(
    one_connection_two_namespaces_events_and_acks_both_ways,
    unanswered_acks_time_out_in_both_directions,
    admin_namespace_refuses_without_token_and_accepts_with_it,
    unknown_namespace_is_refused_and_dynamic_ones_are_created,
    sessions_are_listed_and_can_be_kicked,
);
