//! A raw WebSocket connection for the fuzz scenario: it writes whatever bytes it is
//! given, well-formed or not, which a real WebSocket client would refuse to send.
//!
//! It does the HTTP upgrade, builds client frames by hand (masked or not, reserved
//! bits, any opcode, any claimed length), and reads what the server answers until
//! the server closes: the protocol `Close` frame's reason and the WebSocket close
//! status are what the fuzzer checks against the spec.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use volley::protocol::{self, Frame};

/// WebSocket opcodes (RFC 6455 §5.2).
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;

/// The largest server message this reader keeps; a larger one is skipped.
const MAX_MESSAGE: u64 = 1 << 20;

/// How a client frame is built.
#[derive(Debug, Clone, Copy)]
pub struct FrameHead {
    pub opcode: u8,
    pub fin: bool,
    pub masked: bool,
    /// The three reserved bits, in place (`0x70` sets them all).
    pub rsv: u8,
    /// The length the header claims, if not the payload's own.
    pub claimed_len: Option<u64>,
}

impl FrameHead {
    /// A normal, final, masked frame of `opcode`.
    pub fn new(opcode: u8) -> FrameHead {
        FrameHead {
            opcode,
            fin: true,
            masked: true,
            rsv: 0,
            claimed_len: None,
        }
    }
}

/// The bytes of one client frame carrying `payload`.
pub fn frame(head: FrameHead, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(head.fin) << 7 | (head.rsv & 0x70) | (head.opcode & 0x0f)];
    let len = head.claimed_len.unwrap_or(payload.len() as u64);
    let mask_bit = u8::from(head.masked) << 7;
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= u64::from(u16::MAX) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    if head.masked {
        let key: [u8; 4] = rand::random();
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A binary message holding one protocol frame, as a client sends it.
pub fn binary(frame_bytes: &[u8]) -> Vec<u8> {
    frame(FrameHead::new(BINARY), frame_bytes)
}

/// What the server answered on a connection, until it closed it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    /// Kinds of the protocol frames received, in order (`open`, `resume-failed`, ...).
    pub frames: Vec<&'static str>,
    /// The reason of the protocol `Close` frame, if one came.
    pub close_reason: Option<String>,
    /// The WebSocket close status, if a close frame came.
    pub status: Option<u16>,
    /// The close frame's description.
    pub description: Option<String>,
}

/// A connection after the upgrade.
pub struct RawWs {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl RawWs {
    /// Connects to `host` and upgrades `path` to a WebSocket.
    pub async fn connect(host: &str, path: &str) -> Result<RawWs, String> {
        RawWs::connect_from(host, path, None).await
    }

    /// [`RawWs::connect`] from source address `from` (any port).
    pub async fn connect_from(
        host: &str,
        path: &str,
        from: Option<std::net::IpAddr>,
    ) -> Result<RawWs, String> {
        let mut stream = match from {
            None => TcpStream::connect(host).await,
            Some(ip) => {
                let to = tokio::net::lookup_host(host)
                    .await
                    .map_err(|e| format!("connect: {e}"))?
                    .next()
                    .ok_or_else(|| format!("connect: no address for {host}"))?;
                let socket =
                    tokio::net::TcpSocket::new_v4().map_err(|e| format!("connect: {e}"))?;
                socket
                    .bind(std::net::SocketAddr::new(ip, 0))
                    .map_err(|e| format!("connect: bind {ip}: {e}"))?;
                socket.connect(to).await
            }
        }
        .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("upgrade: {e}"))?;
        let mut buffer = Vec::new();
        let head_end = loop {
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if read_more(&mut stream, &mut buffer).await? == 0 {
                return Err("the server closed during the upgrade".into());
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            return Err(format!(
                "upgrade refused: {}",
                head.lines().next().unwrap_or("")
            ));
        }
        buffer.drain(..head_end);
        Ok(RawWs { stream, buffer })
    }

    /// Writes raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    /// Reads the server's messages until it closes the connection (a close frame,
    /// or the end of the stream), for at most `limit`. `Err` when it did not.
    pub async fn answer(&mut self, limit: Duration) -> Result<Answer, String> {
        let mut answer = Answer::default();
        let read = async {
            loop {
                match self.next_message().await? {
                    None => return Ok(()),
                    Some((CLOSE, body)) => {
                        if body.len() >= 2 {
                            answer.status = Some(u16::from_be_bytes([body[0], body[1]]));
                            answer.description =
                                Some(String::from_utf8_lossy(&body[2..]).into_owned());
                        }
                        return Ok(());
                    }
                    Some((BINARY, body)) => match protocol::decode(&body) {
                        Ok(Frame::Close { reason }) => {
                            answer.frames.push("close");
                            answer.close_reason = Some(reason);
                        }
                        Ok(frame) => answer.frames.push(frame.kind()),
                        Err(e) => return Err(format!("the server sent a bad frame: {e}")),
                    },
                    Some((PING, body)) => {
                        let pong = frame(FrameHead::new(0xA), &body);
                        // The server may be closing: a failed write ends nothing here.
                        let _ = self.stream.write_all(&pong).await;
                    }
                    Some(_) => {}
                }
            }
        };
        match tokio::time::timeout(limit, read).await {
            Ok(Ok(())) => Ok(answer),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!(
                "no close within {limit:?} (got {:?})",
                answer.frames
            )),
        }
    }

    /// The next whole message (opcode, payload), or `None` at the end of the stream
    /// (a reset counts as the end: the server is gone either way).
    pub async fn next_message(&mut self) -> Result<Option<(u8, Vec<u8>)>, String> {
        loop {
            if let Some((opcode, len, header)) = parse_header(&self.buffer) {
                let total = header as u64 + len;
                if len > MAX_MESSAGE {
                    return Err(format!("the server sent a {len}-byte message"));
                }
                if self.buffer.len() as u64 >= total {
                    let body = self.buffer[header..total as usize].to_vec();
                    self.buffer.drain(..total as usize);
                    return Ok(Some((opcode, body)));
                }
            }
            match read_more(&mut self.stream, &mut self.buffer).await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    }
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<usize, String> {
    let mut chunk = [0u8; 4096];
    let n = stream
        .read(&mut chunk)
        .await
        .map_err(|e| format!("read: {e}"))?;
    buffer.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// A server frame's opcode, payload length and header length, once the header is
/// complete. Server frames are never masked.
fn parse_header(bytes: &[u8]) -> Option<(u8, u64, usize)> {
    let (&first, &second) = (bytes.first()?, bytes.get(1)?);
    let opcode = first & 0x0f;
    match second & 0x7f {
        126 => Some((
            opcode,
            u64::from(u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?])),
            4,
        )),
        127 => {
            let len: [u8; 8] = bytes.get(2..10)?.try_into().ok()?;
            Some((opcode, u64::from_be_bytes(len), 10))
        }
        n => Some((opcode, u64::from(n), 2)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_their_flags_lengths_and_mask() {
        let f = frame(FrameHead::new(BINARY), &[1, 2, 3]);
        assert_eq!(f[0], 0x82);
        assert_eq!(f[1], 0x80 | 3);
        let key = [f[2], f[3], f[4], f[5]];
        let payload: Vec<u8> = f[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        assert_eq!(payload, [1, 2, 3]);
        let head = FrameHead {
            fin: false,
            masked: false,
            rsv: 0x70,
            claimed_len: Some(1 << 63),
            ..FrameHead::new(TEXT)
        };
        let f = frame(head, &[]);
        assert_eq!(&f[..2], &[0x71, 127]);
        assert_eq!(&f[2..10], &(1u64 << 63).to_be_bytes());
        assert_eq!(frame(FrameHead::new(BINARY), &[0; 300])[1], 0x80 | 126);
    }

    #[test]
    fn server_headers_parse_once_complete() {
        assert_eq!(parse_header(&[0x82]), None);
        assert_eq!(parse_header(&[0x82, 5]), Some((BINARY, 5, 2)));
        assert_eq!(parse_header(&[0x88, 126, 1, 0]), Some((CLOSE, 256, 4)));
        assert_eq!(parse_header(&[0x82, 127, 0, 0]), None);
    }
}
