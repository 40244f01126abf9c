//! The inbound rate limit of one session ([`crate::RateLimit`]): token buckets that
//! every frame from the client draws on. Pure bookkeeping over the times it is given,
//! so that tests can drive it without a clock.
//!
//! Kept small, as every idle session has one: the buckets' rates and bursts are the
//! configuration's, passed in; a session keeps only what its client has used.

use std::fmt;
use std::time::Instant;

use crate::RateLimit;

/// Refills a bucket of up to `burst` tokens at `rate` tokens per second for
/// `elapsed` seconds, then takes `n` tokens if it holds them.
pub(super) fn take(tokens: &mut f64, rate: f64, burst: u64, elapsed: f64, n: f64) -> bool {
    *tokens = (*tokens + elapsed * rate).min(burst.max(1) as f64);
    if *tokens >= n {
        *tokens -= n;
        true
    } else {
        false
    }
}

/// Which limit a client went over; its text ends the `error` frame's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exceeded {
    Frames { per_sec: u32, burst: u32 },
    Bytes { per_sec: u64, burst: u64 },
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exceeded::Frames { per_sec, burst } => {
                write!(f, "more than {per_sec} frames/s (burst {burst})")
            }
            Exceeded::Bytes { per_sec, burst } => {
                write!(f, "more than {per_sec} bytes/s (burst {burst})")
            }
        }
    }
}

/// The two buckets of one session: the tokens left in each (a limit whose rate is
/// zero is off, its bucket unused), refilled up to when they were last drawn on.
#[derive(Debug, Clone)]
pub(crate) struct InboundRate {
    frames: f64,
    bytes: f64,
    last: Instant,
}

impl InboundRate {
    /// Full buckets for `limit`.
    pub fn new(limit: &RateLimit, now: Instant) -> InboundRate {
        InboundRate {
            frames: f64::from(limit.frame_burst.max(1)),
            bytes: limit.byte_burst.max(1) as f64,
            last: now,
        }
    }

    /// Counts one frame of `size` bytes received at `now` against `limit` (the same
    /// every time); `Err` when it is over a limit (the frame is then not to be
    /// processed).
    pub fn admit(&mut self, limit: &RateLimit, size: usize, now: Instant) -> Result<(), Exceeded> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        // Both buckets refill first: one refused frame must not cost the other its
        // refill.
        let frames_ok = limit.frames_per_sec == 0 || {
            let rate = f64::from(limit.frames_per_sec);
            take(
                &mut self.frames,
                rate,
                limit.frame_burst.into(),
                elapsed,
                1.0,
            )
        };
        let bytes_ok = limit.bytes_per_sec == 0 || {
            let (rate, n) = (
                limit.bytes_per_sec as f64,
                if frames_ok { size as f64 } else { 0.0 },
            );
            take(&mut self.bytes, rate, limit.byte_burst, elapsed, n)
        };
        if !frames_ok {
            return Err(Exceeded::Frames {
                per_sec: limit.frames_per_sec,
                burst: limit.frame_burst,
            });
        }
        if !bytes_ok {
            return Err(Exceeded::Bytes {
                per_sec: limit.bytes_per_sec,
                burst: limit.byte_burst,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_limit_is_off_only_when_both_rates_are_zero() {
        assert!(RateLimit::OFF.is_off());
        assert!(!RateLimit::default().is_off());
        let frames_only = RateLimit {
            frames_per_sec: 5,
            ..RateLimit::OFF
        };
        let bytes_only = RateLimit {
            bytes_per_sec: 5,
            ..RateLimit::OFF
        };
        assert!(!frames_only.is_off() && !bytes_only.is_off());
    }

    fn limit(
        frames_per_sec: u32,
        frame_burst: u32,
        bytes_per_sec: u64,
        byte_burst: u64,
    ) -> RateLimit {
        RateLimit {
            frames_per_sec,
            frame_burst,
            bytes_per_sec,
            byte_burst,
        }
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let t0 = Instant::now();
        let rate_limit = limit(10, 20, 0, 0);
        let mut rate = InboundRate::new(&rate_limit, t0);
        for _ in 0..20 {
            assert_eq!(rate.admit(&rate_limit, 1, t0), Ok(()));
        }
        let over = Exceeded::Frames {
            per_sec: 10,
            burst: 20,
        };
        assert_eq!(rate.admit(&rate_limit, 1, t0), Err(over));
        // A second later, ten more tokens and no more.
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..10 {
            assert_eq!(rate.admit(&rate_limit, 1, t1), Ok(()));
        }
        assert_eq!(rate.admit(&rate_limit, 1, t1), Err(over));
        // Sustained at the rate: one frame every 100 ms passes forever.
        for i in 1..=100 {
            assert_eq!(
                rate.admit(&rate_limit, 1, t1 + Duration::from_millis(100 * i)),
                Ok(())
            );
        }
    }

    #[test]
    fn a_quiet_spell_refills_up_to_the_burst_only() {
        let t0 = Instant::now();
        let rate_limit = limit(10, 5, 0, 0);
        let mut rate = InboundRate::new(&rate_limit, t0);
        let later = t0 + Duration::from_secs(3600);
        let passed = (0..100)
            .filter(|_| rate.admit(&rate_limit, 1, later).is_ok())
            .count();
        assert_eq!(passed, 5);
    }

    #[test]
    fn bytes_are_counted_by_size() {
        let t0 = Instant::now();
        let rate_limit = limit(0, 0, 1000, 2000);
        let mut rate = InboundRate::new(&rate_limit, t0);
        assert_eq!(rate.admit(&rate_limit, 1500, t0), Ok(()));
        assert_eq!(
            rate.admit(&rate_limit, 600, t0),
            Err(Exceeded::Bytes {
                per_sec: 1000,
                burst: 2000
            })
        );
        assert_eq!(rate.admit(&rate_limit, 500, t0), Ok(()));
        assert_eq!(
            rate.admit(&rate_limit, 1000, t0 + Duration::from_secs(1)),
            Ok(())
        );
        assert_eq!(
            Exceeded::Bytes {
                per_sec: 1000,
                burst: 2000
            }
            .to_string(),
            "more than 1000 bytes/s (burst 2000)"
        );
    }

    #[test]
    fn off_admits_everything_and_time_going_backwards_is_harmless() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let off_limit = RateLimit::OFF;
        let mut off = InboundRate::new(&off_limit, t0);
        assert!((0..10_000).all(|_| off.admit(&off_limit, 1 << 20, t0).is_ok()));
        let rate_limit = limit(1, 1, 0, 0);
        let mut rate = InboundRate::new(&rate_limit, t0);
        assert_eq!(rate.admit(&rate_limit, 1, t0), Ok(()));
        assert!(rate
            .admit(&rate_limit, 1, t0 - Duration::from_secs(5))
            .is_err());
        assert_eq!(
            rate.admit(&rate_limit, 1, t0 + Duration::from_secs(1)),
            Ok(())
        );
    }
}
