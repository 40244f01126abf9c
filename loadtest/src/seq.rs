//! The exactly-once check: reliable messages carry their number in a session's
//! stream (0, 1, 2, ...), and the receiving end counts what it sees against that.
//!
//! The server checks client → server streams with it (one per socket, kept in the
//! socket's data) and answers the counts to a `flush`; the clients check server →
//! client streams. After the sender says how many it sent, `lost = sent − received`
//! covers gaps and a missing tail alike; `duplicated` counts numbers seen twice.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Gaps remembered, at most; past this many a stream is broken beyond counting
/// anyway, and later gaps are still counted in `lost` by the sender's total.
const MAX_GAPS_KEPT: usize = 10_000;

/// The receiving side of one numbered stream.
#[derive(Debug, Default, Clone)]
pub struct SeqCheck {
    /// The number expected next: everything below arrived or is in `gaps`.
    next: u64,
    /// Numbers skipped over (a later one came first); removed if they arrive late.
    gaps: BTreeSet<u64>,
    counts: SeqCounts,
}

/// What a [`SeqCheck`] saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqCounts {
    /// Distinct numbers received.
    pub received: u64,
    /// Numbers received again.
    pub duplicated: u64,
    /// Numbers that arrived after a later one (a reliable stream has none).
    pub reordered: u64,
}

impl SeqCheck {
    /// Counts number `n`.
    pub fn observe(&mut self, n: u64) {
        let c = &mut self.counts;
        if n == self.next {
            self.next += 1;
            c.received += 1;
        } else if n > self.next {
            if self.gaps.len() < MAX_GAPS_KEPT {
                self.gaps
                    .extend(self.next..n.min(self.next + MAX_GAPS_KEPT as u64));
            }
            self.next = n + 1;
            c.received += 1;
        } else if self.gaps.remove(&n) {
            c.reordered += 1;
            c.received += 1;
        } else {
            c.duplicated += 1;
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> SeqCounts {
        self.counts
    }

    /// How far the stream has come: the highest number seen plus one. Where the
    /// receiver does not know how many were sent (a room's chat), this stands in for
    /// it: a gap below it is a loss, only the tail goes unchecked.
    pub fn reached(&self) -> u64 {
        self.next
    }

    /// Whether every number below `sent` has arrived.
    pub fn has_all(&self, sent: u64) -> bool {
        self.counts.received >= sent
    }
}

impl SeqCounts {
    /// Messages of `sent` that never arrived.
    pub fn lost(&self, sent: u64) -> u64 {
        sent.saturating_sub(self.received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(numbers: &[u64]) -> SeqCounts {
        let mut check = SeqCheck::default();
        numbers.iter().for_each(|&n| check.observe(n));
        check.counts()
    }

    #[test]
    fn an_exact_stream_has_nothing_to_report() {
        let c = run(&[0, 1, 2, 3]);
        assert_eq!((c.received, c.duplicated, c.reordered), (4, 0, 0));
        assert_eq!(c.lost(4), 0);
    }

    #[test]
    fn repeats_are_duplicates_and_gaps_and_tails_are_lost() {
        let c = run(&[0, 1, 1, 2, 5, 6, 6]);
        assert_eq!((c.received, c.duplicated), (5, 2));
        // 3 and 4 never came, nor did 7 and 8 of the 9 sent.
        assert_eq!(c.lost(9), 4);
    }

    #[test]
    fn a_late_number_fills_its_gap_once() {
        let c = run(&[0, 2, 1, 1]);
        assert_eq!((c.received, c.reordered, c.duplicated), (3, 1, 1));
        assert_eq!(c.lost(3), 0);
        let mut gap = SeqCheck::default();
        [0, 1, 3].iter().for_each(|&n| gap.observe(n));
        assert_eq!(gap.counts().lost(gap.reached()), 1);
    }
}
