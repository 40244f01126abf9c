//! The Socket.IO v5 protocol over Engine.IO v4, as text: the packets the official
//! Socket.IO clients send and expect, so that they can talk to Volley's sessions.
//!
//! Two layers, as in the public protocol documents:
//! - **Engine.IO** ([`EioPacket`]): one character for the type (`0` open, `1` close,
//!   `2` ping, `3` pong, `4` message, `5` upgrade, `6` noop) followed by its data. Over
//!   WebSocket a text frame is one packet and a binary frame is a binary message; over
//!   long-polling a body holds several packets separated by `\x1e`, a binary one
//!   written as `b` + base64 ([`decode_payload`], [`encode_payload`]).
//! - **Socket.IO** ([`SioPacket`]), inside an Engine.IO message: `<type>[<n>-][/<ns>,]
//!   [<ack id>][<json>]`, type `0` connect, `1` disconnect, `2` event, `3` ack, `4`
//!   connect error, `5` binary event, `6` binary ack. A binary packet announces `n`
//!   attachments, which follow as binary messages; its JSON holds
//!   `{"_placeholder":true,"num":i}` where attachment `i` goes ([`Binary`]).
//!
//! Everything here is bounded: the caller passes the body and packet limits, the number
//! of attachments is capped at [`MAX_ATTACHMENTS`], and JSON nesting is capped by
//! `serde_json` (128 levels). Nothing here knows about actors or sockets.

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;

use super::Frame;

/// The Engine.IO protocol version this server speaks (`EIO=4` in the query).
pub const EIO_VERSION: &str = "4";

/// Most binary attachments one packet may announce. The official clients send one per
/// `Buffer`/`ArrayBuffer` in an event's arguments; a game event carries a few at most.
pub const MAX_ATTACHMENTS: usize = 16;

/// The record separator between packets in a long-polling body.
pub const SEPARATOR: char = '\x1e';

/// Why bytes could not be read as Engine.IO or Socket.IO packets. The text is safe to
/// log and to send to the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SioError {
    /// The packet is empty or has an unknown type character.
    #[error("unknown packet type {0:?}")]
    UnknownType(String),
    /// The packet is malformed (the reason says where).
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// More attachments than [`MAX_ATTACHMENTS`] announced.
    #[error("too many binary attachments (limit {MAX_ATTACHMENTS})")]
    TooManyAttachments,
    /// A long-polling body with more packets than allowed.
    #[error("too many packets in one request (limit {0})")]
    TooManyPackets(usize),
}

/// One Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EioPacket {
    /// `0`: the handshake (server → client), JSON.
    Open(String),
    /// `1`: the transport closes.
    Close,
    /// `2`: heartbeat, or `2probe` during an upgrade.
    Ping(bool),
    /// `3`: heartbeat answer, or `3probe` during an upgrade.
    Pong(bool),
    /// `4`: a text message (a Socket.IO packet).
    Message(String),
    /// A binary message (an attachment of a binary Socket.IO packet).
    Binary(Vec<u8>),
    /// `5`: the client moves to the probed WebSocket.
    Upgrade,
    /// `6`: nothing (ends a waiting poll during an upgrade).
    Noop,
}

impl EioPacket {
    /// Reads one text packet (a WebSocket text frame or one polling record, where a
    /// record starting with `b` is a base64 binary message).
    pub fn decode(text: &str) -> Result<EioPacket, SioError> {
        let mut chars = text.chars();
        let kind = chars.next().ok_or(SioError::UnknownType(String::new()))?;
        let rest = chars.as_str();
        Ok(match kind {
            '0' => EioPacket::Open(rest.to_owned()),
            '1' => EioPacket::Close,
            '2' => EioPacket::Ping(rest == "probe"),
            '3' => EioPacket::Pong(rest == "probe"),
            '4' => EioPacket::Message(rest.to_owned()),
            '5' => EioPacket::Upgrade,
            '6' => EioPacket::Noop,
            'b' => EioPacket::Binary(
                base64::engine::general_purpose::STANDARD
                    .decode(rest)
                    .map_err(|e| SioError::Malformed(format!("bad base64: {e}")))?,
            ),
            other => return Err(SioError::UnknownType(other.to_string())),
        })
    }

    /// Writes a text packet; a binary one as a polling record (`b` + base64).
    pub fn encode(&self) -> String {
        match self {
            EioPacket::Open(json) => format!("0{json}"),
            EioPacket::Close => "1".to_owned(),
            EioPacket::Ping(probe) => if *probe { "2probe" } else { "2" }.to_owned(),
            EioPacket::Pong(probe) => if *probe { "3probe" } else { "3" }.to_owned(),
            EioPacket::Message(text) => format!("4{text}"),
            EioPacket::Binary(bytes) => {
                format!(
                    "b{}",
                    base64::engine::general_purpose::STANDARD.encode(bytes)
                )
            }
            EioPacket::Upgrade => "5".to_owned(),
            EioPacket::Noop => "6".to_owned(),
        }
    }
}

/// Splits a long-polling body into packets (at most `max_packets`).
pub fn decode_payload(body: &str, max_packets: usize) -> Result<Vec<EioPacket>, SioError> {
    let records = body.split(SEPARATOR);
    let mut packets = Vec::new();
    for record in records {
        if packets.len() == max_packets {
            return Err(SioError::TooManyPackets(max_packets));
        }
        packets.push(EioPacket::decode(record)?);
    }
    Ok(packets)
}

/// Joins encoded packets into one long-polling body.
pub fn encode_payload<S: AsRef<str>>(records: &[S]) -> String {
    let mut body = String::with_capacity(records.iter().map(|r| r.as_ref().len() + 1).sum());
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            body.push(SEPARATOR);
        }
        body.push_str(record.as_ref());
    }
    body
}

/// The type of a Socket.IO packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SioKind {
    /// `0`: join a namespace (client, with auth) / joined (server, with the sid).
    Connect,
    /// `1`: leave a namespace / be removed from it.
    Disconnect,
    /// `2`: an event: `["name", ...args]`.
    Event,
    /// `3`: the answer to an event that asked for one: `[...args]`.
    Ack,
    /// `4`: the namespace refused the client: `{"message": ...}`.
    ConnectError,
    /// `5`: an event with binary attachments.
    BinaryEvent,
    /// `6`: an ack with binary attachments.
    BinaryAck,
}

impl SioKind {
    fn from_char(c: char) -> Option<SioKind> {
        Some(match c {
            '0' => SioKind::Connect,
            '1' => SioKind::Disconnect,
            '2' => SioKind::Event,
            '3' => SioKind::Ack,
            '4' => SioKind::ConnectError,
            '5' => SioKind::BinaryEvent,
            '6' => SioKind::BinaryAck,
            _ => return None,
        })
    }

    fn as_char(self) -> char {
        match self {
            SioKind::Connect => '0',
            SioKind::Disconnect => '1',
            SioKind::Event => '2',
            SioKind::Ack => '3',
            SioKind::ConnectError => '4',
            SioKind::BinaryEvent => '5',
            SioKind::BinaryAck => '6',
        }
    }
}

/// One Socket.IO packet, its JSON left as text until it is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SioPacket {
    /// The packet's type.
    pub kind: SioKind,
    /// The namespace, `/` when the packet names none.
    pub ns: String,
    /// Binary attachments that follow (binary types only).
    pub attachments: usize,
    /// The ack id: an event asks for an answer with it, an ack answers it.
    pub id: Option<u64>,
    /// The JSON data, as text (empty when there is none).
    pub data: String,
}

impl SioPacket {
    /// A packet without attachments.
    pub fn new(kind: SioKind, ns: &str, id: Option<u64>, data: String) -> Self {
        SioPacket {
            kind,
            ns: ns.to_owned(),
            attachments: 0,
            id,
            data,
        }
    }

    /// Reads the text of an Engine.IO message.
    pub fn decode(text: &str) -> Result<SioPacket, SioError> {
        let bad = |what: &str| SioError::Malformed(what.to_owned());
        let mut chars = text.chars();
        let first = chars.next().ok_or_else(|| bad("empty"))?;
        let kind = SioKind::from_char(first).ok_or(SioError::UnknownType(first.to_string()))?;
        let mut rest = chars.as_str();
        let mut attachments = 0;
        if matches!(kind, SioKind::BinaryEvent | SioKind::BinaryAck) {
            let dash = rest
                .find('-')
                .ok_or_else(|| bad("binary packet without its attachment count"))?;
            attachments = rest[..dash]
                .parse::<usize>()
                .map_err(|_| bad("bad attachment count"))?;
            if attachments > MAX_ATTACHMENTS {
                return Err(SioError::TooManyAttachments);
            }
            rest = &rest[dash + 1..];
        }
        let mut ns = "/".to_owned();
        if rest.starts_with('/') {
            let end = rest.find(',').unwrap_or(rest.len());
            ns = rest[..end].to_owned();
            rest = rest.get(end + 1..).unwrap_or("");
        }
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let id = match digits {
            0 => None,
            // More digits than a u64 holds is malformed, not a panic.
            _ => Some(
                rest[..digits]
                    .parse::<u64>()
                    .map_err(|_| bad("bad ack id"))?,
            ),
        };
        rest = &rest[digits..];
        Ok(SioPacket {
            kind,
            ns,
            attachments,
            id,
            data: rest.to_owned(),
        })
    }

    /// Writes the packet as the text of an Engine.IO message.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.data.len() + self.ns.len() + 8);
        out.push(self.kind.as_char());
        if matches!(self.kind, SioKind::BinaryEvent | SioKind::BinaryAck) {
            out.push_str(&self.attachments.to_string());
            out.push('-');
        }
        if self.ns != "/" {
            out.push_str(&self.ns);
            out.push(',');
        }
        if let Some(id) = self.id {
            out.push_str(&id.to_string());
        }
        out.push_str(&self.data);
        out
    }
}

/// Writes an event packet from its parts without parsing the payload: `payload` is
/// already JSON, and `offset` (connection-state recovery) is appended as a last
/// string argument.
pub fn encode_event(
    ns: &str,
    name: &str,
    payload: &str,
    ack: Option<u64>,
    offset: Option<u64>,
) -> String {
    finish_event(&event_head(ns, name, payload, ack), offset)
}

/// An event packet up to its last argument (`2/ns,["name",payload`): the part that is
/// the same for every recipient of a broadcast.
fn event_head(ns: &str, name: &str, payload: &str, ack: Option<u64>) -> String {
    let name = Value::String(name.to_owned()).to_string();
    let payload = if payload.is_empty() { "null" } else { payload };
    let mut data = String::with_capacity(name.len() + payload.len() + 2);
    data.push('[');
    data.push_str(&name);
    data.push(',');
    data.push_str(payload);
    SioPacket::new(SioKind::Event, ns, ack, data).encode()
}

/// Completes an event packet from its head: the offset, if any, then the end.
pub fn finish_event(head: &str, offset: Option<u64>) -> String {
    let mut packet = String::with_capacity(head.len() + 24);
    packet.push_str(head);
    if let Some(offset) = offset {
        packet.push_str(",\"");
        packet.push_str(&offset.to_string());
        packet.push('"');
    }
    packet.push(']');
    packet
}

/// `parts`, one after another, framed as one whole WebSocket text message (a
/// record of the Socket.IO endpoint's WebSocket).
pub fn text_message(parts: &[&[u8]]) -> Bytes {
    let len = parts.iter().map(|p| p.len()).sum();
    let (head, header) = super::ws_header::text_header(len);
    let mut message = BytesMut::with_capacity(header + len);
    message.put_slice(&head[..header]);
    for part in parts {
        message.put_slice(part);
    }
    message.freeze()
}

/// A broadcast's event as Socket.IO packets write it, built once for all the
/// Socket.IO recipients of the broadcast (see [`crate::protocol::WireFrame`]); each
/// completes it with [`finish_event`] and its own offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedEvent {
    /// The event's namespace.
    pub ns: String,
    /// The Engine.IO message up to the event's last argument (`42/ns,["name",payload`),
    /// as [`Frame::Event`] without ack or [`Frame::Volatile`] is written.
    pub head: String,
    /// A reliable event (it counts in the session's sequence and gets an offset); a
    /// volatile one does not.
    pub reliable: bool,
    /// The event without an offset (`head` and its end), framed as a whole WebSocket
    /// text message: what every recipient that adds no offset writes as it is (a
    /// volatile event, or any event without connection-state recovery).
    pub plain: Bytes,
}

impl SharedEvent {
    /// The shared form of `frame`: events without ack and volatile events (what
    /// broadcasts are); `None` for every other frame, which a session writes to one
    /// client only.
    pub fn of(frame: &Frame) -> Option<SharedEvent> {
        let (ns, name, payload, reliable) = match frame {
            Frame::Event {
                ns,
                name,
                payload,
                ack: None,
            } => (ns, name, payload, true),
            Frame::Volatile { ns, name, payload } => (ns, name, payload, false),
            _ => return None,
        };
        let payload = String::from_utf8_lossy(payload);
        let head = format!("4{}", event_head(ns, name, &payload, None));
        Some(SharedEvent {
            ns: ns.clone(),
            plain: text_message(&[head.as_bytes(), b"]"]),
            head,
            reliable,
        })
    }
}

/// A binary packet waiting for its attachments.
#[derive(Debug)]
pub struct Binary {
    packet: SioPacket,
    attachments: Vec<Vec<u8>>,
}

impl Binary {
    /// Starts collecting the attachments `packet` announced.
    pub fn new(packet: SioPacket) -> Self {
        Binary {
            attachments: Vec::with_capacity(packet.attachments),
            packet,
        }
    }

    /// Adds the next attachment; `Some` with the complete packet (placeholders
    /// replaced, binary kinds turned into `Event`/`Ack`) once all have come.
    pub fn push(&mut self, bytes: Vec<u8>) -> Option<Result<SioPacket, SioError>> {
        self.attachments.push(bytes);
        self.complete()
    }

    /// The packet, if every attachment has come (at once when it announced none).
    pub fn complete(&mut self) -> Option<Result<SioPacket, SioError>> {
        if self.attachments.len() < self.packet.attachments {
            return None;
        }
        Some(self.reconstruct())
    }

    fn reconstruct(&mut self) -> Result<SioPacket, SioError> {
        let mut data: Value = serde_json::from_str(&self.packet.data)
            .map_err(|e| SioError::Malformed(format!("bad JSON: {e}")))?;
        fill_placeholders(&mut data, &mut self.attachments)?;
        let kind = match self.packet.kind {
            SioKind::BinaryAck => SioKind::Ack,
            _ => SioKind::Event,
        };
        Ok(SioPacket {
            kind,
            ns: std::mem::take(&mut self.packet.ns),
            attachments: 0,
            id: self.packet.id,
            data: data.to_string(),
        })
    }
}

/// Replaces each `{"_placeholder":true,"num":i}` with attachment `i` as a JSON array
/// of byte values (what a `Vec<u8>` or `serde_bytes::ByteBuf` field reads).
fn fill_placeholders(value: &mut Value, attachments: &mut [Vec<u8>]) -> Result<(), SioError> {
    match value {
        Value::Object(map) if map.get("_placeholder") == Some(&Value::Bool(true)) => {
            let num = map
                .get("num")
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n < attachments.len())
                .ok_or_else(|| {
                    SioError::Malformed("placeholder without its attachment".to_owned())
                })?;
            let bytes = std::mem::take(&mut attachments[num]);
            *value = Value::Array(bytes.into_iter().map(Value::from).collect());
        }
        Value::Object(map) => {
            for item in map.values_mut() {
                fill_placeholders(item, attachments)?;
            }
        }
        Value::Array(items) => {
            for item in items {
                fill_placeholders(item, attachments)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// An event's arguments as one Volley payload: no argument is `null`, one is itself,
/// several are a JSON array of them. Returns the name and the payload.
pub fn event_payload(data: &str) -> Result<(String, String), SioError> {
    let bad = |what: &str| SioError::Malformed(what.to_owned());
    let args: Vec<Value> =
        serde_json::from_str(data).map_err(|e| bad(&format!("event is not a JSON array: {e}")))?;
    let mut args = args.into_iter();
    let Some(Value::String(name)) = args.next() else {
        return Err(bad("event without a name"));
    };
    Ok((name, args_payload(args.collect())))
}

/// An ack's arguments as one Volley payload, by the same rule as an event's.
pub fn ack_payload(data: &str) -> Result<String, SioError> {
    let args: Vec<Value> = serde_json::from_str(data)
        .map_err(|e| SioError::Malformed(format!("ack is not a JSON array: {e}")))?;
    Ok(args_payload(args))
}

fn args_payload(mut args: Vec<Value>) -> String {
    match args.len() {
        0 => "null".to_owned(),
        1 => args.pop().unwrap_or(Value::Null).to_string(),
        _ => Value::Array(args).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The examples of the Engine.IO v4 and Socket.IO v5 protocol documents.

    #[test]
    fn engine_io_packets() {
        assert_eq!(
            EioPacket::decode("4hello"),
            Ok(EioPacket::Message("hello".into()))
        );
        assert_eq!(EioPacket::decode("2probe"), Ok(EioPacket::Ping(true)));
        assert_eq!(EioPacket::decode("3"), Ok(EioPacket::Pong(false)));
        assert_eq!(EioPacket::decode("5"), Ok(EioPacket::Upgrade));
        assert_eq!(
            EioPacket::decode("bAQIDBA=="),
            Ok(EioPacket::Binary(vec![1, 2, 3, 4]))
        );
        assert_eq!(EioPacket::Binary(vec![1, 2, 3, 4]).encode(), "bAQIDBA==");
        assert_eq!(EioPacket::Ping(false).encode(), "2");
        assert!(matches!(
            EioPacket::decode(""),
            Err(SioError::UnknownType(_))
        ));
        assert!(matches!(
            EioPacket::decode("9"),
            Err(SioError::UnknownType(_))
        ));
        assert!(matches!(
            EioPacket::decode("b!!"),
            Err(SioError::Malformed(_))
        ));
    }

    #[test]
    fn polling_payload_with_the_record_separator() {
        let body = "4hello\x1e2\x1ebAQIDBA==";
        let packets = decode_payload(body, 10).expect("valid");
        assert_eq!(
            packets,
            vec![
                EioPacket::Message("hello".into()),
                EioPacket::Ping(false),
                EioPacket::Binary(vec![1, 2, 3, 4]),
            ]
        );
        let records: Vec<String> = packets.iter().map(EioPacket::encode).collect();
        assert_eq!(encode_payload(&records), body);
        assert_eq!(decode_payload(body, 2), Err(SioError::TooManyPackets(2)));
    }

    #[test]
    fn socket_io_packets() {
        let connect = SioPacket::decode("0/admin,{\"token\":\"123\"}").expect("valid");
        assert_eq!(connect.kind, SioKind::Connect);
        assert_eq!(connect.ns, "/admin");
        assert_eq!(connect.data, "{\"token\":\"123\"}");
        assert_eq!(connect.encode(), "0/admin,{\"token\":\"123\"}");

        let event = SioPacket::decode("2[\"foo\"]").expect("valid");
        assert_eq!(
            (event.kind, event.ns.as_str(), event.id),
            (SioKind::Event, "/", None)
        );

        let with_ack = SioPacket::decode("2/admin,456[\"project:delete\",123]").expect("valid");
        assert_eq!(with_ack.id, Some(456));
        assert_eq!(with_ack.data, "[\"project:delete\",123]");
        assert_eq!(with_ack.encode(), "2/admin,456[\"project:delete\",123]");

        let ack = SioPacket::decode("3/admin,456[]").expect("valid");
        assert_eq!(
            (ack.kind, ack.id, ack.data.as_str()),
            (SioKind::Ack, Some(456), "[]")
        );

        let disconnect = SioPacket::decode("1/admin,").expect("valid");
        assert_eq!(
            (disconnect.kind, disconnect.ns.as_str()),
            (SioKind::Disconnect, "/admin")
        );
        assert_eq!(disconnect.encode(), "1/admin,");

        assert_eq!(
            SioPacket::new(SioKind::Connect, "/", None, String::new()).encode(),
            "0"
        );
        assert!(SioPacket::decode("2/a,99999999999999999999999[]").is_err());
        assert!(SioPacket::decode("9").is_err());
    }

    #[test]
    fn binary_event_with_its_attachment() {
        let text = "51-[\"hello\",{\"_placeholder\":true,\"num\":0}]";
        let packet = SioPacket::decode(text).expect("valid");
        assert_eq!((packet.kind, packet.attachments), (SioKind::BinaryEvent, 1));
        assert_eq!(packet.encode(), text);
        let mut binary = Binary::new(packet);
        assert!(binary.complete().is_none());
        let event = binary
            .push(vec![1, 2, 3])
            .expect("complete")
            .expect("valid");
        assert_eq!(event.kind, SioKind::Event);
        assert_eq!(
            event_payload(&event.data),
            Ok(("hello".into(), "[1,2,3]".into()))
        );

        let ack =
            SioPacket::decode("61-/admin,456[{\"_placeholder\":true,\"num\":0}]").expect("valid");
        assert_eq!((ack.ns.as_str(), ack.id), ("/admin", Some(456)));
        let mut binary = Binary::new(ack);
        let ack = binary.push(vec![9]).expect("complete").expect("valid");
        assert_eq!(
            (ack.kind, ack_payload(&ack.data)),
            (SioKind::Ack, Ok("[9]".into()))
        );

        let missing =
            SioPacket::decode("51-[\"x\",{\"_placeholder\":true,\"num\":3}]").expect("valid");
        assert!(Binary::new(missing)
            .push(vec![1])
            .expect("complete")
            .is_err());
        assert_eq!(
            SioPacket::decode("5999-[]"),
            Err(SioError::TooManyAttachments)
        );
    }

    #[test]
    fn payloads_from_arguments_and_back() {
        assert_eq!(event_payload("[\"a\"]"), Ok(("a".into(), "null".into())));
        assert_eq!(
            event_payload("[\"a\",{\"x\":1}]"),
            Ok(("a".into(), "{\"x\":1}".into()))
        );
        assert_eq!(
            event_payload("[\"a\",1,2]"),
            Ok(("a".into(), "[1,2]".into()))
        );
        assert!(event_payload("[1]").is_err());
        assert!(event_payload("{}").is_err());
        assert_eq!(ack_payload("[]"), Ok("null".into()));
        assert_eq!(
            encode_event("/chat", "msg", "{\"t\":\"hi\"}", Some(3), Some(12)),
            "2/chat,3[\"msg\",{\"t\":\"hi\"},\"12\"]"
        );
        assert_eq!(
            encode_event("/", "tick", "", None, None),
            "2[\"tick\",null]"
        );
    }

    #[test]
    fn broadcasts_share_the_head_of_their_event() {
        let event = Frame::Event {
            ns: "/chat".into(),
            name: "msg".into(),
            payload: serde_bytes::ByteBuf::from(b"{\"t\":1}".to_vec()),
            ack: None,
        };
        let shared = SharedEvent::of(&event).expect("an event without ack is shared");
        assert_eq!((shared.ns.as_str(), shared.reliable), ("/chat", true));
        assert_eq!(
            finish_event(&shared.head, Some(7)),
            format!(
                "4{}",
                encode_event("/chat", "msg", "{\"t\":1}", None, Some(7))
            )
        );
        assert_eq!(
            finish_event(&shared.head, None),
            "42/chat,[\"msg\",{\"t\":1}]"
        );
        let with_ack = Frame::Event {
            ns: "/".into(),
            name: "q".into(),
            payload: Default::default(),
            ack: Some(1),
        };
        assert_eq!(SharedEvent::of(&with_ack), None);
        assert_eq!(SharedEvent::of(&Frame::Ping), None);
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("2[\"x\",{}{}]", "[".repeat(10_000), "]".repeat(10_000));
        let packet = SioPacket::decode(&deep).expect("the frame itself is fine");
        assert!(event_payload(&packet.data).is_err());
    }
}
