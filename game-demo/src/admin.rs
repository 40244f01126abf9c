//! The `/admin` namespace: a live dashboard for whoever has the admin token.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use volley::{GameRooms, Namespace, SessionId, TransportKind, Volley};

use crate::chat::ChatStats;
use crate::code::room_code;

#[derive(Deserialize)]
struct Auth {
    token: String,
}

struct Admin;

/// Compares in time independent of where the strings differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub fn namespace(token: Arc<str>, rooms: GameRooms, volley: Arc<OnceLock<Volley>>) -> Namespace {
    let (kick_volley, drop_volley, view_volley) = (volley.clone(), volley.clone(), volley);
    Namespace::new()
        .authorize(move |hs| {
            let auth: Option<Auth> = hs.auth()?;
            match auth {
                Some(a) if same(&a.token, &token) => Ok(Admin),
                Some(_) => Err("invalid admin token".to_owned()),
                None => Err("admin token required".to_owned()),
            }
        })
        // Ends a session (the player is told why).
        .on_ack("kick", move |_, sid: u64, ack| {
            let Some(volley) = kick_volley.get().cloned() else {
                return;
            };
            actix_rt::spawn(async move {
                let _ = ack.send(&end_session(&volley, SessionId(sid), true).await);
            });
        })
        // Drops a session's connection as a network failure would: it resumes.
        .on_ack("drop", move |_, sid: u64, ack| {
            let Some(volley) = drop_volley.get().cloned() else {
                return;
            };
            actix_rt::spawn(async move {
                let _ = ack.send(&end_session(&volley, SessionId(sid), false).await);
            });
        })
        .on_ack("overview", move |_, _: (), ack| {
            let (Some(volley), rooms) = (view_volley.get().cloned(), rooms.clone()) else {
                return;
            };
            actix_rt::spawn(async move {
                let _ = ack.send(&overview(&volley, &rooms, None, &HashMap::new()).await);
            });
        })
}

#[derive(Serialize)]
struct Rates {
    inputs_per_sec: f64,
    frames_out_per_sec: f64,
    chat_per_sec: f64,
    deliveries_per_sec: f64,
}

/// A seated player's input figures for a room's detail view.
#[derive(Clone, Copy)]
struct PlayerInputs {
    per_sec: Option<f64>,
    dropped: u64,
}

async fn overview(
    volley: &Volley,
    rooms: &GameRooms,
    rates: Option<Rates>,
    players: &HashMap<u64, PlayerInputs>,
) -> Value {
    let now = SystemTime::now();
    let sessions: Vec<Value> = all_sessions(volley)
        .await
        .into_iter()
        .map(|(node, s)| {
            json!({
                "id": s.id.0,
                "node": node,
                "namespaces": s.namespaces,
                "age_secs": now.duration_since(s.opened_at).unwrap_or_default().as_secs(),
                "room": rooms.room_of(s.id).map(|r| r.0),
                "room_code": rooms.room_of(s.id).map(room_code),
                "transport": s.transport.map(|t| match t {
                    TransportKind::WebSocket => "websocket",
                    TransportKind::Polling => "polling",
                }),
                "rtt_ms": s.rtt.map(|rtt| rtt.as_secs_f64() * 1e3),
                "inputs_per_sec": players.get(&s.id.0).and_then(|p| p.per_sec),
                "inputs_dropped": players.get(&s.id.0).map(|p| p.dropped),
            })
        })
        .collect();
    let listing = rooms.list(None).await;
    let mut out = Vec::new();
    for m in rooms.all_metrics().await {
        let meta = listing
            .iter()
            .find(|l| l.id == m.room)
            .map(|l| l.metadata.clone());
        out.push(json!({
            "id": m.room.0,
            "code": room_code(m.room),
            "players": m.players,
            "held": m.held_seats,
            "meta": meta,
            "ticks": m.ticks,
            "skipped": m.skipped_ticks,
            "tick_rate": m.tick_rate,
            "lateness_p50_ms": m.lateness.p50.as_secs_f64() * 1e3,
            "lateness_p99_ms": m.lateness.p99.as_secs_f64() * 1e3,
            "tick_p99_us": m.tick_duration.p99.as_micros() as u64,
            "inputs_dropped": m.inputs_dropped,
            "inputs_invalid": m.inputs_invalid,
        }));
    }
    // In a cluster, the other nodes' rooms too (their figures stay on their node).
    let here: Vec<u64> = out.iter().filter_map(|o| o["id"].as_u64()).collect();
    for l in listing.iter().filter(|l| !here.contains(&l.id.0)) {
        out.push(json!({
            "id": l.id.0,
            "code": room_code(l.id),
            "players": l.players,
            "held": 0,
            "meta": l.metadata,
            "ticks": 0,
            "skipped": 0,
            "lateness_p50_ms": 0.0,
            "lateness_p99_ms": 0.0,
            "tick_p99_us": 0,
            "inputs_dropped": 0,
            "elsewhere": true,
        }));
    }
    json!({ "sessions": sessions, "rooms": out, "rates": rates })
}

/// Every session, with its node's id when the server is in a cluster (then the
/// sessions of every node that answers).
async fn all_sessions(volley: &Volley) -> Vec<(Option<String>, volley::SessionInfo)> {
    #[cfg(feature = "cluster")]
    if let Some(cluster) = volley.cluster() {
        if let Ok(all) = cluster.sessions().await {
            return all
                .into_iter()
                .map(|s| (Some(s.node.to_string()), s.info))
                .collect();
        }
    }
    let here = volley.local_sessions().await.into_iter();
    here.map(|s| (None, s)).collect()
}

/// Kicks (`kick` true) or cuts session `sid`: on this node, or in a cluster on the
/// node that has it (session ids are unique across the cluster).
async fn end_session(volley: &Volley, sid: SessionId, kick: bool) -> bool {
    if kick {
        volley.kick(sid, "by an admin").await
    } else {
        volley.drop_connection(sid).await
    }
}

/// Pushes the overview to the dashboard every second, with message rates.
pub fn publish_overview(volley: Volley, rooms: GameRooms, chat: Arc<ChatStats>) {
    actix_rt::spawn(async move {
        let mut last: Option<(u64, u64, u64, u64)> = None;
        // Each seated player's input count at the last push, for per-player rates.
        let mut last_inputs: HashMap<u64, u64> = HashMap::new();
        let mut every = tokio_interval();
        loop {
            every.tick().await;
            let Some(admin) = volley.of("/admin") else {
                return;
            };
            let metrics = rooms.all_metrics().await;
            let inputs: u64 = metrics
                .iter()
                .map(|m| m.inputs_applied + m.inputs_dropped + m.inputs_invalid)
                .sum();
            let frames: u64 = metrics.iter().map(|m| m.frames_sent).sum();
            let said = chat.messages.load(Ordering::Relaxed);
            let delivered = volley.deliveries();
            // Counters of disposed rooms vanish: never report a negative rate.
            let rates = last.map(|(i, f, c, d)| Rates {
                inputs_per_sec: inputs.saturating_sub(i) as f64,
                frames_out_per_sec: frames.saturating_sub(f) as f64,
                chat_per_sec: said.saturating_sub(c) as f64,
                deliveries_per_sec: delivered.saturating_sub(d) as f64,
            });
            last = Some((inputs, frames, said, delivered));
            let seated = metrics.iter().flat_map(|m| &m.seated);
            let players: HashMap<u64, PlayerInputs> = seated
                .clone()
                .map(|p| {
                    let per_sec = last_inputs
                        .get(&p.session.0)
                        .map(|&before| p.inputs.saturating_sub(before) as f64);
                    (
                        p.session.0,
                        PlayerInputs {
                            per_sec,
                            dropped: p.inputs_dropped,
                        },
                    )
                })
                .collect();
            last_inputs = seated.map(|p| (p.session.0, p.inputs)).collect();
            if admin.stats().await.sockets > 0 {
                let overview = overview(&volley, &rooms, rates, &players).await;
                let _ = admin.emit("overview", &overview);
            }
        }
    });
}

fn tokio_interval() -> actix_rt::time::Interval {
    actix_rt::time::interval(Duration::from_secs(1))
}
