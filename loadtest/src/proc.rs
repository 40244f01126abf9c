//! What a process costs, read from Linux's `/proc`: CPU time from `/proc/<pid>/stat`,
//! resident memory now and at its peak from `/proc/<pid>/status`, open file
//! descriptors from `/proc/<pid>/fd`.
//!
//! The load tester samples the server process before and after a phase, so the
//! server's CPU and memory are measured apart from the load generator's own.

use std::collections::BTreeMap;
use std::io;

use serde::{Deserialize, Serialize};

/// Clock ticks per second of the CPU times in `/proc/<pid>/stat`. Linux reports them
/// in `USER_HZ`, which is 100 on every architecture it exports to user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of a process's costs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcSample {
    /// User plus system CPU time since the process started, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory now (`VmRSS`), in KiB.
    pub rss_kib: u64,
    /// The most resident memory it ever had (`VmHWM`), in KiB.
    pub peak_rss_kib: u64,
}

/// Reads the costs of process `pid` (`"self"` works too).
pub fn sample(pid: &str) -> io::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{what} of {pid}"));
    Ok(ProcSample {
        cpu_seconds: cpu_seconds(&stat).ok_or_else(|| bad("/proc stat"))?,
        rss_kib: status_kib(&status, "VmRSS").ok_or_else(|| bad("VmRSS"))?,
        peak_rss_kib: status_kib(&status, "VmHWM").ok_or_else(|| bad("VmHWM"))?,
    })
}

/// CPU seconds of process `pid`'s threads, added up by name with a trailing `-N`
/// dropped: Volley names its threads (`volley-io-0`, `volley-game-1`, ...), so this
/// says which kind of thread the server's CPU went to.
pub fn thread_groups(pid: &str) -> io::Result<BTreeMap<String, f64>> {
    let mut groups = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path();
        // A thread that ended meanwhile is simply not counted.
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue;
        };
        if let Some(cpu) = cpu_seconds(&stat) {
            *groups
                .entry(group_of(comm.trim_end()).to_owned())
                .or_default() += cpu;
        }
    }
    Ok(groups)
}

/// A thread's name without its number: `volley-io-12` → `volley-io`.
fn group_of(name: &str) -> &str {
    match name.rsplit_once('-') {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => name,
    }
}

/// How many file descriptors process `pid` has open (sockets included).
pub fn open_fds(pid: &str) -> io::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// `utime + stime` of a `/proc/<pid>/stat` line, in seconds. The command name (field
/// 2) is in parentheses and may hold spaces, so fields are counted after the last `)`.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name come field 3 (state) onwards: utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

/// The value in KiB of a `Key:   1234 kB` line of `/proc/<pid>/status`.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_after_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (loadtest (serve) x) S 1 4242 4242 0 -1 4194560 1200 0 0 0 \
                    250 75 0 0 20 0 9 0 1234 123456789 5000 18446744073709551615";
        assert_eq!(cpu_seconds(stat), Some(3.25));
        assert_eq!(cpu_seconds("garbage"), None);
    }

    #[test]
    fn memory_lines_are_found_by_key() {
        let status =
            "Name:\tloadtest\nVmPeak:\t  900 kB\nVmHWM:\t   52340 kB\nVmRSS:\t   41000 kB\n";
        assert_eq!(status_kib(status, "VmHWM"), Some(52_340));
        assert_eq!(status_kib(status, "VmRSS"), Some(41_000));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn threads_are_grouped_by_name_without_their_number() {
        assert_eq!(group_of("volley-io-12"), "volley-io");
        assert_eq!(group_of("volley-control"), "volley-control");
        assert_eq!(group_of("actix-rt|system"), "actix-rt|system");
        assert_eq!(group_of("x-"), "x-");
        let me = thread_groups("self").unwrap();
        assert!(!me.is_empty() && me.values().all(|s| *s >= 0.0), "{me:?}");
    }

    #[test]
    fn this_process_can_be_sampled() {
        let me = sample("self").unwrap();
        assert!(me.rss_kib > 0 && me.peak_rss_kib >= me.rss_kib, "{me:?}");
        // stdin, stdout, stderr at least.
        assert!(open_fds("self").unwrap() >= 3);
    }
}
