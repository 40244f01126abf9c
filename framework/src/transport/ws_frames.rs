//! The two byte streams of an upgraded WebSocket connection: the server's, drained
//! from the connection's [`SendQueue`] as complete, already framed messages, and, for
//! the Socket.IO endpoint, the client's, decoded with actix-http's codec
//! ([`Incoming`]; the native protocol reads its own, see [`super::ws_read`]).
//!
//! Two ways to get them. Under Volley's own server ([`crate::HttpServer`]) the
//! connection leaves actix-http's HTTP/1 dispatcher at the upgrade: the transport
//! reads the socket ([`super::ws_read`], or [`ReadChunks`] for Socket.IO) and the
//! [`Writer`] task writes every message queued since its last write in one vectored
//! write, straight from the shared bytes of each frame (no copy), with no buffer kept
//! while the connection is idle. Under a plain actix-web `HttpServer` (the route of
//! `Volley::configure`) the dispatcher keeps the connection: the request body is the
//! client's bytes and [`Outgoing`] the response body, which the dispatcher copies
//! into its 8 KiB write buffer (and holds an 8 KiB read buffer) for the connection's
//! whole life.
//!
//! Why not actix-web-actors' `WebsocketContext`: it re-frames every message it is
//! given into its own buffer, a copy per recipient of a broadcast, and its actor only
//! runs when the HTTP layer polls the response.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use actix::prelude::*;
use actix_codec::Decoder;
use actix_http::ws::{Codec, Frame, ProtocolError};
use actix_web::error::PayloadError;
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::session::{Batch, SendQueue, SocketWrite, Starter, WriterTask};

/// The client's frames, decoded from the bytes of the request body.
pub(crate) struct Incoming<S> {
    bytes: S,
    codec: Codec,
    buf: BytesMut,
    eof: bool,
}

impl<S> Incoming<S> {
    pub(crate) fn new(bytes: S, max_frame_size: usize) -> Self {
        Incoming {
            bytes,
            codec: Codec::new().max_size(max_frame_size),
            buf: BytesMut::new(),
            eof: false,
        }
    }
}

impl<S> Stream for Incoming<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Frame, ProtocolError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        while !this.eof {
            match Pin::new(&mut this.bytes).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => this.buf.extend_from_slice(&chunk),
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Some(Err(ProtocolError::Io(io::Error::other(
                        e.to_string(),
                    )))))
                }
                Poll::Ready(None) => this.eof = true,
                Poll::Pending => break,
            }
        }
        let decoded = this.codec.decode(&mut this.buf);
        if this.buf.is_empty() && this.buf.capacity() > 0 {
            // Idle connections keep no buffer: the next chunk allocates what it needs.
            this.buf = BytesMut::new();
        }
        match decoded {
            Ok(Some(frame)) => Poll::Ready(Some(Ok(frame))),
            Ok(None) if this.eof => Poll::Ready(None),
            Ok(None) => Poll::Pending,
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }
}

/// The connection is gone (its response body was dropped by the HTTP layer).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ConnectionGone;

/// The response body of an upgraded connection: the messages of its [`SendQueue`],
/// as they are. Dropped by the HTTP layer when the connection ends, for whatever
/// reason; it then tells the transport, whose request stream may never end.
pub(crate) struct Outgoing {
    queue: Arc<SendQueue>,
    transport: Recipient<ConnectionGone>,
}

impl Outgoing {
    pub(crate) fn new(queue: Arc<SendQueue>, transport: Recipient<ConnectionGone>) -> Self {
        Outgoing { queue, transport }
    }
}

impl Stream for Outgoing {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.queue.poll_next(cx).map(|message| message.map(Ok))
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        self.queue.gone();
        self.transport.do_send(ConnectionGone);
    }
}

/// How much one read takes from the socket at most.
pub(super) const READ_CHUNK: usize = 4096;

/// The client's bytes, read from the socket of a connection that left the HTTP/1
/// dispatcher, as chunks for the edge guard and [`Incoming`]. Nothing is kept between
/// reads: each read lands in a stack buffer and becomes a chunk of its own size.
pub(crate) struct ReadChunks<R> {
    io: R,
    /// What the HTTP layer had already read past the upgrade request.
    first: Option<Bytes>,
}

impl<R> ReadChunks<R> {
    pub(crate) fn new(io: R, first: Bytes) -> Self {
        ReadChunks {
            io,
            first: (!first.is_empty()).then_some(first),
        }
    }
}

impl<R: AsyncRead + Unpin> Stream for ReadChunks<R> {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        let mut space = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut buf = ReadBuf::uninit(&mut space);
        match ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf)) {
            Ok(()) if buf.filled().is_empty() => Poll::Ready(None),
            Ok(()) => {
                crate::pacing::busy();
                Poll::Ready(Some(Ok(Bytes::copy_from_slice(buf.filled()))))
            }
            Err(e) => Poll::Ready(Some(Err(PayloadError::Io(e)))),
        }
    }
}

/// The most messages one vectored write hands the kernel (Linux takes up to 1024).
const MAX_IOVECS: usize = 64;

/// Writes a connection's [`SendQueue`] to its socket: everything queued since the
/// last write goes out in one vectored write, each message from the bytes it was
/// framed in (a broadcast's frame is shared by all its recipients, never copied). A
/// task of its own, so that what is queued when the transport actor stops (a `Close`
/// frame, the WebSocket close) is still written; the socket is shut down once the
/// queue is finished and written.
///
/// It runs only while there is something to write: with nothing left it parks the
/// socket in the queue, where a message pushed onto the empty queue is written at
/// once by its pusher, and ends; the queue starts a new writer when the socket does
/// not take a message at once, or when the connection finishes (see [`SendQueue`]).
/// When the socket fails the writer drops what is queued ([`SendQueue::gone`]); the
/// transport learns it from the same socket, whose reads fail too.
pub(crate) struct Writer {
    /// `None` once parked in the queue.
    io: Option<SocketWrite>,
    queue: Arc<SendQueue>,
    /// Taken from the queue, not yet all written; the first one from `offset` on.
    batch: VecDeque<Bytes>,
    offset: usize,
}

impl Writer {
    pub(crate) fn new(io: SocketWrite, queue: Arc<SendQueue>) -> Self {
        Writer {
            io: Some(io),
            queue,
            batch: VecDeque::new(),
            offset: 0,
        }
    }

    /// Hands a connection's writing half to its queue: parked there, for the queue to
    /// write on and start a writer for when one is needed (see `SendQueue::park`),
    /// on this thread; outside an arbiter (never, under actix-server) a writer that
    /// stays.
    pub(crate) fn hand_over(queue: &Arc<SendQueue>, io: SocketWrite) {
        match actix::Arbiter::try_current() {
            Some(arbiter) => queue.park(
                io,
                Starter {
                    writer: Writer::task,
                    thread: std::thread::current().id(),
                    arbiter,
                },
            ),
            None => drop(tokio::task::spawn_local(Writer::new(io, queue.clone()))),
        }
    }

    /// A writer as a task the queue starts (see [`crate::session::Starter`]).
    pub(crate) fn task(queue: Arc<SendQueue>, io: SocketWrite) -> WriterTask {
        Box::pin(Writer::new(io, queue))
    }

    /// Counts `n` written bytes off the batch.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.batch.front() else {
                return;
            };
            let left = front.len() - self.offset;
            if n < left {
                self.offset += n;
                return;
            }
            n -= left;
            self.offset = 0;
            if let Some(done) = self.batch.pop_front() {
                self.queue.written(&done);
            }
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.batch.is_empty() {
                // Back from the queue (a writer that waits), the socket first
                // finishes what the pushers wrote into it (a TLS stream buffers),
                // then takes more.
                self.queue.unpark(&mut self.io);
                let Some(io) = self.io.as_mut() else {
                    return Poll::Ready(Ok(())); // the connection is gone
                };
                ready!(Pin::new(io).poll_flush(cx))?;
                match ready!(self.queue.poll_batch(cx, &mut self.batch, &mut self.io)) {
                    Batch::Taken => {}
                    Batch::Done => {
                        return match self.io.as_mut() {
                            Some(io) => Pin::new(io).poll_shutdown(cx),
                            None => Poll::Ready(Ok(())),
                        };
                    }
                    // Idle: the socket is in the queue, and this task ends.
                    Batch::Parked => return Poll::Ready(Ok(())),
                }
            }
            let Some(io) = self.io.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (i, message) in self.batch.iter().take(MAX_IOVECS).enumerate() {
                let from = if i == 0 { self.offset } else { 0 };
                slices[i] = IoSlice::new(&message[from..]);
                count += 1;
            }
            // One message goes out with a plain write, which the kernel takes more
            // cheaply than a one-slice `writev` (a `send`, not the vectored-file path).
            let io = Pin::new(io);
            let n = if count == 1 {
                ready!(io.poll_write(cx, &slices[0]))?
            } else {
                ready!(io.poll_write_vectored(cx, &slices[..count]))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.advance(n);
        }
    }
}

impl Future for Writer {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Err(e) = ready!(self.poll_write(cx)) {
            tracing::debug!(error = %e, "connection lost while writing");
            self.queue.gone();
        }
        Poll::Ready(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        for message in self.batch.drain(..) {
            self.queue.written(&message);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::session::{queued_size, Starter};

    /// Writers started by the queue of the test below.
    static STARTED: AtomicUsize = AtomicUsize::new(0);

    fn counted(queue: Arc<SendQueue>, io: SocketWrite) -> WriterTask {
        STARTED.fetch_add(1, Ordering::Relaxed);
        Writer::task(queue, io)
    }

    async fn read(peer: &mut tokio::io::DuplexStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        let read = tokio::time::timeout(Duration::from_secs(5), peer.read_exact(&mut buf));
        read.await.expect("written in time").expect("read");
        buf
    }

    #[actix_rt::test]
    async fn a_writer_runs_only_while_the_connection_is_behind() {
        let queue = SendQueue::shared();
        let backlog = queue.backlog();
        // A pipe that takes 8 bytes before it would block.
        let (socket, mut peer) = tokio::io::duplex(8);
        let starter = Starter {
            writer: counted,
            thread: std::thread::current().id(),
            arbiter: actix_rt::Arbiter::current(),
        };
        queue.park(SocketWrite::Other(Box::new(socket)), starter);
        let push = |m: &'static str| {
            let m = Bytes::from(m);
            backlog.fetch_add(queued_size(&m), Ordering::Relaxed);
            queue.push(m);
        };
        push("abcde");
        push("fghijk");
        assert_eq!(
            STARTED.load(Ordering::Relaxed),
            0,
            "both wait for the thread's flush, which writes them together"
        );
        for _ in 0..100 {
            if STARTED.load(Ordering::Relaxed) == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            STARTED.load(Ordering::Relaxed),
            1,
            "8 of 11 bytes taken: a writer for the rest"
        );
        assert_eq!(read(&mut peer, 8).await, b"abcdefgh");
        assert_eq!(read(&mut peer, 3).await, b"ijk");
        // Caught up: the writer parks the socket and ends; the next message is
        // written by the thread's flush again, with no writer.
        let mut parked = None;
        for _ in 0..100 {
            queue.unpark(&mut parked);
            if parked.is_some() {
                break;
            }
            tokio::task::yield_now().await;
        }
        let Some(socket) = parked else {
            panic!("the writer did not park the socket")
        };
        let starter = Starter {
            writer: counted,
            thread: std::thread::current().id(),
            arbiter: actix_rt::Arbiter::current(),
        };
        queue.park(socket, starter);
        push("l");
        assert_eq!(read(&mut peer, 1).await, b"l");
        assert_eq!(STARTED.load(Ordering::Relaxed), 1);
        assert_eq!(backlog.load(Ordering::Relaxed), 0);
        // Finishing starts a writer to shut the socket down: the peer reads the end.
        queue.finish();
        assert_eq!(STARTED.load(Ordering::Relaxed), 2);
        let mut rest = Vec::new();
        let end = tokio::time::timeout(Duration::from_secs(5), peer.read_to_end(&mut rest));
        assert_eq!(end.await.expect("shut down in time").expect("read"), 0);
    }
}
