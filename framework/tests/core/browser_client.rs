//! The browser client (`js/volley.js`) against the real server, run with Node.js
//! (`js/test/live.cjs`): server → client acks across a resume, the disconnect
//! reason, and the client's frame limit, over both transports. Skipped, saying so,
//! when `node` is not installed.

use std::process::Command;
use std::sync::{Arc, OnceLock};

use volley::client::Transport;
use volley::{Volley, VolleyBuilder};

use crate::client_limit::sizes_namespace;
use crate::common::*;

/// `sizes_namespace` plus `ask_after_drop`: the server drops the client's connection,
/// then asks it a question (server → client ack) and answers with the outcome.
fn server() -> TestServer {
    let volley: Arc<OnceLock<Volley>> = Arc::default();
    let handle = volley.clone();
    let namespace = sizes_namespace().on_ack("ask_after_drop", move |socket, _: (), ack| {
        let (socket, volley) = (socket.clone(), handle.get().cloned());
        actix_rt::spawn(async move {
            if let Some(volley) = volley {
                volley.drop_connection(socket.id()).await;
            }
            let answer = socket.emit_with_ack::<_, String>("question", &"who?", WAIT);
            let outcome = match answer.await {
                Ok(name) => format!("answer: {name}"),
                Err(e) => format!("error: {e}"),
            };
            let _ = ack.send(&outcome);
        });
    });
    let server = serve(VolleyBuilder::default().namespace("/", namespace));
    let _ = volley.set(server.volley.clone());
    server
}

/// Node's major version, if `node` runs.
fn node_major() -> Option<u32> {
    let output = Command::new("node").arg("--version").output().ok()?;
    let version = String::from_utf8_lossy(&output.stdout);
    version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()?
        .parse()
        .ok()
}

async fn volley_js_against_the_real_server(transport: Transport) {
    // Node has a WebSocket from 20 on (behind --experimental-websocket until 22).
    let major = match node_major() {
        Some(major) if major >= 20 => major,
        found => {
            eprintln!("SKIPPED: volley.js needs Node.js 20 or later here, found {found:?}");
            return;
        }
    };
    let server = server();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/js/test/live.cjs");
    let kind = match transport {
        Transport::Polling => "polling",
        _ => "websocket",
    };
    let (url, kind) = (server.url.clone(), kind.to_owned());
    // Node runs on a blocking thread while this one keeps serving.
    let run = tokio::task::spawn_blocking(move || {
        let mut node = Command::new("node");
        if major < 22 {
            node.arg("--experimental-websocket");
        }
        node.arg(script).arg(url).arg(kind).output()
    });
    let output = match tokio::time::timeout(WAIT * 3, run).await.unwrap().unwrap() {
        Ok(output) => output,
        Err(e) => {
            eprintln!("SKIPPED: node is not available ({e}); the browser client was not run");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "volley.js failed against the server:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

over_transports!(volley_js_against_the_real_server);
