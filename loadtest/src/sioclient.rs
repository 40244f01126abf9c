//! A small Socket.IO v5 client over Engine.IO v4 WebSocket, for `loadtest compare`:
//! the same simulated clients drive Volley and its Socket.IO peers, so the load
//! tester speaks their protocol too. Text framing only (no binary attachments, and
//! long polling only for the handshake of a client that upgrades, as
//! socket.io-client does by default: `GET` the handshake, then a WebSocket with its
//! `sid` that sends `2probe`, reads `3probe` and sends `5`): `0{...}` opens, `40/ns,{auth}` connects a namespace, `42/ns,[event,
//! ...args]` is an event (`42/ns,7[...]` asks for ack 7), `43/ns,7[...]` answers it,
//! and the server's `2` (ping) is answered with `3` (pong).

use std::net::IpAddr;

use awc::ws;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::Value;

/// One Socket.IO packet from the server, as far as this client cares.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// Engine.IO `0`: the handshake, with its JSON (sid, pingInterval, ...).
    Open(Value),
    /// Engine.IO `2`: answer with a pong.
    Ping,
    /// Socket.IO `0`: the namespace accepted us (`data`: the socket's `sid`, ...).
    Connected { ns: String, data: Value },
    /// Socket.IO `4`: the namespace refused us.
    ConnectError { ns: String, data: Value },
    /// Socket.IO `2`: an event with its arguments.
    Event {
        ns: String,
        name: String,
        args: Vec<Value>,
    },
    /// Socket.IO `3`: the answer to our event `id`.
    Ack {
        ns: String,
        id: u64,
        args: Vec<Value>,
    },
    /// Anything else (close, disconnect, noop).
    Other,
}

/// Reads one text frame. Malformed input gives `Err` with what was wrong.
pub fn parse(text: &str) -> Result<Packet, String> {
    let bad = |what: &str| format!("{what}: {}", text.chars().take(80).collect::<String>());
    let (engine, rest) = text.split_at_checked(1).ok_or_else(|| bad("empty frame"))?;
    match engine {
        "0" => {
            return serde_json::from_str(rest)
                .map(Packet::Open)
                .map_err(|e| bad(&e.to_string()))
        }
        "2" => return Ok(Packet::Ping),
        "4" => {}
        _ => return Ok(Packet::Other),
    }
    let (kind, rest) = rest
        .split_at_checked(1)
        .ok_or_else(|| bad("empty message"))?;
    let (ns, rest) = match rest.strip_prefix('/') {
        Some(_) => {
            let end = rest.find(',').unwrap_or(rest.len());
            (rest[..end].to_owned(), rest.get(end + 1..).unwrap_or(""))
        }
        None => ("/".to_owned(), rest),
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id: Option<u64> = rest[..digits].parse().ok();
    let json = &rest[digits..];
    let value = || -> Result<Value, String> {
        if json.is_empty() {
            Ok(Value::Null)
        } else {
            serde_json::from_str(json).map_err(|e| bad(&e.to_string()))
        }
    };
    let array = || -> Result<Vec<Value>, String> {
        match value()? {
            Value::Array(items) => Ok(items),
            _ => Err(bad("not an array")),
        }
    };
    Ok(match kind {
        "0" => Packet::Connected { ns, data: value()? },
        "4" => Packet::ConnectError { ns, data: value()? },
        "2" => {
            let mut args = array()?;
            if args.is_empty() {
                return Err(bad("event without a name"));
            }
            let Value::String(name) = args.remove(0) else {
                return Err(bad("event name is not a string"));
            };
            Packet::Event { ns, name, args }
        }
        "3" => Packet::Ack {
            ns,
            id: id.ok_or_else(|| bad("ack without an id"))?,
            args: array()?,
        },
        _ => Packet::Other,
    })
}

/// The text of a Socket.IO message of `kind` (`0` connect, `2` event) on `ns`, with
/// an ack id if any, and its JSON.
pub fn message(kind: char, ns: &str, ack: Option<u64>, json: &str) -> String {
    let ns = if ns == "/" {
        String::new()
    } else {
        format!("{ns},")
    };
    let ack = ack.map(|id| id.to_string()).unwrap_or_default();
    format!("4{kind}{ns}{ack}{json}")
}

/// A Socket.IO connection with one namespace joined.
pub struct SioClient {
    conn: actix_codec::Framed<awc::BoxedSocket, ws::Codec>,
    ns: String,
    /// The socket's id, from the namespace's connect answer.
    id: String,
    next_ack: u64,
}

impl SioClient {
    /// Opens `<base>/socket.io/?EIO=4&transport=websocket` from `local` (if given)
    /// and joins namespace `ns` with `auth`; with `upgrade`, opens with a long-polling
    /// handshake first and upgrades to the WebSocket.
    pub async fn connect(
        base: &str,
        ns: &str,
        auth: &Value,
        local: Option<IpAddr>,
        upgrade: bool,
    ) -> Result<SioClient, String> {
        let endpoint = format!("{}/socket.io/?EIO=4", base.trim_end_matches('/'));
        let mut http = awc::Client::builder();
        if let Some(ip) = local {
            http = http.local_address(ip);
        }
        let http = http.finish();
        let sid = match upgrade {
            true => Some(polling_handshake(&http, &endpoint).await?),
            false => None,
        };
        let url = match &sid {
            Some(sid) => format!("{endpoint}&transport=websocket&sid={sid}"),
            None => format!("{endpoint}&transport=websocket"),
        };
        let (_, conn) = http
            .ws(url.as_str())
            .connect()
            .await
            .map_err(|e| format!("connect {url}: {e}"))?;
        let mut client = SioClient {
            conn,
            ns: ns.to_owned(),
            id: String::new(),
            next_ack: 0,
        };
        match sid {
            // The probe, then the upgrade: the WebSocket carries the connection.
            Some(_) => {
                client.send("2probe".to_owned()).await?;
                match client.conn.next().await {
                    Some(Ok(ws::Frame::Text(text))) if &text[..] == b"3probe" => {}
                    other => return Err(format!("expected 3probe, got {other:?}")),
                }
                client.send("5".to_owned()).await?;
            }
            None => match client.next_packet().await? {
                Packet::Open(_) => {}
                other => return Err(format!("expected the Engine.IO open, got {other:?}")),
            },
        }
        client
            .send(message('0', ns, None, &auth.to_string()))
            .await?;
        loop {
            match client.next_packet().await? {
                Packet::Connected { ns: n, data } if n == client.ns => {
                    client.id = data["sid"].as_str().unwrap_or_default().to_owned();
                    return Ok(client);
                }
                Packet::ConnectError { data, .. } => {
                    return Err(format!("namespace {ns} refused: {data}"))
                }
                _ => {}
            }
        }
    }

    /// The socket's id, as the server named it in its connect answer.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Emits `event` with `args` (each one argument).
    pub async fn emit(&mut self, event: &str, args: &[Value]) -> Result<(), String> {
        let text = message('2', &self.ns, None, &event_json(event, args));
        self.send(text).await
    }

    /// Emits `event` asking for an ack, and waits for it; events that arrive
    /// meanwhile are dropped (this client asks only before the measured phase).
    pub async fn emit_with_ack(
        &mut self,
        event: &str,
        args: &[Value],
    ) -> Result<Vec<Value>, String> {
        let id = self.next_ack;
        self.next_ack += 1;
        let text = message('2', &self.ns, Some(id), &event_json(event, args));
        self.send(text).await?;
        loop {
            if let Packet::Ack { id: got, args, .. } = self.next_packet().await? {
                if got == id {
                    return Ok(args);
                }
            }
        }
    }

    /// The next event on our namespace: `(name, args)`.
    pub async fn next_event(&mut self) -> Result<(String, Vec<Value>), String> {
        loop {
            if let Packet::Event { ns, name, args } = self.next_packet().await? {
                if ns == self.ns {
                    return Ok((name, args));
                }
            }
        }
    }

    /// Answers the pings that already arrived, without waiting (a client that only
    /// sends calls it now and then so the server does not time it out).
    pub async fn answer_pings(&mut self) -> Result<(), String> {
        while let Some(frame) = self.conn.next().now_or_never() {
            if let Some(Packet::Ping) = self.packet_of(frame).await? {
                self.send("3".to_owned()).await?;
            }
        }
        Ok(())
    }

    /// Closes the WebSocket.
    pub async fn close(mut self) {
        let close = ws::CloseReason::from(ws::CloseCode::Normal);
        let _ = self.conn.send(ws::Message::Close(Some(close))).await;
    }

    async fn send(&mut self, text: String) -> Result<(), String> {
        self.conn
            .send(ws::Message::Text(text.into()))
            .await
            .map_err(|e| format!("send: {e}"))
    }

    /// The next packet; pings are answered here and passed on.
    async fn next_packet(&mut self) -> Result<Packet, String> {
        loop {
            let frame = self.conn.next().await;
            if let Some(packet) = self.packet_of(frame).await? {
                if packet == Packet::Ping {
                    self.send("3".to_owned()).await?;
                }
                return Ok(packet);
            }
        }
    }

    /// The packet in a WebSocket frame, if it holds one.
    async fn packet_of(
        &mut self,
        frame: Option<Result<ws::Frame, awc::error::WsProtocolError>>,
    ) -> Result<Option<Packet>, String> {
        match frame {
            None => Err("connection closed".into()),
            Some(Err(e)) => Err(format!("websocket: {e}")),
            Some(Ok(ws::Frame::Text(bytes))) => {
                let text = std::str::from_utf8(&bytes).map_err(|e| e.to_string())?;
                parse(text).map(Some)
            }
            Some(Ok(ws::Frame::Ping(data))) => {
                let _ = self.conn.send(ws::Message::Pong(data)).await;
                Ok(None)
            }
            Some(Ok(ws::Frame::Close(reason))) => Err(format!("closed by the server: {reason:?}")),
            Some(Ok(_)) => Ok(None),
        }
    }
}

/// The long-polling handshake (`GET <endpoint>&transport=polling`): the sid.
async fn polling_handshake(http: &awc::Client, endpoint: &str) -> Result<String, String> {
    let url = format!("{endpoint}&transport=polling");
    let mut response = http
        .get(url.as_str())
        .send()
        .await
        .map_err(|e| format!("handshake {url}: {e}"))?;
    let body = response
        .body()
        .await
        .map_err(|e| format!("handshake {url}: {e}"))?;
    let text = std::str::from_utf8(&body).map_err(|e| format!("handshake: {e}"))?;
    match parse(text)? {
        Packet::Open(open) => open["sid"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("handshake without a sid: {text}")),
        other => Err(format!("expected the Engine.IO open, got {other:?}")),
    }
}

/// `["event", arg, ...]`.
fn event_json(event: &str, args: &[Value]) -> String {
    let mut all = Vec::with_capacity(args.len() + 1);
    all.push(Value::String(event.to_owned()));
    all.extend_from_slice(args);
    Value::Array(all).to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn server_frames_are_read() {
        assert!(
            matches!(parse(r#"0{"sid":"a","pingInterval":25000}"#), Ok(Packet::Open(v)) if v["pingInterval"] == 25000)
        );
        assert_eq!(parse("2"), Ok(Packet::Ping));
        assert_eq!(
            parse(r#"40/chat,{"sid":"x"}"#),
            Ok(Packet::Connected {
                ns: "/chat".into(),
                data: json!({"sid": "x"})
            })
        );
        assert_eq!(
            parse("40"),
            Ok(Packet::Connected {
                ns: "/".into(),
                data: Value::Null
            })
        );
        assert_eq!(
            parse(r#"42/chat,["message",{"from":"a","text":"hi"}]"#),
            Ok(Packet::Event {
                ns: "/chat".into(),
                name: "message".into(),
                args: vec![json!({"from": "a", "text": "hi"})],
            })
        );
        assert_eq!(
            parse(r#"43/chat,12["ok"]"#),
            Ok(Packet::Ack {
                ns: "/chat".into(),
                id: 12,
                args: vec![json!("ok")],
            })
        );
        assert!(matches!(
            parse(r#"44/chat,{"message":"no"}"#),
            Ok(Packet::ConnectError { data, .. }) if data["message"] == "no"
        ));
        assert_eq!(parse("6"), Ok(Packet::Other));
    }

    #[test]
    fn malformed_frames_say_what_is_wrong() {
        assert!(parse("").is_err_and(|e| e.contains("empty")));
        assert!(parse("42/chat,[").is_err());
        assert!(parse("42/chat,[]").is_err_and(|e| e.contains("without a name")));
        assert!(parse("42/chat,[1]").is_err_and(|e| e.contains("not a string")));
        assert!(parse(r#"43/chat,["x"]"#).is_err_and(|e| e.contains("without an id")));
    }

    #[test]
    fn client_frames_are_written() {
        assert_eq!(
            message('0', "/chat", None, r#"{"name":"a"}"#),
            r#"40/chat,{"name":"a"}"#
        );
        assert_eq!(message('0', "/", None, ""), "40");
        let say = event_json("say", &[json!("lobby"), json!("hello")]);
        assert_eq!(
            message('2', "/chat", None, &say),
            r#"42/chat,["say","lobby","hello"]"#
        );
        assert_eq!(
            message('2', "/chat", Some(3), r#"["join","lobby"]"#),
            r#"42/chat,3["join","lobby"]"#
        );
    }
}
