//! Per-room metrics: counters and two fixed-bucket histograms (tick duration and
//! tick lateness), kept by the room actor itself and read as a [`RoomMetrics`]
//! snapshot by the application or an admin view ([`crate::GameRooms::metrics`]).
//!
//! Histograms have fixed buckets so that recording is a few comparisons and no
//! allocation, whatever the run time; a percentile is reported as the upper bound of
//! the bucket it falls in (within the bucket's width of the truth), and the exact
//! maximum and mean are kept beside them.

use std::time::Duration;

use serde::Serialize;

use super::RoomId;
use crate::SessionId;

/// Upper bounds of the buckets, in microseconds; a last bucket takes everything
/// above. Finer where ticks live (a 60 Hz tick has 16.7 ms).
pub(crate) const BOUNDS_US: [u64; 22] = [
    10, 25, 50, 100, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000, 15_000,
    20_000, 30_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// Durations counted into fixed buckets.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: [u64; BOUNDS_US.len() + 1],
    total: u64,
    sum_us: u128,
    max_us: u64,
}

impl Histogram {
    /// Counts one duration.
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_US.partition_point(|&bound| bound < us);
        self.counts[bucket] += 1;
        self.total += 1;
        self.sum_us += u128::from(us);
        self.max_us = self.max_us.max(us);
    }

    /// The upper bound of the bucket holding the `q` quantile (`0.0..=1.0`); the
    /// maximum itself for the last bucket, and zero when nothing was recorded.
    pub fn percentile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        // The rank of the quantile, 1-based: p50 of 10 values is the 5th.
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let bound = BOUNDS_US.get(bucket).copied().unwrap_or(self.max_us);
                return Duration::from_micros(bound.min(self.max_us));
            }
        }
        Duration::from_micros(self.max_us)
    }

    /// The figures an admin view shows.
    pub fn summary(&self) -> Summary {
        let mean_us = if self.total == 0 {
            0
        } else {
            u64::try_from(self.sum_us / u128::from(self.total)).unwrap_or(u64::MAX)
        };
        Summary {
            count: self.total,
            p50: self.percentile(0.50),
            p99: self.percentile(0.99),
            max: Duration::from_micros(self.max_us),
            mean: Duration::from_micros(mean_us),
            counts: self.counts,
            sum: Duration::from_micros(u64::try_from(self.sum_us).unwrap_or(u64::MAX)),
        }
    }
}

/// A histogram's figures. Percentiles are bucket upper bounds (see the module).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Durations recorded.
    pub count: u64,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest, exact.
    pub max: Duration,
    /// Mean, exact to the microsecond.
    pub mean: Duration,
    /// Durations per bucket of [`BOUNDS_US`], the last one past them (for the
    /// server's Prometheus histograms).
    #[serde(skip)]
    pub(crate) counts: [u64; BOUNDS_US.len() + 1],
    /// Sum of the durations.
    #[serde(skip)]
    pub(crate) sum: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:?}, p99 {:?}, max {:?}, mean {:?} (n={})",
            self.p50, self.p99, self.max, self.mean, self.count
        )
    }
}

/// A snapshot of one game room's metrics. Counters run from the room's creation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoomMetrics {
    /// The room.
    pub room: RoomId,
    /// Its type.
    pub room_type: String,
    /// Time since the room's clock started (its tick 0).
    pub uptime: Duration,
    /// Configured simulation rate (ticks per second).
    pub tick_rate: u32,
    /// Configured broadcast rate (state sends per second).
    pub broadcast_rate: u32,
    /// Ticks simulated.
    pub ticks: u64,
    /// Ticks skipped because the room was more than `max_catch_up` ticks behind.
    pub skipped_ticks: u64,
    /// How long `Game::tick` (with its inputs) took.
    pub tick_duration: Summary,
    /// How long after its deadline each tick started.
    pub lateness: Summary,
    /// State broadcasts done.
    pub broadcasts: u64,
    /// States computed and encoded for broadcasts: one per distinct subset with at
    /// least one connected player, per broadcast.
    pub state_encodes: u64,
    /// Full states sent to one player at once, outside broadcasts (on join, on
    /// resume), each computed and encoded for that player.
    pub full_states: u64,
    /// State frames handed to sessions (broadcast and full).
    pub frames_sent: u64,
    /// Bytes of those frames.
    pub bytes_sent: u64,
    /// Seated players, connected or held.
    pub players: usize,
    /// Seats held for players whose connection dropped (counted in `players`).
    pub held_seats: usize,
    /// Inputs given to `Game::input`.
    pub inputs_applied: u64,
    /// Inputs dropped because their player had `max_inputs_per_tick` queued.
    pub inputs_dropped: u64,
    /// Inputs that did not decode as the game's input type.
    pub inputs_invalid: u64,
    /// One entry per seated player, in session id order: what an admin view shows
    /// in a room's detail (input rates are the difference of two snapshots).
    pub seated: Vec<PlayerMetrics>,
}

/// One seated player's figures in a [`RoomMetrics`] snapshot. Counters run from the
/// moment the player took the seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PlayerMetrics {
    /// The player.
    pub session: SessionId,
    /// False while the seat is held for a dropped connection.
    pub connected: bool,
    /// Inputs the room took from the player at its ticks (applied or invalid).
    pub inputs: u64,
    /// Inputs dropped because the player had `max_inputs_per_tick` queued.
    pub inputs_dropped: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_bucket_bounds_and_max_is_exact() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile(0.5), Duration::ZERO);
        for us in [90, 95, 99, 120, 180, 250, 400, 900, 1_200, 40_000] {
            h.record(Duration::from_micros(us));
        }
        let s = h.summary();
        assert_eq!(s.count, 10);
        // 5th of 10 values (180 µs) lies in the 100..=200 µs bucket.
        assert_eq!(s.p50, Duration::from_micros(200));
        // The 10th (40 ms) is in the 30..=50 ms bucket, capped at the exact max.
        assert_eq!(s.p99, Duration::from_micros(40_000));
        assert_eq!(s.max, Duration::from_micros(40_000));
        assert_eq!(s.mean, Duration::from_micros(4_333));
    }

    #[test]
    fn values_past_the_last_bound_land_in_the_overflow_bucket() {
        let mut h = Histogram::default();
        h.record(Duration::from_secs(3));
        h.record(Duration::ZERO);
        assert_eq!(h.percentile(1.0), Duration::from_secs(3));
        assert_eq!(h.percentile(0.5), Duration::from_micros(10));
    }
}
