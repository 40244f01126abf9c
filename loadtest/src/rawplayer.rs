//! A lean game player for `rooms --player raw`: Volley's protocol spoken by one task
//! over a raw WebSocket ([`crate::rawws`]), without the Rust client's driver task,
//! channels and timers. The client costs the load generator ~17 µs of CPU per input
//! and state, three times the server's, so on one machine the generator, not the
//! server, ran out of cores first; this player does only what a player must: the
//! handshake, one namespace, acks, heartbeats, inputs out, states in.
//!
//! It keeps the protocol's rules (docs/protocol.md): it counts the server's reliable
//! frames and answers every `Ping` with `Pong { last_seq }`, and acknowledges with
//! `Received` now and then, so the server's outbox stays trimmed. It does not
//! reconnect: a cut connection ends the player (the `rooms` scenario cuts none).

use std::net::IpAddr;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_bytes::ByteBuf;
use volley::protocol::{self, Frame, PROTOCOL_VERSION};

use crate::rawws::{self, RawWs, BINARY, CLOSE, PING};

/// Acknowledge the server's reliable frames after this many (besides every `Pong`).
const RECEIVED_EVERY: u64 = 64;

/// One player's session.
pub struct RawPlayer {
    ws: RawWs,
    ns: String,
    /// The server's reliable frames processed.
    processed: u64,
    /// The last number acknowledged to the server.
    acknowledged: u64,
    /// The next ack id this player asks with.
    next_ack: u64,
    /// Its session id (from `Open`).
    sid: u64,
    /// Heartbeat answers and acknowledgements not written yet: written before the
    /// next frame the player sends, so that reading (which a `select!` may drop
    /// halfway) never writes half a frame.
    owed: Vec<u8>,
}

/// A server event the player gets: reliable or volatile, its name and JSON payload.
pub struct RawEvent {
    pub name: String,
    pub payload: Vec<u8>,
}

impl RawPlayer {
    /// Opens a session at `url` (`ws://host:port/path`) from `from`: the upgrade,
    /// `Hello`, and the server's `Open`.
    pub async fn connect(url: &str, from: Option<IpAddr>) -> Result<RawPlayer, String> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("not a ws:// URL: {url}"))?;
        let (host, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let ws = RawWs::connect_from(host, path, from).await?;
        let mut player = RawPlayer {
            ws,
            ns: String::new(),
            processed: 0,
            acknowledged: 0,
            next_ack: 0,
            sid: 0,
            owed: Vec::new(),
        };
        player
            .send(&Frame::Hello {
                version: PROTOCOL_VERSION,
                max_frame_size: None,
            })
            .await?;
        match player.next_frame().await? {
            Frame::Open(open) => {
                player.sid = open.sid;
                Ok(player)
            }
            other => Err(format!("'{}' instead of 'open'", other.kind())),
        }
    }

    /// Joins namespace `ns`, the one every event of this player goes to.
    pub async fn join(&mut self, ns: &str) -> Result<(), String> {
        self.ns = ns.to_owned();
        self.send(&Frame::Connect {
            ns: ns.to_owned(),
            auth: ByteBuf::from(b"null".to_vec()),
        })
        .await?;
        match self.next_frame().await? {
            Frame::Connected { ns: joined } if joined == ns => Ok(()),
            Frame::ConnectError { reason, .. } => Err(format!("could not join {ns}: {reason}")),
            other => Err(format!("unexpected '{}' while joining", other.kind())),
        }
    }

    /// The session's id.
    pub fn sid(&self) -> u64 {
        self.sid
    }

    /// Sends a fire-and-forget event.
    pub async fn emit<T: Serialize>(&mut self, name: &str, payload: &T) -> Result<(), String> {
        let payload = serde_json::to_vec(payload).map_err(|e| e.to_string())?;
        let frame = Frame::Event {
            ns: self.ns.clone(),
            name: name.to_owned(),
            payload: ByteBuf::from(payload),
            ack: None,
        };
        self.send(&frame).await
    }

    /// Sends an event that asks for an answer and waits for it, handing every event
    /// that comes meanwhile to `meanwhile`.
    pub async fn ask<T: Serialize, R: DeserializeOwned>(
        &mut self,
        name: &str,
        payload: &T,
        mut meanwhile: impl FnMut(RawEvent),
    ) -> Result<R, String> {
        let id = self.next_ack;
        self.next_ack += 1;
        let payload = serde_json::to_vec(payload).map_err(|e| e.to_string())?;
        let frame = Frame::Event {
            ns: self.ns.clone(),
            name: name.to_owned(),
            payload: ByteBuf::from(payload),
            ack: Some(id),
        };
        self.send(&frame).await?;
        loop {
            match self.next_frame().await? {
                Frame::Ack {
                    id: got, payload, ..
                } if got == id => {
                    return serde_json::from_slice(&payload)
                        .map_err(|e| format!("'{name}' answered with {e}"))
                }
                Frame::Event { name, payload, .. } | Frame::Volatile { name, payload, .. } => {
                    meanwhile(RawEvent {
                        name,
                        payload: payload.into_vec(),
                    })
                }
                Frame::Error { reason, .. } => return Err(format!("'{name}' refused: {reason}")),
                _ => {}
            }
        }
    }

    /// The next event from the server (heartbeats and acknowledgements are handled
    /// on the way); `Err` when the session or connection ends.
    pub async fn next_event(&mut self) -> Result<RawEvent, String> {
        loop {
            match self.next_frame().await? {
                Frame::Event { name, payload, .. } | Frame::Volatile { name, payload, .. } => {
                    return Ok(RawEvent {
                        name,
                        payload: payload.into_vec(),
                    })
                }
                Frame::Error { reason, .. } => return Err(format!("the server refused: {reason}")),
                _ => {}
            }
        }
    }

    /// Ends the session with a `Close` frame.
    pub async fn close(mut self) {
        let _ = self
            .send(&Frame::Close {
                reason: "done".into(),
            })
            .await;
    }

    async fn send(&mut self, frame: &Frame) -> Result<(), String> {
        let mut bytes = std::mem::take(&mut self.owed);
        bytes.extend_from_slice(&rawws::binary(&protocol::encode(frame)));
        self.ws.send(&bytes).await
    }

    /// Queues `frame` to go out before the next one the player sends.
    fn owe(&mut self, frame: &Frame) {
        self.owed
            .extend_from_slice(&rawws::binary(&protocol::encode(frame)));
    }

    /// The next protocol frame: reliable ones counted, `Ping` answered, `Close` and
    /// the end of the connection turned into errors.
    async fn next_frame(&mut self) -> Result<Frame, String> {
        loop {
            let (opcode, body) = match self.ws.next_message().await? {
                Some(message) => message,
                None => return Err("the server closed the connection".into()),
            };
            match opcode {
                BINARY => {}
                CLOSE => return Err("the server closed the WebSocket".into()),
                PING => continue,
                _ => continue,
            }
            let frame = protocol::decode(&body).map_err(|e| format!("bad frame: {e}"))?;
            if frame.is_reliable() {
                self.processed += 1;
            }
            match frame {
                Frame::Ping => {
                    self.acknowledged = self.processed;
                    self.owe(&Frame::Pong {
                        last_seq: self.processed,
                    });
                }
                Frame::Close { reason } => return Err(format!("session closed: {reason}")),
                frame => {
                    if self.processed >= self.acknowledged + RECEIVED_EVERY {
                        self.acknowledged = self.processed;
                        self.owe(&Frame::Received {
                            last_seq: self.processed,
                        });
                    }
                    return Ok(frame);
                }
            }
        }
    }
}
