//! The reconnection schedule: exponential back-off with jitter, as pure arithmetic.

use std::time::Duration;

use rand::Rng;

/// How long the client waits before each reconnection attempt.
///
/// Attempt `n` (from 1) waits `initial × factor^(n-1)`, moved by a random fraction
/// of at most `jitter` either way, and never more than `max`. The jitter spreads a
/// crowd of clients cut at once over time instead of sending them back together.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    /// Delay before the first attempt. Default 1 s.
    pub initial: Duration,
    /// Upper bound of any delay. Default 5 s.
    pub max: Duration,
    /// Growth per attempt. Default 2.
    pub factor: f64,
    /// Random spread as a fraction of the delay, 0 to 1. Default 0.5 (±50%).
    pub jitter: f64,
    /// Give up after this many attempts; `None` never gives up. Default `None`.
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(5),
            factor: 2.0,
            jitter: 0.5,
            max_attempts: None,
        }
    }
}

impl Backoff {
    /// The delay of attempt `attempt` (from 1) before jitter, capped at `max`.
    pub fn base(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(64) as i32;
        let secs = self.initial.as_secs_f64() * self.factor.powi(exp);
        Duration::from_secs_f64(secs.min(self.max.as_secs_f64()))
    }

    /// The delay of attempt `attempt` with jitter drawn from `rng`.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let base = self.base(attempt).as_secs_f64();
        let jitter = self.jitter.clamp(0.0, 1.0);
        let spread = if jitter > 0.0 {
            rng.gen_range(-jitter..=jitter)
        } else {
            0.0
        };
        Duration::from_secs_f64((base * (1.0 + spread)).min(self.max.as_secs_f64()))
    }

    /// Whether attempt `attempt` may be made.
    pub fn allows(&self, attempt: u32) -> bool {
        self.max_attempts.is_none_or(|max| attempt <= max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn defaults_double_from_one_second_to_a_five_second_cap() {
        let b = Backoff::default();
        let bases: Vec<f64> = (1..=6).map(|n| b.base(n).as_secs_f64()).collect();
        assert_eq!(bases, vec![1.0, 2.0, 4.0, 5.0, 5.0, 5.0]);
        assert!(b.allows(1_000_000));
    }

    #[test]
    fn jitter_stays_within_half_either_way_and_under_the_cap() {
        let b = Backoff::default();
        let mut rng = StdRng::seed_from_u64(7);
        let mut low = f64::MAX;
        let mut high: f64 = 0.0;
        for _ in 0..1000 {
            let d = b.delay(2, &mut rng).as_secs_f64();
            assert!((1.0..=3.0).contains(&d), "{d}");
            low = low.min(d);
            high = high.max(d);
            let capped = b.delay(10, &mut rng).as_secs_f64();
            assert!((2.5..=5.0).contains(&capped), "{capped}");
        }
        // The spread is really used, not a constant.
        assert!(low < 1.2 && high > 2.8, "{low}..{high}");
    }

    #[test]
    fn configured_schedule_is_followed_exactly_without_jitter() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            factor: 3.0,
            jitter: 0.0,
            max_attempts: Some(4),
        };
        let mut rng = StdRng::seed_from_u64(1);
        let delays: Vec<u128> = (1..=5).map(|n| b.delay(n, &mut rng).as_millis()).collect();
        assert_eq!(delays, vec![100, 300, 900, 1000, 1000]);
        assert!(b.allows(4));
        assert!(!b.allows(5));
    }
}
