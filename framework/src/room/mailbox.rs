//! Bounded mailboxes on the per-message path.
//!
//! actix's `do_send` ignores a mailbox's capacity, so a burst to an actor that is
//! slower than its senders would wait in its mailbox without limit. The senders on the
//! per-message path therefore count what they post in a [`Gauge`] and stop at its
//! limit (`Config::max_mailbox`); the actor counts each message off as it handles it.
//! An atomic add each way and no allocation: the hot path stays as cheap as before.
//!
//! What happens at the limit is the receiver's policy: a session that cannot keep up
//! with its deliveries ends with `slow consumer` (see [`Mailbox`]); a namespace refuses
//! further broadcasts with `EmitError::Busy` until its rooms have caught up.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use actix::dev::ToEnvelope;
use actix::{Actor, Addr, Handler};

use super::local::LocalRoute;
use super::Deliver;

/// Messages posted to one actor and not handled yet, with a limit.
#[derive(Debug)]
pub struct Gauge {
    queued: AtomicUsize,
    limit: usize,
    /// A message was refused: the receiver has fallen behind at least once.
    overflowed: AtomicBool,
}

impl Gauge {
    /// A gauge that admits `limit` messages at a time.
    pub fn new(limit: usize) -> Self {
        Gauge {
            queued: AtomicUsize::new(0),
            limit,
            overflowed: AtomicBool::new(false),
        }
    }

    /// Takes a place for one message; `false` at the limit (the message must not be
    /// posted), and the gauge remembers that it overflowed.
    pub fn admit(&self) -> bool {
        if self.queued.fetch_add(1, Ordering::Relaxed) >= self.limit {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            // Release: a message posted after this store is handled after the
            // receiver can see it (see `taken`).
            self.overflowed.store(true, Ordering::Release);
            return false;
        }
        true
    }

    /// The receiver handled one admitted message. Answers whether any message has
    /// been refused so far: a receiver that must not skip messages stops here.
    pub fn taken(&self) -> bool {
        self.queued.fetch_sub(1, Ordering::Relaxed);
        self.overflowed.load(Ordering::Acquire)
    }

    /// Whether no admitted message waits.
    pub fn is_empty(&self) -> bool {
        self.queued.load(Ordering::Relaxed) == 0
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Takes a place for a message that carries it (see [`Ticket`]); `None` at the
    /// limit.
    pub fn ticket(self: &Arc<Self>) -> Option<Ticket> {
        self.admit().then(|| Ticket(self.clone()))
    }
}

/// A place taken in a [`Gauge`], given back when dropped: the message that carries it
/// is counted until it is handled, or dropped unhandled because its receiver stopped
/// (a room whose last member left), so the count never drifts.
#[derive(Debug)]
pub struct Ticket(Arc<Gauge>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A session's delivery address as rooms, namespaces and handlers hold it: posts
/// [`Deliver`] messages, at most `limit` waiting at a time.
///
/// Past the limit a delivery is not posted and the session, at its next delivery,
/// ends with `slow consumer`: a session that skipped a reliable frame must not carry
/// on, and one that cannot keep up with its deliveries would only fall further behind.
///
/// Broadcasts do not come this way: they reach the session through its thread (see
/// [`super::local`]); its [`LocalRoute`] travels with the mailbox.
///
/// Shared, not copied: the session's link, its namespaces' entries and its rooms all
/// hold the same mailbox, and a clone is a reference count (a copy of its actix
/// addresses would allocate a sender cell per address, per holder: ~170 bytes per
/// holder of every idle connection).
#[derive(Clone)]
pub struct Mailbox(Arc<Addresses>);

struct Addresses {
    session: Arc<dyn Deliveries>,
    gauge: Gauge,
    route: LocalRoute,
}

/// What a [`Mailbox`] posts to: the address of a session (or of what stands in for
/// one). Held in an `Arc` that the session's other holders share (its sockets'
/// commands, its thread's sink), so that one actix address serves them all.
pub trait Deliveries: Send + Sync {
    /// Posts one delivery, whatever the actor's mailbox holds (the [`Gauge`] bounds it).
    fn deliver(&self, deliver: Deliver);
    /// Whether the actor is still running.
    fn connected(&self) -> bool;
}

impl<A> Deliveries for Addr<A>
where
    A: Actor + Handler<Deliver>,
    A::Context: ToEnvelope<A, Deliver>,
{
    fn deliver(&self, deliver: Deliver) {
        self.do_send(deliver);
    }

    fn connected(&self) -> bool {
        Addr::connected(self)
    }
}

impl Mailbox {
    /// The mailbox of `session`, whose broadcasts go by `route`.
    pub fn new(session: Arc<dyn Deliveries>, limit: usize, route: LocalRoute) -> Self {
        Mailbox(Arc::new(Addresses {
            session,
            gauge: Gauge::new(limit),
            route,
        }))
    }

    /// Where the session's broadcasts go: its thread, and its place there.
    pub fn route(&self) -> &LocalRoute {
        &self.0.route
    }

    /// Posts a delivery, or drops it when the session is `limit` behind.
    pub fn post(&self, deliver: Deliver) {
        if self.0.gauge.admit() {
            self.0.session.deliver(deliver);
        }
    }

    /// The count shared with the session: other messages that deliver (an emit that
    /// waits for an ack) take their place through it.
    pub fn gauge(&self) -> &Gauge {
        &self.0.gauge
    }

    /// Whether the session is still running.
    pub fn connected(&self) -> bool {
        self.0.session.connected()
    }
}

#[cfg(test)]
mod tests {
    use super::Gauge;

    #[test]
    fn admits_up_to_the_limit_and_remembers_a_refusal() {
        let gauge = Gauge::new(2);
        assert!(gauge.admit());
        assert!(gauge.admit());
        assert!(!gauge.admit(), "a third message waits beyond the limit");
        // The receiver catches up: places free, but the refusal is not forgotten.
        assert!(gauge.taken());
        assert!(gauge.admit());
        assert!(gauge.taken());
        assert!(gauge.taken());
    }

    #[test]
    fn a_ticket_gives_its_place_back_however_its_message_ends() {
        let gauge = std::sync::Arc::new(Gauge::new(1));
        let ticket = gauge.ticket().expect("a place");
        assert!(gauge.ticket().is_none(), "full while the ticket lives");
        drop(ticket);
        assert!(gauge.ticket().is_some());
    }

    #[test]
    fn a_receiver_that_keeps_up_never_sees_an_overflow() {
        let gauge = Gauge::new(1);
        for _ in 0..1000 {
            assert!(gauge.admit());
            assert!(!gauge.taken());
        }
    }
}
