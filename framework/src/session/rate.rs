//! The inbound rate limit of one session ([`crate::RateLimit`]): token buckets that
//! every frame from the client draws on. Pure bookkeeping over the times it is given,
//! so that tests can drive it without a clock.

use std::fmt;
use std::time::Instant;

use crate::RateLimit;

/// A bucket of up to `burst` tokens that refills at `rate` tokens per second.
#[derive(Debug, Clone)]
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket, or none when `rate` is zero (that limit is off).
    fn new(rate: u64, burst: u64, now: Instant) -> Option<TokenBucket> {
        (rate > 0).then(|| TokenBucket {
            rate: rate as f64,
            burst: burst.max(1) as f64,
            tokens: burst.max(1) as f64,
            last: now,
        })
    }

    /// Takes `n` tokens if the bucket holds them after refilling up to `now`.
    fn take(&mut self, n: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
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

/// The two buckets of one session.
#[derive(Debug, Clone)]
pub(crate) struct InboundRate {
    limit: RateLimit,
    frames: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
}

impl InboundRate {
    pub fn new(limit: RateLimit, now: Instant) -> InboundRate {
        InboundRate {
            limit,
            frames: TokenBucket::new(limit.frames_per_sec.into(), limit.frame_burst.into(), now),
            bytes: TokenBucket::new(limit.bytes_per_sec, limit.byte_burst, now),
        }
    }

    /// Counts one frame of `size` bytes received at `now`; `Err` when it is over a
    /// limit (the frame is then not to be processed).
    pub fn admit(&mut self, size: usize, now: Instant) -> Result<(), Exceeded> {
        let limit = &self.limit;
        if let Some(frames) = &mut self.frames {
            if !frames.take(1.0, now) {
                return Err(Exceeded::Frames {
                    per_sec: limit.frames_per_sec,
                    burst: limit.frame_burst,
                });
            }
        }
        if let Some(bytes) = &mut self.bytes {
            if !bytes.take(size as f64, now) {
                return Err(Exceeded::Bytes {
                    per_sec: limit.bytes_per_sec,
                    burst: limit.byte_burst,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
        let mut rate = InboundRate::new(limit(10, 20, 0, 0), t0);
        for _ in 0..20 {
            assert_eq!(rate.admit(1, t0), Ok(()));
        }
        let over = Exceeded::Frames {
            per_sec: 10,
            burst: 20,
        };
        assert_eq!(rate.admit(1, t0), Err(over));
        // A second later, ten more tokens and no more.
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..10 {
            assert_eq!(rate.admit(1, t1), Ok(()));
        }
        assert_eq!(rate.admit(1, t1), Err(over));
        // Sustained at the rate: one frame every 100 ms passes forever.
        for i in 1..=100 {
            assert_eq!(rate.admit(1, t1 + Duration::from_millis(100 * i)), Ok(()));
        }
    }

    #[test]
    fn a_quiet_spell_refills_up_to_the_burst_only() {
        let t0 = Instant::now();
        let mut rate = InboundRate::new(limit(10, 5, 0, 0), t0);
        let later = t0 + Duration::from_secs(3600);
        let passed = (0..100).filter(|_| rate.admit(1, later).is_ok()).count();
        assert_eq!(passed, 5);
    }

    #[test]
    fn bytes_are_counted_by_size() {
        let t0 = Instant::now();
        let mut rate = InboundRate::new(limit(0, 0, 1000, 2000), t0);
        assert_eq!(rate.admit(1500, t0), Ok(()));
        assert_eq!(
            rate.admit(600, t0),
            Err(Exceeded::Bytes {
                per_sec: 1000,
                burst: 2000
            })
        );
        assert_eq!(rate.admit(500, t0), Ok(()));
        assert_eq!(rate.admit(1000, t0 + Duration::from_secs(1)), Ok(()));
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
        let mut off = InboundRate::new(RateLimit::OFF, t0);
        assert!((0..10_000).all(|_| off.admit(1 << 20, t0).is_ok()));
        let mut rate = InboundRate::new(limit(1, 1, 0, 0), t0);
        assert_eq!(rate.admit(1, t0), Ok(()));
        assert!(rate.admit(1, t0 - Duration::from_secs(5)).is_err());
        assert_eq!(rate.admit(1, t0 + Duration::from_secs(1)), Ok(()));
    }
}
