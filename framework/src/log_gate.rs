//! Warnings that clients cause, throttled: a flood of bad input (a fuzzer, a broken
//! client in a reconnect loop, a token guesser) must not flood the log.
//!
//! Each kind of warning has its gate, a `static` at its call site: at most
//! [`PER_SECOND`] are logged each second, and the first one logged after some were
//! left out says how many (`suppressed`). The metrics count every one regardless
//! (`volley_refused_total`, `volley_disconnects_total{reason="protocol_error"}`,
//! `volley_resumes_total{result="bad_token"}`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Warnings of one kind logged per second at most.
pub(crate) const PER_SECOND: u64 = 10;

/// One kind of warning's allowance.
pub(crate) struct LogGate {
    /// The second (since the process's first warning) the allowance counts.
    second: AtomicU64,
    /// Logged in that second.
    logged: AtomicU64,
    /// Left out since the last one logged.
    suppressed: AtomicU64,
}

impl LogGate {
    pub(crate) const fn new() -> Self {
        LogGate {
            second: AtomicU64::new(0),
            logged: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether to log this one: `Some(n)`, with `n` left out since the last one
    /// logged; `None` to leave it out (counted).
    pub(crate) fn admit(&self) -> Option<u64> {
        static START: OnceLock<Instant> = OnceLock::new();
        let start = START.get_or_init(Instant::now);
        self.admit_at(start.elapsed().as_secs())
    }

    fn admit_at(&self, second: u64) -> Option<u64> {
        // Approximate under races (two threads opening the same second may both
        // reset it): a few warnings more or less, never a flood.
        if self.second.swap(second, Ordering::Relaxed) != second {
            self.logged.store(0, Ordering::Relaxed);
        }
        if self.logged.fetch_add(1, Ordering::Relaxed) >= PER_SECOND {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_a_second_then_the_count_of_those_left_out() {
        let gate = LogGate::new();
        for _ in 0..PER_SECOND {
            assert_eq!(gate.admit_at(5), Some(0));
        }
        for _ in 0..1000 {
            assert_eq!(gate.admit_at(5), None);
        }
        // The next second: logged again, saying how many were not.
        assert_eq!(gate.admit_at(6), Some(1000));
        assert_eq!(gate.admit_at(6), Some(0));
    }
}
