//! Heartbeat bookkeeping, kept free of timers so it can be unit-tested.
//!
//! The server pings on a fixed schedule, once every `interval` counted from the
//! session's opening (not from the last pong), and never has more than one ping
//! outstanding; the client must answer within `timeout` of the ping, or its connection
//! is dropped. A peer that stops answering is therefore detected at the latest
//! `interval + timeout` after its last answer. The thread's wheel that drives this
//! lives in `keepalive.rs`.
//!
//! The state of one connection's heartbeat is a [`Pulse`]: a few atomics shared by
//! the session's side (which pings, on the session's thread) and the connection's
//! reader (which takes the pong, on the connection's thread), so that an ordinary pong
//! costs the reader two atomic operations and no message to the session. The
//! session's own side, the schedule the wheel keeps in its outlet, is a
//! [`Heartbeat`].

use std::cell::{Cell, OnceCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::namespace::SessionLink;

/// What the heartbeat should do when its slot comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Send a ping now.
    Ping,
    /// The outstanding ping was not answered in time: drop the connection (the
    /// session detaches and may resume).
    TimedOut,
    /// A ping is outstanding and still within its timeout.
    Wait,
}

/// The heartbeat of one connection: whether a ping waits for its pong and since
/// when, the last round-trip time, and the acknowledgement the session last applied.
/// A resumed session gets a new connection and so a new pulse: the outstanding ping
/// of the old one is forgotten with it.
#[derive(Debug, Default)]
pub struct Pulse {
    /// When the unanswered ping was sent ([`stamp`]); 0 when every ping is answered.
    sent: AtomicU64,
    /// The last round-trip time in nanoseconds; 0 before the first pong.
    rtt_ns: AtomicU64,
    /// The last `last_seq` the session applied from this client: a pong that repeats
    /// it acknowledges nothing new, so the reader may take it alone.
    acked: AtomicU64,
}

impl Pulse {
    /// Decides what to do at `now`; records the ping when it says [`Beat::Ping`].
    /// Only the session's side calls it (the reader only ever clears `sent`).
    pub fn tick(&self, now: Instant, timeout: Duration) -> Beat {
        match self.sent_at() {
            Some(sent) if now.saturating_duration_since(sent) >= timeout => Beat::TimedOut,
            Some(_) => Beat::Wait,
            None => {
                self.sent.store(stamp(now), Ordering::Release);
                Beat::Ping
            }
        }
    }

    /// When the outstanding ping's time is up, if one is outstanding.
    pub fn deadline(&self, timeout: Duration) -> Option<Instant> {
        self.sent_at().map(|sent| sent + timeout)
    }

    /// Records a pong; returns the measured round-trip time if a ping was outstanding.
    pub fn pong(&self, now: Instant) -> Option<Duration> {
        let sent = self.sent.swap(0, Ordering::AcqRel);
        let rtt = now.saturating_duration_since(at(sent)?);
        let ns = u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.rtt_ns.store(ns, Ordering::Relaxed);
        Some(rtt)
    }

    /// The reader's pong: taken here, without the session, when it answers the
    /// outstanding ping and acknowledges nothing the session has not applied already
    /// (`last_seq` is the last it applied). `None` otherwise: the session takes it.
    pub fn answer(&self, last_seq: u64, now: Instant) -> Option<Duration> {
        if self.acked.load(Ordering::Acquire) != last_seq || self.sent.load(Ordering::Acquire) == 0
        {
            return None;
        }
        self.pong(now)
    }

    /// The session applied the client's acknowledgement up to `last_seq`.
    pub fn acked(&self, last_seq: u64) {
        self.acked.store(last_seq, Ordering::Release);
    }

    /// Whether a ping is waiting for its pong.
    pub fn outstanding(&self) -> bool {
        self.sent.load(Ordering::Acquire) != 0
    }

    /// The last measured round-trip time.
    pub fn rtt(&self) -> Option<Duration> {
        match self.rtt_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    fn sent_at(&self) -> Option<Instant> {
        at(self.sent.load(Ordering::Acquire))
    }
}

slotmap::new_key_type! {
    /// A session's place among its thread's heartbeat schedules (`keepalive.rs`).
    pub(super) struct BeatKey;
}

/// A session's schedule, in its `Sink` (`outlet.rs`), run by its thread's wheel
/// (`keepalive.rs`). The wheel lists sessions by [`BeatKey`], and only its table of
/// schedules holds the sink, weakly: a sink that goes takes its entry with it (see
/// `keepalive.rs`, `impl Drop for Heartbeat`), so an ended session's memory is
/// freed at once, not at the visit the wheel still has listed for it.
#[derive(Default)]
pub(super) struct Heartbeat {
    /// Where the session's round-trip time is published (its sockets read it).
    pub ids: OnceCell<Arc<SessionLink>>,
    /// When the schedule's next ping is due.
    pub next: Cell<Option<Instant>>,
    /// The schedule's entry in its thread's wheel, once started.
    pub key: Cell<Option<BeatKey>>,
}

/// The process's heartbeat clock starts here: pulses keep instants as nanoseconds
/// since it (an `AtomicU64`), and the ping grid is laid from it.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// `t` as a pulse keeps it: nanoseconds since [`epoch`], plus one (0 means "none").
fn stamp(t: Instant) -> u64 {
    let ns = t.saturating_duration_since(epoch()).as_nanos();
    u64::try_from(ns).unwrap_or(u64::MAX - 1) + 1
}

/// The inverse of [`stamp`]; `None` for 0.
fn at(stamp: u64) -> Option<Instant> {
    stamp
        .checked_sub(1)
        .map(|ns| epoch() + Duration::from_nanos(ns))
}

/// When the ping after the one scheduled at `scheduled` is due, seen at `now`: the
/// next slot of the fixed schedule that is still in the future. Slots missed while
/// the thread was busy are skipped, not caught up on, so a late tick never produces
/// a burst of pings.
pub fn next_ping(scheduled: Instant, now: Instant, interval: Duration) -> Instant {
    let interval = interval.max(Duration::from_millis(1));
    let mut next = scheduled + interval;
    if next <= now {
        let behind = now.duration_since(next).as_nanos() / interval.as_nanos() + 1;
        let skip = u32::try_from(behind).unwrap_or(u32::MAX);
        next += interval.saturating_mul(skip);
    }
    next
}

/// The most apart two slots of the ping grid are.
const MAX_GRID: Duration = Duration::from_millis(250);

/// The spacing of the grid every session's pings fall on: the ping interval divided
/// into at least 20 equal slots, none longer than 250 ms. Pings due in the same slot
/// go out together, on one wake-up of their thread, instead of one wake-up each (a
/// wake-up of an idle thread costs more than the ping it sends).
pub fn ping_grid(interval: Duration) -> Duration {
    let interval = interval.max(Duration::from_millis(1));
    let slots = interval.as_nanos().div_ceil(MAX_GRID.as_nanos()).max(20);
    let nanos = interval.as_nanos() / slots;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX).max(1))
}

/// The first point of the grid (spaced `grid`, from `epoch`) at or after `t`.
pub fn on_grid(t: Instant, epoch: Instant, grid: Duration) -> Instant {
    if t <= epoch {
        return epoch;
    }
    let slots = t.duration_since(epoch).as_nanos().div_ceil(grid.as_nanos());
    epoch + grid.saturating_mul(u32::try_from(slots).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_divides_the_interval() {
        for ms in [100, 400, 1000, 2000, 25_000, 333] {
            let interval = Duration::from_millis(ms);
            let grid = ping_grid(interval);
            assert!(grid <= MAX_GRID, "{ms} ms: {grid:?}");
            assert!(interval / 20 >= grid, "{ms} ms: {grid:?}");
            // A whole number of slots per interval, to within a nanosecond per slot.
            let slots = interval.as_nanos() / grid.as_nanos();
            assert!(
                interval.as_nanos() - slots * grid.as_nanos() < slots,
                "{ms} ms"
            );
        }
        assert_eq!(
            ping_grid(Duration::from_secs(25)),
            Duration::from_millis(250)
        );
        assert_eq!(
            ping_grid(Duration::from_secs(2)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn times_round_up_to_the_grid() {
        let epoch = Instant::now();
        let g = Duration::from_millis(100);
        assert_eq!(on_grid(epoch, epoch, g), epoch);
        assert_eq!(
            on_grid(epoch + Duration::from_millis(1), epoch, g),
            epoch + g
        );
        assert_eq!(on_grid(epoch + g, epoch, g), epoch + g);
        assert_eq!(
            on_grid(epoch + Duration::from_millis(250), epoch, g),
            epoch + 3 * g
        );
    }

    #[test]
    fn the_schedule_is_fixed_and_skips_missed_slots() {
        let t0 = Instant::now();
        let i = Duration::from_millis(100);
        // On time, or a little late: the next slot does not drift.
        assert_eq!(next_ping(t0, t0, i), t0 + i);
        assert_eq!(next_ping(t0, t0 + Duration::from_millis(30), i), t0 + i);
        // Two and a half intervals late: the missed slots are skipped.
        let late = t0 + Duration::from_millis(250);
        assert_eq!(next_ping(t0, late, i), t0 + 3 * i);
        // Exactly on a slot boundary: that slot is now, so the next one is due.
        assert_eq!(next_ping(t0, t0 + i, i), t0 + 2 * i);
    }

    #[test]
    fn a_pong_that_acknowledges_nothing_new_is_the_readers() {
        let t0 = epoch() + Duration::from_secs(1);
        let pulse = Pulse::default();
        let timeout = Duration::from_secs(2);
        // Nothing outstanding: the session takes it.
        assert_eq!(pulse.answer(0, t0), None);
        assert_eq!(pulse.tick(t0, timeout), Beat::Ping);
        // A pong that acknowledges frames the session has not applied is the session's.
        assert_eq!(pulse.answer(3, t0 + Duration::from_millis(5)), None);
        assert!(pulse.outstanding());
        assert_eq!(
            pulse.answer(0, t0 + Duration::from_millis(5)),
            Some(Duration::from_millis(5))
        );
        assert!(!pulse.outstanding());
        assert_eq!(pulse.rtt(), Some(Duration::from_millis(5)));
        pulse.acked(3);
        assert_eq!(pulse.tick(t0 + Duration::from_secs(2), timeout), Beat::Ping);
        assert_eq!(pulse.answer(0, t0 + Duration::from_secs(3)), None);
        assert_eq!(
            pulse.answer(3, t0 + Duration::from_millis(2_010)),
            Some(Duration::from_millis(10))
        );
    }

    #[test]
    fn pings_then_times_out_without_pong() {
        let t0 = epoch() + Duration::from_secs(1);
        let pulse = Pulse::default();
        let timeout = Duration::from_secs(2);
        assert_eq!(pulse.deadline(timeout), None);
        assert_eq!(pulse.tick(t0, timeout), Beat::Ping);
        assert_eq!(pulse.deadline(timeout), Some(t0 + timeout));
        assert_eq!(pulse.tick(t0 + Duration::from_secs(1), timeout), Beat::Wait);
        assert_eq!(pulse.tick(t0 + timeout, timeout), Beat::TimedOut);
    }

    #[test]
    fn pong_measures_rtt_and_clears_outstanding() {
        let t0 = epoch() + Duration::from_secs(1);
        let pulse = Pulse::default();
        let timeout = Duration::from_secs(2);
        assert_eq!(pulse.rtt(), None);
        assert_eq!(pulse.tick(t0, timeout), Beat::Ping);
        assert_eq!(
            pulse.pong(t0 + Duration::from_millis(30)),
            Some(Duration::from_millis(30))
        );
        assert_eq!(pulse.rtt(), Some(Duration::from_millis(30)));
        assert_eq!(pulse.pong(t0 + Duration::from_millis(40)), None);
        assert_eq!(
            pulse.tick(t0 + Duration::from_secs(10), timeout),
            Beat::Ping
        );
    }
}
