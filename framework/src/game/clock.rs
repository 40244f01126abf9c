//! The game threads' tick clock: a sleep that ends within microseconds of its
//! deadline, not at the next millisecond.
//!
//! tokio's timer counts in whole milliseconds and rounds every deadline up, and the
//! reactor waits in `epoll_wait` with a timeout in milliseconds too: a room asleep
//! until its tick woke 0–2 ms late, 1–1.5 ms at the median (the tick lateness the
//! rooms report). A tick at 60 Hz is 16.7 ms, so that was up to a tenth of a period
//! of jitter on every state a player sees, before any load.
//!
//! Here each game thread has one `timerfd` (nanosecond deadlines, the kernel's
//! high-resolution timers) registered with its reactor, and a heap of the deadlines of
//! the rooms asleep on it. The fd is set to the earliest deadline; when it fires, a
//! task of the thread wakes every room whose deadline has passed (rooms of one phase
//! share their deadline, see [`super::tick::on_process_grid`]: one wake-up of the
//! thread for all of them, as before) and sets the fd to the next deadline. Nothing
//! crosses threads: the heap, the rooms and the task are all the thread's.
//!
//! Where there is no `timerfd` (other systems than Linux), or the thread cannot make
//! one (no file descriptor left), the sleep is tokio's.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// A future that completes at `deadline` (on a game thread: within the kernel's timer
/// slack of it, ~50 µs, when the thread is free to run).
pub(crate) fn sleep_until(deadline: Instant) -> Sleep {
    #[cfg(target_os = "linux")]
    if let Some(slot) = precise::register(deadline) {
        return Sleep::Precise { deadline, slot };
    }
    Sleep::Coarse(Box::pin(tokio::time::sleep_until(deadline.into())))
}

/// See [`sleep_until`].
pub(crate) enum Sleep {
    #[cfg(target_os = "linux")]
    Precise {
        deadline: Instant,
        slot: std::rc::Rc<precise::Slot>,
    },
    Coarse(Pin<Box<tokio::time::Sleep>>),
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut() {
            #[cfg(target_os = "linux")]
            Sleep::Precise { deadline, slot } => {
                if Instant::now() >= *deadline {
                    return Poll::Ready(());
                }
                if slot.fired.get() {
                    // Only if the clock woke it early, which a timerfd does not do:
                    // wait again rather than end early.
                    *slot = match precise::register(*deadline) {
                        Some(fresh) => fresh,
                        None => return Poll::Ready(()),
                    };
                }
                slot.set_waker(cx.waker());
                Poll::Pending
            }
            Sleep::Coarse(sleep) => sleep.as_mut().poll(cx),
        }
    }
}

#[cfg(target_os = "linux")]
impl Drop for Sleep {
    fn drop(&mut self) {
        if let Sleep::Precise { slot, .. } = self {
            // Its entry stays in the heap until its deadline; it wakes nobody.
            slot.waker.take();
        }
    }
}

#[cfg(target_os = "linux")]
mod precise {
    use std::cell::{Cell, RefCell};
    use std::cmp::{Ordering, Reverse};
    use std::collections::BinaryHeap;
    use std::os::fd::OwnedFd;
    use std::rc::Rc;
    use std::task::Waker;
    use std::time::{Duration, Instant};

    use rustix::time::{
        timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags,
        TimerfdTimerFlags, Timespec,
    };
    use tokio::io::unix::AsyncFd;

    /// One sleeper's place in its thread's heap.
    pub(crate) struct Slot {
        pub(super) waker: RefCell<Option<Waker>>,
        /// The clock has taken it off the heap (and woken its waker).
        pub(super) fired: Cell<bool>,
    }

    impl Slot {
        pub(super) fn set_waker(&self, waker: &Waker) {
            let mut slot = self.waker.borrow_mut();
            match &*slot {
                Some(w) if w.will_wake(waker) => {}
                _ => *slot = Some(waker.clone()),
            }
        }
    }

    struct Entry {
        at: Instant,
        seq: u64,
        slot: Rc<Slot>,
    }

    impl PartialEq for Entry {
        fn eq(&self, other: &Self) -> bool {
            (self.at, self.seq) == (other.at, other.seq)
        }
    }
    impl Eq for Entry {}
    impl PartialOrd for Entry {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for Entry {
        fn cmp(&self, other: &Self) -> Ordering {
            (self.at, self.seq).cmp(&(other.at, other.seq))
        }
    }

    /// A thread's clock: its timerfd and the deadlines waiting on it.
    struct Clock {
        fd: Rc<AsyncFd<OwnedFd>>,
        heap: BinaryHeap<Reverse<Entry>>,
        seq: u64,
        /// The deadline the timerfd is set to, if it is set.
        armed: Option<Instant>,
    }

    enum State {
        Unstarted,
        Running(Clock),
        /// No timerfd on this thread: tokio's timer instead.
        Unavailable,
    }

    thread_local! {
        static CLOCK: RefCell<State> = const { RefCell::new(State::Unstarted) };
    }

    /// Puts `deadline` on this thread's clock, starting the clock on first use; `None`
    /// if the thread has none (no tokio reactor, no file descriptor left).
    pub(super) fn register(deadline: Instant) -> Option<Rc<Slot>> {
        CLOCK.with(|state| {
            let mut state = state.borrow_mut();
            if let State::Unstarted = *state {
                *state = match start() {
                    Ok(clock) => State::Running(clock),
                    Err(e) => {
                        tracing::warn!(error = %e, "no timerfd on this game thread: ticks use tokio's millisecond timer");
                        State::Unavailable
                    }
                };
            }
            let State::Running(clock) = &mut *state else {
                return None;
            };
            let slot = Rc::new(Slot {
                waker: RefCell::new(None),
                fired: Cell::new(false),
            });
            clock.seq += 1;
            clock.heap.push(Reverse(Entry {
                at: deadline,
                seq: clock.seq,
                slot: Rc::clone(&slot),
            }));
            if clock.armed.is_none_or(|armed| deadline < armed) {
                clock.arm(deadline);
            }
            Some(slot)
        })
    }

    fn start() -> std::io::Result<Clock> {
        // Only where a tokio reactor runs this thread (every actix arbiter).
        tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
        let flags = TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC;
        let fd = timerfd_create(TimerfdClockId::Monotonic, flags)?;
        // `AsyncFd::new` is deprecated for types whose raw fd may change or close
        // while registered (tokio#8587); an `OwnedFd` it owns cannot, and the sound
        // replacement, `AsyncFd::register`, is `unsafe`, which this crate forbids.
        #[allow(deprecated)]
        let fd = Rc::new(AsyncFd::new(fd)?);
        actix::spawn(drive(Rc::clone(&fd)));
        Ok(Clock {
            fd,
            heap: BinaryHeap::new(),
            seq: 0,
            armed: None,
        })
    }

    impl Clock {
        /// Sets the timerfd to fire at `at` (relative to now: `Instant` is the
        /// monotonic clock the fd counts on).
        fn arm(&mut self, at: Instant) {
            // A zero value disarms a timerfd: a deadline already passed fires in 1 ns.
            let wait = at
                .saturating_duration_since(Instant::now())
                .max(Duration::from_nanos(1));
            let spec = Itimerspec {
                it_interval: Timespec::default(),
                it_value: Timespec::try_from(wait).unwrap_or(Timespec {
                    tv_sec: i64::MAX,
                    tv_nsec: 0,
                }),
            };
            match timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &spec) {
                Ok(_) => self.armed = Some(at),
                // Not expected of a valid fd and value; the next registration retries,
                // and the rooms' own polls see their deadlines pass.
                Err(e) => tracing::warn!(error = %e, "timerfd_settime failed"),
            }
        }

        /// Takes every entry due at `now` off the heap and sets the fd to the next.
        fn take_due(&mut self, now: Instant) -> Vec<Rc<Slot>> {
            let mut due = Vec::new();
            while let Some(Reverse(entry)) = self.heap.peek() {
                if entry.at > now {
                    break;
                }
                if let Some(Reverse(entry)) = self.heap.pop() {
                    entry.slot.fired.set(true);
                    due.push(entry.slot);
                }
            }
            self.armed = None;
            if let Some(Reverse(next)) = self.heap.peek() {
                let at = next.at;
                self.arm(at);
            }
            due
        }
    }

    /// The thread's clock task: waits for the timerfd, wakes the sleepers it is due
    /// for. Lives as long as the thread.
    async fn drive(fd: Rc<AsyncFd<OwnedFd>>) {
        let mut expirations = [0u8; 8];
        loop {
            let mut ready = match fd.readable().await {
                Ok(ready) => ready,
                Err(e) => {
                    tracing::warn!(error = %e, "game thread's timerfd failed");
                    return;
                }
            };
            match rustix::io::read(ready.get_inner(), &mut expirations) {
                // The read took every expiry: not readable again until the next one
                // (tokio keeps the readiness if one came in meanwhile).
                Ok(_) => ready.clear_ready(),
                Err(rustix::io::Errno::AGAIN) => {
                    ready.clear_ready();
                    continue;
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the game thread's timerfd failed");
                    return;
                }
            }
            let due = CLOCK.with(|state| match &mut *state.borrow_mut() {
                State::Running(clock) => clock.take_due(Instant::now()),
                _ => Vec::new(),
            });
            for slot in due {
                if let Some(waker) = slot.waker.take() {
                    waker.wake();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Sleeps end after their deadline, in deadline order, each woken by the clock
    /// (how late they end is printed, not asserted: tokio's timer was 1–2 ms late).
    #[test]
    fn sleeps_end_just_after_their_deadlines() {
        let system = actix::System::new();
        let late = system.block_on(async {
            // Far enough ahead that all five are asleep before the first is due.
            let start = Instant::now() + Duration::from_millis(100);
            let order = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let mut tasks = Vec::new();
            // Out of order, and two on one deadline.
            for (i, ms) in [(0, 30u64), (1, 10), (2, 20), (3, 10), (4, 0)].into_iter() {
                let order = std::rc::Rc::clone(&order);
                let at = start + Duration::from_millis(ms);
                tasks.push(actix::spawn(async move {
                    sleep_until(at).await;
                    let now = Instant::now();
                    assert!(now >= at, "ended before its deadline");
                    order.borrow_mut().push(i);
                    now - at
                }));
            }
            let mut late = Vec::new();
            for task in tasks {
                late.push(task.await.unwrap());
            }
            assert_eq!(order.borrow()[..3], [4, 1, 3]);
            assert_eq!(order.borrow()[3..], [2, 0]);
            late
        });
        // Not a timing assertion on a busy machine: only that the sleep ended at all
        // and after its deadline (above). The lateness is printed for the curious.
        eprintln!("lateness per sleep: {late:?}");
    }

    /// A sleep dropped before its deadline wakes nobody, and the clock goes on for
    /// the others.
    #[test]
    fn a_dropped_sleep_does_not_stop_the_clock() {
        let system = actix::System::new();
        system.block_on(async {
            let now = Instant::now();
            let early = sleep_until(now + Duration::from_millis(2));
            #[cfg(target_os = "linux")]
            assert!(
                matches!(early, Sleep::Precise { .. }),
                "an actix thread on Linux sleeps on its timerfd"
            );
            drop(early);
            sleep_until(now + Duration::from_millis(4)).await;
            assert!(Instant::now() >= now + Duration::from_millis(4));
            // And one whose deadline has passed ends at once.
            sleep_until(now).await;
        });
    }
}
