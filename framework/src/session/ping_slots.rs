//! A thread's ping slots: one timer per thread per slot of the ping grid, instead of
//! one per session.
//!
//! Every session pings on the grid the whole process shares (see
//! [`super::heartbeat::ping_grid`]), so the sessions of a thread come due together, a
//! few times per interval. A session waiting for its next ping is listed under that
//! slot on its thread, by its place in the thread's delivery registry (a [`LocalKey`]:
//! 8 bytes, where a timer of its own took ~110 for the whole life of every idle
//! connection). The slot's one timer tells each listed session that its slot came
//! (`PingDue`); the session pings if it should and lists itself under its next slot.
//! A session that ended meanwhile has left the registry and is skipped.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Instant;

use crate::room::local::{self as local_delivery, LocalKey};

thread_local! {
    static SLOTS: RefCell<BTreeMap<Instant, Vec<LocalKey>>> = const { RefCell::new(BTreeMap::new()) };
}

/// Lists the session at `key` under `slot` on this thread (which must run an actix
/// arbiter), starting the slot's timer if it is the first.
pub(super) fn wait_for(slot: Instant, key: LocalKey) {
    let first = SLOTS.with(|slots| {
        let mut slots = slots.borrow_mut();
        let waiting = slots.entry(slot).or_default();
        waiting.push(key);
        waiting.len() == 1
    });
    if first {
        actix::spawn(async move {
            actix::clock::sleep_until(slot.into()).await;
            let due = SLOTS.with(|slots| slots.borrow_mut().remove(&slot));
            for key in due.unwrap_or_default() {
                local_delivery::ping_due(key);
            }
        });
    }
}
