//! Heartbeat bookkeeping, kept free of timers so it can be unit-tested.
//!
//! The server pings on a fixed schedule, once every `interval` counted from the
//! session's opening (not from the last pong), and never has more than one ping
//! outstanding; the client must answer within `timeout` of the ping, or its connection
//! is dropped. A peer that stops answering is therefore detected at the latest
//! `interval + timeout` after its last answer. The timers that drive this live in
//! `keepalive.rs`.

use std::time::{Duration, Instant};

/// What the session should do when its heartbeat timer fires.
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

/// Heartbeat state of one session.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    timeout: Duration,
    /// When the unanswered ping was sent; `None` when every ping has been answered.
    outstanding: Option<Instant>,
    /// The last round-trip time in nanoseconds, `NO_RTT` before the first pong: 8
    /// bytes instead of an `Option<Duration>`'s 16 keep the session's task (its actix
    /// context, this included) in a smaller allocation.
    rtt_ns: u64,
}

/// `Heartbeat::rtt_ns` before anything was measured.
const NO_RTT: u64 = u64::MAX;

impl Heartbeat {
    /// A heartbeat with no ping outstanding.
    pub fn new(timeout: Duration) -> Self {
        Heartbeat {
            timeout,
            outstanding: None,
            rtt_ns: NO_RTT,
        }
    }

    /// Decides what to do at `now`; records the ping when it says [`Beat::Ping`].
    pub fn tick(&mut self, now: Instant) -> Beat {
        match self.outstanding {
            Some(sent) if now.duration_since(sent) >= self.timeout => Beat::TimedOut,
            Some(_) => Beat::Wait,
            None => {
                self.outstanding = Some(now);
                Beat::Ping
            }
        }
    }

    /// Records a pong; returns the measured round-trip time if a ping was outstanding.
    pub fn pong(&mut self, now: Instant) -> Option<Duration> {
        let sent = self.outstanding.take()?;
        let rtt = now.duration_since(sent);
        self.rtt_ns = u64::try_from(rtt.as_nanos())
            .unwrap_or(NO_RTT)
            .min(NO_RTT - 1);
        Some(rtt)
    }

    /// Whether a ping is waiting for its pong.
    pub fn outstanding(&self) -> bool {
        self.outstanding.is_some()
    }

    /// Forgets the outstanding ping (the connection it was sent on is gone); the
    /// measured round-trip time is kept.
    pub fn reset(&mut self) {
        self.outstanding = None;
    }

    /// The last measured round-trip time.
    pub fn rtt(&self) -> Option<Duration> {
        (self.rtt_ns != NO_RTT).then(|| Duration::from_nanos(self.rtt_ns))
    }
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
    fn reset_forgets_the_outstanding_ping_but_keeps_rtt() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(Duration::from_secs(2));
        assert_eq!(hb.tick(t0), Beat::Ping);
        hb.pong(t0 + Duration::from_millis(5));
        assert_eq!(hb.tick(t0 + Duration::from_secs(1)), Beat::Ping);
        assert!(hb.outstanding());
        hb.reset();
        assert!(!hb.outstanding());
        assert_eq!(hb.rtt(), Some(Duration::from_millis(5)));
        assert_eq!(hb.tick(t0 + Duration::from_secs(5)), Beat::Ping);
    }

    #[test]
    fn pings_then_times_out_without_pong() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(Duration::from_secs(2));
        assert_eq!(hb.tick(t0), Beat::Ping);
        assert_eq!(hb.tick(t0 + Duration::from_secs(1)), Beat::Wait);
        assert_eq!(hb.tick(t0 + Duration::from_secs(2)), Beat::TimedOut);
    }

    #[test]
    fn pong_measures_rtt_and_clears_outstanding() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(Duration::from_secs(2));
        assert_eq!(hb.tick(t0), Beat::Ping);
        assert_eq!(
            hb.pong(t0 + Duration::from_millis(30)),
            Some(Duration::from_millis(30))
        );
        assert_eq!(hb.rtt(), Some(Duration::from_millis(30)));
        assert_eq!(hb.pong(t0 + Duration::from_millis(40)), None);
        assert_eq!(hb.tick(t0 + Duration::from_secs(10)), Beat::Ping);
    }
}
