//! What a worker's clients share: the plan, where they connect, the run's phase, and
//! the figures they measure ([`WorkerCtx`]). Everything runs on the worker's one
//! thread, so it needs no locks. The worker ([`crate::worker`]) makes it and follows
//! the coordinator's commands with it; the scenarios' clients read and count with it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::watch;

use crate::control::{Counters, Outcome, Plan, PROBLEMS_KEPT};
use crate::seq::SeqCounts;

/// Where a worker's clients are in the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    /// Connecting, then waiting for the start.
    Setup,
    /// The measured phase.
    Running,
    /// Stop sending, check, report. `expected`: messages published to each client.
    Finishing { expected: u64 },
}

/// What a worker's clients share.
pub struct WorkerCtx {
    pub plan: Plan,
    /// Where clients connect: the server, or this worker's proxy in front of it.
    pub url: String,
    phase: watch::Sender<Phase>,
    /// When the proxy cut every connection (reconnect scenario).
    pub cut_at_us: Cell<Option<u64>>,
    /// Cuts so far, for players that cut their own connection (`reconnect --player
    /// raw`, which runs no proxy): see [`WorkerCtx::cut_players`].
    cuts: watch::Sender<u64>,
    outcome: RefCell<Outcome>,
}

impl WorkerCtx {
    pub fn new(plan: Plan, url: String) -> WorkerCtx {
        WorkerCtx {
            plan,
            url,
            phase: watch::channel(Phase::Setup).0,
            cut_at_us: Cell::new(None),
            cuts: watch::channel(0).0,
            outcome: RefCell::default(),
        }
    }

    /// Follows the phase: read it with `borrow_and_update`, wait with `changed`.
    pub fn phase(&self) -> watch::Receiver<Phase> {
        let mut rx = self.phase.subscribe();
        // A client that subscribes late must still see the current phase as news.
        rx.mark_changed();
        rx
    }

    /// Waits until the measured phase starts (or the run finishes first).
    pub async fn until_running(&self) {
        let mut rx = self.phase();
        while *rx.borrow_and_update() == Phase::Setup {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Waits until the run finishes; returns the messages each client should have.
    pub async fn until_finishing(&self) -> u64 {
        let mut rx = self.phase();
        loop {
            if let Phase::Finishing { expected } = *rx.borrow_and_update() {
                return expected;
            }
            if rx.changed().await.is_err() {
                return 0;
            }
        }
    }

    /// Tells every player that cuts its own connection to cut it now.
    pub fn cut_players(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Follows the cuts of [`WorkerCtx::cut_players`]: wait with `changed`.
    pub fn cuts(&self) -> watch::Receiver<u64> {
        self.cuts.subscribe()
    }

    /// Moves the run to `phase` (the coordinator's commands).
    pub fn set_phase(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }

    /// What the clients measured so far.
    pub fn outcome(&self) -> Outcome {
        self.outcome.borrow().clone()
    }

    /// Updates the counters.
    pub fn count(&self, f: impl FnOnce(&mut Counters)) {
        f(&mut self.outcome.borrow_mut().counters);
    }

    /// Records a latency sample in histogram `name`.
    pub fn record(&self, name: &str, d: Duration) {
        self.record_us(name, u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// Records a latency sample in microseconds.
    pub fn record_us(&self, name: &str, us: u64) {
        let mut o = self.outcome.borrow_mut();
        match o.histograms.get_mut(name) {
            Some(h) => h.record_us(us),
            None => o
                .histograms
                .entry(name.to_owned())
                .or_default()
                .record_us(us),
        }
    }

    /// Counts a message received at `at_us` (Unix µs).
    pub fn delivered(&self, at_us: u64) {
        let mut o = self.outcome.borrow_mut();
        o.counters.delivered += 1;
        if o.first_delivery_us == 0 {
            o.first_delivery_us = at_us;
        }
        o.last_delivery_us = o.last_delivery_us.max(at_us);
    }

    /// Adds one session's checked stream `name`.
    pub fn stream(&self, name: &str, sent: u64, counts: SeqCounts) {
        let mut o = self.outcome.borrow_mut();
        o.streams
            .entry(name.to_owned())
            .or_default()
            .add_session(sent, counts);
    }

    /// Notes a problem (the first few are reported in full).
    pub fn problem(&self, text: String) {
        let mut o = self.outcome.borrow_mut();
        o.problem_count += 1;
        if o.problems.len() < PROBLEMS_KEPT {
            o.problems.push(text);
        }
    }

    /// Counts a failed reconnection attempt. Addresses and ports are left out of
    /// the error, so that the same failure on different connections counts as one
    /// kind.
    pub fn attempt_failed(&self, error: &str) {
        let kind: String = error
            .split_whitespace()
            .filter(|word| {
                let digits = word.chars().any(|c| c.is_ascii_digit());
                !(digits && word.contains(['.', ':']))
            })
            .collect::<Vec<_>>()
            .join(" ");
        let mut o = self.outcome.borrow_mut();
        o.counters.failed_attempts += 1;
        o.attempt_failed(&kind, 1);
    }

    /// A client is connected and ready for the scenario.
    pub fn ready(&self) {
        self.count(|c| c.connected += 1);
    }

    /// A client could not connect or get ready.
    pub fn fail(&self, why: String) {
        self.count(|c| c.failed += 1);
        self.problem(why);
    }

    /// Counts the client as finished when dropped, however its task ends.
    pub fn finished_on_drop(self: &Rc<Self>) -> Finished {
        Finished(self.clone())
    }

    pub fn counters(&self) -> Counters {
        self.outcome.borrow().counters
    }
}

/// See [`WorkerCtx::finished_on_drop`].
pub struct Finished(Rc<WorkerCtx>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.count(|c| c.finished += 1);
    }
}
