//! The browser client (`js/volley.js`) against the real server, run with Node.js
//! (`js/test/live.cjs`): server → client acks across a resume, the disconnect
//! reason, and the client's frame limit, over both transports; and its fallback to
//! long-polling through the fault proxy (`js/test/fallback.cjs`). Skipped, saying so,
//! when `node` is not installed.

use std::process::Command;
use std::sync::{Arc, OnceLock};

use volley::client::Transport;
use volley::{Volley, VolleyBuilder};

use crate::client_limit::sizes_namespace;
use crate::common::*;
use crate::proxy::{Cuts, FaultProxy};
use crate::resume::server_addr;

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
    let server = server();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/js/test/live.cjs");
    run_node(script, &[&server.url, transport_name(transport)]).await;
}

/// The transport's name as the scripts take it.
pub(crate) fn transport_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Polling => "polling",
        _ => "websocket",
    }
}

/// Runs `script` with Node.js (with its WebSocket) on a blocking thread while this one
/// keeps serving, and fails with its output unless it succeeds. Skipped, saying so,
/// without Node.js 20 or later, unless `VOLLEY_REQUIRE_NODE` is set (as in CI).
pub(crate) async fn run_node(script: &'static str, args: &[&str]) {
    // Node has a WebSocket from 20 on (behind --experimental-websocket until 22).
    let major = match node_major() {
        Some(major) if major >= 20 => major,
        found => {
            let why = format!("{script} needs Node.js 20 or later here, found {found:?}");
            assert!(std::env::var_os("VOLLEY_REQUIRE_NODE").is_none(), "{why}");
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
    let run = tokio::task::spawn_blocking(move || {
        let mut node = Command::new("node");
        if major < 22 {
            node.arg("--experimental-websocket");
        }
        node.arg(script).args(args).output()
    });
    let output = tokio::time::timeout(WAIT * 3, run)
        .await
        .expect("node did not finish in time")
        .unwrap()
        .expect("node runs (it printed its version)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{script} failed against the server:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

over_transports!(volley_js_against_the_real_server);

/// volley.js through the fault proxy: an outage keeps it on WebSocket with no
/// `fell-back`; an upgrade refused while HTTP answers moves it to long-polling. A
/// second client, connected directly, drives the proxy with `proxy` events.
#[actix_rt::test]
async fn volley_js_falls_back_only_when_websocket_is_refused() {
    let proxy: Arc<OnceLock<FaultProxy>> = Arc::default();
    let control = proxy.clone();
    let (disconnects, _) = Disconnects::new();
    let namespace = test_namespace(disconnects).on_ack("proxy", move |_, what: String, ack| {
        let Some(proxy) = control.get() else { return };
        match what.as_str() {
            "outage" => {
                proxy.refuse(true);
                proxy.cut_all();
            }
            "recover" => {
                // The outage ends between two attempts: the next one still fails.
                proxy.refuse_next(1);
                proxy.refuse(false);
            }
            _ => {
                proxy.block_websocket(true);
                proxy.cut_all();
            }
        }
        let _ = ack.send(&what);
    });
    let server = serve(VolleyBuilder::default().namespace("/", namespace));
    let started = FaultProxy::start(server_addr(&server), Cuts::Never, 1).await;
    let url = started.url();
    let _ = proxy.set(started);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/js/test/fallback.cjs");
    run_node(script, &[&url, &server.url]).await;
}
