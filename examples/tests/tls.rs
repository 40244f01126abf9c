//! `--tls-cert`/`--tls-key`: an example serves `wss`, and a TLS client that trusts the
//! test CA (framework/tests/fixtures/tls) opens a session over it. The client is rustls plus a
//! WebSocket handshake and frames written by hand: the Rust client speaks plain `ws`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use volley::protocol::{self, Frame, PROTOCOL_VERSION};

const WAIT: Duration = Duration::from_secs(30);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../framework/tests/fixtures/tls")
        .join(name)
}

/// The example process, killed when the test ends however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the echo example with TLS and returns it with the URL it printed.
fn start_echo(extra: &[&str]) -> (Server, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_echo"))
        .args(["--addr", "127.0.0.1:0"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the echo example");
    let (tx, lines) = mpsc::channel();
    for pipe in [
        Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("piped")),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    (Server(child), lines)
}

/// Waits for a line containing `want`; fails with everything seen otherwise.
fn line_with(lines: &mpsc::Receiver<String>, want: &str) -> String {
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(WAIT) {
            Ok(line) if line.contains(want) => return line,
            Ok(line) => seen.push(line),
            Err(_) => panic!("no line with {want:?}; output:\n{}", seen.join("\n")),
        }
    }
}

fn tls_client(addr: SocketAddr) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_file(fixture("ca.pem")).expect("test CA");
    roots.add(ca).expect("CA accepted");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(WAIT)).expect("timeout");
    rustls::StreamOwned::new(conn, tcp)
}

/// One masked binary WebSocket frame from the client (payload under 126 bytes).
fn ws_binary(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x82, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads one unmasked server frame; returns its opcode and payload.
fn read_ws_frame(stream: &mut impl Read) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).expect("frame head");
    let len = match head[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            stream.read_exact(&mut ext).expect("length");
            usize::from(u16::from_be_bytes(ext))
        }
        127 => panic!("unexpectedly large frame"),
        n => usize::from(n),
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).expect("payload");
    (head[0] & 0x0f, payload)
}

#[test]
fn an_example_serves_wss_and_a_tls_client_opens_a_session() {
    let cert = fixture("cert.pem");
    let key = fixture("key.pem");
    let (server, lines) = start_echo(&[
        "--tls-cert",
        cert.to_str().expect("utf-8 path"),
        "--tls-key",
        key.to_str().expect("utf-8 path"),
    ]);
    let line = line_with(&lines, "listening on wss://");
    let url = line.split_whitespace().last().expect("url");
    let addr: SocketAddr = url["wss://".len()..]
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));

    let mut tls = tls_client(addr);
    let upgrade = format!(
        "GET /volley HTTP/1.1\r\nHost: localhost:{}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        addr.port()
    );
    tls.write_all(upgrade.as_bytes()).expect("send upgrade");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).expect("read the answer");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");

    // A session over it: hello → open.
    let hello = protocol::encode(&Frame::Hello {
        version: PROTOCOL_VERSION,
        max_frame_size: None,
    });
    tls.write_all(&ws_binary(&hello)).expect("send hello");
    let (opcode, payload) = read_ws_frame(&mut tls);
    assert_eq!(opcode, 2, "a binary frame");
    match protocol::decode(&payload) {
        Ok(Frame::Open(open)) => assert_eq!(open.version, PROTOCOL_VERSION),
        other => panic!("expected open, got {other:?}"),
    }

    // The write timeout is set on TLS connections too (no warning that it is not).
    drop(server);
    let rest: Vec<String> = lines.iter().collect();
    assert!(
        !rest.iter().any(|l| l.contains("not enforced")),
        "{}",
        rest.join("\n")
    );
}

#[test]
fn a_wrong_tls_file_stops_the_example_with_the_file_named() {
    let key = fixture("key.pem");
    let missing = fixture("no-such-cert.pem");
    let output = Command::new(env!("CARGO_BIN_EXE_echo"))
        .args(["--addr", "127.0.0.1:0", "--once", "--tls-cert"])
        .arg(&missing)
        .arg("--tls-key")
        .arg(&key)
        .output()
        .expect("run the echo example");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot read") && stderr.contains("no-such-cert.pem"),
        "{stderr}"
    );
}
