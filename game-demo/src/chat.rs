//! The `/chat` namespace: one chat room per game room.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use volley::Namespace;

/// Chat traffic, for the admin dashboard.
#[derive(Default)]
pub struct ChatStats {
    pub messages: AtomicU64,
}

struct Chatter {
    name: String,
}

#[derive(Deserialize)]
struct Auth {
    name: Option<String>,
}

#[derive(Serialize)]
struct Said<'a> {
    name: &'a str,
    text: &'a str,
}

const MAX_TEXT: usize = 200;

pub fn namespace(stats: Arc<ChatStats>) -> Namespace {
    Namespace::new()
        .authorize(|hs| {
            let auth: Option<Auth> = hs.auth()?;
            let name: String = auth
                .and_then(|a| a.name)
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_control())
                .take(16)
                .collect();
            Ok(Chatter {
                name: if name.trim().is_empty() {
                    "player".into()
                } else {
                    name
                },
            })
        })
        // Moves the chatter to the chat of game room `room` (leaving the previous one).
        .on_ack("join_room", |socket, room: u64, ack| {
            let socket = socket.clone();
            actix_rt::spawn(async move {
                for old in socket.rooms().await {
                    socket.leave(&old);
                }
                let name = format!("room-{room}");
                socket.join(&name);
                let _ = ack.send(&name);
            });
        })
        .on("say", move |socket, text: String| {
            let text: String = text
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_TEXT)
                .collect();
            if text.trim().is_empty() {
                return;
            }
            let name = socket
                .data::<Chatter>()
                .map_or("player", |c| c.name.as_str());
            let said = Said { name, text: &text };
            stats.messages.fetch_add(1, Ordering::Relaxed);
            let socket = socket.clone();
            let said = serde_json::to_value(&said).unwrap_or_default();
            actix_rt::spawn(async move {
                for room in socket.rooms().await {
                    let _ = socket.to(&room).emit("said", &said);
                }
                let _ = socket.emit("said", &said);
            });
        })
}
