//! The chat that `loadtest compare` runs on Volley and on its peers, the same on
//! each server: clients join namespace `/chat` with `{"name": ...}`, `join` room
//! `lobby` (acknowledged), and a publisher `say`s `(room, text)` at `--rate` a
//! second, which the server sends as `message` `{"from", "text"}` to every other
//! member of the room. The text carries its number and send time, so each receiver
//! checks that every message arrived once and measures delivery latency.
//!
//! [`ChatConn`] is one chat connection in either dialect: Volley's protocol (the
//! framework's Rust client) or Socket.IO v5 ([`crate::sioclient`]).

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{json, Value};
use volley::client::{Client, ClientConfig, ClientError, NamespaceClient};

pub use crate::chat_wire::{read_text, text, ChatMessage, Dialect, CHAT_NAMESPACE, CHAT_ROOM};
use crate::client_ctx::WorkerCtx;
use crate::control::unix_us;
use crate::sim;
use crate::sioclient::SioClient;

/// How long receivers wait for the last messages after the publisher stopped.
pub const DRAIN: Duration = Duration::from_secs(20);

/// A client's connection to the chat, in either dialect.
pub enum ChatConn {
    Volley { client: Client, ns: NamespaceClient },
    SocketIo(SioClient),
}

impl ChatConn {
    /// Connects to `url` (Volley: its `ws://…/volley` endpoint; Socket.IO: the
    /// server's `ws://host:port`) and joins the chat as `name`.
    pub async fn open(
        dialect: Dialect,
        url: &str,
        name: &str,
        local: Option<IpAddr>,
    ) -> Result<ChatConn, String> {
        let auth = json!({ "name": name });
        match dialect {
            Dialect::Volley => {
                let config = ClientConfig {
                    local_address: local,
                    ..ClientConfig::default()
                };
                let client = Client::connect_with(url, config)
                    .await
                    .map_err(|e| e.to_string())?;
                let ns = client
                    .join(CHAT_NAMESPACE, &auth)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(ChatConn::Volley { client, ns })
            }
            Dialect::SocketIo | Dialect::SocketIoUpgrade => {
                let upgrade = dialect == Dialect::SocketIoUpgrade;
                SioClient::connect(url, CHAT_NAMESPACE, &auth, local, upgrade)
                    .await
                    .map(ChatConn::SocketIo)
            }
        }
    }

    /// Joins `room` and waits for the server's acknowledgement.
    pub async fn join(&mut self, room: &str) -> Result<(), String> {
        match self {
            ChatConn::Volley { ns, .. } => ns
                .emit_with_ack::<_, Value>("join", &room, sim::ACK_WAIT)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            ChatConn::SocketIo(sio) => {
                tokio::time::timeout(sim::ACK_WAIT, sio.emit_with_ack("join", &[json!(room)]))
                    .await
                    .map_err(|_| "join not acknowledged".to_owned())?
                    .map(drop)
            }
        }
    }

    /// Says `text` to `room`.
    pub async fn say(&mut self, room: &str, text: &str) -> Result<(), String> {
        match self {
            ChatConn::Volley { ns, .. } => loop {
                match ns.emit("say", &(room, text)) {
                    Ok(()) => return Ok(()),
                    // Delayed, never skipped: the receivers expect every number.
                    Err(ClientError::SendBufferFull) => {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err(e) => return Err(e.to_string()),
                }
            },
            ChatConn::SocketIo(sio) => {
                sio.answer_pings().await?;
                sio.emit("say", &[json!(room), json!(text)]).await
            }
        }
    }

    /// The text of the next `message`.
    pub async fn next_text(&mut self) -> Result<String, String> {
        loop {
            match self {
                ChatConn::Volley { ns, .. } => {
                    let event = ns.next_event().await.ok_or("namespace closed")?;
                    if event.name == "message" {
                        let message: ChatMessage = event.decode().map_err(|e| e.to_string())?;
                        return Ok(message.text);
                    }
                }
                ChatConn::SocketIo(sio) => {
                    let (name, args) = sio.next_event().await?;
                    if name == "message" {
                        let text = args.first().and_then(|m| m["text"].as_str());
                        return text.map(str::to_owned).ok_or("message without text".into());
                    }
                }
            }
        }
    }

    /// Closes the connection, without waiting long.
    pub async fn close(self) {
        match self {
            ChatConn::Volley { client, .. } => sim::close(client).await,
            ChatConn::SocketIo(sio) => {
                let _ = tokio::time::timeout(Duration::from_secs(2), sio.close()).await;
            }
        }
    }
}

/// Publishes numbered messages on an absolute schedule (message `n` at `n / rate`)
/// for `duration`; returns the connection and how many.
pub async fn publish(
    mut conn: ChatConn,
    rate: f64,
    duration: Duration,
    size: usize,
) -> (ChatConn, u64) {
    let start = tokio::time::Instant::now();
    let mut seq = 0u64;
    loop {
        let at = Duration::from_secs_f64(seq as f64 / rate);
        if at >= duration {
            return (conn, seq);
        }
        tokio::time::sleep_until(start + at).await;
        if let Err(e) = conn.say(CHAT_ROOM, &text(seq, unix_us(), size)).await {
            tracing::warn!(error = %e, "publisher stopped");
            return (conn, seq);
        }
        seq += 1;
    }
}

/// One simulated chat member (in a worker): joins, then checks every message until
/// the run finishes.
pub async fn client(ctx: &WorkerCtx, index: usize, dialect: Dialect) {
    let name = format!("c{}", ctx.plan.first_client + index);
    let local = sim::source_address(ctx, index);
    let started = std::time::Instant::now();
    let mut conn = match ChatConn::open(dialect, &ctx.url, &name, local).await {
        Ok(conn) => conn,
        Err(e) => return ctx.fail(format!("{}: {e}", sim::who(ctx, index))),
    };
    ctx.record("connect", started.elapsed());
    if let Err(e) = conn.join(CHAT_ROOM).await {
        return ctx.fail(format!("{}: join: {e}", sim::who(ctx, index)));
    }
    ctx.ready();
    sim::receive_numbered(ctx, index, "chat", DRAIN, async || {
        let text = conn.next_text().await?;
        match read_text(&text) {
            Some(numbered) => Ok(Some(numbered)),
            None => {
                ctx.problem(format!("{}: unreadable message", sim::who(ctx, index)));
                Ok(None)
            }
        }
    })
    .await;
    conn.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_carry_their_number_and_time_at_the_size_asked() {
        let t = text(42, 1_764_000_000_000_000, 100);
        assert_eq!(t.len(), 100);
        assert_eq!(read_text(&t), Some((42, 1_764_000_000_000_000)));
        // Numbers longer than the size are kept whole.
        assert_eq!(read_text(&text(7, 9, 1)), Some((7, 9)));
        assert_eq!(read_text("hello there"), None);
        assert_eq!(read_text(""), None);
    }
}
