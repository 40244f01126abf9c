//! Bytes written by hand on a TCP socket, for input that no client library would send:
//! a WebSocket handshake and frames built byte by byte, and raw HTTP requests.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{TestServer, WAIT};

/// `host:port` of a test server.
pub fn authority(server: &TestServer) -> String {
    let rest = server.url.trim_start_matches("ws://");
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// A TCP connection to the server.
pub async fn tcp(server: &TestServer) -> TcpStream {
    TcpStream::connect(authority(server))
        .await
        .expect("tcp connects")
}

/// Reads up to the end of an HTTP response head; returns it as text.
pub async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut byte))
            .await
            .expect("timed out waiting for a response head")
            .expect("read");
        assert!(n > 0, "connection closed before a response head: {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Sends a raw HTTP request `head` (without the final blank line) and returns the
/// response head.
pub async fn http(server: &TestServer, head: &str) -> String {
    let mut stream = tcp(server).await;
    let request = format!("{head}\r\nHost: {}\r\n\r\n", authority(server));
    stream.write_all(request.as_bytes()).await.expect("write");
    read_head(&mut stream).await
}

/// A WebSocket connection after a hand-written handshake.
pub async fn websocket(server: &TestServer) -> TcpStream {
    let mut stream = tcp(server).await;
    let path = server.url.trim_start_matches("ws://");
    let path = &path[path.find('/').unwrap_or(path.len())..];
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        authority(server)
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}

/// A masked client frame header: `first` is FIN/RSV/opcode, then `len` as the
/// payload length in its shortest encoding.
pub fn frame_header(first: u8, len: u64) -> Vec<u8> {
    let mut header = vec![first];
    match len {
        0..=125 => header.push(0x80 | len as u8),
        126..=0xffff => {
            header.push(0x80 | 126);
            header.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            header.push(0x80 | 127);
            header.extend_from_slice(&len.to_be_bytes());
        }
    }
    header.extend_from_slice(&[0, 0, 0, 0]); // a zero mask leaves the payload as is
    header
}

/// A whole masked binary frame.
pub fn binary_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = frame_header(0x82, payload.len() as u64);
    frame.extend_from_slice(payload);
    frame
}

/// One frame from the server (unmasked): its opcode and payload.
pub async fn read_frame(stream: &mut TcpStream, wait: Duration) -> Option<(u8, Vec<u8>)> {
    tokio::time::timeout(wait, async {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await.ok()?;
        let len = match head[1] & 0x7f {
            126 => u64::from(stream.read_u16().await.ok()?),
            127 => stream.read_u64().await.ok()?,
            len => u64::from(len),
        };
        let mut payload = vec![0u8; usize::try_from(len).ok()?];
        stream.read_exact(&mut payload).await.ok()?;
        Some((head[0] & 0x0f, payload))
    })
    .await
    .expect("timed out waiting for a frame from the server")
}

/// Reads frames until the server's WebSocket close; its status and description.
/// `None` when the connection ends without a close frame.
pub async fn read_close(stream: &mut TcpStream) -> Option<(u16, String)> {
    while let Some((opcode, payload)) = read_frame(stream, WAIT).await {
        if opcode == 0x8 {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            return Some((code, String::from_utf8_lossy(&payload[2..]).into_owned()));
        }
    }
    None
}
