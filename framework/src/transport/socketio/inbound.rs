//! What a Socket.IO client sends, as Volley frames: pure functions the connection
//! actor calls for each complete Socket.IO packet, and the connection-state recovery
//! id (`pid`) that lets a reconnecting client name its session.

use serde_bytes::ByteBuf;
use serde_json::{Map, Value};

use crate::protocol::socketio::{ack_payload, event_payload, SioError, SioKind, SioPacket};
use crate::protocol::{Frame, ResumeToken};

/// What one client packet asks for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Inbound {
    /// Join a namespace; `recover` when the client asks to recover an earlier session.
    Connect {
        ns: String,
        auth: Vec<u8>,
        recover: Option<Recovery>,
    },
    /// A frame for the session (event, ack, disconnect).
    Frame(Frame),
}

/// A recovering client's session: its pid and the last offset it processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Recovery {
    pub pid: String,
    pub sid: u64,
    pub token: ResumeToken,
    /// The last reliable frame the client processed: its last offset, or the
    /// namespace's connect answer when no event with an offset reached it.
    pub last_seq: u64,
}

/// Reads a complete (binary attachments filled in) Socket.IO packet.
pub(super) fn inbound(packet: SioPacket) -> Result<Inbound, SioError> {
    let SioPacket {
        kind, ns, id, data, ..
    } = packet;
    Ok(match kind {
        SioKind::Connect => connect(ns, &data)?,
        SioKind::Disconnect => Inbound::Frame(Frame::Disconnect { ns, reason: None }),
        SioKind::Event | SioKind::BinaryEvent => {
            let (name, payload) = event_payload(&data)?;
            Inbound::Frame(Frame::Event {
                ns,
                name,
                payload: ByteBuf::from(payload.into_bytes()),
                ack: id,
            })
        }
        SioKind::Ack | SioKind::BinaryAck => {
            let id = id.ok_or_else(|| SioError::Malformed("ack without an id".to_owned()))?;
            Inbound::Frame(Frame::Ack {
                ns,
                id,
                payload: ByteBuf::from(ack_payload(&data)?.into_bytes()),
            })
        }
        SioKind::ConnectError => {
            return Err(SioError::Malformed(
                "connect error from a client".to_owned(),
            ))
        }
    })
}

/// A connect: the auth object as the namespace's middleware sees it (without the
/// recovery fields the client merges into it), and the recovery it asks for.
fn connect(ns: String, data: &str) -> Result<Inbound, SioError> {
    if data.is_empty() {
        return Ok(Inbound::Connect {
            ns,
            auth: b"null".to_vec(),
            recover: None,
        });
    }
    let mut auth: Map<String, Value> = serde_json::from_str(data)
        .map_err(|e| SioError::Malformed(format!("auth is not a JSON object: {e}")))?;
    let pid = auth.remove("pid");
    let offset = auth.remove("offset");
    let recover = match pid {
        Some(Value::String(pid)) => parse_pid(&pid).map(|(sid, token, base)| Recovery {
            last_seq: offset
                .as_ref()
                .and_then(Value::as_str)
                .and_then(|o| o.parse::<u64>().ok())
                .map_or(base, |o| o.max(base)),
            pid,
            sid,
            token,
        }),
        _ => None,
    };
    let auth = if auth.is_empty() && recover.is_some() {
        b"null".to_vec()
    } else {
        Value::Object(auth).to_string().into_bytes()
    };
    Ok(Inbound::Connect { ns, auth, recover })
}

/// The recovery id given to a client in a namespace's connect answer: the session id,
/// its resume token and the sequence number of that answer, which a client with no
/// offset yet resumes after. It is a secret like the token: never logged.
pub(super) fn pid(sid: u64, token: &ResumeToken, connected_seq: u64) -> String {
    let token: String = token.iter().map(|b| format!("{b:02x}")).collect();
    format!("{sid:x}.{token}.{connected_seq:x}")
}

fn parse_pid(pid: &str) -> Option<(u64, ResumeToken, u64)> {
    let mut parts = pid.split('.');
    let sid = u64::from_str_radix(parts.next()?, 16).ok()?;
    let hex = parts.next()?;
    let seq = u64::from_str_radix(parts.next()?, 16).ok()?;
    if hex.len() != 32 || parts.next().is_some() {
        return None;
    }
    let mut token = [0u8; 16];
    for (i, byte) in token.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some((sid, token, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Inbound, SioError> {
        inbound(SioPacket::decode(text)?)
    }

    #[test]
    fn connects_with_and_without_auth() {
        assert_eq!(
            read("0"),
            Ok(Inbound::Connect {
                ns: "/".into(),
                auth: b"null".to_vec(),
                recover: None
            })
        );
        assert_eq!(
            read("0/admin,{\"token\":\"x\"}"),
            Ok(Inbound::Connect {
                ns: "/admin".into(),
                auth: b"{\"token\":\"x\"}".to_vec(),
                recover: None
            })
        );
        assert!(read("0/admin,[1]").is_err());
    }

    #[test]
    fn recovery_from_pid_and_offset() {
        let token = [0xab; 16];
        let pid = pid(42, &token, 3);
        let text = format!("0/chat,{{\"pid\":\"{pid}\",\"offset\":\"17\",\"name\":\"a\"}}");
        let Ok(Inbound::Connect { auth, recover, .. }) = read(&text) else {
            panic!("not a connect");
        };
        assert_eq!(auth, b"{\"name\":\"a\"}".to_vec());
        let recovery = recover.expect("recovery");
        assert_eq!(
            (recovery.sid, recovery.token, recovery.last_seq),
            (42, token, 17)
        );
        // No offset yet: resume after the connect answer.
        let text = format!("0{{\"pid\":\"{pid}\"}}");
        let Ok(Inbound::Connect { auth, recover, .. }) = read(&text) else {
            panic!("not a connect");
        };
        assert_eq!(
            (auth, recover.map(|r| r.last_seq)),
            (b"null".to_vec(), Some(3))
        );
        // A pid that is not ours is no recovery.
        let Ok(Inbound::Connect { recover, .. }) = read("0{\"pid\":\"abc\"}") else {
            panic!("not a connect");
        };
        assert_eq!(recover, None);
    }

    #[test]
    fn events_and_acks() {
        assert_eq!(
            read("2/chat,7[\"msg\",{\"t\":1}]"),
            Ok(Inbound::Frame(Frame::Event {
                ns: "/chat".into(),
                name: "msg".into(),
                payload: ByteBuf::from(b"{\"t\":1}".to_vec()),
                ack: Some(7),
            }))
        );
        assert_eq!(
            read("3/chat,7[\"ok\"]"),
            Ok(Inbound::Frame(Frame::Ack {
                ns: "/chat".into(),
                id: 7,
                payload: ByteBuf::from(b"\"ok\"".to_vec()),
            }))
        );
        assert!(read("3[\"no id\"]").is_err());
        assert!(read("4{\"message\":\"x\"}").is_err());
        assert_eq!(
            read("1/chat,"),
            Ok(Inbound::Frame(Frame::Disconnect {
                ns: "/chat".into(),
                reason: None
            }))
        );
    }
}
