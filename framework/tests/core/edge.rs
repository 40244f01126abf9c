//! Hostile input at the transport edge, written byte by byte on raw sockets: frame
//! headers that claim too much, reserved bits, oversized polling bodies, methods the
//! polling endpoint does not take. Each is refused at once with the reason the
//! protocol gives (docs/protocol.md 1.1, 1.2 and 6.1), without reading what follows.

use tokio::io::AsyncWriteExt;
use volley::protocol::{self, Frame, PROTOCOL_VERSION};
use volley::Volley;

use crate::common::*;
use crate::wire::*;

const LIMIT: usize = 64 * 1024;

/// An encoded `hello` (without a frame limit, as an old client sends it).
fn hello() -> bytes::Bytes {
    protocol::encode(&Frame::Hello {
        version: PROTOCOL_VERSION,
        max_frame_size: None,
    })
}

fn server() -> TestServer {
    serve(Volley::builder().max_frame_size(LIMIT))
}

/// Sends a frame header claiming `claim` bytes and a little of its payload, never
/// the rest: the server must answer from the header alone.
async fn refused_from_the_header(claim: u64, hello_first: bool) {
    let server = server();
    let mut ws = websocket(&server).await;
    if hello_first {
        let hello = hello();
        ws.write_all(&binary_frame(&hello)).await.unwrap();
    }
    ws.write_all(&frame_header(0x82, claim)).await.unwrap();
    ws.write_all(&vec![0u8; 32 * 1024]).await.unwrap();
    let close = read_close(&mut ws).await;
    assert_eq!(
        close,
        Some((1008, format!("frame too large (limit {LIMIT} bytes)"))),
        "a header claiming {claim} bytes"
    );
}

#[actix_rt::test]
async fn a_frame_header_claiming_10_mib_is_refused_before_its_payload() {
    refused_from_the_header(10 * 1024 * 1024, false).await;
    refused_from_the_header(10 * 1024 * 1024, true).await;
}

#[actix_rt::test]
async fn a_frame_header_claiming_2_pow_63_bytes_is_refused() {
    refused_from_the_header(i64::MAX as u64, true).await;
    refused_from_the_header(1 << 63, true).await;
    refused_from_the_header(u64::MAX, false).await;
}

#[actix_rt::test]
async fn a_frame_just_over_the_limit_is_refused_and_one_at_it_is_read() {
    refused_from_the_header(LIMIT as u64 + 1, true).await;
    // At the limit the frame is read whole and decoded: this one is a whole `Hello`
    // (with its optional last field) padded with trailing bytes, so the refusal is the decoder's, not the size's.
    let server = server();
    let mut ws = websocket(&server).await;
    let mut hello = protocol::encode(&Frame::Hello {
        version: PROTOCOL_VERSION,
        max_frame_size: Some(0),
    })
    .to_vec();
    let trailing = LIMIT - hello.len();
    hello.resize(LIMIT, 0);
    ws.write_all(&binary_frame(&hello)).await.unwrap();
    let close = read_close(&mut ws).await;
    assert_eq!(
        close,
        Some((1008, format!("malformed frame: {trailing} trailing bytes")))
    );
}

#[actix_rt::test]
async fn reserved_bits_close_with_a_websocket_protocol_error() {
    for rsv in [0x40u8, 0x20, 0x10] {
        let server = server();
        let mut ws = websocket(&server).await;
        let hello = hello();
        let mut frame = binary_frame(&hello);
        frame[0] |= rsv;
        ws.write_all(&frame).await.unwrap();
        let (code, reason) = read_close(&mut ws).await.expect("a close frame");
        assert_eq!(code, 1008);
        assert_eq!(
            reason,
            "websocket protocol error: reserved bits set (no extension was negotiated)"
        );
    }
}

/// The path of the polling endpoint.
fn poll_path(server: &TestServer) -> String {
    let rest = server.url.trim_start_matches("ws://");
    format!("{}/poll", &rest[rest.find('/').unwrap_or(rest.len())..])
}

#[actix_rt::test]
async fn a_polling_post_declaring_a_body_over_the_limit_gets_413_before_sending_it() {
    let server = serve(Volley::builder().config(volley::Config {
        max_poll_body: 4096,
        ..volley::Config::default()
    }));
    let path = poll_path(&server);
    // The head alone: the body is never sent, so only an answer from the header can
    // arrive.
    let head = http(
        &server,
        &format!(
            "POST {path} HTTP/1.1\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: 10485760"
        ),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    // At the limit the body is waited for and read as usual (here: an empty batch is
    // not an opening frame).
    let mut stream = tcp(&server).await;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
        authority(&server)
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
}

#[actix_rt::test]
async fn other_methods_on_the_polling_endpoint_get_405_with_allow() {
    let server = server();
    let path = poll_path(&server);
    for method in ["PUT", "DELETE", "PATCH"] {
        let head = http(
            &server,
            &format!("{method} {path} HTTP/1.1\r\nContent-Length: 0"),
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 405"), "{method}: {head}");
        let allow = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("allow")
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_default();
        assert_eq!(allow, "GET, POST, OPTIONS", "{method}: {head}");
    }
}

#[actix_rt::test]
async fn a_connection_that_never_says_hello_is_closed_after_the_handshake_timeout() {
    let timeout = std::time::Duration::from_millis(300);
    let server = serve(Volley::builder().config(volley::Config {
        handshake_timeout: timeout,
        ..volley::Config::default()
    }));
    let mut silent = websocket(&server).await;
    let close = read_close(&mut silent).await;
    assert_eq!(close, Some((1008, "handshake timeout".to_owned())));

    // Once its session is open the timer is gone: the connection outlives it.
    let mut greeted = websocket(&server).await;
    greeted.write_all(&binary_frame(&hello())).await.unwrap();
    let (opcode, _) = read_frame(&mut greeted, WAIT)
        .await
        .expect("the open frame");
    assert_eq!(opcode, 0x2);
    let later = tokio::time::timeout(3 * timeout, read_close(&mut greeted)).await;
    assert!(later.is_err(), "closed after its hello: {later:?}");
}
