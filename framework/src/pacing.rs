//! Paced io threads: [`crate::Config::io_window`].
//!
//! An io thread normally sleeps whenever it has nothing to do and wakes for each
//! socket that becomes readable: with many clients each sending a little (a game's
//! inputs, one per player per tick), that is a sleep and a wake-up for every few
//! frames, and on a virtual machine a wake-up costs more than the frames it takes.
//!
//! With a window set, each io thread runs a pacer task. While the thread's sockets
//! carry traffic, the pacer lets the thread finish what it has, take what the
//! sockets have without sleeping, and then sleep until the window is over; the
//! clients' frames that arrived meanwhile are taken together when it wakes. One
//! wake-up per window instead of one per few frames; each frame waits at most one
//! window longer. As soon as a window passes with nothing read or
//! written, the pacer steps aside and the thread sleeps as usual until a socket has
//! something: an idle server does not wake for the pacer.
//!
//! A delivery posted to the thread by another one (a game thread's states, a
//! namespace's broadcast: [`crate::room::local::DeliveryThread::post`]) wakes it at
//! once: the window holds back the clients' frames, not what the server sends them.
//!
//! The pacer's sleep blocks the thread on purpose: it runs only when the thread has
//! nothing ready (it is resumed after the thread's other tasks and a poll of the
//! sockets that does not block).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

thread_local! {
    /// Reads and writes on this thread's sockets so far.
    static ACTIVITY: Cell<u64> = const { Cell::new(0) };
    /// The pacer, while it waits for traffic.
    static DORMANT: Cell<Option<Waker>> = const { Cell::new(None) };
    /// How other threads wake this one from its window's sleep, if it is paced.
    static WAKING: RefCell<Option<Arc<Waking>>> = const { RefCell::new(None) };
}

/// A paced io thread, as the threads that post deliveries to it hold it: a delivery
/// (a game's states, a broadcast) wakes the thread from its window's sleep instead of
/// waiting for the window to end. The window gathers the clients' frames, not what
/// the server sends them.
pub(crate) struct Waking {
    thread: Thread,
    asleep: AtomicBool,
}

impl Waking {
    /// Wakes the thread if it sleeps out a window (a system call then, a shared flag
    /// otherwise).
    pub(crate) fn wake(&self) {
        if self.asleep.swap(false, Ordering::AcqRel) {
            self.thread.unpark();
        }
    }

    /// Sleeps until `due` or until [`Waking::wake`].
    fn sleep_until(&self, due: Instant) {
        self.asleep.store(true, Ordering::Release);
        while let Some(rest) = due.checked_duration_since(Instant::now()) {
            std::thread::park_timeout(rest);
            if !self.asleep.load(Ordering::Acquire) {
                return;
            }
        }
        self.asleep.store(false, Ordering::Release);
    }
}

/// The calling thread's [`Waking`], if it is a paced io thread.
pub(crate) fn waking() -> Option<Arc<Waking>> {
    WAKING.with(|w| w.borrow().clone())
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
    let waking = Arc::new(Waking {
        thread: std::thread::current(),
        asleep: AtomicBool::new(false),
    });
    WAKING.with(|w| *w.borrow_mut() = Some(waking.clone()));
    drop(tokio::task::spawn_local(pace(window, waking)));
}

async fn pace(window: Duration, waking: Arc<Waking>) {
    loop {
        Traffic { seen: activity() }.await;
        loop {
            let start = Instant::now();
            // Run what is ready, and what a poll of the sockets finds, first.
            tokio::task::yield_now().await;
            waking.sleep_until(start + window);
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
    fn a_delivery_wakes_a_thread_from_its_window() {
        let waking = Arc::new(Waking {
            thread: std::thread::current(),
            asleep: AtomicBool::new(false),
        });
        // Not asleep: nothing to wake.
        waking.wake();
        let poster = {
            let waking = waking.clone();
            std::thread::spawn(move || {
                while !waking.asleep.load(Ordering::Acquire) {
                    std::thread::yield_now();
                }
                waking.wake();
            })
        };
        let window = Duration::from_secs(20);
        let before = Instant::now();
        waking.sleep_until(before + window);
        assert!(
            before.elapsed() < window / 2,
            "woken before the window ended"
        );
        poster.join().unwrap();
        // Without a post the window is slept out.
        let before = Instant::now();
        waking.sleep_until(before + Duration::from_millis(30));
        assert!(before.elapsed() >= Duration::from_millis(30));
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
