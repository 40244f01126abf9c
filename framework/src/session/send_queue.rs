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
//!
//! **Written by the thread when the writer is idle.** Under Volley's own server the
//! writer parks the socket's writing half here when it has nothing to write. A message
//! pushed onto an empty queue with the socket parked, on the connection's thread, is
//! then queued and the queue listed for the thread's *flush*, a task that runs once the
//! current one yields (the thread's fan-out pass, a session's handler) and writes each
//! listed queue onto its socket in one non-blocking write: a lone message with a plain
//! `send`, several (more broadcasts handled in the same turn, as under load) with one
//! `writev`. A game state or a chat message to a client that keeps up costs one `send`
//! and no per-connection task wake-up; under load a connection's messages coalesce.
//! A push from another thread writes at once instead. Whatever the socket does not
//! take (it is full, or would block) stays queued and a writer is started for it,
//! which then waits for the socket itself: the order of the messages and the
//! backlog's count are the same either way.
//!
//! **No writer task while idle.** With a [`Starter`] (Volley's own server) the writer
//! task ends once it has parked the socket, and the queue starts a new one, on the
//! connection's thread, only when a connection falls behind or finishes: an idle
//! connection costs no task for its writes (a task is a few hundred bytes).

use std::collections::VecDeque;
use std::future::Future;
use std::io::IoSlice;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::thread::ThreadId;

use actix::ArbiterHandle;

use bytes::Bytes;

pub(crate) use super::socket_write::SocketWrite;
use super::Pulse;

/// Bytes handed to the transport that its peer has not taken yet. The session adds,
/// the transport subtracts, both `queued_size`; past the limit the client is a slow
/// consumer.
pub type Backlog = Arc<AtomicUsize>;

/// What a frame weighs in the backlog: its bytes plus the message that carries it
/// (actix envelope and queue node, or a polling queue entry), so that a flood of tiny
/// frames is bounded in memory too, not only in payload bytes.
pub(crate) fn queued_size(frame: &[u8]) -> usize {
    frame.len() + 64
}

/// A writer task for a queue's socket, as its transport makes one.
pub(crate) type WriterTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How a queue starts a writer for its parked socket, and where: the writer runs on
/// the connection's thread, whichever thread pushed.
pub(crate) struct Starter {
    pub writer: fn(Arc<SendQueue>, SocketWrite) -> WriterTask,
    pub thread: ThreadId,
    pub arbiter: ArbiterHandle,
}

/// What the writer found in the queue ([`SendQueue::poll_batch`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Batch {
    /// Messages to write, moved into the writer's batch.
    Taken,
    /// Finished (or gone) and drained: shut the socket down.
    Done,
    /// Nothing to write: the socket is parked here, and the writer's task may end (a
    /// new one is started when needed).
    Parked,
}

/// One connection's queue of outgoing messages, shared by its session (which pushes)
/// and its transport (which drains).
// In this order: the backlog (counted by every push and write) on the cache line of
// the lock, not in an allocation of its own.
#[repr(C)]
pub struct SendQueue {
    /// Bytes queued and not written yet ([`queued_size`] each): the session adds
    /// before it pushes, the writers subtract.
    backlog: AtomicUsize,
    /// The connection's heartbeat (here because the queue is what the connection and
    /// its session already share; the transport takes the pong).
    pulse: Pulse,
    state: Mutex<State>,
    /// This queue, for the writers it starts.
    this: Weak<SendQueue>,
    /// The client's address as it is (the limits count it by network), if known: here, as
    /// the pulse, because the queue is what the connection and its session already
    /// share (a field of the connection's actor would cost each connection more).
    client: Option<IpAddr>,
}

impl std::fmt::Debug for SendQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendQueue").finish_non_exhaustive()
    }
}

/// The messages of a queue, in order. The first sits in place, so that a lone message
/// (a game state, a chat line to a client that keeps up: the common case) is queued
/// and written without an allocation; a buffer is made only for the messages behind
/// it, and given back once they are written.
#[derive(Default)]
struct Messages {
    first: Option<Bytes>,
    rest: VecDeque<Bytes>,
}

impl Messages {
    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    fn push_back(&mut self, message: Bytes) {
        match self.first {
            None => self.first = Some(message),
            Some(_) => self.rest.push_back(message),
        }
    }

    fn front_mut(&mut self) -> Option<&mut Bytes> {
        self.first.as_mut()
    }

    fn pop_front(&mut self) -> Option<Bytes> {
        let first = self.first.take();
        self.first = self.rest.pop_front();
        if self.rest.is_empty() && self.rest.capacity() > 0 {
            // An idle connection holds no buffer (the next messages make one).
            self.rest = VecDeque::new();
        }
        first
    }

    fn iter(&self) -> impl Iterator<Item = &Bytes> {
        self.first.iter().chain(self.rest.iter())
    }

    /// Moves every message, in order, to the back of `into`.
    fn move_into(&mut self, into: &mut VecDeque<Bytes>) {
        into.extend(self.first.take());
        into.append(&mut self.rest);
        self.rest = VecDeque::new();
    }
}

#[derive(Default)]
struct State {
    messages: Messages,
    /// Nothing more will be pushed: the drain ends once the queue is empty.
    finished: bool,
    /// The connection is gone: pushes are dropped.
    gone: bool,
    /// The drain, waiting for a message.
    waker: Option<Waker>,
    /// The socket, parked by the idle writer (see the module's doc); `None` while the
    /// writer holds it, or when the drain is not Volley's writer.
    parked: Option<SocketWrite>,
    /// Starts a writer for the parked socket; without one the writer stays, waiting.
    starter: Option<Starter>,
    /// Messages wait for the thread's flush (see [`SendQueue::push`]) with the
    /// socket parked: later pushes only queue theirs.
    flush_due: bool,
}

impl Default for SendQueue {
    fn default() -> Self {
        SendQueue {
            backlog: AtomicUsize::new(0),
            state: Mutex::new(State::default()),
            pulse: Pulse::default(),
            this: Weak::new(),
            client: None,
        }
    }
}

impl SendQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// [`SendQueue::new`], shared; such a queue can start writers ([`SendQueue::park`]).
    pub(crate) fn shared() -> Arc<Self> {
        SendQueue::for_client(None)
    }

    /// [`SendQueue::shared`], for a connection from `client` (see
    /// [`SendQueue::client`]).
    pub(crate) fn for_client(client: Option<IpAddr>) -> Arc<Self> {
        Arc::new_cyclic(|this| SendQueue {
            this: this.clone(),
            client,
            ..SendQueue::new()
        })
    }

    /// The address of the connection's client (see `TransportLink::address`).
    pub fn client(&self) -> Option<IpAddr> {
        self.client
    }

    /// Parks the socket of a connection that has nothing to write yet; `starter`
    /// starts its writer whenever one is needed (see the module's doc).
    pub(crate) fn park(&self, socket: SocketWrite, starter: Starter) {
        let mut state = self.state();
        state.starter = Some(starter);
        if state.gone {
            return;
        }
        state.parked = Some(socket);
        if !state.messages.is_empty() || state.finished {
            self.start_writer(state);
        }
    }

    /// Starts a writer with the parked socket, if there is one and a starter: on
    /// this thread when it is the connection's, else on the connection's thread.
    /// Returns the lock's guard when nothing was started.
    fn start_writer<'a>(&self, mut state: MutexGuard<'a, State>) -> Option<MutexGuard<'a, State>> {
        if state.starter.is_none() || state.parked.is_none() {
            return Some(state);
        }
        let Some(this) = self.this.upgrade() else {
            return Some(state);
        };
        let fields = &mut *state;
        let (Some(starter), Some(socket)) = (&fields.starter, fields.parked.take()) else {
            return Some(state);
        };
        let task = (starter.writer)(this, socket);
        let here = std::thread::current().id() == starter.thread;
        let arbiter = (!here).then(|| starter.arbiter.clone());
        drop(state);
        match arbiter {
            None => drop(tokio::task::spawn_local(task)),
            // The connection's thread is gone (the server is stopping): so is it.
            Some(arbiter) => drop(arbiter.spawn(task)),
        }
        None
    }

    /// The connection's heartbeat.
    pub fn pulse(&self) -> &Pulse {
        &self.pulse
    }

    /// What is queued and not written yet, as the connection's writers count it.
    pub fn backlog(&self) -> &AtomicUsize {
        &self.backlog
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent queue (every change is
        // one push or pop): carry on with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the caller runs on the thread of this queue's connection (its writer's).
    fn on_connection_thread(&self, state: &State) -> bool {
        state
            .starter
            .as_ref()
            .is_some_and(|s| s.thread == std::thread::current().id())
    }

    /// The thread's flush: writes what the queue holds onto its parked socket in one
    /// write (a vectored one for several messages); what the socket does not take
    /// goes to a writer, which waits for the socket.
    fn flush(&self) {
        let mut state = self.state();
        state.flush_due = false;
        let fields = &mut *state;
        let Some(socket) = fields.parked.as_mut() else {
            return; // a writer holds the socket (and the messages), or it is gone
        };
        if fields.messages.is_empty() {
            return;
        }
        let (mut written, flushed) = write_all_now(socket, &fields.messages);
        while let Some(front) = fields.messages.front_mut() {
            if written >= front.len() {
                written -= front.len();
                let size = queued_size(front);
                fields.messages.pop_front();
                self.backlog.fetch_sub(size, Ordering::Relaxed);
            } else {
                // The rest of it weighs what a message of its size does.
                self.backlog.fetch_sub(written, Ordering::Relaxed);
                *front = front.slice(written..);
                break;
            }
        }
        if !fields.messages.is_empty() || !flushed {
            self.wake_writer(state);
        }
    }

    /// Appends one complete WebSocket message; the caller has counted it in the
    /// backlog (`queued_size`). Dropped (and counted off) once the queue is finished
    /// or its connection gone.
    pub fn push(&self, mut message: Bytes) {
        let mut state = self.state();
        if state.finished || state.gone {
            drop(state);
            self.backlog
                .fetch_sub(queued_size(&message), Ordering::Relaxed);
            return;
        }
        if state.flush_due && state.parked.is_some() {
            // The thread's flush writes it with the others.
            state.messages.push_back(message);
            return;
        }
        if state.messages.is_empty() && state.parked.is_some() && self.on_connection_thread(&state)
        {
            if let Some(this) = self.this.upgrade() {
                // Deferred to the end of this thread's turn: whatever else is pushed
                // onto this connection meanwhile (more broadcasts under load) goes
                // out in the same write.
                state.messages.push_back(message);
                state.flush_due = true;
                drop(state);
                flush_later(this);
                return;
            }
        }
        if state.messages.is_empty() {
            if let Some(socket) = state.parked.as_mut() {
                let (written, flushed) = socket.write_now(&[IoSlice::new(&message)], true);
                if written == message.len() {
                    self.backlog
                        .fetch_sub(queued_size(&message), Ordering::Relaxed);
                    if !flushed {
                        // Taken but not flushed (a TLS stream's buffer): a writer
                        // flushes before it parks the socket again.
                        self.wake_writer(state);
                    }
                    return;
                }
                // The rest waits for the writer; what the socket took is counted
                // off now, so the rest weighs what a message of its size does.
                self.backlog.fetch_sub(written, Ordering::Relaxed);
                message = message.slice(written..);
            }
        }
        state.messages.push_back(message);
        // Only the first push after the drain went idle wakes it (or starts a
        // writer): the rest are taken in the same pass, and written together.
        self.wake_writer(state);
    }

    /// Gets the drain going: a writer started for the parked socket, or the waiting
    /// drain woken.
    fn wake_writer(&self, state: MutexGuard<'_, State>) {
        let Some(mut state) = self.start_writer(state) else {
            return;
        };
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
        self.wake_writer(state);
    }

    /// The connection is gone: drops what is queued and whatever comes later, and
    /// the socket if it is parked here.
    pub fn gone(&self) {
        let (dropped, parked, waker) = {
            let mut state = self.state();
            state.gone = true;
            let dropped: usize = state.messages.iter().map(|m| queued_size(m)).sum();
            state.messages = Messages::default();
            (dropped, state.parked.take(), state.waker.take())
        };
        self.backlog.fetch_sub(dropped, Ordering::Relaxed);
        drop(parked);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// A waiting writer takes back the socket it parked (`socket` stays `None` if the
    /// connection is gone meanwhile).
    pub(crate) fn unpark(&self, socket: &mut Option<SocketWrite>) {
        if socket.is_none() {
            *socket = self.state().parked.take();
        }
    }

    /// Moves everything queued into `batch` (which the caller has emptied), without
    /// counting it off the backlog: the writer does that as the socket takes each
    /// message ([`SendQueue::written`]). When there is nothing to take, the writer's
    /// `socket` (if given) is parked here, for the pushers to write at once; with a
    /// starter the writer may then end ([`Batch::Parked`]), else it waits to be woken.
    pub(crate) fn poll_batch(
        &self,
        cx: &mut Context<'_>,
        batch: &mut VecDeque<Bytes>,
        socket: &mut Option<SocketWrite>,
    ) -> Poll<Batch> {
        let mut state = self.state();
        if !state.messages.is_empty() {
            // The batch is empty: it takes the whole queue.
            state.messages.move_into(batch);
            return Poll::Ready(Batch::Taken);
        }
        if state.finished || state.gone {
            return Poll::Ready(Batch::Done);
        }
        if let Some(socket) = socket.take() {
            state.parked = Some(socket);
        }
        if state.starter.is_some() && state.parked.is_some() {
            return Poll::Ready(Batch::Parked);
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

thread_local! {
    /// The queues of this thread waiting for its flush, and whether one is scheduled.
    static FLUSH_DUE: std::cell::RefCell<(Vec<Arc<SendQueue>>, bool)> =
        const { std::cell::RefCell::new((Vec::new(), false)) };
}

/// Lists `queue` for this thread's flush, which runs once the current task (the
/// thread's fan-out pass, a session's handler) yields: every message pushed onto a
/// connection until then leaves in one write.
fn flush_later(queue: Arc<SendQueue>) {
    let schedule = FLUSH_DUE.with_borrow_mut(|(due, scheduled)| {
        due.push(queue);
        !std::mem::replace(scheduled, true)
    });
    if schedule {
        drop(tokio::task::spawn_local(async {
            let mut due = FLUSH_DUE.with_borrow_mut(|(due, scheduled)| {
                *scheduled = false;
                std::mem::take(due)
            });
            crate::pacing::busy();
            for queue in due.drain(..) {
                queue.flush();
            }
            // The list's buffer serves the next flush (one per turn under load),
            // unless a flush began one meanwhile.
            FLUSH_DUE.with_borrow_mut(|(next, _)| {
                if next.is_empty() {
                    *next = due;
                }
            });
        }));
    }
}

/// The most messages one write takes.
const MAX_SLICES: usize = 64;

/// One non-blocking write of the first messages of `messages` (up to
/// [`MAX_SLICES`]), as [`SocketWrite::write_now`] makes it. Returns the bytes taken
/// and whether every message is written and flushed.
fn write_all_now(socket: &mut SocketWrite, messages: &Messages) -> (usize, bool) {
    if let (Some(first), true) = (&messages.first, messages.rest.is_empty()) {
        // The common case: one message, without the array of slices to clear.
        return socket.write_now(&[IoSlice::new(first)], true);
    }
    let mut slices = [IoSlice::new(&[]); MAX_SLICES];
    let mut count = 0;
    for (slot, message) in slices.iter_mut().zip(messages.iter()) {
        *slot = IoSlice::new(message);
        count += 1;
    }
    socket.write_now(&slices[..count], count == messages.len())
}

#[cfg(test)]
mod tests {
    use futures_util::task::noop_waker_ref;

    use super::*;

    #[test]
    fn drains_in_order_then_ends_when_finished() {
        let queue = SendQueue::new();
        let backlog = queue.backlog();
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
        let queue = SendQueue::new();
        let backlog = queue.backlog();
        let mut cx = Context::from_waker(noop_waker_ref());
        let mut batch = VecDeque::new();
        assert!(queue
            .poll_batch(&mut cx, &mut batch, &mut None)
            .is_pending());
        for m in ["a", "bc", "def"] {
            let m = Bytes::from(m);
            backlog.fetch_add(queued_size(&m), Ordering::Relaxed);
            queue.push(m);
        }
        assert_eq!(
            queue.poll_batch(&mut cx, &mut batch, &mut None),
            Poll::Ready(Batch::Taken)
        );
        assert_eq!(batch, ["a", "bc", "def"].map(Bytes::from));
        // Taken is not written: the backlog still holds all three.
        assert_eq!(backlog.load(Ordering::Relaxed), 6 + 3 * 64);
        for m in batch.drain(..) {
            queue.written(&m);
        }
        assert_eq!(backlog.load(Ordering::Relaxed), 0);
        queue.finish();
        assert_eq!(
            queue.poll_batch(&mut cx, &mut batch, &mut None),
            Poll::Ready(Batch::Done)
        );
    }

    #[test]
    fn a_parked_socket_is_written_at_once_and_the_rest_waits_for_the_writer() {
        use tokio::io::AsyncReadExt;

        let queue = SendQueue::new();
        let backlog = queue.backlog();
        // A pipe that takes 8 bytes before it would block.
        let (socket, mut peer) = tokio::io::duplex(8);
        let mut cx = Context::from_waker(noop_waker_ref());
        let (mut batch, mut writer_socket) =
            (VecDeque::new(), Some(SocketWrite::Other(Box::new(socket))));
        assert!(queue
            .poll_batch(&mut cx, &mut batch, &mut writer_socket)
            .is_pending());
        assert!(writer_socket.is_none(), "parked in the queue");
        let push = |m: &'static str| {
            let m = Bytes::from(m);
            backlog.fetch_add(queued_size(&m), Ordering::Relaxed);
            queue.push(m);
        };
        push("abcde");
        assert_eq!(
            backlog.load(Ordering::Relaxed),
            0,
            "written, nothing queued"
        );
        // 3 bytes fit: the rest is queued for the writer, weighing its own size.
        push("fghijk");
        assert_eq!(backlog.load(Ordering::Relaxed), 3 + 64);
        // Behind a queued message nothing is written at once: order is kept.
        push("l");
        assert_eq!(backlog.load(Ordering::Relaxed), 3 + 64 + 1 + 64);
        let mut read = [0u8; 8];
        let mut read_all = std::pin::pin!(peer.read_exact(&mut read));
        assert!(matches!(
            read_all.as_mut().poll(&mut cx),
            Poll::Ready(Ok(8))
        ));
        assert_eq!(&read, b"abcdefgh");
        queue.unpark(&mut writer_socket);
        assert!(writer_socket.is_some(), "back with the writer");
        assert_eq!(
            queue.poll_batch(&mut cx, &mut batch, &mut writer_socket),
            Poll::Ready(Batch::Taken)
        );
        assert_eq!(batch, ["ijk", "l"].map(Bytes::from));
    }

    #[test]
    fn a_gone_connection_gives_its_backlog_back() {
        let queue = SendQueue::new();
        let backlog = queue.backlog();
        let m = Bytes::from("abc");
        backlog.fetch_add(queued_size(&m), Ordering::Relaxed);
        queue.push(m);
        queue.gone();
        assert_eq!(backlog.load(Ordering::Relaxed), 0);
        let mut cx = Context::from_waker(noop_waker_ref());
        assert_eq!(queue.poll_next(&mut cx), Poll::Ready(None));
    }
}
