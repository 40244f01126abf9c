//! Instants on a fixed-rate grid: `rate` a second from a start, the `n`th at
//! `start + n × 1 s / rate` rounded down to the nanosecond, the rounding never
//! accumulated. The game rooms' tick schedules (`game::tick`) and the paced io
//! threads' reads (`pacing`) count on the same grids, so a read lands just before
//! the instants the rooms tick on.

use std::time::{Duration, Instant};

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// `rate` instants a second from `start` (the first one period after it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    start: Instant,
    rate: u32,
}

impl Grid {
    /// A rate of 0 is taken as 1.
    pub fn new(start: Instant, rate: u32) -> Self {
        Grid {
            start,
            rate: rate.max(1),
        }
    }

    /// The time of instant `n` since the start: `n * 1 s / rate`, rounded down to
    /// the nanosecond, without accumulating the rounding.
    pub fn offset(&self, n: u64) -> Duration {
        let nanos = u128::from(n) * NANOS_PER_SEC / u128::from(self.rate);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Instant `n`.
    pub fn at(&self, n: u64) -> Instant {
        self.start + self.offset(n)
    }

    /// The number of the last instant at or before `now` (0 before the first).
    pub fn last_due(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start).as_nanos();
        let n = elapsed * u128::from(self.rate) / NANOS_PER_SEC;
        // Rounding down in `offset` can put an instant a nanosecond before the exact
        // multiple: count the one whose computed time has passed.
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        if self.at(n.saturating_add(1)) <= now {
            n + 1
        } else {
            n
        }
    }

    /// The first instant at or after `now`.
    pub fn first_from(&self, now: Instant) -> Instant {
        let n = self.last_due(now);
        if self.at(n) >= now {
            self.at(n)
        } else {
            self.at(n + 1)
        }
    }
}

/// The first instant at or after `now` on the grid of `rate`-per-second instants that
/// starts at `epoch`.
pub(crate) fn on_grid(epoch: Instant, now: Instant, rate: u32) -> Instant {
    Grid::new(epoch, rate).first_from(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_exact_multiples_and_the_first_from_is_on_or_after() {
        let start = Instant::now();
        let grid = Grid::new(start, 60);
        assert_eq!(grid.offset(1), Duration::from_nanos(16_666_666));
        assert_eq!(grid.offset(60), Duration::from_secs(1));
        assert_eq!(grid.last_due(start), 0);
        assert_eq!(grid.last_due(grid.at(3)), 3);
        assert_eq!(grid.first_from(start), start);
        assert_eq!(grid.first_from(grid.at(2)), grid.at(2));
        let between = grid.at(2) + Duration::from_nanos(1);
        assert_eq!(grid.first_from(between), grid.at(3));
        assert_eq!(on_grid(start, between, 60), grid.at(3));
        assert_eq!(Grid::new(start, 0).offset(1), Duration::from_secs(1));
    }
}
