//! The bytes waiting to be written on one WebSocket connection.
//!
//! The session appends complete WebSocket messages here directly (no actor message
//! per frame). Two kinds of drain take them: Volley's own connection writer (when the
//! server was built by [`crate::HttpServer`]) takes everything queued at once and
//! writes it in one vectored write, counting each message off the backlog once the
//! socket has taken all of it; under a plain actix-web server, the HTTP/1 dispatcher
//! takes them one by one as the body of the upgraded response. The queue itself is not
//! bounded: its writers are, through the [`Backlog`] they count before they push
//! (`Config::max_send_backlog`), and the drain counts each message off.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

/// Bytes handed to the transport that its peer has not taken yet. The session adds,
/// the transport subtracts, both `queued_size`; past the limit the client is a slow
/// consumer.
pub type Backlog = Arc<AtomicUsize>;

/// What a frame weighs in the backlog: its bytes plus the message that carries it
/// (actix envelope and queue node, or a polling queue entry), so that a flood of tiny
/// frames is bounded in memory too, not only in payload bytes.
pub(crate) fn queued_size(frame: &Bytes) -> usize {
    frame.len() + 64
}

/// One connection's queue of outgoing messages, shared by its session (which pushes)
/// and its transport (which drains).
#[derive(Debug)]
pub struct SendQueue {
    state: Mutex<State>,
    backlog: Backlog,
}

#[derive(Debug, Default)]
struct State {
    messages: VecDeque<Bytes>,
    /// Nothing more will be pushed: the drain ends once the queue is empty.
    finished: bool,
    /// The connection is gone: pushes are dropped.
    gone: bool,
    /// The drain, waiting for a message.
    waker: Option<Waker>,
}

impl SendQueue {
    /// An empty queue whose drain counts messages off `backlog`.
    pub fn new(backlog: Backlog) -> Self {
        SendQueue {
            state: Mutex::new(State::default()),
            backlog,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent queue (every change is
        // one push or pop): carry on with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends one complete WebSocket message; the caller has counted it in the
    /// backlog (`queued_size`). Dropped (and counted off) once the queue is finished
    /// or its connection gone.
    pub fn push(&self, message: Bytes) {
        let mut state = self.state();
        if state.finished || state.gone {
            drop(state);
            self.backlog
                .fetch_sub(queued_size(&message), Ordering::Relaxed);
            return;
        }
        state.messages.push_back(message);
        // Only the first push after the drain went idle wakes it: the rest are taken
        // in the same pass, and written together.
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Ends the stream once what is queued is written (the connection then closes).
    pub fn finish(&self) {
        let mut state = self.state();
        state.finished = true;
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The connection is gone: drops what is queued and whatever comes later.
    pub fn gone(&self) {
        let dropped: usize = {
            let mut state = self.state();
            state.gone = true;
            state.messages.drain(..).map(|m| queued_size(&m)).sum()
        };
        self.backlog.fetch_sub(dropped, Ordering::Relaxed);
    }

    /// Moves everything queued into `batch` (which the caller has emptied), without
    /// counting it off the backlog: the writer does that as the socket takes each
    /// message ([`SendQueue::written`]). `Ready(false)` once finished and drained.
    pub fn poll_batch(&self, cx: &mut Context<'_>, batch: &mut VecDeque<Bytes>) -> Poll<bool> {
        let mut state = self.state();
        if !state.messages.is_empty() {
            // The batch is empty: swapping hands the writer the whole queue, and the
            // queue the batch's spare capacity, without moving a message.
            std::mem::swap(&mut state.messages, batch);
            return Poll::Ready(true);
        }
        if state.finished || state.gone {
            return Poll::Ready(false);
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The socket has taken all of `message` (from a batch): counts it off.
    pub fn written(&self, message: &Bytes) {
        self.backlog
            .fetch_sub(queued_size(message), Ordering::Relaxed);
    }

    /// The next message to write; `None` once finished and drained.
    pub fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut state = self.state();
        if let Some(message) = state.messages.pop_front() {
            drop(state);
            self.backlog
                .fetch_sub(queued_size(&message), Ordering::Relaxed);
            return Poll::Ready(Some(message));
        }
        if state.finished || state.gone {
            return Poll::Ready(None);
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use futures_util::task::noop_waker_ref;

    use super::*;

    #[test]
    fn drains_in_order_then_ends_when_finished() {
        let backlog = Arc::new(AtomicUsize::new(0));
        let queue = SendQueue::new(backlog.clone());
        let mut cx = Context::from_waker(noop_waker_ref());
        assert!(queue.poll_next(&mut cx).is_pending());
        for m in [&b"a"[..], b"bc"] {
            let m = Bytes::copy_from_slice(m);
            backlog.fetch_add(queued_size(&m), Ordering::Relaxed);
            queue.push(m);
        }
        queue.finish();
        assert_eq!(
            queue.poll_next(&mut cx),
            Poll::Ready(Some(Bytes::from("a")))
        );
        assert_eq!(
            queue.poll_next(&mut cx),
            Poll::Ready(Some(Bytes::from("bc")))
        );
        assert_eq!(queue.poll_next(&mut cx), Poll::Ready(None));
        assert_eq!(backlog.load(Ordering::Relaxed), 0);
        // Finished: a late push is counted off, not queued.
        backlog.fetch_add(queued_size(&Bytes::from("d")), Ordering::Relaxed);
        queue.push(Bytes::from("d"));
        assert_eq!(backlog.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_batch_takes_everything_queued_and_counts_off_as_written() {
        let backlog = Arc::new(AtomicUsize::new(0));
        let queue = SendQueue::new(backlog.clone());
        let mut cx = Context::from_waker(noop_waker_ref());
        let mut batch = VecDeque::new();
        assert!(queue.poll_batch(&mut cx, &mut batch).is_pending());
        for m in ["a", "bc", "def"] {
            let m = Bytes::from(m);
            backlog.fetch_add(queued_size(&m), Ordering::Relaxed);
            queue.push(m);
        }
        assert_eq!(queue.poll_batch(&mut cx, &mut batch), Poll::Ready(true));
        assert_eq!(batch, ["a", "bc", "def"].map(Bytes::from));
        // Taken is not written: the backlog still holds all three.
        assert_eq!(backlog.load(Ordering::Relaxed), 6 + 3 * 64);
        for m in batch.drain(..) {
            queue.written(&m);
        }
        assert_eq!(backlog.load(Ordering::Relaxed), 0);
        queue.finish();
        assert_eq!(queue.poll_batch(&mut cx, &mut batch), Poll::Ready(false));
    }

    #[test]
    fn a_gone_connection_gives_its_backlog_back() {
        let backlog = Arc::new(AtomicUsize::new(0));
        let queue = SendQueue::new(backlog.clone());
        let m = Bytes::from("abc");
        backlog.fetch_add(queued_size(&m), Ordering::Relaxed);
        queue.push(m);
        queue.gone();
        assert_eq!(backlog.load(Ordering::Relaxed), 0);
        let mut cx = Context::from_waker(noop_waker_ref());
        assert_eq!(queue.poll_next(&mut cx), Poll::Ready(None));
    }
}
