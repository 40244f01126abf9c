//! The threads Volley starts, by name: `top -H`, `perf` and `/proc/PID/task/*/comm`
//! show `volley-io-N` (the server's workers: connections and their sessions),
//! `volley-control` (supervisor and namespaces), `volley-game-N` (game rooms),
//! `volley-match` (the matchmaker), `volley-room-N` and `volley-cluster` (a node of a
//! cluster) instead of actix's `actix-rt|system` for all of them.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix::{Arbiter, ArbiterHandle};

/// Starts an arbiter whose thread is called `name` (Linux keeps 15 bytes of it).
pub(crate) fn arbiter(name: impl Into<String>) -> ArbiterHandle {
    let handle = Arbiter::new().handle();
    name_thread(&handle, name.into());
    handle
}

/// Names the thread of an arbiter already started.
pub(crate) fn name_thread(arbiter: &ArbiterHandle, name: String) {
    #[cfg(target_os = "linux")]
    arbiter.spawn_fn(move || {
        if let Ok(name) = std::ffi::CString::new(name) {
            // Only a name: a failure (never seen) changes nothing else.
            let _ = rustix::thread::set_name(&name);
        }
    });
    #[cfg(not(target_os = "linux"))]
    let _ = (arbiter, name);
}

/// Names the calling thread `volley-io-N` the first time it is called on it: the
/// server's workers call it as they build their services (once per listener).
pub(crate) fn name_io_thread() {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static NAMED: Cell<bool> = const { Cell::new(false) };
    }
    if NAMED.with(|named| named.replace(true)) {
        return;
    }
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    #[cfg(target_os = "linux")]
    if let Ok(name) = std::ffi::CString::new(format!("volley-io-{n}")) {
        let _ = rustix::thread::set_name(&name);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = n;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// What the thread itself reads as its name, after what was queued before.
    fn name_of(arbiter: &ArbiterHandle) -> String {
        let (tx, rx) = std::sync::mpsc::channel();
        arbiter.spawn_fn(move || {
            let name = std::fs::read_to_string("/proc/thread-self/comm").unwrap_or_default();
            let _ = tx.send(name.trim_end().to_owned());
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the arbiter ran the closure")
    }

    #[test]
    fn arbiters_are_named_and_long_names_cut_to_fifteen_bytes() {
        let system = actix::System::new();
        system.block_on(async {
            let game = arbiter("volley-game-7");
            assert_eq!(name_of(&game), "volley-game-7");
            let long = arbiter("volley-a-very-long-thread-name");
            assert_eq!(name_of(&long), "volley-a-very-l");
            game.stop();
            long.stop();
        });
    }

    #[test]
    fn an_io_thread_is_named_once() {
        std::thread::spawn(|| {
            name_io_thread();
            let first = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
            name_io_thread();
            let second = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
            assert!(first.starts_with("volley-io-"), "{first}");
            assert_eq!(first, second, "a second listener does not rename it");
        })
        .join()
        .unwrap();
    }
}
