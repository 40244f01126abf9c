//! A client's frames, from its connection to its sockets.
//!
//! Most of what a client sends is events for namespaces it has joined (a game's
//! inputs, a chat's messages) and acknowledgements of what it received. Neither
//! needs the session's actor: the connection that started the session shares the
//! session's [`Sink`] on the same thread ([`LocalSession`]), so it hands such a
//! frame straight to the socket and the handler runs there and then, with no actor
//! message and no wake of a second task per frame.
//!
//! Everything else goes through the session's mailbox, as does every frame of a
//! connection that did not start its session (a resumed one, which may be on
//! another thread; a relay from another node). So that the client's frames are
//! still taken in the order it sent them, a frame is taken at once only while none
//! of its connection's earlier frames waits in that mailbox (a `Connect`, say, and
//! the events sent right after it), and only while the session is open, attached to
//! that connection, and not ending. What goes wrong on the way (a rate limit, an
//! overflowing outbox) ends the session through its mailbox
//! ([`DeliveryFailed`]); the outlet is closed at once, so no later frame is taken
//! meanwhile.

use std::rc::Rc;

use super::authorizing::{self, HeldEvent, Hold};
use super::outlet::{DeliveryFailed, Link, Sink};
use super::rate::Exceeded;
use super::transport_link::{FromTransport, TransportId};
use crate::protocol::{Frame, WireFrame};
use crate::DisconnectReason;

/// Tell the client what we received at least this often (in reliable frames), so it
/// can trim its own buffer under load.
const RECEIVED_EVERY: u64 = 64;

/// The session a connection started, as that connection holds it: on the same
/// thread, sharing the session's sink (its connection, outbox and joined
/// namespaces), so that the client's events can be handed to their socket where the
/// connection reads them, without a message to the session's actor.
#[derive(Clone)]
pub struct LocalSession(pub(super) Rc<Sink>);

impl LocalSession {
    /// Posts `msg` to the session's mailbox.
    pub fn do_send(&self, msg: FromTransport) {
        self.0.tell(msg);
    }

    /// Takes `frame` (`size` bytes as received) from connection `transport` at once
    /// when it can be: an event or a `Received` frame, while the session is open,
    /// not ending, attached to this connection, and none of the connection's earlier
    /// frames waits in the session's mailbox. Gives it back otherwise, for the
    /// mailbox, so that the client's frames are taken in the order it sent them.
    pub fn take_now(&self, transport: TransportId, frame: Frame, size: usize) -> Result<(), Frame> {
        self.0.take_now(transport, frame, size)
    }
}

impl Sink {
    fn take_now(&self, transport: TransportId, frame: Frame, size: usize) -> Result<(), Frame> {
        if !self.takes_now(transport) {
            return Err(frame);
        }
        let taken = match frame {
            Frame::Event {
                ns,
                name,
                payload,
                ack,
            } => self.admit(size).and_then(|()| {
                self.counted()?;
                self.event(HeldEvent {
                    ns,
                    name,
                    payload,
                    ack,
                })
            }),
            Frame::Received { last_seq } => {
                self.admit(size).and_then(|()| self.acknowledged(last_seq))
            }
            other => return Err(other),
        };
        if let Err(reason) = taken {
            self.outlet.borrow_mut().closed = true;
            self.tell(DeliveryFailed(reason));
        }
        Ok(())
    }

    /// Whether a frame from `transport` may be taken here and now.
    fn takes_now(&self, transport: TransportId) -> bool {
        let out = self.outlet.borrow();
        // Open (the client has its `Open`, and nothing waits on the session's
        // registration), not ending, carried by this very connection, and none of
        // its frames waiting in the mailbox.
        out.id.0 != 0
            && !out.ended
            && !out.closed
            && matches!(&out.link, Link::Attached(t) if t.id == transport && t.inbound.is_empty())
    }

    /// Counts a client frame of `size` bytes in; over the rate limit, tells the
    /// client which limit and answers why the session ends (the frame that went over
    /// is not processed).
    pub fn admit(&self, size: usize) -> Result<(), DisconnectReason> {
        let admitted = self.outlet.borrow_mut().admit(size);
        admitted.map_err(|exceeded| self.over_rate(exceeded))
    }

    fn over_rate(&self, exceeded: Exceeded) -> DisconnectReason {
        let id = self.outlet.borrow().id;
        tracing::warn!(sid = id.0, %exceeded, "rate limited");
        self.outlet.borrow().shared().metrics.refused("rate_limit");
        let reason = format!("rate limited: {exceeded}");
        // Not about one namespace: the error names none.
        let error = Frame::Error {
            ns: String::new(),
            reason,
        };
        match self.send(&error) {
            Ok(()) => DisconnectReason::RateLimited,
            Err(failed) => failed,
        }
    }

    /// Numbers a reliable frame of the client's stream, and tells the client how far
    /// it got every [`RECEIVED_EVERY`] frames.
    pub fn counted(&self) -> Result<(), DisconnectReason> {
        let due = {
            let mut out = self.outlet.borrow_mut();
            out.recv_seq += 1;
            out.recv_seq - out.reported_seq >= RECEIVED_EVERY
        };
        if due {
            return self.report_received();
        }
        Ok(())
    }

    /// Tells the client how far we have processed its stream, if it does not know.
    pub fn report_received(&self) -> Result<(), DisconnectReason> {
        let last_seq = {
            let mut out = self.outlet.borrow_mut();
            if !out.unreported() {
                return Ok(());
            }
            out.reported_seq = out.recv_seq;
            out.recv_seq
        };
        self.send(&Frame::Received { last_seq })
    }

    /// Sends a frame the session itself produced: reliable ones are sequenced;
    /// control frames (open, ping, received) are written as they are, never dropped
    /// like volatile events. `Err` when the session must end (see
    /// [`super::outlet::Outlet::deliver`]).
    pub fn send(&self, frame: &Frame) -> Result<(), DisconnectReason> {
        let bytes = WireFrame::encode(frame);
        let mut out = self.outlet.borrow_mut();
        if out.ended {
            return Ok(());
        }
        if frame.is_reliable() {
            out.deliver(&bytes, true)
        } else {
            out.write(&bytes)
        }
    }

    /// The client acknowledged our stream up to `last_seq`.
    pub fn acknowledged(&self, last_seq: u64) -> Result<(), DisconnectReason> {
        let mut out = self.outlet.borrow_mut();
        let acked = out.outbox.ack(last_seq).map_err(|_| out.outbox.sent());
        if let (Ok(()), Link::Attached(t)) = (acked, &out.link) {
            // A pong that repeats it is the connection reader's to take.
            t.sending.pulse().acked(out.outbox.acked());
        }
        let (frames, bytes) = (out.outbox.len(), out.outbox.bytes());
        out.shared().metrics.outbox(frames, bytes);
        acked.map_err(|sent| {
            let reason = format!("acknowledged frame {last_seq} but only {sent} were sent");
            DisconnectReason::Protocol(reason)
        })
    }

    /// An event from the client: held while its namespace's middleware thinks,
    /// handled otherwise.
    pub fn event(&self, event: HeldEvent) -> Result<(), DisconnectReason> {
        let held = self.sockets.borrow_mut().authorizing.hold(event);
        match held {
            Hold::Held => Ok(()),
            Hold::NotWaiting(event) => self.dispatch(event),
            Hold::Full(HeldEvent { ns, .. }) => {
                let reason = format!(
                    "namespace '{ns}' is still authorizing this client: at most {} events wait for its answer",
                    authorizing::MAX_HELD
                );
                self.send(&Frame::Error { ns, reason })
            }
        }
    }

    /// Runs the handler of an event (or tells the client why not).
    pub fn dispatch(&self, event: HeldEvent) -> Result<(), DisconnectReason> {
        let HeldEvent {
            ns,
            name,
            payload,
            ack,
        } = event;
        // The sockets stay borrowed while the handler runs: only the session's actor
        // changes them, and never from inside a handler.
        let refused = match self.sockets.borrow().joined.get(ns.as_str()) {
            Some(joined) => joined
                .namespace
                .dispatch(&joined.socket, &name, &payload, ack)
                .err(),
            None => Some(format!("namespace '{ns}' not joined: connect to it first")),
        };
        match refused {
            Some(reason) => {
                let id = self.outlet.borrow().id;
                tracing::debug!(sid = id.0, ns = %ns, %reason, "event refused");
                self.send(&Frame::Error { ns, reason })
            }
            None => Ok(()),
        }
    }
}
