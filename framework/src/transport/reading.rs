//! The clients' frames of a thread's WebSocket connections, read in one loop.
//!
//! Each io thread runs one reading task for all of its native WebSocket connections
//! (started with the thread's first one). A connection's socket that becomes readable
//! puts that connection on the loop's ready list; the loop reads its frames and hands
//! an event or an acknowledgement straight to the session the connection carries
//! ([`SessionRecipient::frame`], where the handler runs), a heartbeat's pong to the
//! connection's pulse. No task of its own, no actor context and no mailbox is polled
//! per frame: a game's input costs its `recv`, the loop's turn and the handler.
//!
//! Everything else a client sends (the opening `Hello` or `Resume`, a frame while no
//! session is attached, WebSocket pings and closes, a broken frame, the end of the
//! stream) is handed to the connection's actor ([`super::websocket::WsTransport`]),
//! which stays what the connection is to the rest of the server: what its session
//! writes to and closes. While the actor has such a message to handle, the
//! connection's reading waits: the client's frames are taken in the order it sent
//! them, at most one waits in the actor's mailbox, and a client that sends while its
//! session resumes is not read meanwhile (TCP holds it back, as before the loop).
//! When the actor stops, the reading ends and lets the socket go.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use actix::prelude::*;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::io::AsyncRead;

use super::ws_read::{ClientFrames, ClientMessage, ReadError};
use crate::protocol::Frame;
use crate::room::Gauge;
use crate::session::{SendQueue, SessionRecipient, Shared, TransportId};

/// The most messages one connection's reading takes in one turn of the loop before
/// it lets the thread's other connections and tasks run.
const TURN: usize = 32;

/// What the reading hands a connection's actor.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) enum Read {
    /// A message (or why the stream stopped) for the actor to handle.
    Message(Result<ClientMessage, ReadError>),
    /// The session did not take a frame: more of them wait for it than the connection
    /// may have waiting (`Config::max_mailbox`).
    TooMany,
    /// The client's stream ended between two frames.
    Finished,
}

/// What a connection's actor and its reading share, on the connection's thread.
pub(crate) struct ReadSide {
    pub(crate) id: TransportId,
    pub(crate) shared: Arc<Shared>,
    /// What the connection has to write; its pulse takes the heartbeat's pongs.
    pub(crate) queue: Arc<SendQueue>,
    /// Frames posted to the session and not handled yet.
    pub(crate) inbound: Arc<Gauge>,
    /// The session the connection carries, once attached (set by the actor).
    pub(crate) session: RefCell<Option<SessionRecipient>>,
    /// A message handed to the actor and not handled yet: the reading waits.
    handed: Cell<bool>,
    /// The actor stopped: the reading ends.
    closed: Cell<bool>,
    /// Wakes the reading (for the actor's answer, or to end).
    waker: RefCell<Option<Waker>>,
}

impl ReadSide {
    pub(crate) fn new(
        id: TransportId,
        shared: Arc<Shared>,
        queue: Arc<SendQueue>,
        inbound: Arc<Gauge>,
    ) -> Rc<Self> {
        Rc::new(ReadSide {
            id,
            shared,
            queue,
            inbound,
            session: RefCell::new(None),
            handed: Cell::new(false),
            closed: Cell::new(false),
            waker: RefCell::new(None),
        })
    }

    /// The actor handled what it was handed: the reading goes on.
    pub(crate) fn handled(&self) {
        self.handed.set(false);
        self.wake();
    }

    /// The actor stopped: the reading ends, and the socket with it.
    pub(crate) fn close(&self) {
        self.closed.set(true);
        self.wake();
    }

    fn wake(&self) {
        if let Some(waker) = self.waker.borrow().as_ref() {
            waker.wake_by_ref();
        }
    }

    /// Keeps the waker the reading is polled with (the same one every turn: the
    /// loop's entry for the connection).
    fn register(&self, cx: &Context<'_>) {
        let mut waker = self.waker.borrow_mut();
        if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *waker = Some(cx.waker().clone());
        }
    }

    /// Takes `message` here when it is a frame for the attached session (or the
    /// answer to its ping); what is left is the actor's.
    pub(crate) fn take(&self, message: Result<ClientMessage, ReadError>) -> Option<Read> {
        let Ok(ClientMessage::Binary(Ok(frame), size)) = message else {
            return Some(Read::Message(message));
        };
        // Borrowed while the handler runs: only the actor changes it, never from
        // inside a handler.
        let session = self.session.borrow();
        let Some(session) = session.as_ref() else {
            return Some(Read::Message(Ok(ClientMessage::Binary(Ok(frame), size))));
        };
        if let Frame::Pong { last_seq } = frame {
            // The answer to the session's ping, acknowledging nothing new: the
            // heartbeat is all it changes, and the pulse holds that.
            if let Some(rtt) = self.queue.pulse().answer(last_seq, Instant::now()) {
                let metrics = &self.shared.metrics;
                metrics.frames_in.inc();
                metrics.bytes_in.inc_by(size as u64);
                metrics.ping_rtt.observe(rtt.as_secs_f64());
                return None;
            }
        }
        if session.frame(self.id, frame, size, &self.inbound) {
            None
        } else {
            Some(Read::TooMany)
        }
    }
}

/// Reads a connection's frames on the thread's loop, for as long as its actor lives
/// and the client's stream does.
pub(crate) fn read<R>(frames: ClientFrames<R>, side: Rc<ReadSide>, actor: Recipient<Read>)
where
    R: AsyncRead + Unpin + 'static,
{
    let reading = Reading {
        frames,
        side,
        actor,
    };
    Loop::add(Box::pin(reading));
}

/// One connection's reading.
struct Reading<R> {
    frames: ClientFrames<R>,
    side: Rc<ReadSide>,
    actor: Recipient<Read>,
}

impl<R: AsyncRead + Unpin> Future for Reading<R> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.side.register(cx);
        for _ in 0..TURN {
            let side = &*this.side;
            if side.closed.get() {
                return Poll::Ready(());
            }
            if side.handed.get() {
                return Poll::Pending;
            }
            let Poll::Ready(message) = this.frames.poll_next_unpin(cx) else {
                return Poll::Pending;
            };
            let Some(message) = message else {
                this.actor.do_send(Read::Finished);
                return Poll::Ready(());
            };
            if let Some(read) = side.take(message) {
                side.handed.set(true);
                this.actor.do_send(read);
            }
        }
        // A client that keeps the socket full: the others get their turn first.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

type Boxed = Pin<Box<dyn Future<Output = ()>>>;

/// The thread's connections being read, as the loop's task holds them.
struct Loop {
    readings: FuturesUnordered<Boxed>,
    joining: Rc<Joining>,
}

/// Readings added since the loop's last turn, and how to wake it.
#[derive(Default)]
struct Joining {
    new: RefCell<Vec<Boxed>>,
    waker: RefCell<Option<Waker>>,
}

thread_local! {
    /// The thread's loop, while its task runs.
    static JOINING: RefCell<Option<Rc<Joining>>> = const { RefCell::new(None) };
}

impl Loop {
    /// Reads `reading` on this thread's loop, started with the thread's first one.
    fn add(reading: Boxed) {
        let joining = JOINING.with(|slot| {
            let mut slot = slot.borrow_mut();
            if let Some(joining) = slot.as_ref() {
                return joining.clone();
            }
            let joining = Rc::new(Joining::default());
            *slot = Some(joining.clone());
            drop(tokio::task::spawn_local(Loop {
                readings: FuturesUnordered::new(),
                joining: joining.clone(),
            }));
            joining
        });
        joining.new.borrow_mut().push(reading);
        let waker = joining.waker.borrow();
        if let Some(waker) = waker.as_ref() {
            waker.wake_by_ref();
        }
    }
}

impl Future for Loop {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        {
            let mut waker = this.joining.waker.borrow_mut();
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
        }
        loop {
            let new = std::mem::take(&mut *this.joining.new.borrow_mut());
            this.readings.extend(new);
            match this.readings.poll_next_unpin(cx) {
                // A connection's reading ended.
                Poll::Ready(Some(())) => {}
                // None left (the set takes new ones all the same).
                Poll::Ready(None) | Poll::Pending => {
                    if this.joining.new.borrow().is_empty() {
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        // The thread's runtime is going away: a later runtime on the thread starts a
        // loop of its own.
        let _ = JOINING.try_with(|slot| {
            let mut slot = slot.borrow_mut();
            if slot.as_ref().is_some_and(|j| Rc::ptr_eq(j, &self.joining)) {
                *slot = None;
            }
        });
    }
}
