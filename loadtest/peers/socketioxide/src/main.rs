//! The chat of `loadtest compare` on socketioxide 0.18.9 (axum), a peer that
//! Volley is measured against: clients join `/chat` with `{"name": ...}`, `join` a
//! room (acknowledged with `"ok"`), and `say` `(room, text)`, which the server sends
//! as `message` `{"from", "text"}` to every other member of the room.
//!
//! It listens on 127.0.0.1 at a free port (or `$PORT`), prints `listening <port>`,
//! and exits when its stdin closes (the load tester holds it).

use std::convert::Infallible;
use std::io::Write;

use serde_json::{json, Value};
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::handler::ConnectHandler;
use socketioxide::{SocketIo, TransportType};

/// Registers the chat's handlers. A middleware runs before socketioxide sends the
/// namespace's connect packet, whereas the connect handler is spawned after it: a
/// client's first event could otherwise find no handler yet, and be dropped.
async fn register(socket: SocketRef, Data(auth): Data<Value>) -> Result<(), Infallible> {
    let name = auth["name"].as_str().unwrap_or("anonymous").to_owned();
    socket.on(
        "join",
        async |socket: SocketRef, Data(room): Data<String>, ack: AckSender| {
            socket.join(room);
            let _ = ack.send("ok");
        },
    );
    socket.on(
        "say",
        async move |socket: SocketRef, Data((room, text)): Data<(String, String)>| {
            let message = json!({ "from": name, "text": text });
            let _ = socket.to(room).emit("message", &message).await;
        },
    );
    Ok(())
}

/// Everything is set up by [`register`].
async fn connected(_: SocketRef) {}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let (layer, io) = SocketIo::builder()
        .transports([TransportType::Websocket])
        .build_layer();
    io.ns("/chat", connected.with(register));
    let app = axum::Router::new().layer(layer);
    let port = std::env::var("PORT").unwrap_or_else(|_| "0".to_owned());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    let mut out = std::io::stdout();
    writeln!(out, "listening {}", listener.local_addr()?.port())?;
    out.flush()?;
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    axum::serve(listener, app).await
}
