//! Paced io threads: [`crate::Config::io_window`].
//!
//! An io thread normally sleeps whenever it has nothing to do and wakes for each
//! socket that becomes readable: with many clients each sending a little (a game's
//! inputs, one per player per tick), that is a sleep and a wake-up for every few
//! frames, and on a virtual machine a wake-up costs more than the frames it takes.
//!
//! With a window set, each io thread runs a pacer task. While the thread's sockets
//! carry traffic, the pacer lets the thread finish what it has, take what the
//! sockets have without sleeping, and then sleep until the window is over; whatever
//! arrived meanwhile (frames, deliveries posted by other threads) is taken together
//! when it wakes. One wake-up per window instead of one per few frames; each frame
//! waits at most one window longer. As soon as a window passes with nothing read or
//! written, the pacer steps aside and the thread sleeps as usual until a socket has
//! something: an idle server does not wake for the pacer.
//!
//! The pacer's sleep blocks the thread on purpose: it runs only when the thread has
//! nothing ready (it is resumed after the thread's other tasks and a poll of the
//! sockets that does not block).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

thread_local! {
    /// Reads and writes on this thread's sockets so far.
    static ACTIVITY: Cell<u64> = const { Cell::new(0) };
    /// The pacer, while it waits for traffic.
    static DORMANT: Cell<Option<Waker>> = const { Cell::new(None) };
}

/// Counts traffic on this thread's sockets (a read, a flush); wakes the thread's
/// pacer if it was waiting for some. Cheap enough for every read: a thread-local
/// counter and an empty slot.
pub(crate) fn busy() {
    ACTIVITY.with(|a| a.set(a.get().wrapping_add(1)));
    if let Some(pacer) = DORMANT.with(Cell::take) {
        pacer.wake();
    }
}

/// The longest window: a frame may wait this long, and the worker's other duties
/// (accepting connections, timers, shutting down) too.
pub(crate) const MAX_WINDOW: Duration = Duration::from_millis(50);

/// `window`, lowered to [`MAX_WINDOW`] with a warning if it is longer.
pub(crate) fn fit(window: Duration) -> Duration {
    if window > MAX_WINDOW {
        tracing::warn!(
            asked = ?window,
            used = ?MAX_WINDOW,
            "io_window lowered to its maximum"
        );
        return MAX_WINDOW;
    }
    window
}

fn activity() -> u64 {
    ACTIVITY.with(Cell::get)
}

/// Starts the pacer of the calling io thread (once per thread), unless `window` is
/// zero. Must be called on the thread, inside its runtime.
pub(crate) fn start(window: Duration) {
    thread_local! {
        static STARTED: Cell<bool> = const { Cell::new(false) };
    }
    if window.is_zero() || STARTED.with(|s| s.replace(true)) {
        return;
    }
    drop(tokio::task::spawn_local(pace(window)));
}

async fn pace(window: Duration) {
    loop {
        Traffic { seen: activity() }.await;
        loop {
            let start = Instant::now();
            // Run what is ready, and what a poll of the sockets finds, first.
            tokio::task::yield_now().await;
            if let Some(rest) = (start + window).checked_duration_since(Instant::now()) {
                std::thread::sleep(rest);
            }
            let before = activity();
            // What gathered during the sleep.
            tokio::task::yield_now().await;
            if activity() == before {
                break;
            }
        }
    }
}

/// Ready once the thread's sockets have seen traffic since `seen`.
struct Traffic {
    seen: u64,
}

impl Future for Traffic {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if activity() != self.seen {
            return Poll::Ready(());
        }
        DORMANT.with(|slot| slot.set(Some(cx.waker().clone())));
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Voluntary context switches of the calling thread so far.
    fn switches() -> u64 {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn a_window_longer_than_the_maximum_is_lowered_to_it() {
        assert_eq!(fit(Duration::ZERO), Duration::ZERO);
        assert_eq!(fit(Duration::from_millis(4)), Duration::from_millis(4));
        assert_eq!(fit(Duration::from_secs(10)), MAX_WINDOW);
    }

    #[test]
    fn traffic_wakes_the_pacer_and_the_pacer_steps_aside_when_it_stops() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async {
            let window = Duration::from_millis(20);
            start(window);
            start(window); // once per thread
            tokio::task::yield_now().await; // the pacer waits for traffic
                                            // Traffic: the pacer sleeps out its window once it has run.
            busy();
            let before = Instant::now();
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
            assert!(
                before.elapsed() >= window / 2,
                "the thread slept for the window"
            );
            // No more traffic: after one more window the pacer waits for traffic,
            // and the thread no longer wakes for it.
            tokio::time::sleep(window * 3).await;
            assert!(DORMANT.with(|slot| {
                let waker = slot.take();
                let dormant = waker.is_some();
                slot.set(waker);
                dormant
            }));
            if cfg!(target_os = "linux") {
                let from = switches();
                tokio::time::sleep(window * 10).await;
                let woke = switches() - from;
                assert!(woke <= 3, "an idle paced thread woke {woke} times");
            }
        });
    }
}
