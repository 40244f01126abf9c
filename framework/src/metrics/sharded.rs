//! [`ShardedCounter`]: a counter for the hottest paths (every frame in, every frame
//! out, every broadcast delivery), split into one cache line per thread so that
//! threads delivering at once never fight over one line.
//!
//! A plain shared atomic costs a cache-line transfer between cores on every add when
//! two threads deliver at the same time; here each thread adds to its own shard (a
//! relaxed add on a line its core already holds) and a scrape sums the shards.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// Shards per counter: threads beyond it share shards (still correct, just closer).
const SHARDS: usize = 16;

/// One shard, alone on its cache line (128 bytes: two lines on CPUs that fetch in
/// pairs).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(AtomicU64);

/// A monotonic counter, summed over its shards when read. Clones share the count.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShardedCounter(Arc<[Shard; SHARDS]>);

/// Hands each thread its shard index, in the order threads first count.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

impl ShardedCounter {
    /// Adds one.
    pub fn inc(&self) {
        self.inc_by(1);
    }

    /// Adds `n`.
    pub fn inc_by(&self, n: u64) {
        let shard = SHARD.with(|s| *s);
        self.0[shard].0.fetch_add(n, Ordering::Relaxed);
    }

    /// The count: every add that happened before the call (on any thread) is in it.
    pub fn get(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

impl EncodeMetric for ShardedCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_from_many_threads_sum_up() {
        let counter = ShardedCounter::default();
        let threads: Vec<_> = (0..SHARDS + 3)
            .map(|_| {
                let c = counter.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| c.inc_by(2)))
            })
            .collect();
        for t in threads {
            t.join().expect("counting thread");
        }
        assert_eq!(counter.get(), (SHARDS as u64 + 3) * 2000);
    }
}
