//! The writing half of a connection's socket, as a [`SendQueue`](super::SendQueue)
//! keeps it parked and its writer takes it, and the non-blocking writes the queue
//! makes on it itself (a push's, the thread's flush).

use std::future::{poll_fn, Future};
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use socket2::SockRef;
use tokio::io::AsyncWrite;
use tokio::net::tcp::OwnedWriteHalf;

/// The writing half of a connection's socket, as the writer hands it over.
pub(crate) enum SocketWrite {
    /// A plain TCP connection. The queue's own writes (a push's, the thread's flush)
    /// are a `send` straight on its descriptor: no lock shared with the reader (as
    /// `tokio::io::split` has), no readiness record to read first, so a delivery
    /// touches the queue and the socket and nothing else of the connection's. What
    /// the socket does not take goes to the writer, which waits through tokio (whose
    /// readiness a refused `send` may have left stale: its next write finds out).
    Tcp(OwnedWriteHalf),
    /// Anything else (a TLS stream, a test's pipe).
    Other(Box<dyn AsyncWrite + Send + Unpin>),
}

impl AsyncWrite for SocketWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            SocketWrite::Tcp(io) => Pin::new(io).poll_write(cx, buf),
            SocketWrite::Other(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            SocketWrite::Tcp(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            SocketWrite::Other(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            SocketWrite::Tcp(io) => io.is_write_vectored(),
            SocketWrite::Other(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SocketWrite::Tcp(io) => Pin::new(io).poll_flush(cx),
            SocketWrite::Other(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SocketWrite::Tcp(io) => Pin::new(io).poll_shutdown(cx),
            SocketWrite::Other(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}

impl SocketWrite {
    /// One non-blocking write of `slices` (a lone one with a plain write, which the
    /// kernel takes more cheaply than a one-slice `writev`) and, if the socket took
    /// them all, a flush. `all`: the slices are everything queued. Returns the bytes
    /// the socket took and whether everything queued is written and flushed.
    ///
    /// Outside the thread's cooperative budget (a fan-out writes to hundreds of
    /// connections in one pass) and with a waker that does nothing: what is left,
    /// refused or failed goes to the writer, which polls the socket with its own
    /// waker and meets the same answer.
    pub fn write_now(&mut self, slices: &[IoSlice<'_>], all: bool) -> (usize, bool) {
        let total: usize = slices.iter().map(|s| s.len()).sum();
        if let SocketWrite::Tcp(io) = self {
            let socket = SockRef::from(io.as_ref());
            let sent = match slices {
                [one] => socket.send(one),
                _ => socket.send_vectored(slices),
            };
            // Nothing to flush on TCP.
            return match sent {
                Ok(written) => (written, all && written == total),
                Err(_) => (0, false),
            };
        }
        let mut written = 0;
        let write = poll_fn(|cx| {
            let mut socket = Pin::new(&mut *self);
            written = ready!(match slices {
                [one] => socket.as_mut().poll_write(cx, one),
                _ => socket.as_mut().poll_write_vectored(cx, slices),
            })?;
            if written < total || !all {
                return Poll::Ready(Ok(false));
            }
            socket.poll_flush(cx).map_ok(|()| true)
        });
        let flushed = poll_once(write);
        (written, flushed)
    }
}

/// Polls a non-blocking write once, outside the thread's cooperative budget and with
/// a waker that does nothing: whether it wrote and flushed everything.
fn poll_once(write: impl Future<Output = std::io::Result<bool>>) -> bool {
    let mut write = std::pin::pin!(tokio::task::unconstrained(write));
    let mut cx = Context::from_waker(Waker::noop());
    matches!(write.as_mut().poll(&mut cx), Poll::Ready(Ok(true)))
}
