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
//! window longer. As soon as a window passes with nothing read or written, the
//! pacer steps aside and the thread sleeps as usual until a socket has something:
//! an idle server does not wake for the pacer.
//!
//! With game rooms in the process, the pacer also wakes [`LEAD`] before each instant
//! the rooms tick on (the process's grid of each tick rate,
//! `game::tick::on_process_grid`: 8 instants a tick period), so that the inputs
//! gathered in the window reach their rooms before they tick: the window then costs
//! the inputs no latency, where reading at instants of its own would make an input
//! that arrived just before its room's tick wait for the next one.
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
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
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

/// The process's epoch, from which every tick grid counts (`game::tick`).
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// How many instants a second each grid the game rooms tick on has (a room type's
/// tick rate times the phases), one slot each, zero while free: a few distinct
/// rates in a process, each kept once.
static RATES: [AtomicU32; MAX_GRIDS] = [const { AtomicU32::new(0) }; MAX_GRIDS];

/// The most distinct grids the pacer reads before; the rooms of a rate beyond them
/// still find their inputs read at least once a window.
const MAX_GRIDS: usize = 8;

/// How long before a tick instant a paced io thread reads its clients' frames, so
/// that the inputs that arrived in its window reach their rooms before they tick.
const LEAD: Duration = Duration::from_micros(500);

/// Aligns the paced io threads' reads on the game rooms' tick instants: `rate` a
/// second from `epoch` (the process's; the first one given stays). Each distinct
/// rate is kept: rooms of 30 Hz and of 20 Hz in one process both find their
/// inputs read just before they tick.
pub(crate) fn align(epoch: Instant, rate: u32) {
    let _ = EPOCH.get_or_init(|| epoch);
    if rate == 0 {
        return;
    }
    for slot in &RATES {
        match slot.compare_exchange(0, rate, Ordering::AcqRel, Ordering::Acquire) {
            // Taken now, or by the same rate before.
            Ok(_) => return,
            Err(kept) if kept == rate => return,
            Err(_) => {}
        }
    }
    tracing::debug!(
        rate,
        "more tick rates than the pacer aligns on: read once a window"
    );
}

/// The grids' rates, as [`align`] kept them.
fn rates() -> impl Iterator<Item = u32> {
    RATES
        .iter()
        .map(|slot| slot.load(Ordering::Acquire))
        .take_while(|&rate| rate != 0)
}

/// When to read next for the tick instants: [`LEAD`] before the first instant, on
/// any of the grids, at least that far from `now`; `None` without game rooms.
fn next_read(now: Instant) -> Option<Instant> {
    let &epoch = EPOCH.get()?;
    rates()
        .map(|rate| crate::grid::on_grid(epoch, now + LEAD, rate) - LEAD)
        .min()
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
            let mut due = start + window;
            if let Some(read) = next_read(Instant::now()) {
                due = due.min(read);
            }
            waking.sleep_until(due);
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
    fn reads_fall_just_before_the_rooms_tick_instants_of_every_rate() {
        let now = Instant::now();
        // 30 Hz and 20 Hz rooms, 8 phases each: neither grid is on the other.
        align(now, 240);
        align(now + Duration::from_millis(3), 160);
        // Kept once, however often aligned.
        align(now, 240);
        // The first epoch stays (the process's rooms may have set it already), and
        // other rates may be kept too.
        let &epoch = EPOCH.get().expect("an epoch");
        let kept: Vec<u32> = rates().collect();
        assert_eq!(kept.iter().filter(|&&r| r == 240).count(), 1);
        assert_eq!(kept.iter().filter(|&&r| r == 160).count(), 1);
        for offset_us in [0, 100, 499, 500, 501, 2_000, 4_166, 6_250, 10_000] {
            let at = now + Duration::from_micros(offset_us);
            let read = next_read(at).expect("aligned");
            let instant = read + LEAD;
            assert!(read >= at, "{offset_us} µs: read in the past");
            // The first instant at least LEAD ahead on one of the kept grids...
            assert!(
                kept.iter()
                    .any(|&rate| crate::grid::on_grid(epoch, instant, rate) == instant),
                "{offset_us} µs: read before no grid's instant"
            );
            // ... and no later than the next one of either rate aligned here.
            for rate in [240, 160] {
                let next = crate::grid::on_grid(epoch, at + LEAD, rate);
                assert!(
                    instant <= next,
                    "{offset_us} µs: read after a {rate}/s instant"
                );
            }
        }
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
                           // The pacer waits for traffic.
            tokio::task::yield_now().await;
            // Traffic: the pacer sleeps out its window once it has run, or until the
            // next read before a tick instant if another test started game rooms.
            busy();
            let before = Instant::now();
            let until_read = next_read(before).map_or(window, |r| r - before);
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
            assert!(
                before.elapsed() >= window.min(until_read),
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
