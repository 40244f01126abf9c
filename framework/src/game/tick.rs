//! Tick scheduling math: when each tick is due, how late it ran, and what happens when
//! a room falls behind. Pure functions of instants, so tests drive them without a
//! runtime or a clock.
//!
//! Tick `n` (counting from 1) is due at `start + n * period`, computed from the start
//! every time: a late tick never pushes the later ones back, so the schedule does not
//! drift however long the room runs. The period is kept as a rate (ticks per second)
//! and multiplied out in nanoseconds, so a period that is not a whole number of
//! nanoseconds (60 Hz) does not accumulate rounding either.
//!
//! **Overruns.** When the room wakes up and several ticks are overdue (a tick took
//! longer than a period, or the thread was busy), it catches up by running them one
//! after the other, yielding to the other rooms of its thread between two ticks. It
//! catches up at most `max_catch_up` ticks: the overdue ticks beyond that are
//! *skipped* (never simulated) and counted, so that a room that cannot keep up
//! slows its game down instead of spiralling into ever longer bursts of ticks.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::grid::{on_grid, Grid};

/// The absolute schedule of one room's ticks.
#[derive(Debug, Clone)]
pub struct TickSchedule {
    grid: Grid,
    /// The number of the next tick to run (the first is 1).
    next: u64,
    max_catch_up: u64,
    skipped: u64,
}

/// A tick to run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueTick {
    /// Its number, from 1; numbers of skipped ticks are never run.
    pub tick: u64,
    /// How long after its deadline it starts.
    pub lateness: Duration,
    /// Overdue ticks skipped just before it (beyond the catch-up limit).
    pub skipped: u64,
}

impl TickSchedule {
    /// `rate` ticks per second from `start` (the first tick is due one period after
    /// it). A rate of 0 is taken as 1.
    pub fn new(start: Instant, rate: u32, max_catch_up: u32) -> Self {
        TickSchedule {
            grid: Grid::new(start, rate),
            next: 1,
            max_catch_up: u64::from(max_catch_up),
            skipped: 0,
        }
    }

    /// The time of tick `n` since the start: `n * 1 s / rate`, rounded down to the
    /// nanosecond, without accumulating the rounding.
    pub fn offset(&self, n: u64) -> Duration {
        self.grid.offset(n)
    }

    /// When tick `n` is due.
    pub fn deadline(&self, n: u64) -> Instant {
        self.grid.at(n)
    }

    /// When the next tick to run is due.
    pub fn next_deadline(&self) -> Instant {
        self.deadline(self.next)
    }

    /// The fixed simulation step: one period.
    pub fn period(&self) -> Duration {
        self.offset(1)
    }

    /// The number of the last tick run (0 before the first).
    pub fn last_run(&self) -> u64 {
        self.next - 1
    }

    /// Ticks skipped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Whether another tick is already due at `now`.
    pub fn is_behind(&self, now: Instant) -> bool {
        self.next_deadline() <= now
    }

    /// The number of the last tick due at `now` (0 before the first).
    fn last_due(&self, now: Instant) -> u64 {
        self.grid.last_due(now)
    }

    /// The tick to run at `now`, if one is due, applying the catch-up limit.
    pub fn poll(&mut self, now: Instant) -> Option<DueTick> {
        let last_due = self.last_due(now);
        if last_due < self.next {
            return None;
        }
        // Overdue ticks after the one we are about to run.
        let behind = last_due - self.next;
        let skipped = behind.saturating_sub(self.max_catch_up);
        self.next += skipped;
        self.skipped += skipped;
        let tick = self.next;
        self.next += 1;
        Some(DueTick {
            tick,
            lateness: now.saturating_duration_since(self.deadline(tick)),
            skipped,
        })
    }
}

/// The instants per period on which a thread's rooms of one rate tick: a thread
/// wakes at most `PHASES` times a period whatever its number of rooms, and each
/// wake-up runs an eighth of them, so the last room of a wake-up is not late by
/// every other room's tick (100 rooms at once made the median room's lateness p99
/// 7.5 ms instead of 3 ms; 500 rooms on two threads at 4 phases put 62 rooms on one
/// instant; 16 phases cost 5–8% more CPU at 200 rooms, for the wake-ups of the
/// players' threads, and lowered the lateness little more than 8).
pub const PHASES: u32 = 8;

/// The first instant at or after `now` on the grid of `rate` a second from the
/// process's epoch (the first call), on one of the [`PHASES`] instants of each
/// period, taken in turn by the rooms of the calling thread. Rooms that start their
/// schedule on one grid and tick at the same rate fall due at the same instants:
/// their thread wakes once per instant for all of them, and their states leave it
/// together (`room/outbound.rs`), instead of a wake-up and a message per room.
pub fn on_process_grid(now: Instant, rate: u32) -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    thread_local! {
        static NEXT_PHASE: Cell<u32> = const { Cell::new(0) };
    }
    let epoch = *EPOCH.get_or_init(|| now);
    let phase = NEXT_PHASE.with(|next| {
        let phase = next.get();
        next.set((phase + 1) % PHASES);
        phase
    });
    let fine_rate = rate.max(1).saturating_mul(PHASES);
    // The paced io threads read their clients' inputs just before these instants.
    crate::pacing::align(epoch, fine_rate);
    let fine = TickSchedule::new(epoch, fine_rate, 0);
    on_grid(epoch + fine.offset(u64::from(phase)), now, rate)
}

/// Whether the state is broadcast after tick `tick` when ticks run at `tick_rate`
/// and broadcasts at `broadcast_rate` (at most `tick_rate`): exactly when
/// `tick * broadcast_rate / tick_rate` reaches a new whole number. Tied to tick
/// numbers, so broadcasts are as drift-free as ticks and always follow a fresh
/// simulation step; 60 Hz ticks with 20 Hz broadcasts send after every third tick.
pub fn broadcast_due(tick: u64, tick_rate: u32, broadcast_rate: u32) -> bool {
    let (t, b) = (u128::from(tick_rate.max(1)), u128::from(broadcast_rate));
    let n = u128::from(tick);
    n > 0 && n * b / t != (n - 1) * b / t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn deadlines_are_multiples_of_the_period_from_the_start() {
        let start = Instant::now();
        let s = TickSchedule::new(start, 60, 3);
        assert_eq!(s.offset(1), Duration::from_nanos(16_666_666));
        // 60 ticks are exactly one second: no accumulated rounding.
        assert_eq!(s.offset(60), Duration::from_secs(1));
        assert_eq!(s.offset(3_600 * 60), Duration::from_secs(3_600));
        assert_eq!(s.deadline(6), start + Duration::from_nanos(100_000_000));
    }

    #[test]
    fn on_time_ticks_run_one_by_one_and_late_ones_report_lateness() {
        let start = Instant::now();
        let mut s = TickSchedule::new(start, 10, 3);
        assert_eq!(s.poll(start + ms(99)), None, "nothing is due before 100 ms");
        let due = s.poll(start + ms(100)).unwrap();
        assert_eq!((due.tick, due.lateness, due.skipped), (1, ms(0), 0));
        assert_eq!(s.poll(start + ms(150)), None);
        let due = s.poll(start + ms(207)).unwrap();
        assert_eq!((due.tick, due.lateness), (2, ms(7)));
        // A late tick does not move the next deadline.
        assert_eq!(s.next_deadline(), start + ms(300));
    }

    #[test]
    fn falling_behind_catches_up_then_skips_beyond_the_limit() {
        let start = Instant::now();
        let mut s = TickSchedule::new(start, 10, 2);
        // Wake at 450 ms: ticks 1..=4 are due. Tick 1 runs, 3 are behind, the limit
        // is 2, so one is skipped: tick 2 runs now, then 3 and 4 catch up.
        let now = start + ms(450);
        let due = s.poll(now).unwrap();
        assert_eq!((due.tick, due.skipped), (2, 1));
        assert_eq!(due.lateness, ms(250));
        assert!(s.is_behind(now));
        assert_eq!(s.poll(now).map(|d| d.tick), Some(3));
        assert_eq!(s.poll(now).map(|d| d.tick), Some(4));
        assert!(!s.is_behind(now));
        assert_eq!(s.poll(now), None);
        assert_eq!(s.skipped(), 1);
        assert_eq!(s.next_deadline(), start + ms(500));
    }

    #[test]
    fn a_long_stall_skips_everything_past_the_limit() {
        let start = Instant::now();
        let mut s = TickSchedule::new(start, 60, 3);
        let now = start + Duration::from_secs(10);
        let mut ran = 0;
        while s.poll(now).is_some() {
            ran += 1;
        }
        assert_eq!(ran, 4, "the tick due plus at most 3 catch-up ticks");
        assert_eq!(s.skipped() + ran, 600);
    }

    #[test]
    fn rooms_started_at_different_times_share_the_grid_of_their_rate() {
        let epoch = Instant::now();
        // Started 5 ms and 71 ms after the epoch, at 30 Hz: both on the grid, the
        // first point at or after their start, so their ticks fall due together.
        let a = on_grid(epoch, epoch + ms(5), 30);
        let b = on_grid(epoch, epoch + ms(71), 30);
        let period = TickSchedule::new(epoch, 30, 0);
        assert_eq!(a, period.deadline(1));
        assert_eq!(b, period.deadline(3));
        let (ra, rb) = (TickSchedule::new(a, 30, 3), TickSchedule::new(b, 30, 3));
        let gap = ra.deadline(3).max(rb.deadline(1)) - ra.deadline(3).min(rb.deadline(1));
        assert!(gap <= Duration::from_nanos(2), "{gap:?} apart");
        // On a grid point already: that point.
        assert_eq!(on_grid(epoch, a, 30), a);
        assert_eq!(on_grid(epoch, epoch, 30), epoch);
    }

    #[test]
    fn broadcasts_follow_the_ratio_of_the_rates() {
        let every =
            |t: u32, b: u32| -> Vec<u64> { (1..=12).filter(|&n| broadcast_due(n, t, b)).collect() };
        assert_eq!(every(60, 20), vec![3, 6, 9, 12]);
        assert_eq!(every(60, 60), (1..=12).collect::<Vec<_>>());
        assert_eq!(every(30, 20), vec![2, 3, 5, 6, 8, 9, 11, 12]);
        // 60 ticks at 60 Hz with 25 Hz broadcasts: exactly 25 broadcasts per second.
        assert_eq!((1..=60).filter(|&n| broadcast_due(n, 60, 25)).count(), 25);
        assert!(!broadcast_due(0, 60, 20));
        assert!((1..=100).all(|n| !broadcast_due(n, 60, 0)));
    }
}
