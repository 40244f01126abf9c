//! Echo: the smallest Volley server, and the two ways a server answers a client.
//!
//! - `echo`: the client sends an event; the handler sends an event back. Nothing
//!   links the two but their names: fire and forget, both ways.
//! - `echo-ack`: the client asks for an acknowledgement; the handler answers through
//!   the `AckReply` it is given, and the client's `emit_with_ack` returns that answer
//!   (or an error after its timeout: it never waits forever).
//!
//! Run: `cargo run -p examples --bin echo` (add `-- --once` to run the demo client and exit).

use std::error::Error;
use std::time::Duration;

use volley::client::Client;
use volley::{Namespace, Volley};

/// The server side: one namespace, `/`, with two handlers.
fn echo_namespace() -> Namespace {
    Namespace::new()
        // The payload type is the handler's second argument: Volley decodes the JSON
        // payload into it, and answers the client with an error if it does not fit.
        .on("echo", |socket, text: String| {
            if let Err(e) = socket.emit("echo", &text) {
                tracing::warn!(error = %e, "could not echo");
            }
        })
        // Any JSON at all: `serde_json::Value` accepts every payload.
        .on_ack("echo-ack", |_socket, value: serde_json::Value, ack| {
            let _ = ack.send(&value);
        })
        .on_connect(|socket| tracing::info!(sid = socket.id().0, "client connected"))
        .on_disconnect(|socket, reason| {
            tracing::info!(sid = socket.id().0, %reason, "client disconnected");
        })
}

/// The client side, scripted: what a game client would do, printed step by step.
async fn demo(url: &str) -> Result<(), Box<dyn Error>> {
    let client = Client::connect(url).await?;
    // A session is one connection; a client joins namespaces over it (`()`: no auth).
    let mut root = client.join("/", &()).await?;
    println!(
        "client: session {:x} joined namespace /",
        client.session_id()
    );

    root.emit("echo", &"hello, volley")?;
    let event = examples::next_event(&mut root).await?;
    let text: String = event.decode()?;
    println!("client: sent \"echo\", got \"{}\" back: {text}", event.name);

    let question = serde_json::json!({ "score": 42, "level": "ice cave" });
    let answer: serde_json::Value = root
        .emit_with_ack("echo-ack", &question, Duration::from_secs(5))
        .await?;
    println!("client: sent \"echo-ack\", ack answered {answer}");

    client.close().await;
    Ok(())
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = examples::Args::parse("127.0.0.1:8081");
    examples::init_logs();

    let volley = Volley::builder().namespace("/", echo_namespace()).build();
    let server = examples::serve(&volley, &args)?;
    println!("echo server listening on {}", server.url);

    if let Some(url) = server.demo_url() {
        demo(url).await?;
    }
    let how_to_connect = format!(
        "  let client = volley::client::Client::connect(\"{}\").await?;\n  \
         let root = client.join(\"/\", &()).await?;\n  \
         let back: String = root.emit_with_ack(\"echo-ack\", &\"hi\", timeout).await?;",
        server.url
    );
    server.stop_or_serve(args.once, &how_to_connect).await?;
    Ok(())
}
