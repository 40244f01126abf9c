//! The client's transports behind one interface: frames out, frames in.
//!
//! Each transport runs as two small tasks (a reader and a writer) joined to the
//! driver by channels. That keeps the driver's `select!` cancel-safe: a long-poll in
//! flight is never dropped half-way with frames in it, and writes are coalesced by
//! the writer (all queued frames per WebSocket flush, or per POST).

use std::time::Duration;

use actix_rt::net::TcpStream;
use actix_service::Service;
use actix_tls::connect::{ConnectError, ConnectInfo, Connection, ConnectorService};
use awc::error::WsClientError;
use awc::http::Uri;
use awc::ws;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};

use super::{ClientConfig, ClientError};
use crate::protocol;

/// Which transport carries the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Try WebSocket; fall back to long-polling if the upgrade is refused over HTTP
    /// or no `Open` arrives within [`ClientConfig::upgrade_timeout`]. A server that
    /// answers nothing (an outage) is retried over WebSocket, never a reason to fall
    /// back.
    Auto,
    /// WebSocket only.
    WebSocket,
    /// HTTP long-polling only.
    Polling,
}

/// Frames in flight between the driver and one connection.
const CHANNEL: usize = 256;

/// Why a link stopped delivering frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LinkError {
    /// The connection is gone; the session may be resumed on a new one.
    #[error("{0}")]
    Lost(String),
    /// The server sent a frame larger than [`ClientConfig::max_frame_size`]. A resume
    /// would be sent the same frame again, so the session ends instead.
    #[error("the server sent a frame larger than this client accepts (max_frame_size {0} bytes)")]
    TooLarge(usize),
}

/// A connection that did not open.
#[derive(Debug)]
pub(crate) struct OpenError {
    pub error: ClientError,
    /// An HTTP server answered the WebSocket upgrade with something else than an
    /// upgrade (a proxy's `403`, say): HTTP gets through where WebSocket does not, and
    /// long-polling may work. `false` when nothing answered (an outage): then trying
    /// long-polling would only race the outage's end.
    pub upgrade_refused: bool,
}

impl From<ClientError> for OpenError {
    fn from(error: ClientError) -> Self {
        OpenError {
            error,
            upgrade_refused: false,
        }
    }
}

impl From<OpenError> for ClientError {
    fn from(e: OpenError) -> Self {
        e.error
    }
}

/// One open connection.
pub(crate) struct Link {
    out: mpsc::Sender<Bytes>,
    inbound: mpsc::Receiver<Result<Bytes, LinkError>>,
    /// Dropped with the link: the reader stops.
    _stop: watch::Sender<()>,
    /// Fires when the writer has flushed and closed.
    written: oneshot::Receiver<()>,
    pub kind: Transport,
}

/// The task side of a [`Link`]: what the reader and writer tasks hold.
struct LinkEnds {
    out_rx: mpsc::Receiver<Bytes>,
    inbound_tx: mpsc::Sender<Result<Bytes, LinkError>>,
    stopped: watch::Receiver<()>,
    written_tx: oneshot::Sender<()>,
}

impl Link {
    /// A link of `kind` and the ends its tasks use.
    fn new(kind: Transport) -> (Link, LinkEnds) {
        let (out, out_rx) = mpsc::channel::<Bytes>(CHANNEL);
        let (inbound_tx, inbound) = mpsc::channel(CHANNEL);
        let (stop, stopped) = watch::channel(());
        let (written_tx, written) = oneshot::channel();
        let link = Link {
            out,
            inbound,
            _stop: stop,
            written,
            kind,
        };
        let ends = LinkEnds {
            out_rx,
            inbound_tx,
            stopped,
            written_tx,
        };
        (link, ends)
    }

    /// Queues a frame for writing.
    pub async fn send(&self, frame: Bytes) -> Result<(), String> {
        self.out
            .send(frame)
            .await
            .map_err(|_| "transport closed".to_owned())
    }

    /// The next frame from the server. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Bytes, LinkError> {
        match self.inbound.recv().await {
            Some(result) => result,
            None => Err(LinkError::Lost("transport closed".to_owned())),
        }
    }

    /// Writes what is queued, closes the connection politely, and waits (briefly)
    /// for that to happen.
    pub async fn close(self) {
        let Link { out, written, .. } = self;
        drop(out);
        let _ = tokio::time::timeout(Duration::from_secs(1), written).await;
    }
}

/// Opens a connection of `kind` (not `Auto`) and sends `first` on it.
pub(crate) async fn open(
    url: &str,
    config: &ClientConfig,
    kind: Transport,
    first: Bytes,
) -> Result<Link, OpenError> {
    match kind {
        Transport::Polling => Ok(open_polling(url, config, first).await?),
        _ => open_websocket(url, config, first).await,
    }
}

/// Whether the server (or a proxy) answered the upgrade request over HTTP, without
/// upgrading, so that long-polling may get through where WebSocket did not. Errors
/// before an answer (refused, reset, DNS) are not, nor a `503` or `429` (the server
/// is full or limits this client: it would answer long-polling the same).
fn refused_upgrade(e: &WsClientError) -> bool {
    match e {
        WsClientError::SendRequest(_) | WsClientError::Protocol(_) => false,
        // The server itself said "not now" (full, or too many connections from this
        // address; rate-limited): long-polling would get the same answer, and the
        // session would stay on the slower transport after the server has room.
        WsClientError::InvalidResponseStatus(status) => !matches!(status.as_u16(), 429 | 503),
        _ => true,
    }
}

async fn open_websocket(url: &str, config: &ClientConfig, first: Bytes) -> Result<Link, OpenError> {
    let mut http = awc::Client::builder().connector(nodelay_connector());
    if let Some(ip) = config.local_address {
        http = http.local_address(ip);
    }
    let (_, framed) = http
        .finish()
        .ws(url)
        .max_frame_size(config.max_frame_size)
        .connect()
        .await
        .map_err(|e| OpenError {
            upgrade_refused: refused_upgrade(&e),
            error: ClientError::Connect(match &e {
                WsClientError::InvalidResponseStatus(status) => {
                    format!("WebSocket upgrade refused ({status})")
                }
                e => e.to_string(),
            }),
        })?;
    let (mut sink, mut stream) = framed.split();
    let (link, ends) = Link::new(Transport::WebSocket);
    let LinkEnds {
        mut out_rx,
        inbound_tx,
        mut stopped,
        written_tx,
    } = ends;
    let errors = inbound_tx.clone();
    actix_rt::spawn(async move {
        let mut result = sink.send(ws::Message::Binary(first)).await;
        while result.is_ok() {
            let Some(frame) = out_rx.recv().await else {
                break;
            };
            result = sink.feed(ws::Message::Binary(frame)).await;
            while let (true, Ok(frame)) = (result.is_ok(), out_rx.try_recv()) {
                result = sink.feed(ws::Message::Binary(frame)).await;
            }
            if result.is_ok() {
                result = sink.flush().await;
            }
        }
        match result {
            Ok(()) => {
                let close = ws::CloseReason::from(ws::CloseCode::Normal);
                let _ = sink.send(ws::Message::Close(Some(close))).await;
            }
            Err(e) => {
                let lost = LinkError::Lost(format!("transport error: {e}"));
                let _ = errors.send(Err(lost)).await;
            }
        }
        let _ = written_tx.send(());
    });
    let max_frame_size = config.max_frame_size;
    actix_rt::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = stopped.changed() => return,
                next = stream.next() => next,
            };
            let item = match next {
                Some(Ok(ws::Frame::Binary(bytes))) => Ok(bytes),
                Some(Ok(ws::Frame::Close(reason))) => {
                    let why = reason.and_then(|r| r.description).unwrap_or_default();
                    Err(LinkError::Lost(if why.is_empty() {
                        "transport closed".to_owned()
                    } else {
                        format!("transport closed: {why}")
                    }))
                }
                None => Err(LinkError::Lost("transport closed".to_owned())),
                Some(Ok(_)) => continue,
                Some(Err(awc::error::WsProtocolError::Overflow)) => {
                    Err(LinkError::TooLarge(max_frame_size))
                }
                Some(Err(e)) => Err(LinkError::Lost(format!("transport error: {e}"))),
            };
            let end = item.is_err();
            if inbound_tx.send(item).await.is_err() || end {
                return;
            }
        }
    });
    Ok(link)
}

/// awc's TCP connector, with `TCP_NODELAY` set on every connection it opens. Game
/// traffic is small frames (inputs, acks): without it Nagle's algorithm holds a
/// frame back until the previous one is acknowledged, and with the server's delayed
/// ACKs that adds up to tens of milliseconds to an input. (The server side sets it
/// in `Volley::serve`.)
fn nodelay_connector() -> awc::Connector<
    impl Service<ConnectInfo<Uri>, Response = Connection<Uri, TcpStream>, Error = ConnectError> + Clone,
> {
    type Info = ConnectInfo<Uri>;
    let tcp = actix_service::apply_fn::<_, ConnectorService, _, _, Info, Info, _, _>(
        ConnectorService::default(),
        |req, tcp| {
            let connecting = tcp.call(req);
            async move {
                let connection = connecting.await?;
                if let Err(e) = connection.io_ref().set_nodelay(true) {
                    tracing::debug!(error = %e, "could not set TCP_NODELAY");
                }
                Ok(connection)
            }
        },
    );
    awc::Connector::new().connector(tcp)
}

/// `ws://host/path` → `http://host/path/poll` (and `wss` → `https`).
fn polling_url(url: &str) -> String {
    let http = if let Some(rest) = url.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = url.strip_prefix("ws://") {
        format!("http://{rest}")
    } else {
        url.to_owned()
    };
    format!("{}/poll", http.trim_end_matches('/'))
}

/// Largest long-poll answer the client reads.
const MAX_POLL_BODY: usize = 64 * 1024 * 1024;

/// Reads a response body, whole or not at all.
///
/// awc ends a body at the connection's end even when fewer bytes than its
/// `Content-Length` arrived. A long-poll answer cut between two frames then splits
/// into whole frames, and the client would take its first frames for the whole
/// answer: the rest, already off the server's queue, would be skipped, and every
/// later frame counted under the wrong sequence number. So the length is checked here,
/// and a short body is a lost connection (the session resumes from the last frame
/// processed).
async fn read_body(
    response: &mut awc::ClientResponse<
        impl futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin,
    >,
) -> Result<Bytes, String> {
    let declared = response
        .headers()
        .get(awc::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let body = response
        .body()
        .limit(MAX_POLL_BODY)
        .await
        .map_err(|e| format!("transport error: {e}"))?;
    match declared {
        Some(length) if body.len() != length => Err(format!(
            "transport error: response cut short ({} of {length} bytes)",
            body.len()
        )),
        _ => Ok(body),
    }
}

async fn open_polling(url: &str, config: &ClientConfig, first: Bytes) -> Result<Link, ClientError> {
    let base = polling_url(url);
    let mut http = awc::Client::builder().connector(nodelay_connector());
    if let Some(ip) = config.local_address {
        http = http.local_address(ip);
    }
    let http = http
        .timeout(config.poll_timeout)
        .disable_redirects()
        .finish();
    let mut response = http
        .post(&base)
        .send_body(protocol::encode_batch(&[first]))
        .await
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    let body = read_body(&mut response)
        .await
        .map_err(ClientError::Connect)?;
    if !response.status().is_success() {
        return Err(ClientError::Connect(format!(
            "polling refused ({}): {}",
            response.status(),
            String::from_utf8_lossy(&body)
        )));
    }
    let pid = String::from_utf8_lossy(&body).into_owned();
    let endpoint = format!("{base}?pid={pid}");
    let (link, ends) = Link::new(Transport::Polling);
    let LinkEnds {
        mut out_rx,
        inbound_tx,
        mut stopped,
        written_tx,
    } = ends;
    // Below the server's default limits (256 frames, 2 MiB per body), so that a
    // backlog never builds a POST the server refuses.
    let (max_frames, max_bytes) = (64, 256 * 1024);

    // Writer: one POST at a time, carrying everything queued.
    let errors = inbound_tx.clone();
    let (post_http, post_url) = (http.clone(), endpoint.clone());
    actix_rt::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            let mut size = frame.len();
            let mut batch = vec![frame];
            while batch.len() < max_frames && size < max_bytes {
                match out_rx.try_recv() {
                    Ok(frame) => {
                        size += frame.len();
                        batch.push(frame);
                    }
                    Err(_) => break,
                }
            }
            let sent = post_http
                .post(&post_url)
                .send_body(protocol::encode_batch(&batch))
                .await;
            let failure = match sent {
                Ok(mut response) if response.status().is_success() => {
                    let _ = read_body(&mut response).await;
                    None
                }
                Ok(mut response) => {
                    let body = read_body(&mut response).await.unwrap_or_default();
                    Some(format!(
                        "polling refused ({}): {}",
                        response.status(),
                        String::from_utf8_lossy(&body)
                    ))
                }
                Err(e) => Some(format!("transport error: {e}")),
            };
            if let Some(reason) = failure {
                let _ = errors.send(Err(LinkError::Lost(reason))).await;
                break;
            }
        }
        let _ = written_tx.send(());
    });

    // Reader: long-polls back to back.
    let max_frame_size = config.max_frame_size;
    actix_rt::spawn(async move {
        loop {
            let polled = tokio::select! {
                _ = stopped.changed() => return,
                polled = http.get(&endpoint).send() => polled,
            };
            let frames = match polled {
                Ok(mut response) => {
                    let status = response.status();
                    match read_body(&mut response).await {
                        Ok(body) if status.is_success() => protocol::split_batch(&body, usize::MAX)
                            .map_err(|e| format!("server sent a bad batch: {e}")),
                        Ok(body) => Err(format!(
                            "polling refused ({status}): {}",
                            String::from_utf8_lossy(&body)
                        )),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(format!("transport error: {e}")),
            };
            match frames {
                Ok(frames) => {
                    for frame in frames {
                        // The same limit as a WebSocket message.
                        let item = match frame.len() > max_frame_size {
                            true => Err(LinkError::TooLarge(max_frame_size)),
                            false => Ok(frame),
                        };
                        let end = item.is_err();
                        if inbound_tx.send(item).await.is_err() || end {
                            return;
                        }
                    }
                }
                Err(reason) => {
                    let _ = inbound_tx.send(Err(LinkError::Lost(reason))).await;
                    return;
                }
            }
        }
    });
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::polling_url;

    #[test]
    fn polling_url_follows_the_websocket_url() {
        assert_eq!(
            polling_url("ws://127.0.0.1:8080/volley"),
            "http://127.0.0.1:8080/volley/poll"
        );
        assert_eq!(
            polling_url("wss://game.example/v/"),
            "https://game.example/v/poll"
        );
    }
}
