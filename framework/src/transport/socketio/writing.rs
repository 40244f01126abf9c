//! What an Engine.IO connection writes ([`EioOut`]): the session's frames, translated
//! into Socket.IO records on the session's thread as it delivers them, and the
//! connection's own records, in one order, onto its carrier.
//!
//! Carried by a WebSocket, each record goes onto the connection's [`SendQueue`] as a
//! whole WebSocket text message, as the native transport's frames do: a connection
//! that keeps up gets it in the thread's flush (one `send`, or one `writev` for all
//! that its thread queued on it in a turn), with no message to the connection's actor
//! and no task woken per record. A broadcast's event is framed once for all its
//! recipients ([`SharedEvent::plain`]); a recipient that adds its own offset
//! (connection-state recovery) gets its record written into its thread's arena, a
//! buffer many records share: no allocation of its own. Carried by long polling,
//! records wait here for the next `GET`, and the connection is told once when the
//! first one comes.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix::WeakRecipient;
use bytes::{BufMut, Bytes, BytesMut};

use super::carrier::Notice;
use super::outbound::{Out, Outbound};
use crate::protocol::socketio::{finish_event, text_message, SharedEvent};
use crate::protocol::{self, text_header, Frame, WireFrame};
use crate::session::{queued_size, SendQueue, Translate};

/// One Engine.IO connection's writing side, shared by the connection's actor and its
/// session's link ([`crate::session::Sending::Translated`]).
pub(crate) struct EioOut {
    /// The WebSocket's messages, once one carries the connection; and, whatever the
    /// carrier, the backlog of everything queued (long-polling records too) and the
    /// heartbeat.
    queue: Arc<SendQueue>,
    state: Mutex<State>,
    /// The connection, told when records wait for a long poll or the session's
    /// frames ended with its close.
    connection: WeakRecipient<Notice>,
}

struct State {
    /// The session's side of the Socket.IO protocol (offsets, pings, recovery).
    outbound: Outbound,
    /// Records waiting for the next long poll, with their backlog bytes; `None` once
    /// a WebSocket carries the connection.
    polling: Option<VecDeque<(String, usize)>>,
    /// A [`Notice::Flush`] was posted and no poll has taken the records since: the
    /// next records need not post another (the next `GET` takes them all).
    flush_posted: bool,
    /// The connection is closing: the session's frames are not written any more.
    closed: bool,
}

impl EioOut {
    /// The writing side of a connection carried by long polling, or by a WebSocket
    /// from the start (`websocket`).
    pub fn new(recovery: bool, websocket: bool, connection: WeakRecipient<Notice>) -> Self {
        EioOut {
            queue: SendQueue::shared(),
            state: Mutex::new(State {
                outbound: Outbound::new(recovery),
                polling: (!websocket).then(VecDeque::new),
                flush_posted: false,
                closed: false,
            }),
            connection,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every change is one step: a panic while holding the lock leaves it whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection's queue (a WebSocket's writer drains it).
    pub fn queue(&self) -> &Arc<SendQueue> {
        &self.queue
    }

    /// Runs `f` on the connection's Socket.IO state (a pong, a recovery).
    pub fn outbound<R>(&self, f: impl FnOnce(&mut Outbound) -> R) -> R {
        f(&mut self.state().outbound)
    }

    /// Writes one record of the connection's own, after everything queued.
    pub fn send(&self, record: String) {
        let mut state = self.state();
        self.record(&mut state, record);
    }

    /// Translates one frame of the session and writes its records; `true` when the
    /// connection closes after them (the session's close).
    pub fn translate(&self, frame: Frame) -> bool {
        let mut state = self.state();
        let out = state.outbound.frame(frame);
        self.records(&mut state, out)
    }

    /// The records of a long poll: as many of those waiting as `max_bytes` and
    /// `max_records` let through (at least one), counted off the backlog; `None` when
    /// none waits.
    pub fn take_poll(&self, max_bytes: usize, max_records: usize) -> Option<Vec<String>> {
        let mut state = self.state();
        state.flush_posted = false;
        let waiting = state.polling.as_mut().filter(|r| !r.is_empty())?;
        let mut records = Vec::new();
        let mut size = 0;
        while let Some((front, _)) = waiting.front() {
            if !records.is_empty()
                && (size + front.len() > max_bytes || records.len() == max_records)
            {
                break;
            }
            let Some((record, counted)) = waiting.pop_front() else {
                break;
            };
            size += record.len() + 1;
            self.queue.backlog().fetch_sub(counted, Ordering::Relaxed);
            records.push(record);
        }
        Some(records)
    }

    /// Whether no record waits for a long poll.
    pub fn nothing_to_poll(&self) -> bool {
        self.state().polling.as_ref().is_none_or(VecDeque::is_empty)
    }

    /// The upgrade: from now on records go onto the queue, those waiting for a poll
    /// first, in order (the WebSocket's writer takes the queue over).
    pub fn to_websocket(&self) {
        let mut state = self.state();
        let Some(waiting) = state.polling.take() else {
            return;
        };
        for (record, counted) in waiting {
            self.queue.backlog().fetch_sub(counted, Ordering::Relaxed);
            self.push(self.message(&[record.as_bytes()]));
        }
    }

    /// The connection is closing: the session's frames are written no more.
    pub fn close(&self) {
        self.state().closed = true;
    }

    /// The connection's last message, a WebSocket close, after what is queued; the
    /// queue's writer then shuts the socket down.
    pub fn finish_websocket(&self) {
        let _state = self.state();
        self.push(Bytes::from_static(super::frames::CLOSE));
        self.queue.finish();
    }

    /// The connection is gone: what waits for a poll is dropped, and the queue ends
    /// once written.
    pub fn stopped(&self) {
        let mut state = self.state();
        state.closed = true;
        if let Some(waiting) = state.polling.as_mut() {
            let dropped: usize = waiting.drain(..).map(|(_, counted)| counted).sum();
            self.queue.backlog().fetch_sub(dropped, Ordering::Relaxed);
        }
        drop(state);
        self.queue.finish();
    }

    /// Writes `out`'s records; `true` when the connection closes after them.
    fn records(&self, state: &mut State, out: Out) -> bool {
        for record in out.records {
            self.record(state, record);
        }
        out.close
    }

    /// Writes one record onto the carrier.
    fn record(&self, state: &mut State, record: String) {
        let Some(waiting) = state.polling.as_mut() else {
            return self.push(self.message(&[record.as_bytes()]));
        };
        let counted = queued_size(record.as_bytes());
        self.queue.backlog().fetch_add(counted, Ordering::Relaxed);
        waiting.push_back((record, counted));
        if !std::mem::replace(&mut state.flush_posted, true) {
            if let Some(connection) = self.connection.upgrade() {
                connection.do_send(Notice::Flush);
            }
        }
    }

    /// A broadcast's event, with this client's offset if it takes one.
    fn event(&self, state: &mut State, event: &SharedEvent, offset: Option<u64>) {
        if state.polling.is_some() {
            return self.record(state, finish_event(&event.head, offset));
        }
        let Some(offset) = offset else {
            return self.push(event.plain.clone());
        };
        // `,"<offset>"]`: at most 24 bytes.
        let mut tail = [0u8; 24];
        let mut end = &mut tail[..];
        let _ = write!(end, ",\"{offset}\"]");
        let written = 24 - end.len();
        self.push(self.message(&[event.head.as_bytes(), &tail[..written]]));
    }

    /// `parts` as one WebSocket text message of this client's: in the thread's arena
    /// while the connection keeps up, in bytes of its own once it is behind, so
    /// that a client that stops reading holds on to a few arena buffers at most,
    /// not one for each message it has not read.
    fn message(&self, parts: &[&[u8]]) -> Bytes {
        match keeps_up(self.queue.backlog().load(Ordering::Relaxed)) {
            true => arena_message(parts),
            false => text_message(parts),
        }
    }

    /// Queues one WebSocket message, counted in the backlog.
    pub fn push(&self, message: Bytes) {
        self.queue
            .backlog()
            .fetch_add(queued_size(&message), Ordering::Relaxed);
        self.queue.push(message);
    }
}

impl Translate for EioOut {
    fn queue(&self) -> &SendQueue {
        &self.queue
    }

    fn write(&self, frame: &WireFrame, counted: usize) {
        self.queue.backlog().fetch_sub(counted, Ordering::Relaxed);
        let mut state = self.state();
        if state.closed {
            return;
        }
        // A broadcast's event is written once for all its Socket.IO recipients;
        // anything else is this session's own and read here.
        let close = match frame.socketio() {
            Some(event) => {
                let (offset, out) = state.outbound.shared(event);
                if let Some(offset) = offset {
                    self.event(&mut state, event, offset);
                }
                self.records(&mut state, out)
            }
            None => match protocol::decode(&frame.payload()) {
                Ok(frame) => {
                    let out = state.outbound.frame(frame);
                    self.records(&mut state, out)
                }
                Err(e) => {
                    // The session encoded it: cannot happen.
                    tracing::error!(error = %e, "a session frame did not decode");
                    false
                }
            },
        };
        if close {
            state.closed = true;
            drop(state);
            if let Some(connection) = self.connection.upgrade() {
                connection.do_send(Notice::Close);
            }
        }
    }
}

thread_local! {
    /// The thread's arena for the records written to one client only: each takes the
    /// next bytes of a shared buffer (a reference count, no allocation of its own),
    /// and a new buffer is made when one is full.
    static ARENA: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// How much a new arena buffer holds (about 15 events of ~100 bytes: one
/// allocation for as many records).
const ARENA_CHUNK: usize = 2 * 1024;

/// A connection with less than this queued keeps up (what one turn of its thread
/// queues on it under load); past it, its records get bytes of their own. A message
/// in the arena keeps its whole buffer alive until written, so a client that stops
/// reading holds at most the few arena buffers of its first unread messages (~12
/// KiB), then bytes in proportion to its backlog, which `max_send_backlog` bounds.
const ARENA_BACKLOG: usize = 1024;

/// Whether a connection with `backlog` bytes queued takes its records from the
/// arena.
fn keeps_up(backlog: usize) -> bool {
    backlog < ARENA_BACKLOG
}

/// `parts`, one after another, as one whole WebSocket text message in the thread's
/// arena.
fn arena_message(parts: &[&[u8]]) -> Bytes {
    let len = parts.iter().map(|p| p.len()).sum();
    let (head, header) = text_header(len);
    ARENA.with_borrow_mut(|arena| {
        let need = header + len;
        if arena.capacity() < need {
            *arena = BytesMut::with_capacity(need.max(ARENA_CHUNK));
        }
        arena.put_slice(&head[..header]);
        for part in parts {
            arena.put_slice(part);
        }
        arena.split().freeze()
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::task::Poll;

    use actix::prelude::*;
    use futures_util::task::noop_waker_ref;

    use super::*;
    use crate::protocol::EventKind;

    #[test]
    fn an_arena_message_is_the_message_framed_alone() {
        for len in [0, 100, 125, 126, 5_000, 70_000] {
            let body = vec![b'x'; len];
            let (a, b) = body.split_at(len / 2);
            assert_eq!(
                arena_message(&[a, b]),
                text_message(&[&body]),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn records_share_an_arena_buffer() {
        let first = arena_message(&[b"40"]);
        let second = arena_message(&[b"41"]);
        assert_eq!(&first[..], &[0x81, 2, b'4', b'0']);
        assert_eq!(&second[..], &[0x81, 2, b'4', b'1']);
        // Next to each other in one buffer (unless the first filled the last one).
        let after = first.as_ptr() as usize + first.len();
        assert!(second.as_ptr() as usize == after || first.len() + second.len() > ARENA_CHUNK);
    }

    #[test]
    fn a_connection_behind_gets_records_of_their_own() {
        assert!(keeps_up(0));
        assert!(keeps_up(ARENA_BACKLOG - 1));
        assert!(!keeps_up(ARENA_BACKLOG));
        with_out(true, true, |out, _| async move {
            // Queued and not written (no socket): the connection falls behind.
            let mut sent = 0;
            while backlog(&out) < ARENA_BACKLOG {
                out.send("2".into());
                sent += 1;
            }
            out.send("3".into());
            let queued = drain(&out);
            assert_eq!(queued.len(), sent + 1);
            // The first shares the thread's arena buffer; the last has its own.
            assert!(!queued[0].is_unique());
            assert!(queued[sent].is_unique());
            assert_eq!(queued[sent], text_message(&[b"3"]));
            assert_eq!(backlog(&out), 0);
        });
    }

    /// Stands in for the connection: keeps the notices it is told.
    #[derive(Default)]
    struct Told(Vec<&'static str>);

    impl Actor for Told {
        type Context = Context<Self>;
    }

    impl Handler<Notice> for Told {
        type Result = ();

        fn handle(&mut self, notice: Notice, _: &mut Self::Context) {
            self.0.push(match notice {
                Notice::Flush => "flush",
                Notice::Close => "close",
            });
        }
    }

    /// The notices so far (every one posted before this is handled first).
    #[derive(Message)]
    #[rtype(result = "Vec<&'static str>")]
    struct Notices;

    impl Handler<Notices> for Told {
        type Result = MessageResult<Notices>;

        fn handle(&mut self, _: Notices, _: &mut Self::Context) -> Self::Result {
            MessageResult(self.0.clone())
        }
    }

    /// Runs `test` with an `EioOut` (recovery on or off, carried by a WebSocket or
    /// by long polling) and the address that stands in for its connection.
    fn with_out<F>(recovery: bool, websocket: bool, test: impl FnOnce(EioOut, Addr<Told>) -> F)
    where
        F: std::future::Future<Output = ()>,
    {
        actix::System::new().block_on(async move {
            let told = Told::default().start();
            let out = EioOut::new(recovery, websocket, told.clone().recipient().downgrade());
            test(out, told).await;
        });
    }

    fn backlog(out: &EioOut) -> usize {
        out.queue().backlog().load(Ordering::Relaxed)
    }

    /// Everything on the queue, taken off (and off the backlog) as a writer would.
    fn drain(out: &EioOut) -> Vec<Bytes> {
        let mut cx = std::task::Context::from_waker(noop_waker_ref());
        let mut taken = Vec::new();
        while let Poll::Ready(Some(message)) = out.queue().poll_next(&mut cx) {
            taken.push(message);
        }
        taken
    }

    /// Hands `frame` to the connection as the session's outlet does.
    fn deliver(out: &EioOut, frame: &WireFrame) {
        let counted = queued_size(&frame.payload());
        out.queue().backlog().fetch_add(counted, Ordering::Relaxed);
        out.write(frame, counted);
    }

    #[test]
    fn long_polling_records_wait_for_a_poll_and_the_connection_is_told_once() {
        with_out(true, false, |out, told| async move {
            out.send("40".into());
            out.send("2".into());
            out.send("3".into());
            assert_eq!(backlog(&out), (2 + 64) + (1 + 64) + (1 + 64));
            assert_eq!(told.send(Notices).await.unwrap(), ["flush"]);
            // Within the poll's limits, at least one record.
            assert_eq!(out.take_poll(1_000, 2), Some(vec!["40".into(), "2".into()]));
            assert_eq!(out.take_poll(0, 10), Some(vec!["3".into()]));
            assert_eq!(backlog(&out), 0);
            assert_eq!(out.take_poll(1_000, 10), None);
            assert!(out.nothing_to_poll());
            // A poll took the records: the next one is told again.
            out.send("41".into());
            assert_eq!(told.send(Notices).await.unwrap(), ["flush", "flush"]);
            assert!(drain(&out).is_empty(), "nothing on the queue while polling");
        });
    }

    #[test]
    fn the_upgrade_moves_waiting_records_onto_the_queue_first() {
        with_out(true, false, |out, _| async move {
            out.send("40".into());
            out.send("2".into());
            out.to_websocket();
            out.send("41".into());
            assert!(out.nothing_to_poll());
            let sent = drain(&out);
            let expected: Vec<Bytes> = ["40", "2", "41"]
                .iter()
                .map(|r| text_message(&[r.as_bytes()]))
                .collect();
            assert_eq!(sent, expected);
            assert_eq!(backlog(&out), 0);
        });
    }

    #[test]
    fn a_broadcast_is_shared_without_an_offset_and_written_once_with_one() {
        let frame = WireFrame::event(EventKind::Reliable, "/chat", "said", br#"{"a":1}"#);
        let volatile = WireFrame::event(EventKind::Volatile, "/chat", "said", br#"{"a":1}"#);
        with_out(true, true, |out, _| async move {
            deliver(&out, &frame);
            deliver(&out, &frame);
            deliver(&out, &volatile);
            let sent = drain(&out);
            let text = |m: &Bytes| String::from_utf8(m[2..].to_vec()).unwrap();
            // Each client's own offset: the session's sequence number.
            assert_eq!(text(&sent[0]), r#"42/chat,["said",{"a":1},"1"]"#);
            assert_eq!(text(&sent[1]), r#"42/chat,["said",{"a":1},"2"]"#);
            // A volatile event takes no offset: the broadcast's own bytes.
            let plain = &volatile.socketio().unwrap().plain;
            assert_eq!(sent[2].as_ptr(), plain.as_ptr());
            assert_eq!(text(&sent[2]), r#"42/chat,["said",{"a":1}]"#);
            assert_eq!(backlog(&out), 0);
        });
        let frame = WireFrame::event(EventKind::Reliable, "/chat", "said", br#"{"a":1}"#);
        with_out(false, true, |out, _| async move {
            // Without recovery every recipient writes the same bytes.
            deliver(&out, &frame);
            let sent = drain(&out);
            assert_eq!(sent[0].as_ptr(), frame.socketio().unwrap().plain.as_ptr());
        });
    }

    #[test]
    fn a_closed_connection_writes_nothing_and_keeps_no_backlog() {
        let frame = WireFrame::event(EventKind::Reliable, "/chat", "said", b"1");
        with_out(true, true, |out, _| async move {
            out.close();
            deliver(&out, &frame);
            assert!(drain(&out).is_empty());
            assert_eq!(backlog(&out), 0);
        });
    }

    #[test]
    fn the_sessions_close_tells_the_connection_to_close() {
        let close = WireFrame::encode(&Frame::Close {
            reason: "kicked".into(),
        });
        let after = WireFrame::event(EventKind::Reliable, "/chat", "said", b"1");
        with_out(true, true, |out, told| async move {
            deliver(&out, &close);
            assert_eq!(told.send(Notices).await.unwrap(), ["close"]);
            // Nothing the session writes after its close goes out.
            deliver(&out, &after);
            assert!(drain(&out).is_empty());
            assert_eq!(backlog(&out), 0);
        });
    }
}
