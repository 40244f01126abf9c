//! What a session sends, as Socket.IO packets: [`Outbound`] reads each Volley frame
//! of the session in order and writes the Engine.IO records a Socket.IO client
//! expects. It keeps the session's count of reliable frames, which is what an event's
//! connection-state recovery offset is: the client hands back the last one it
//! processed, and the session replays from its outbox what follows.

use std::collections::{HashMap, VecDeque};

use serde_json::json;

use super::inbound::pid;
use crate::protocol::socketio::{encode_event, EioPacket, SharedEvent, SioKind, SioPacket};
use crate::protocol::{Frame, ResumeToken};

/// Reliable frames between two pings: a ping of ours follows when the heartbeat's
/// does not come first (a quarter of the default outbox).
const CONFIRM_EVERY: u64 = 1024;

/// Pings waiting for their pong; past it the oldest is forgotten.
const MAX_PINGS: usize = 8;

/// The session's side of one Engine.IO connection.
#[derive(Debug, Default)]
pub(super) struct Outbound {
    /// The session's id and resume token (from `Open`, or from the recovered pid).
    session: Option<(u64, ResumeToken)>,
    /// Sequence number of the last reliable frame read: the n-th reliable frame of a
    /// session has number n, as in the session's outbox.
    seq: u64,
    /// Pings written and not answered yet, oldest first: `seq` when each was written
    /// (every frame up to it went before the ping, so its pong proves the client
    /// received them), and whether it is ours rather than the session's heartbeat.
    pings: VecDeque<(u64, bool)>,
    /// `seq` at the last ping written.
    last_ping: u64,
    /// Namespaces the client is in, for the disconnects when the session ends (a
    /// few: a list, not a tree whose first node alone is ~300 bytes per connection).
    connected: Vec<String>,
    /// Append offsets to events and give pids (connection-state recovery).
    pub recovery: bool,
    /// Namespaces that asked to recover, answered once the session says `Resumed`.
    recovering: Vec<(String, String)>,
    /// Where the recovered session's replay starts: the offset of the namespace that
    /// recovered it.
    resumed_from: Option<u64>,
    /// Per namespace recovered on this connection, the last event its socket
    /// processed: replayed events up to it are not sent again.
    processed: HashMap<String, u64>,
    /// Per namespace, the first event written since the recovery: a namespace that
    /// recovers later with an offset at or past it would get that event twice.
    first_written: HashMap<String, u64>,
}

/// Records for the client, and whether the connection closes after them.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Out {
    pub records: Vec<String>,
    pub close: bool,
}

impl Outbound {
    /// A connection's translation, with or without connection-state recovery.
    pub fn new(recovery: bool) -> Self {
        Outbound {
            recovery,
            ..Outbound::default()
        }
    }

    /// A connection that recovers session `sid` from after `last_seq`; `ns` asked
    /// for it with `pid`, and is answered when the session has resumed.
    pub fn recovering(
        &mut self,
        sid: u64,
        token: ResumeToken,
        last_seq: u64,
        ns: String,
        pid: String,
    ) {
        self.session = Some((sid, token));
        self.seq = last_seq;
        self.last_ping = last_seq;
        self.pings.clear();
        self.resumed_from = Some(last_seq);
        self.processed.insert(ns.clone(), last_seq);
        self.recovering.push((ns, pid));
    }

    /// The answer to namespace `ns` recovering session `sid` after another namespace
    /// recovered it on this connection (`None`: another session; connect anew). Its
    /// socket processed events up to `last_seq`. It keeps its `pid` (`recovered` is
    /// true) only if it gets every event once from here: not when the replay started
    /// after `last_seq` (it may have missed some) or already wrote it an event it
    /// had processed; then a new pid says it was not recovered.
    pub fn recovered_with(
        &mut self,
        sid: u64,
        ns: &str,
        pid: &str,
        last_seq: u64,
    ) -> Option<String> {
        let (current, token) = self.session?;
        if current != sid || !self.recovery {
            return None;
        }
        self.connect(ns);
        let missed = self.resumed_from.is_some_and(|from| last_seq < from);
        let twice = self
            .first_written
            .get(ns)
            .is_some_and(|first| *first <= last_seq);
        if missed || twice {
            let fresh = super::inbound::pid(sid, &token, self.seq);
            return Some(connected(ns, sid, &fresh));
        }
        self.processed.insert(ns.to_owned(), last_seq);
        Some(connected(ns, sid, pid))
    }

    /// The session whose frames this connection carries, once known.
    pub fn session(&self) -> Option<u64> {
        self.session.map(|(sid, _)| sid)
    }

    /// The client's pong, for the session: the heartbeat's `Pong`, or `Received` for
    /// a ping of ours, each with the last reliable frame written before that ping.
    /// `None` for a pong nobody asked for.
    pub fn pong(&mut self) -> Option<Frame> {
        let (last_seq, ours) = self.pings.pop_front()?;
        Some(match ours {
            true => Frame::Received { last_seq },
            false => Frame::Pong { last_seq },
        })
    }

    /// Translates one frame of the session.
    pub fn frame(&mut self, frame: Frame) -> Out {
        let mut out = Out::default();
        if frame.is_reliable() {
            self.seq += 1;
        }
        let seq = self.seq;
        self.translate(frame, seq, &mut out);
        self.confirm(&mut out);
        out
    }

    /// Takes a broadcast's event, whose Socket.IO form all its Socket.IO recipients
    /// share: whether this client gets it (`None`: its socket processed it before a
    /// recovery) and with which offset, and the records that follow it (a ping of
    /// ours). Nothing is decoded or encoded here.
    pub fn shared(&mut self, event: &SharedEvent) -> (Option<Option<u64>>, Out) {
        let mut out = Out::default();
        if event.reliable {
            self.seq += 1;
        }
        let written = self.event(&event.ns, self.seq, event.reliable, false);
        self.confirm(&mut out);
        (written, out)
    }

    /// Whether an event of `ns` with sequence number `seq` is written (`None`: its
    /// socket processed it before a recovery), and with which offset: only where the
    /// client reads it, the last argument of a reliable event without ack (with one,
    /// the last is the ack callback).
    fn event(&mut self, ns: &str, seq: u64, reliable: bool, ack: bool) -> Option<Option<u64>> {
        if !reliable {
            return Some(None);
        }
        if self.processed.get(ns).is_some_and(|last| seq <= *last) {
            return None;
        }
        if self.resumed_from.is_some() && !self.first_written.contains_key(ns) {
            self.first_written.insert(ns.to_owned(), seq);
        }
        Some((self.recovery && !ack).then_some(seq))
    }

    /// A Socket.IO client never says what it received: between heartbeats a ping of
    /// ours (after the frame: its pong must prove the frame arrived) lets the session
    /// trim its outbox before a busy client's stream overflows it.
    fn confirm(&mut self, out: &mut Out) {
        if self.seq - self.last_ping >= CONFIRM_EVERY && self.pings.len() < MAX_PINGS {
            self.ping(true, out);
        }
    }

    fn translate(&mut self, frame: Frame, seq: u64, out: &mut Out) {
        match frame {
            Frame::Open(open) => self.session = Some((open.sid, open.token)),
            Frame::Ping => self.ping(false, out),
            Frame::Connected { ns } => {
                let Some((sid, token)) = self.session else {
                    return;
                };
                let pid = pid(sid, &token, seq);
                self.connect(&ns);
                let data = match self.recovery {
                    true => connected_data(sid, &ns, Some(&pid)),
                    false => connected_data(sid, &ns, None),
                };
                out.records
                    .push(message(SioPacket::new(SioKind::Connect, &ns, None, data)));
            }
            Frame::ConnectError { ns, reason } => {
                let data = json!({ "message": reason }).to_string();
                out.records.push(message(SioPacket::new(
                    SioKind::ConnectError,
                    &ns,
                    None,
                    data,
                )));
            }
            Frame::Disconnect { ns, .. } => {
                self.connected.retain(|joined| *joined != ns);
                out.records.push(message(SioPacket::new(
                    SioKind::Disconnect,
                    &ns,
                    None,
                    String::new(),
                )));
            }
            Frame::Event {
                ns,
                name,
                payload,
                ack,
            } => {
                let Some(offset) = self.event(&ns, seq, true, ack.is_some()) else {
                    return; // replayed, and its socket had processed it
                };
                let payload = String::from_utf8_lossy(&payload);
                let text = encode_event(&ns, &name, &payload, ack, offset);
                out.records.push(EioPacket::Message(text).encode());
            }
            Frame::Volatile { ns, name, payload } => {
                let payload = String::from_utf8_lossy(&payload);
                let text = encode_event(&ns, &name, &payload, None, None);
                out.records.push(EioPacket::Message(text).encode());
            }
            Frame::Ack { ns, id, payload } => {
                let payload = String::from_utf8_lossy(&payload);
                let data = format!("[{}]", if payload.is_empty() { "null" } else { &payload });
                out.records
                    .push(message(SioPacket::new(SioKind::Ack, &ns, Some(id), data)));
            }
            Frame::Error { ns, reason } => {
                // Socket.IO has no error packet for a connected socket: logged only.
                tracing::debug!(%ns, %reason, "request refused (not told to the Socket.IO client)");
            }
            Frame::Close { .. } => {
                for ns in std::mem::take(&mut self.connected) {
                    out.records.push(message(SioPacket::new(
                        SioKind::Disconnect,
                        &ns,
                        None,
                        String::new(),
                    )));
                }
                out.close = true;
            }
            Frame::Resumed { .. } => {
                let sid = self.session().unwrap_or_default();
                for (ns, pid) in std::mem::take(&mut self.recovering) {
                    self.connect(&ns);
                    out.records.push(message(SioPacket::new(
                        SioKind::Connect,
                        &ns,
                        None,
                        connected_data(sid, &ns, Some(&pid)),
                    )));
                }
            }
            // Volley's own bookkeeping, nothing for a Socket.IO client.
            Frame::Received { .. }
            | Frame::ResumeFailed { .. }
            | Frame::Hello { .. }
            | Frame::Pong { .. }
            | Frame::Connect { .. }
            | Frame::Resume { .. } => {}
        }
    }
}

impl Outbound {
    /// Counts namespace `ns` as connected (once).
    fn connect(&mut self, ns: &str) {
        if !self.connected.iter().any(|joined| joined == ns) {
            self.connected.push(ns.to_owned());
        }
    }

    fn ping(&mut self, ours: bool, out: &mut Out) {
        if self.pings.len() == MAX_PINGS {
            // A client that answers none: forget the oldest (the heartbeat ends it).
            self.pings.pop_front();
        }
        self.pings.push_back((self.seq, ours));
        self.last_ping = self.seq;
        out.records.push(EioPacket::Ping(false).encode());
    }
}

/// One Socket.IO packet as an Engine.IO message record.
fn message(packet: SioPacket) -> String {
    EioPacket::Message(packet.encode()).encode()
}

/// The connect answer of namespace `ns`, with the recovery id when there is one.
fn connected(ns: &str, sid: u64, pid: &str) -> String {
    let data = connected_data(sid, ns, Some(pid));
    message(SioPacket::new(SioKind::Connect, ns, None, data))
}

/// `{"sid": …, "pid": …}`: the socket's id (the session's id and its namespace, so
/// the same after a recovery) and the recovery id.
fn connected_data(sid: u64, ns: &str, pid: Option<&str>) -> String {
    let id = format!("{sid:x}{ns}");
    match pid {
        Some(pid) => json!({ "sid": id, "pid": pid }).to_string(),
        None => json!({ "sid": id }).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_bytes::ByteBuf;

    use super::*;
    use crate::protocol::Open;

    fn open() -> Frame {
        Frame::Open(Open {
            version: 1,
            sid: 0x2a,
            token: [1; 16],
            ping_interval_ms: 1,
            ping_timeout_ms: 1,
            max_frame_size: 1,
        })
    }

    fn event(name: &str, ack: Option<u64>) -> Frame {
        Frame::Event {
            ns: "/chat".into(),
            name: name.into(),
            payload: ByteBuf::from(b"1".to_vec()),
            ack,
        }
    }

    #[test]
    fn events_carry_the_session_sequence_as_offset() {
        let mut out = Outbound::new(true);
        assert_eq!(out.frame(open()), Out::default());
        let connected = out.frame(Frame::Connected { ns: "/chat".into() });
        let pid = pid(0x2a, &[1; 16], 1);
        assert_eq!(
            connected.records,
            vec![format!("40/chat,{{\"pid\":\"{pid}\",\"sid\":\"2a/chat\"}}")]
        );
        assert_eq!(
            out.frame(event("a", None)).records,
            vec!["42/chat,[\"a\",1,\"2\"]"]
        );
        assert_eq!(
            out.frame(event("b", Some(5))).records,
            vec!["42/chat,5[\"b\",1]"]
        );
        assert_eq!(out.frame(Frame::Ping).records, vec!["2"]);
        assert_eq!(out.pong(), Some(Frame::Pong { last_seq: 3 }));
        assert_eq!(out.pong(), None);
        let volatile = Frame::Volatile {
            ns: "/chat".into(),
            name: "s".into(),
            payload: ByteBuf::from(b"{}".to_vec()),
        };
        assert_eq!(out.frame(volatile).records, vec!["42/chat,[\"s\",{}]"]);
        assert_eq!(
            out.frame(event("c", None)).records,
            vec!["42/chat,[\"c\",1,\"4\"]"]
        );
        let closed = out.frame(Frame::Close {
            reason: "kicked".into(),
        });
        assert_eq!(
            closed,
            Out {
                records: vec!["41/chat,".into()],
                close: true
            }
        );
    }

    #[test]
    fn a_recovered_namespace_is_answered_after_resumed_with_its_pid() {
        let mut out = Outbound::new(true);
        out.recovering(0x2a, [1; 16], 7, "/chat".into(), "the-pid".into());
        let resumed = out.frame(Frame::Resumed {
            last_seq: 0,
            replay: 1,
        });
        assert_eq!(
            resumed.records,
            vec!["40/chat,{\"pid\":\"the-pid\",\"sid\":\"2a/chat\"}"]
        );
        assert_eq!(
            out.frame(event("a", None)).records,
            vec!["42/chat,[\"a\",1,\"8\"]"]
        );
        assert_eq!(
            out.recovered_with(0x2a, "/", "p2", 7),
            Some("40{\"pid\":\"p2\",\"sid\":\"2a/\"}".into())
        );
        assert_eq!(out.recovered_with(0x2b, "/", "p2", 7), None);
    }

    #[test]
    fn a_second_namespace_recovers_only_if_it_gets_every_event_once() {
        let recovered = |ns: &str, last_seq: u64| {
            let mut out = Outbound::new(true);
            out.recovering(0x2a, [1; 16], 10, "/a".into(), "pa".into());
            out.frame(Frame::Resumed {
                last_seq: 0,
                replay: 3,
            });
            // The replay: an event of /b, then one of /a.
            let b = Frame::Event {
                ns: "/b".into(),
                name: "e".into(),
                payload: ByteBuf::from(b"1".to_vec()),
                ack: None,
            };
            assert_eq!(out.frame(b).records.len(), 1);
            out.frame(event("a", None));
            out.recovered_with(0x2a, ns, "pb", last_seq)
        };
        let kept = |answer: Option<String>| answer.is_some_and(|a| a.contains("\"pb\""));
        // /b processed up to 10, the replay's start: every later event once.
        assert!(kept(recovered("/b", 10)));
        // /b processed past 10: the replayed event 11 was a second time.
        assert!(!kept(recovered("/b", 11)));
        // /b processed up to 8 only: 9 and 10 may be missing.
        assert!(!kept(recovered("/b", 8)));
        // Known before the replay: what /b had is not sent again.
        let mut out = Outbound::new(true);
        out.recovering(0x2a, [1; 16], 10, "/chat".into(), "pa".into());
        assert!(kept(out.recovered_with(0x2a, "/b", "pb", 12)));
        out.frame(Frame::Resumed {
            last_seq: 0,
            replay: 3,
        });
        let b = |n: &str| Frame::Event {
            ns: "/b".into(),
            name: n.into(),
            payload: ByteBuf::from(b"1".to_vec()),
            ack: None,
        };
        assert!(out.frame(b("11")).records.is_empty());
        assert!(out.frame(b("12")).records.is_empty());
        assert_eq!(out.frame(b("13")).records.len(), 1);
    }

    #[test]
    fn a_busy_stream_gets_pings_of_its_own_answered_as_received() {
        let mut out = Outbound::new(false);
        out.frame(open());
        for _ in 1..CONFIRM_EVERY {
            assert_eq!(out.frame(event("a", None)).records.len(), 1);
        }
        let records = out.frame(event("a", None)).records;
        assert_eq!(
            records,
            vec!["42/chat,[\"a\",1]".to_owned(), "2".to_owned()]
        );
        out.frame(Frame::Ping);
        assert_eq!(
            out.pong(),
            Some(Frame::Received {
                last_seq: CONFIRM_EVERY
            })
        );
        assert_eq!(
            out.pong(),
            Some(Frame::Pong {
                last_seq: CONFIRM_EVERY
            })
        );
    }

    #[test]
    fn acks_and_refusals() {
        let mut out = Outbound::default();
        out.frame(open());
        let ack = Frame::Ack {
            ns: "/".into(),
            id: 3,
            payload: ByteBuf::from(b"{\"ok\":true}".to_vec()),
        };
        assert_eq!(out.frame(ack).records, vec!["433[{\"ok\":true}]"]);
        let refused = Frame::ConnectError {
            ns: "/admin".into(),
            reason: "unauthorized".into(),
        };
        assert_eq!(
            out.frame(refused).records,
            vec!["44/admin,{\"message\":\"unauthorized\"}"]
        );
        assert_eq!(
            out.frame(event("a", None)).records,
            vec!["42/chat,[\"a\",1]"]
        );
    }
}
