//! What Volley sets on each accepted TCP connection, before any request is read: the
//! write timeout.
//!
//! A peer that stops reading cannot be dropped from the transport actor: actix runs a
//! WebSocket actor only while the HTTP layer pulls its output, and it stops pulling
//! when the socket stops taking bytes. So the clock lives in the kernel, on the socket
//! itself: `TCP_USER_TIMEOUT` aborts a connection whose queued bytes have not been
//! taken (zero window) or acknowledged for that long. The HTTP layer then sees the
//! socket fail, the transport stops, and its session detaches as for any other
//! network failure; the client may resume on a new connection.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::dev::Extensions;
use actix_web::HttpRequest;

/// Marks a connection that went through [`tune`]; requests see it as `conn_data`.
struct Tuned;

/// Sets the write timeout on an accepted connection (plain TCP, or TCP under TLS).
pub(crate) fn tune(conn: &dyn Any, ext: &mut Extensions, write_timeout: Duration) {
    let plain = conn.downcast_ref::<tokio::net::TcpStream>();
    #[cfg(feature = "tls")]
    let plain = plain.or_else(|| crate::tls::tcp_under(conn));
    let Some(stream) = plain else {
        return;
    };
    if let Err(e) = set_write_timeout(stream, write_timeout) {
        tracing::warn!(error = %e, "could not set the write timeout on a connection");
        return;
    }
    ext.insert(Tuned);
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_write_timeout(stream: &tokio::net::TcpStream, timeout: Duration) -> std::io::Result<()> {
    let timeout = (!timeout.is_zero()).then_some(timeout);
    socket2::SockRef::from(stream).set_tcp_user_timeout(timeout)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_write_timeout(_: &tokio::net::TcpStream, _: Duration) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "TCP_USER_TIMEOUT is only available on Linux",
    ))
}

/// Warns once per process when connections arrive without the hook, so that an
/// operator learns the write timeout is not enforced.
pub(crate) fn check_tuned(req: &HttpRequest, write_timeout: Duration) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if write_timeout.is_zero() || req.conn_data::<Tuned>().is_some() {
        return;
    }
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "write_timeout is not enforced: install `Volley::on_connect` with \
             `HttpServer::on_connect` (a peer that stops reading then holds its \
             connection until the heartbeat detaches its session)"
        );
    }
}
