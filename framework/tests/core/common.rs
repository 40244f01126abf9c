//! Test helpers: a real Volley server on a random loopback port, a raw protocol
//! client for feeding it bad input, and an app with the handlers the tests use.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpServer};
use awc::ws;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use volley::client::{Client, ClientConfig, ConnectionEvent, Event, NamespaceClient, Transport};
use volley::protocol::{self, Frame, Open, PROTOCOL_VERSION};
use volley::{DisconnectReason, Namespace, Volley, VolleyBuilder};

/// Upper bound for any single wait in a test: a hung server fails the test, it never
/// hangs it.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub url: String,
    pub volley: Volley,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        actix_rt::spawn(async move { handle.stop(false).await });
    }
}

/// Starts `builder` on Volley's own server on 127.0.0.1, on a free port.
pub fn serve(builder: VolleyBuilder) -> TestServer {
    let volley = builder.build();
    let server = volley
        .http_server(App::new)
        .workers(2)
        .bind(("127.0.0.1", 0))
        .expect("bind loopback");
    let addr = server.addrs()[0];
    started(volley, addr, server.run())
}

/// Starts `builder` mounted into actix-web's own `HttpServer` (the WebSocket then
/// stays in actix-http's HTTP/1 dispatcher), on 127.0.0.1, on a free port.
pub fn serve_in_actix_web(builder: VolleyBuilder) -> TestServer {
    let volley = builder.build();
    let app = volley.clone();
    let server = HttpServer::new(move || App::new().configure(app.configure()))
        .workers(2)
        .tcp_nodelay(true)
        .on_connect(volley.on_connect())
        .bind(("127.0.0.1", 0))
        .expect("bind loopback");
    let addr = server.addrs()[0];
    started(volley, addr, server.run())
}

pub fn started(
    volley: Volley,
    addr: std::net::SocketAddr,
    server: actix_web::dev::Server,
) -> TestServer {
    let handle = server.handle();
    actix_rt::spawn(server);
    TestServer {
        url: format!("ws://{addr}/volley"),
        volley,
        handle,
    }
}

/// Disconnect reasons seen by the server, in order.
#[derive(Clone)]
pub struct Disconnects(pub Arc<Mutex<mpsc::UnboundedSender<(String, DisconnectReason)>>>);

impl Disconnects {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<(String, DisconnectReason)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Disconnects(Arc::new(Mutex::new(tx))), rx)
    }

    pub fn record(&self, ns: &str, reason: &DisconnectReason) {
        let _ = self.0.lock().unwrap().send((ns.to_owned(), reason.clone()));
    }
}

/// The namespace most tests use: echo, acks both ways, rooms.
pub fn test_namespace(disconnects: Disconnects) -> Namespace {
    Namespace::new()
        .on_ack("echo", |_, value: serde_json::Value, ack| {
            let _ = ack.send(&value);
        })
        .on("shout", |socket, text: String| {
            let _ = socket.emit("shout", &text);
        })
        // Never answers: the client's ack must time out.
        .on_ack("ignore", |_, _: serde_json::Value, _ack| {})
        // Asks the client a question (server → client ack) and reports the outcome.
        .on_ack("ask", |socket, timeout_ms: u64, ack| {
            let answer = socket.emit_with_ack::<_, String>(
                "question",
                &"what is your name?",
                Duration::from_millis(timeout_ms),
            );
            actix_rt::spawn(async move {
                let outcome = match answer.await {
                    Ok(name) => format!("answer: {name}"),
                    Err(e) => format!("error: {e}"),
                };
                let _ = ack.send(&outcome);
            });
        })
        .on_ack("join", |socket, room: String, ack| {
            socket.join(&room);
            let _ = ack.send(&room);
        })
        // Shares the payload of this socket for `fetch_sockets`; `null` takes it back.
        .on_ack("share", |socket, data: serde_json::Value, ack| {
            match data {
                serde_json::Value::Null => socket.unshare_data(),
                data => socket.share_data(&data).expect("JSON"),
            }
            let _ = ack.send(&());
        })
        .on_ack("leave", |socket, room: String, ack| {
            socket.leave(&room);
            let _ = ack.send(&room);
        })
        .on_ack("rtt", |socket, _: (), ack| {
            let _ = ack.send(&socket.rtt().map(|d| d.as_micros() as u64));
        })
        .on_disconnect(move |socket, reason| disconnects.record(socket.namespace(), reason))
}

/// The admin namespace: only a client that sends the right token gets in.
pub fn admin_namespace(token: &'static str) -> Namespace {
    struct Admin {
        name: String,
    }
    Namespace::new()
        .authorize(move |hs| {
            #[derive(serde::Deserialize)]
            struct Auth {
                token: String,
                name: String,
            }
            let auth: Option<Auth> = hs.auth()?;
            match auth {
                Some(a) if a.token == token => Ok(Admin { name: a.name }),
                Some(_) => Err("invalid admin token".to_owned()),
                None => Err("admin token required".to_owned()),
            }
        })
        .on_ack("whoami", |socket, _: (), ack| {
            let name = socket.data::<Admin>().map(|a| a.name.clone());
            let _ = ack.send(&name);
        })
}

/// Receives the next event, failing the test after [`WAIT`].
pub async fn next_event(ns: &mut NamespaceClient) -> Event {
    tokio::time::timeout(WAIT, ns.next_event())
        .await
        .expect("timed out waiting for an event")
        .expect("namespace closed while waiting for an event")
}

/// Reads events until one named `fence`; returns the ones before it.
pub async fn until_fence(ns: &mut NamespaceClient) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let event = next_event(ns).await;
        if event.name == "fence" {
            return seen;
        }
        seen.push(event);
    }
}

/// A client on `transport`, with its events and errors ready to read.
pub async fn connect(server: &TestServer, transport: Transport) -> Client {
    let config = ClientConfig {
        transport,
        ..ClientConfig::default()
    };
    let client = Client::connect_with(&server.url, config)
        .await
        .expect("client connects");
    assert_eq!(client.transport(), transport);
    client
}

/// `Connect` to namespace `ns` without auth.
pub fn connect_to(ns: &str) -> Frame {
    Frame::Connect {
        ns: ns.into(),
        auth: Default::default(),
    }
}

/// A client that speaks raw frames, for input a well-behaved client never sends.
pub struct RawClient {
    framed: actix_codec::Framed<awc::BoxedSocket, ws::Codec>,
    ws_close: Option<String>,
}

impl RawClient {
    pub async fn connect(url: &str) -> RawClient {
        RawClient::connect_for(url, None).await
    }

    /// Connects as a trusted proxy would for client `forwarded` (its
    /// `X-Forwarded-For`), if given.
    pub async fn connect_for(url: &str, forwarded: Option<&str>) -> RawClient {
        let mut request = awc::Client::new().ws(url).max_frame_size(64 * 1024 * 1024);
        if let Some(client) = forwarded {
            request = request.header("X-Forwarded-For", client);
        }
        let (_, framed) = request.connect().await.expect("raw websocket connects");
        RawClient {
            framed,
            ws_close: None,
        }
    }

    /// Connects and opens a session.
    pub async fn open(url: &str) -> (RawClient, Open) {
        RawClient::open_for(url, None).await
    }

    /// Connects for client `forwarded` (see [`RawClient::connect_for`]) and opens a
    /// session.
    pub async fn open_for(url: &str, forwarded: Option<&str>) -> (RawClient, Open) {
        let mut raw = RawClient::connect_for(url, forwarded).await;
        raw.send(&Frame::Hello {
            version: PROTOCOL_VERSION,
            max_frame_size: None,
        })
        .await;
        match raw.recv().await {
            Some(Frame::Open(open)) => (raw, open),
            other => panic!("expected open, got {other:?}"),
        }
    }

    /// Connects and asks to resume the session `open` opened, from `last_seq`; the
    /// answer is left to read.
    pub async fn resume(url: &str, open: &Open, last_seq: u64) -> RawClient {
        let mut raw = RawClient::connect(url).await;
        raw.send(&Frame::Resume {
            sid: open.sid,
            token: open.token,
            last_seq,
            max_frame_size: None,
        })
        .await;
        raw
    }

    /// Connects, opens a session and joins namespace `ns`.
    pub async fn open_in(url: &str, ns: &str) -> (RawClient, Open) {
        let (mut raw, open) = RawClient::open(url).await;
        raw.join(ns).await;
        (raw, open)
    }

    /// Joins namespace `ns` (without auth) and waits for `Connected`.
    pub async fn join(&mut self, ns: &str) {
        self.send(&connect_to(ns)).await;
        assert_eq!(self.recv().await, Some(Frame::Connected { ns: ns.into() }));
    }

    pub async fn send(&mut self, frame: &Frame) {
        self.send_bytes(protocol::encode(frame).to_vec()).await;
    }

    /// Sends `frames` in one write: the server reads them together.
    pub async fn send_together(&mut self, frames: &[Frame]) {
        for frame in frames {
            let bytes = protocol::encode(frame).to_vec();
            self.framed
                .feed(ws::Message::Binary(bytes.into()))
                .await
                .expect("raw send");
        }
        self.framed.flush().await.expect("raw send");
    }

    pub async fn send_bytes(&mut self, bytes: Vec<u8>) {
        self.framed
            .send(ws::Message::Binary(bytes.into()))
            .await
            .expect("raw send");
    }

    /// The next frame (pings included); `None` when the connection closes.
    pub async fn recv(&mut self) -> Option<Frame> {
        loop {
            let next = tokio::time::timeout(WAIT, self.framed.next())
                .await
                .expect("timed out waiting for a frame");
            match next {
                Some(Ok(ws::Frame::Binary(bytes))) => {
                    return Some(protocol::decode(&bytes).expect("server frames decode"))
                }
                Some(Ok(ws::Frame::Close(reason))) => {
                    self.ws_close = reason.and_then(|r| r.description);
                    return None;
                }
                None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Reads frames until the server closes; returns the reason of its `Close` frame
    /// (the session is over).
    pub async fn close_reason(&mut self) -> Option<String> {
        let mut reason = None;
        while let Some(frame) = self.recv().await {
            if let Frame::Close { reason: r } = frame {
                reason = Some(r);
            }
        }
        reason
    }

    /// The description of the WebSocket close frame, once [`RawClient::recv`] has
    /// returned `None` because of it.
    pub fn ws_close_description(&mut self) -> Option<String> {
        self.ws_close.take()
    }

    /// Reads frames until the server closes the connection without ending the
    /// session (no `Close` frame); returns the WebSocket close description.
    pub async fn dropped_reason(&mut self) -> Option<String> {
        while let Some(frame) = self.recv().await {
            assert!(
                !matches!(frame, Frame::Close { .. }),
                "session closed: {frame:?}"
            );
        }
        self.ws_close.take()
    }
}

/// A raw long-polling client: frames go out in POSTs and come back from GETs.
pub struct RawPoller {
    http: awc::Client,
    endpoint: String,
    pending: std::collections::VecDeque<Frame>,
}

impl RawPoller {
    /// Opens a polling connection with `first` (`Hello` or `Resume`).
    pub async fn connect(url: &str, first: &Frame) -> RawPoller {
        let base = format!("{}/poll", url.replacen("ws://", "http://", 1));
        let http = awc::Client::builder().timeout(WAIT).finish();
        let mut response = http
            .post(&base)
            .send_body(protocol::encode_batch(&[protocol::encode(first)]))
            .await
            .expect("opening POST");
        assert!(response.status().is_success(), "opening POST refused");
        let pid = response.body().await.expect("pid");
        RawPoller {
            endpoint: format!("{base}?pid={}", String::from_utf8_lossy(&pid)),
            http,
            pending: Default::default(),
        }
    }

    /// Sends the next requests of this connection to the server at `url` (another
    /// node of a cluster).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub fn via(&mut self, url: &str) {
        let query = self.endpoint.split_once("/poll?").map_or("", |(_, q)| q);
        let base = url.replacen("ws://", "http://", 1);
        self.endpoint = format!("{base}/poll?{query}");
    }

    pub async fn send(&mut self, frame: &Frame) {
        let sent = self.send_batch(std::slice::from_ref(frame)).await;
        assert!(sent.is_ok(), "POST refused: {sent:?}");
    }

    /// POSTs `frames` as one batch; `Err(body)` when the server refuses it.
    pub async fn send_batch(&mut self, frames: &[Frame]) -> Result<(), String> {
        let batch: Vec<_> = frames.iter().map(protocol::encode).collect();
        let mut response = self
            .http
            .post(&self.endpoint)
            .send_body(protocol::encode_batch(&batch))
            .await
            .expect("POST");
        let body = response.body().await.unwrap_or_default();
        if response.status().is_success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&body).into_owned())
        }
    }

    /// The next frame; `Err(body)` when a GET is refused (the connection is gone).
    pub async fn recv(&mut self) -> Result<Frame, String> {
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Ok(frame);
            }
            let mut response = self.http.get(&self.endpoint).send().await.expect("GET");
            let body = response.body().await.unwrap_or_default();
            if !response.status().is_success() {
                return Err(String::from_utf8_lossy(&body).into_owned());
            }
            for bytes in protocol::split_batch(&body, usize::MAX).expect("batch") {
                self.pending
                    .push_back(protocol::decode(&bytes).expect("server frames decode"));
            }
        }
    }
}

/// A raw client on either transport.
pub enum Raw {
    Ws(RawClient),
    Poll(RawPoller),
}

impl Raw {
    /// Opens a session (`Hello` → `Open`) on `transport`.
    pub async fn open(url: &str, transport: Transport) -> (Raw, Open) {
        let hello = Frame::Hello {
            version: PROTOCOL_VERSION,
            max_frame_size: None,
        };
        let mut raw = Raw::start(url, transport, &hello).await;
        match raw.recv().await {
            Some(Frame::Open(open)) => (raw, open),
            other => panic!("expected open, got {other:?}"),
        }
    }

    /// A new connection on `transport` whose first frame is `first` (`Hello` or
    /// `Resume`); the answer is left to read.
    pub async fn start(url: &str, transport: Transport, first: &Frame) -> Raw {
        match transport {
            Transport::Polling => Raw::Poll(RawPoller::connect(url, first).await),
            _ => {
                let mut ws = RawClient::connect(url).await;
                ws.send(first).await;
                Raw::Ws(ws)
            }
        }
    }

    pub async fn send(&mut self, frame: &Frame) {
        match self {
            Raw::Ws(ws) => ws.send(frame).await,
            Raw::Poll(poll) => poll.send(frame).await,
        }
    }

    /// Sends `frames` back to back: one WebSocket message each, or one polling batch.
    pub async fn send_all(&mut self, frames: &[Frame]) {
        match self {
            Raw::Ws(ws) => {
                for frame in frames {
                    ws.send(frame).await;
                }
            }
            Raw::Poll(poll) => {
                let sent = poll.send_batch(frames).await;
                assert!(sent.is_ok(), "POST refused: {sent:?}");
            }
        }
    }

    /// Joins namespace `ns` (without auth) and waits for `Connected`.
    pub async fn join(&mut self, ns: &str) {
        self.send(&connect_to(ns)).await;
        assert_eq!(self.recv().await, Some(Frame::Connected { ns: ns.into() }));
    }

    pub async fn recv(&mut self) -> Option<Frame> {
        match self {
            Raw::Ws(ws) => ws.recv().await,
            Raw::Poll(poll) => poll.recv().await.ok(),
        }
    }

    /// Reads until the server drops the connection without ending the session;
    /// returns the reason it gave (WebSocket close description, or refused GET body).
    pub async fn dropped_reason(&mut self) -> Option<String> {
        match self {
            Raw::Ws(ws) => ws.dropped_reason().await,
            Raw::Poll(poll) => loop {
                match poll.recv().await {
                    Ok(Frame::Close { reason }) => panic!("session closed: {reason}"),
                    Ok(_) => continue,
                    Err(body) => return Some(body),
                }
            },
        }
    }
}

/// Waits for the client's next resume and returns how many frames the server replayed.
pub async fn resumed(client: &Client) -> u64 {
    loop {
        match tokio::time::timeout(WAIT, client.next_connection_event())
            .await
            .expect("timed out waiting for a resume")
        {
            Some(ConnectionEvent::Reconnected {
                resumed: true,
                replayed,
                ..
            }) => return replayed,
            Some(
                ConnectionEvent::Reconnecting { .. } | ConnectionEvent::ReconnectFailed { .. },
            ) => {}
            other => panic!("expected a resume, got {other:?}"),
        }
    }
}
