//! This node's number: the high bits of the session ids it makes (see
//! `session/ids.rs`), and the tag of the game rooms it runs. A single node is 0; a
//! node of a cluster takes its number from Redis when it first connects (`INCR`, so
//! two live nodes never share one), and until then uses a random provisional number
//! from a range of its own, above every Redis number.

use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(feature = "cluster")]
use std::sync::Arc;

/// Node numbers Redis hands out: 1..=REDIS_NUMBERS (wrapping).
#[cfg(feature = "cluster")]
const REDIS_NUMBERS: u64 = 1 << 20;

/// This node's number, shared between the supervisor (which makes ids) and the
/// cluster link (which takes the number from Redis).
#[derive(Debug, Default)]
pub(crate) struct NodeNumber(AtomicU64);

#[cfg(feature = "cluster")]
impl NodeNumber {
    /// A cluster node before Redis answered: a random number above Redis's range.
    pub(crate) fn provisional() -> Arc<Self> {
        let n = REDIS_NUMBERS + 1 + rand::random::<u64>() % (REDIS_NUMBERS - 1);
        Arc::new(NodeNumber(AtomicU64::new(n)))
    }

    /// Whether the number came from Redis (not provisional).
    pub(crate) fn is_assigned(&self) -> bool {
        let n = self.0.load(Ordering::Relaxed);
        (1..=REDIS_NUMBERS).contains(&n)
    }

    /// Takes the value of the cluster's counter (`INCR`) as this node's number.
    pub(crate) fn assign(&self, counter: u64) {
        let n = 1 + counter.saturating_sub(1) % REDIS_NUMBERS;
        self.0.store(n, Ordering::Relaxed);
    }
}

impl NodeNumber {
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
