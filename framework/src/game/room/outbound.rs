//! A game thread's states on their way out, gathered per tick.
//!
//! The rooms of a thread tick at a few shared instants (their schedules start on one
//! grid, `tick::on_process_grid`, in 8 phases per period), so one timer wakes the
//! thread for an eighth of them and they run one after the other. Each room's
//! states go to the threads of its players'
//! sessions; posted room by room, that was a message per room per player thread per
//! tick, each of which could wake its thread. Here they are gathered per destination
//! thread and posted as one [`LocalFanouts`] once the rooms that fell due together
//! have run: the flush is a task spawned by the first state of the pass, and the
//! thread's run queue already holds the rooms woken with it.
//!
//! Bounds: nothing waits here longer than one pass of the thread, and each state
//! still holds its room's in-flight ticket (64 per room) until its thread handles it.

use std::cell::RefCell;

use crate::room::local::{LocalFanout, LocalFanouts, ThreadAddr};

thread_local! {
    static PENDING: RefCell<Pending> = RefCell::new(Pending::default());
}

#[derive(Default)]
struct Pending {
    /// Fan-outs by destination thread, in the order the rooms sent them.
    by_thread: Vec<(ThreadAddr, Vec<LocalFanout>)>,
    /// A flush is spawned and has not run yet.
    flushing: bool,
    /// The most fan-outs one thread had in the last pass: each thread's list is made
    /// that large at once (the rooms of a phase are about as many every pass), not
    /// grown a state at a time.
    last: usize,
}

/// Queues one state fan-out for `thread`; it is posted with the others of this pass.
pub(super) fn post(thread: &ThreadAddr, fanout: LocalFanout) {
    let first = PENDING.with(|pending| {
        let mut pending = pending.borrow_mut();
        match pending.by_thread.iter_mut().find(|(t, _)| t == thread) {
            Some((_, fanouts)) => fanouts.push(fanout),
            None => {
                let mut fanouts = Vec::with_capacity(pending.last.max(1));
                fanouts.push(fanout);
                pending.by_thread.push((thread.clone(), fanouts));
            }
        }
        !std::mem::replace(&mut pending.flushing, true)
    });
    if first {
        actix::spawn(async { flush() });
    }
}

/// Posts what the pass gathered: one message per destination thread.
fn flush() {
    let mut by_thread = PENDING.with(|pending| {
        let mut pending = pending.borrow_mut();
        pending.flushing = false;
        pending.last = pending
            .by_thread
            .iter()
            .map(|(_, f)| f.len())
            .max()
            .unwrap_or(0);
        std::mem::take(&mut pending.by_thread)
    });
    for (thread, fanouts) in by_thread.drain(..) {
        thread.post(LocalFanouts(fanouts));
    }
    // The emptied list serves the next pass.
    PENDING.with(|pending| {
        let mut pending = pending.borrow_mut();
        if pending.by_thread.is_empty() {
            pending.by_thread = by_thread;
        }
    });
}
