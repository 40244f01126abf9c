//! The heartbeat's timers: one wheel per thread, not a timer per session.
//!
//! Every session has one schedule, started when it opens and never again: a ping
//! every `ping_interval` on a fixed clock (see [`next_ping`]), sent only while a
//! connection is attached and no earlier ping is outstanding. Each ping is checked
//! again `ping_timeout` later; if its pong has not come by then, the connection is
//! dropped (the session detaches and may resume). A resume brings a new connection
//! and with it a new [`Pulse`], so the outstanding ping of the old one is forgotten,
//! but never a second schedule: the pings per interval stay one however often a
//! session resumes.
//!
//! Every schedule starts on a grid shared by the whole process (see [`ping_grid`]), so
//! the pings of a thread's sessions come due together, a few times per interval. The
//! thread's [`Wheel`] keeps its sessions by the instant they are due and wakes once
//! for all of them: it writes each ping straight onto the session's connection
//! (through the session's [`Sink`], the outlet a broadcast writes to), with no
//! wake-up, timer or message of the session's own. The session is told only when it has something to do: a ping timed out, or
//! frames of the client to report before the ping (it then writes both itself).
//! The pong is taken by the connection's reader ([`Pulse::answer`]).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::Notify;

use slotmap::SlotMap;

use super::heartbeat::{epoch, next_ping, on_grid, ping_grid, Beat, BeatKey, Heartbeat, Pulse};
use super::outlet::{DeliveryFailed, Link, Sink};
use super::{Session, ToTransport, TransportId};
use crate::namespace::SessionLink;
use crate::protocol::{Frame, WireFrame};
use crate::DisconnectReason;

/// The same bytes for every ping of every session: framed once.
fn ping_frame() -> &'static WireFrame {
    static PING: OnceLock<WireFrame> = OnceLock::new();
    PING.get_or_init(|| WireFrame::encode(&Frame::Ping))
}

/// What the wheel does for a session when its instant comes.
#[derive(Clone, Copy)]
enum Visit {
    /// The schedule's slot: ping, unless a ping is outstanding.
    Ping,
    /// `ping_timeout` after a ping: drop the connection if it is still unanswered.
    Deadline,
}

/// Sessions to visit at one instant (8 bytes each).
type Visits = Vec<BeatKey>;

/// Emptied lists kept for the next instants, at most this many.
const SPARE: usize = 4;

/// A thread's sessions by the instant the wheel visits them: a few instants per
/// interval, since schedules share the grid and the pings of one pass share their
/// deadline.
///
/// The lists name sessions by key; the one weak pointer to each session's sink is
/// in `sinks`, and leaves it when the sink goes. A session that ends is then freed
/// at once (a sink is ~200 bytes): a wheel that held the sinks weakly in its lists
/// kept every ended session's allocation until its next ping was due, up to
/// `ping_interval` of them (at 1,000 sessions ended a second and 25 s pings,
/// 27 MiB of RSS that the server's live sessions did not need).
#[derive(Default)]
struct Wheel {
    /// The sessions of the thread with a schedule.
    sinks: SlotMap<BeatKey, Weak<Sink>>,
    pings: BTreeMap<Instant, Visits>,
    deadlines: BTreeMap<Instant, Visits>,
    /// Emptied lists, kept for the next instants (no allocation per slot).
    spare: Vec<Visits>,
    /// Wakes the thread's wheel task for an instant earlier than it sleeps until;
    /// `None` while no task runs on this thread.
    task: Option<Rc<Notify>>,
}

thread_local! {
    static WHEEL: RefCell<Wheel> = RefCell::new(Wheel::default());
}

impl Wheel {
    /// Visits `who` at `at`; starts the thread's wheel task, or wakes it when `at`
    /// comes before everything it waits for.
    fn add(at: Instant, who: BeatKey, visit: Visit) {
        let wake = WHEEL.with(|w| {
            let mut w = w.borrow_mut();
            let earliest = w.first().is_none_or(|(first, _)| at < first);
            let Wheel {
                sinks: _,
                pings,
                deadlines,
                spare,
                task,
            } = &mut *w;
            let due = match visit {
                Visit::Ping => pings,
                Visit::Deadline => deadlines,
            };
            due.entry(at)
                .or_insert_with(|| spare.pop().unwrap_or_default())
                .push(who);
            match task {
                Some(task) => earliest.then(|| task.clone()),
                None => {
                    let started = Rc::new(Notify::new());
                    *task = Some(started.clone());
                    drop(tokio::task::spawn_local(turn(started)));
                    None
                }
            }
        });
        if let Some(task) = wake {
            task.notify_one();
        }
    }

    /// Lists `sink`'s schedule on this thread's wheel (once).
    fn enlist(sink: &Rc<Sink>) -> BeatKey {
        if let Some(key) = sink.heartbeat.key.get() {
            return key;
        }
        let key = WHEEL.with(|w| w.borrow_mut().sinks.insert(Rc::downgrade(sink)));
        sink.heartbeat.key.set(Some(key));
        key
    }

    /// The sink of schedule `key`, while the session lives.
    fn sink(key: BeatKey) -> Option<Rc<Sink>> {
        WHEEL.with(|w| {
            let mut w = w.borrow_mut();
            let sink = w.sinks.get(key)?.upgrade();
            if sink.is_none() {
                // Gone without leaving (see `impl Drop for Heartbeat`): leaves now.
                w.sinks.remove(key);
            }
            sink
        })
    }

    /// Forgets schedule `key`: its sink is going. The visits still listed for it
    /// find nothing.
    fn leave(key: BeatKey) {
        let _ = WHEEL.try_with(|w| {
            // Never borrowed while a sink drops (the wheel hands sinks out of its
            // borrow); were it, the visit would take the entry out instead.
            if let Ok(mut w) = w.try_borrow_mut() {
                w.sinks.remove(key);
            }
        });
    }

    /// The earliest instant with visits, and what they are (deadlines first).
    fn first(&self) -> Option<(Instant, Visit)> {
        let ping = self.pings.keys().next().map(|at| (*at, Visit::Ping));
        let deadline = self
            .deadlines
            .keys()
            .next()
            .map(|at| (*at, Visit::Deadline));
        match (ping, deadline) {
            (Some(p), Some(d)) => Some(if d.0 <= p.0 { d } else { p }),
            (p, d) => p.or(d),
        }
    }

    /// The visits of the earliest instant, if it is `now` or before.
    fn take_due(now: Instant) -> Option<(Visit, Visits)> {
        WHEEL.with(|w| {
            let mut w = w.borrow_mut();
            let (at, visit) = w.first().filter(|(at, _)| *at <= now)?;
            let due = match visit {
                Visit::Ping => &mut w.pings,
                Visit::Deadline => &mut w.deadlines,
            };
            due.remove(&at).map(|visits| (visit, visits))
        })
    }

    fn next_due() -> Option<Instant> {
        WHEEL.with(|w| w.borrow().first().map(|(at, _)| at))
    }

    fn give_back(mut visits: Visits) {
        visits.clear();
        WHEEL.with(|w| {
            let mut w = w.borrow_mut();
            if w.spare.len() < SPARE {
                w.spare.push(visits);
            }
        });
    }
}

/// The thread's wheel task: sleeps until the earliest instant, visits every session
/// due, and again. Ends with its runtime (then the next session starts another).
async fn turn(wake: Rc<Notify>) {
    struct Stopped;
    impl Drop for Stopped {
        fn drop(&mut self) {
            // The runtime is gone with the sessions it ran: so are the wheel's
            // visits. The table stays: a sink that outlives its runtime still holds
            // its key, and takes its entry out as it goes.
            let _ = WHEEL.try_with(|w| {
                if let Ok(mut w) = w.try_borrow_mut() {
                    let sinks = std::mem::take(&mut w.sinks);
                    *w = Wheel {
                        sinks,
                        ..Wheel::default()
                    };
                }
            });
        }
    }
    let _stopped = Stopped;
    loop {
        match Wheel::next_due() {
            Some(at) => tokio::select! {
                () = tokio::time::sleep_until(at.into()) => {}
                () = wake.notified() => continue,
            },
            None => {
                wake.notified().await;
                continue;
            }
        }
        let now = Instant::now();
        while let Some((visit, mut visits)) = Wheel::take_due(now) {
            for key in visits.drain(..) {
                if let Some(sink) = Wheel::sink(key) {
                    visit_sink(&sink, key, visit, now);
                }
            }
            Wheel::give_back(visits);
        }
    }
}

/// One visit of the wheel, on the session's thread, while the session itself is not
/// running (both run on this thread, one at a time).
fn visit_sink(sink: &Sink, key: BeatKey, visit: Visit, now: Instant) {
    let Ok(out) = sink.outlet.try_borrow() else {
        // The session is in the middle of a delivery (cannot happen: it does not run
        // while the wheel does): come back in a moment rather than lose the schedule.
        let soon = now + Duration::from_millis(1);
        return Wheel::add(soon, key, visit);
    };
    let config = &out.shared().config;
    let (interval, timeout) = (config.ping_interval, config.ping_timeout);
    let heartbeat = &sink.heartbeat;
    if let (Visit::Ping, Some(scheduled)) = (visit, heartbeat.next.get()) {
        let next = next_ping(scheduled, now, interval);
        heartbeat.next.set(Some(next));
        Wheel::add(next, key, Visit::Ping);
    }
    let Link::Attached(transport) = &out.link else {
        return;
    };
    if out.closed {
        return;
    }
    let pulse = transport.sending.pulse();
    if let (Some(ids), Some(rtt)) = (heartbeat.ids.get(), pulse.rtt()) {
        let us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1);
        ids.rtt_us.store(us, Ordering::Relaxed);
    }
    let transport = transport.id;
    match visit {
        Visit::Ping => match pulse.tick(now, timeout) {
            Beat::Ping => {
                Wheel::add(now + timeout, key, Visit::Deadline);
                let unreported = out.unreported();
                drop(out);
                ping(sink, transport, unreported);
            }
            // Only when `ping_timeout` is longer than `ping_interval`: the deadline
            // normally comes first.
            Beat::TimedOut => sink.tell(PingTimedOut(transport)),
            Beat::Wait => {}
        },
        Visit::Deadline => match pulse.deadline(timeout) {
            Some(deadline) if deadline <= now => {
                sink.tell(PingTimedOut(transport));
            }
            // Pinged after the visit was set (the session wrote it): look again when
            // its own time is up.
            Some(deadline) => Wheel::add(deadline, key, Visit::Deadline),
            None => {}
        },
    }
}

/// Writes the ping onto the connection, or has the session write it after its report
/// of what it received (`unreported`).
fn ping(sink: &Sink, transport: TransportId, unreported: bool) {
    if unreported {
        return sink.tell(PingNow(transport));
    }
    let written = sink.outlet.borrow_mut().write(ping_frame());
    if let Err(reason) = written {
        sink.tell(DeliveryFailed(reason));
    }
}

/// The wheel's ping for a session with client frames to report first.
#[derive(Message)]
#[rtype(result = "()")]
struct PingNow(TransportId);

/// The ping sent on this connection was not answered within `ping_timeout`.
#[derive(Message)]
#[rtype(result = "()")]
struct PingTimedOut(TransportId);

/// Starts a session's only heartbeat schedule (once, when it opens): its first ping
/// one interval after the first slot of the grid from now. `ids` is where its
/// round-trip time is published.
pub(super) fn start(sink: &Rc<Sink>, ids: Arc<SessionLink>, interval: Duration) {
    let now = Instant::now();
    let first = on_grid(now, epoch(), ping_grid(interval));
    let next = next_ping(first, now, interval);
    let _ = sink.heartbeat.ids.set(ids);
    schedule(sink, next);
}

/// Lists the schedule of `sink` on the thread's wheel, its next ping at `next`.
fn schedule(sink: &Rc<Sink>, next: Instant) {
    sink.heartbeat.next.set(Some(next));
    let key = Wheel::enlist(sink);
    Wheel::add(next, key, Visit::Ping);
}

/// A sink that goes takes its schedule off the wheel: the wheel's weak pointer
/// would keep the sink's allocation (not what it owns) until its next visit.
impl Drop for Heartbeat {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            Wheel::leave(key);
        }
    }
}

impl Session {
    /// `f` of the attached connection's heartbeat, if a connection is attached.
    pub(super) fn with_pulse<R>(&self, f: impl FnOnce(&Pulse) -> Option<R>) -> Option<R> {
        match &self.sink.outlet.borrow().link {
            Link::Attached(t) => f(t.sending.pulse()),
            Link::Detached { .. } => None,
        }
    }

    /// A pong the connection's reader left to the session: records the round trip.
    pub(super) fn ponged(&mut self) {
        let Some(rtt) = self.with_pulse(|p| p.pong(Instant::now())) else {
            return;
        };
        self.shared.metrics.ping_rtt.observe(rtt.as_secs_f64());
        if let Some(ids) = &self.ids {
            let us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1);
            ids.rtt_us.store(us, Ordering::Relaxed);
        }
    }

    /// Whether `transport` still carries the session.
    fn carried_by(&self, transport: TransportId) -> bool {
        matches!(&self.sink.outlet.borrow().link, Link::Attached(t) if t.id == transport)
    }

    /// The client did not answer in time: drop its connection; the session detaches
    /// and may be resumed.
    fn ping_timed_out(&mut self, ctx: &mut Context<Self>) {
        if self.ended() {
            return;
        }
        let Some(transport) = self.transport() else {
            return;
        };
        tracing::info!(sid = self.id().0, "ping timeout");
        transport.do_send(ToTransport::Drop {
            reason: DisconnectReason::PingTimeout.to_string(),
        });
        self.detach(DisconnectReason::PingTimeout, ctx);
    }
}

impl Handler<PingNow> for Session {
    type Result = ();

    fn handle(&mut self, msg: PingNow, ctx: &mut Context<Self>) {
        if self.ended() || !self.carried_by(msg.0) {
            return;
        }
        self.report_received(ctx);
        self.write(ping_frame().clone(), ctx);
    }
}

impl Handler<PingTimedOut> for Session {
    type Result = ();

    fn handle(&mut self, msg: PingTimedOut, ctx: &mut Context<Self>) {
        let timeout = self.shared.config.ping_timeout;
        let overdue = self.with_pulse(|p| p.deadline(timeout));
        if self.carried_by(msg.0) && overdue.is_some_and(|d| d <= Instant::now()) {
            self.ping_timed_out(ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::outlet::Outlet;
    use super::*;

    fn listed(key: BeatKey) -> bool {
        WHEEL.with(|w| w.borrow().sinks.contains_key(key))
    }

    /// Two sinks of a real server's sessions, their schedules on the thread's wheel.
    fn sinks(volley: &crate::Volley) -> (Rc<Sink>, Rc<Sink>) {
        let sink = || Rc::new(Sink::new(Outlet::detached(volley.shared().clone())));
        (sink(), sink())
    }

    #[test]
    fn a_sink_that_goes_leaves_the_wheel_at_once_not_at_its_next_ping() {
        actix::System::new().block_on(async {
            let volley = crate::Volley::builder().build();
            let (ended, live) = sinks(&volley);
            let next = Instant::now() + Duration::from_secs(25);
            schedule(&ended, next);
            schedule(&live, next);
            let (gone, kept) = (
                ended.heartbeat.key.get().expect("listed"),
                live.heartbeat.key.get().expect("listed"),
            );
            assert_ne!(gone, kept);
            assert!(listed(gone) && listed(kept));
            // Listed once however often it is scheduled.
            schedule(&live, next);
            assert_eq!(live.heartbeat.key.get(), Some(kept));

            // The session ends 25 s before its ping: the wheel no longer points at
            // its sink (whose allocation is then freed), only its visit is listed.
            drop(ended);
            assert!(!listed(gone));
            assert!(Wheel::sink(gone).is_none());
            assert!(Wheel::sink(kept).is_some_and(|sink| Rc::ptr_eq(&sink, &live)));
            let visits: usize = WHEEL.with(|w| w.borrow().pings.values().map(Vec::len).sum());
            assert!(visits >= 3, "the visits stay listed: {visits}");

            // A key of a freed entry never finds the sink that takes its place.
            let (newcomer, _) = sinks(&volley);
            schedule(&newcomer, next);
            assert!(Wheel::sink(gone).is_none());
            drop(live);
            assert!(!listed(kept));
            System::current().stop();
        });
    }
}
