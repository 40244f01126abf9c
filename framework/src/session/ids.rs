//! Session ids: unique on one node, and across a cluster.
//!
//! An id is `node number << 32 | counter`. A single node has node number 0, so its
//! ids are 1, 2, 3… In a cluster each node takes its number from Redis when it first
//! connects (`INCR`, so two live nodes never share one), and a [`SessionId`] then
//! names one session cluster-wide: kicks, `except` and the admin lists need no node.
//! Ids stay below 2^53, so JavaScript clients read them as plain numbers.
//!
//! A cluster node that has not reached Redis yet uses a random provisional number
//! from a range of its own (above every Redis number) for the sessions it opens
//! meanwhile; two nodes started while Redis was away could, rarely, share one.

use std::collections::HashMap;
use std::sync::Arc;

use crate::node::NodeNumber;
use crate::SessionId;

/// Bits of the per-node counter.
const COUNTER_BITS: u32 = 32;
/// Hands out the ids of the sessions opened on this node.
#[derive(Debug, Default)]
pub(crate) struct SessionIds {
    node: Arc<NodeNumber>,
    counter: u32,
}

impl SessionIds {
    pub(crate) fn new(node: Arc<NodeNumber>) -> Self {
        SessionIds { node, counter: 0 }
    }

    /// The next id not in `taken` (the counter wraps after 2^32 sessions).
    pub(crate) fn next<V>(&mut self, taken: &HashMap<SessionId, V>) -> SessionId {
        loop {
            self.counter = self.counter.wrapping_add(1).max(1);
            let id = SessionId(self.node.get() << COUNTER_BITS | u64::from(self.counter));
            if !taken.contains_key(&id) {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_node_counts_from_one() {
        let mut ids = SessionIds::default();
        let none: HashMap<SessionId, ()> = HashMap::new();
        assert_eq!(ids.next(&none), SessionId(1));
        assert_eq!(ids.next(&none), SessionId(2));
    }

    #[cfg(feature = "cluster")]
    #[test]
    fn nodes_with_different_numbers_never_share_an_id() {
        let (a, b) = (NodeNumber::provisional(), NodeNumber::provisional());
        a.assign(1);
        b.assign(2);
        let none: HashMap<SessionId, ()> = HashMap::new();
        let first_a = SessionIds::new(a).next(&none);
        let first_b = SessionIds::new(b).next(&none);
        assert_ne!(first_a, first_b);
        assert_eq!(first_a.0 >> COUNTER_BITS, 1);
    }

    #[cfg(feature = "cluster")]
    #[test]
    fn numbers_stay_below_two_to_the_53() {
        let n = NodeNumber::provisional();
        assert!(!n.is_assigned());
        n.assign(u64::MAX);
        assert!(n.is_assigned());
        let none: HashMap<SessionId, ()> = HashMap::new();
        let mut ids = SessionIds::new(NodeNumber::provisional());
        ids.counter = u32::MAX - 1;
        assert!(ids.next(&none).0 < 1 << 53);
        // Wraps to 1, never 0.
        assert_eq!(ids.next(&none).0 & 0xffff_ffff, 1);
    }

    #[test]
    fn an_id_in_use_is_skipped() {
        let mut ids = SessionIds::default();
        let taken: HashMap<SessionId, ()> = [(SessionId(1), ())].into();
        assert_eq!(ids.next(&taken), SessionId(2));
    }
}
