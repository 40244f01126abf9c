//! A lean game player for `rooms --player raw`: Volley's protocol spoken by one task
//! over a raw WebSocket ([`crate::rawws`]), without the Rust client's driver task,
//! channels and timers. The client costs the load generator ~17 µs of CPU per input
//! and state, three times the server's, so on one machine the generator, not the
//! server, ran out of cores first; this player does only what a player must: the
//! handshake, one namespace, acks, heartbeats, inputs out, states in.
//!
//! It keeps the protocol's rules (docs/protocol.md): it counts the server's reliable
//! frames and answers every `Ping` with `Pong { last_seq }`, and acknowledges with
//! `Received` now and then, so the server's outbox stays trimmed.
//!
//! A player made [`resumable`](RawPlayer::resumable) (`reconnect --player raw`) also
//! numbers its own reliable frames and keeps those the server has not confirmed
//! (trimmed by the server's `Received`), buffers what it sends while cut off, and
//! [`resume`](RawPlayer::resume)s its session on a new connection: `Resume { sid,
//! token, last_seq }`, the server's replay counted like any frame, and its own
//! unconfirmed frames sent again after the server's `Resumed { last_seq }`
//! (docs/protocol.md 4.3). Otherwise a cut connection ends the player.

use std::collections::VecDeque;
use std::net::IpAddr;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_bytes::ByteBuf;
use volley::protocol::{self, Frame, ResumeToken, PROTOCOL_VERSION};

use crate::rawws::{self, RawWs, BINARY, CLOSE, PING};

/// Acknowledge the server's reliable frames after this many (besides every `Pong`).
const RECEIVED_EVERY: u64 = 64;

/// Unconfirmed reliable frames a resumable player keeps at most (the server's own
/// outbox default, `max_outbox_frames`); past it, sending is refused.
const MAX_UNCONFIRMED: usize = 4096;

/// One player's session.
pub struct RawPlayer {
    /// The connection; `None` while cut off (a resumable player only).
    ws: Option<RawWs>,
    /// Where it connects, and from which address: again on resume.
    url: String,
    from: Option<IpAddr>,
    ns: String,
    /// The server's reliable frames processed.
    processed: u64,
    /// The last number acknowledged to the server.
    acknowledged: u64,
    /// The next ack id this player asks with.
    next_ack: u64,
    /// Its session id and resume token (from `Open`).
    sid: u64,
    token: ResumeToken,
    /// Reliable frames this player sent (numbered from 1).
    sent: u64,
    /// A resumable player's sent reliable frames the server has not confirmed, as
    /// wire bytes: numbers `sent - len + 1 ..= sent`. `None`: not resumable.
    unconfirmed: Option<VecDeque<Vec<u8>>>,
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

/// A resumption that worked: frames the server replays, frames this player resent.
pub struct Resumed {
    pub replay: u64,
    pub resent: u64,
}

/// Why a resumption did not work.
pub enum ResumeError {
    /// The attempt failed (connection, upgrade, an early end): try again later.
    Failed(String),
    /// The server refused the session (`ResumeFailed`): it is gone.
    Refused(String),
}

impl RawPlayer {
    /// Opens a session at `url` (`ws://host:port/path`) from `from`: the upgrade,
    /// `Hello`, and the server's `Open`.
    pub async fn connect(url: &str, from: Option<IpAddr>) -> Result<RawPlayer, String> {
        let mut player = RawPlayer {
            ws: Some(open_ws(url, from).await?),
            url: url.to_owned(),
            from,
            ns: String::new(),
            processed: 0,
            acknowledged: 0,
            next_ack: 0,
            sid: 0,
            token: [0; 16],
            sent: 0,
            unconfirmed: None,
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
                player.token = open.token;
                Ok(player)
            }
            other => Err(format!("'{}' instead of 'open'", other.kind())),
        }
    }

    /// Makes the player keep its unconfirmed frames, buffer while cut off, and able
    /// to [`resume`](RawPlayer::resume). Call it before the first reliable frame.
    pub fn resumable(mut self) -> RawPlayer {
        self.unconfirmed = Some(VecDeque::new());
        self
    }

    /// Whether the player has a connection.
    pub fn is_connected(&self) -> bool {
        self.ws.is_some()
    }

    /// Drops the connection without a word, as a network failure would: the server
    /// keeps the session for its resume grace.
    pub fn cut(&mut self) {
        self.ws = None;
        self.owed.clear();
    }

    /// Resumes the session on a new connection: `Resume` with the last frame
    /// processed, then the server's `Resumed`, and this player's unconfirmed frames
    /// after its `last_seq` sent again, in one write. The server's replay follows
    /// and is read like any frame.
    pub async fn resume(&mut self) -> Result<Resumed, ResumeError> {
        self.cut();
        let mut ws = open_ws(&self.url, self.from)
            .await
            .map_err(ResumeError::Failed)?;
        let resume = Frame::Resume {
            sid: self.sid,
            token: self.token,
            last_seq: self.processed,
            max_frame_size: None,
        };
        ws.send(&rawws::binary(&protocol::encode(&resume)))
            .await
            .map_err(ResumeError::Failed)?;
        let answer = loop {
            let Some((opcode, body)) = ws.next_message().await.map_err(ResumeError::Failed)? else {
                return Err(ResumeError::Failed(
                    "the server closed the connection before answering the resume".into(),
                ));
            };
            match opcode {
                BINARY => {
                    break protocol::decode(&body)
                        .map_err(|e| ResumeError::Failed(format!("bad frame: {e}")))?
                }
                // Closed without a word on the session (a cluster busy, say): the
                // WebSocket close's description says why.
                CLOSE => {
                    let why = String::from_utf8_lossy(body.get(2..).unwrap_or_default());
                    return Err(ResumeError::Failed(format!(
                        "closed before answering the resume: {why}"
                    )));
                }
                _ => {}
            }
        };
        let (confirmed, replay) = match answer {
            Frame::Resumed { last_seq, replay } => (last_seq, replay),
            Frame::ResumeFailed { reason } => return Err(ResumeError::Refused(reason)),
            Frame::Close { reason } => {
                return Err(ResumeError::Failed(format!(
                    "closed instead of resumed: {reason}"
                )))
            }
            other => {
                return Err(ResumeError::Failed(format!(
                    "'{}' instead of 'resumed'",
                    other.kind()
                )))
            }
        };
        // A `Resume` acknowledges what it names, as a `Pong` does.
        self.acknowledged = self.processed;
        self.confirmed(confirmed);
        let again: Vec<u8> = self
            .unconfirmed
            .iter()
            .flatten()
            .flatten()
            .copied()
            .collect();
        let resent = self.unconfirmed.as_ref().map_or(0, |u| u.len() as u64);
        if !again.is_empty() {
            ws.send(&again).await.map_err(ResumeError::Failed)?;
        }
        self.ws = Some(ws);
        Ok(Resumed { replay, resent })
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

    /// Sends `frame` (after what is owed). A reliable frame of a resumable player is
    /// numbered and kept until the server confirms it, and only kept while the
    /// player is cut off; anyone else's fails then.
    async fn send(&mut self, frame: &Frame) -> Result<(), String> {
        let wire = rawws::binary(&protocol::encode(frame));
        if frame.is_reliable() {
            if let Some(unconfirmed) = &mut self.unconfirmed {
                if unconfirmed.len() >= MAX_UNCONFIRMED {
                    return Err(format!(
                        "{MAX_UNCONFIRMED} frames unconfirmed by the server: not sent"
                    ));
                }
                unconfirmed.push_back(wire.clone());
            }
            self.sent += 1;
        }
        let Some(ws) = &mut self.ws else {
            return match self.unconfirmed {
                Some(_) if frame.is_reliable() => Ok(()),
                _ => Err("not connected".into()),
            };
        };
        let mut bytes = std::mem::take(&mut self.owed);
        bytes.extend_from_slice(&wire);
        let sent = ws.send(&bytes).await;
        if sent.is_err() && self.unconfirmed.is_some() {
            // The connection is gone; a reliable frame waits for the resume.
            self.cut();
            if frame.is_reliable() {
                return Ok(());
            }
        }
        sent
    }

    /// Writes what is owed (`Pong`, `Received`) now rather than before the next
    /// frame sent: for a player that may be silent for longer than the server's
    /// ping timeout. A resumable player whose connection failed is cut off.
    pub async fn pay_owed(&mut self) -> Result<(), String> {
        let Some(ws) = &mut self.ws else {
            return Ok(());
        };
        if self.owed.is_empty() {
            return Ok(());
        }
        let owed = std::mem::take(&mut self.owed);
        let paid = ws.send(&owed).await;
        if paid.is_err() && self.unconfirmed.is_some() {
            self.cut();
        }
        paid
    }

    /// The server processed this player's frames up to `last_seq`: forget them.
    fn confirmed(&mut self, last_seq: u64) {
        if let Some(unconfirmed) = &mut self.unconfirmed {
            let first = self.sent - unconfirmed.len() as u64 + 1;
            let gone = last_seq.saturating_add(1).saturating_sub(first);
            unconfirmed.drain(..(gone as usize).min(unconfirmed.len()));
        }
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
            let Some(ws) = &mut self.ws else {
                return Err("not connected".into());
            };
            let (opcode, body) = match ws.next_message().await? {
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
                Frame::Received { last_seq } => self.confirmed(last_seq),
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

/// Opens a WebSocket to `url` (`ws://host:port/path`) from `from`.
async fn open_ws(url: &str, from: Option<IpAddr>) -> Result<RawWs, String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("not a ws:// URL: {url}"))?;
    let (host, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    RawWs::connect_from(host, path, from).await
}
