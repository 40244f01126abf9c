//! The process's open-file limit, which caps the connections a server can hold.
//!
//! Every connection is a file descriptor. When the process runs out, `accept` fails
//! with "Too many open files" and actix-server stops accepting for half a second:
//! every client waits, resumptions included, and the next burst fails again. Past
//! [`Config::max_connections`](crate::Config::max_connections) a connection is
//! refused with `503` instead, at once and for that client only, so
//! [`VolleyBuilder::build`](crate::VolleyBuilder::build) keeps that limit under
//! the open-file limit: it raises the soft limit to the hard one (as Go's runtime
//! does; the soft limit is often 1,024 while the hard one allows far more), and
//! lowers `max_connections` to what is left after a reserve for everything else,
//! with a warning saying so.

/// Descriptors kept for what is not a client connection: listeners, the reactor,
/// timers, Redis, logs, files the application opens.
pub const RESERVE: u64 = 256;

/// The open-file limits before and after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpenFiles {
    /// The soft limit found.
    pub before: u64,
    /// The soft limit now (the hard limit, unless raising it failed).
    pub soft: u64,
}

/// Raises the soft open-file limit to the hard one. `None` where the limit cannot be
/// read (not a Unix system).
pub(crate) fn raise() -> Option<OpenFiles> {
    #[cfg(unix)]
    {
        use rlimit::Resource;
        let (before, hard) = Resource::NOFILE.get().ok()?;
        if before >= hard {
            return Some(OpenFiles {
                before,
                soft: before,
            });
        }
        let soft = match Resource::NOFILE.set(hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!(error = %e, before, hard, "could not raise the open-file limit");
                before
            }
        };
        Some(OpenFiles { before, soft })
    }
    #[cfg(not(unix))]
    None
}

/// The connection limit to use under an open-file limit of `soft`: `max_connections`,
/// or fewer if the descriptors do not allow it.
pub(crate) fn connection_limit(max_connections: usize, soft: u64) -> usize {
    let room = usize::try_from(soft.saturating_sub(RESERVE)).unwrap_or(usize::MAX);
    max_connections.min(room.max(1))
}

/// Raises the open-file limit and returns the connection limit that fits it (see
/// the module's text), warning when it is lower than `max_connections`.
pub(crate) fn fit(max_connections: usize) -> usize {
    let Some(files) = raise() else {
        return max_connections;
    };
    if files.soft > files.before {
        tracing::debug!(
            before = files.before,
            now = files.soft,
            "open-file limit raised to the hard limit"
        );
    }
    let limit = connection_limit(max_connections, files.soft);
    // `usize::MAX` asks for as many as the files allow: no news.
    if limit < max_connections && max_connections != usize::MAX {
        tracing::warn!(
            open_files = files.soft,
            max_connections,
            limit,
            "the open-file limit allows {limit} connections ({} files, {RESERVE} kept for \
             the rest): past that they are refused with 503; raise the hard limit \
             (`ulimit -Hn`, systemd `LimitNOFILE=`) to hold more",
            files.soft
        );
    }
    limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_leaves_the_reserve_free() {
        assert_eq!(connection_limit(20_000, 20_000), 20_000 - RESERVE as usize);
        assert_eq!(connection_limit(1_000, 20_000), 1_000);
        assert_eq!(
            connection_limit(usize::MAX, 1_024),
            1_024 - RESERVE as usize
        );
        // A limit below the reserve still lets one connection in.
        assert_eq!(connection_limit(20_000, 100), 1);
    }

    #[cfg(unix)]
    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        use rlimit::Resource;
        let (soft, hard) = Resource::NOFILE.get().unwrap();
        // One below the hard limit: harmless to the other tests of this process
        // (one of which may build a server, and raise it first, meanwhile).
        let lowered = soft.min(hard).saturating_sub(1);
        Resource::NOFILE.set(lowered, hard).unwrap();
        let files = raise().unwrap();
        assert_eq!(files.soft, hard);
        assert!(files.before == lowered || files.before == hard, "{files:?}");
        assert_eq!(Resource::NOFILE.get().unwrap(), (hard, hard));
        // Raised already: nothing to do.
        assert_eq!(
            raise().unwrap(),
            OpenFiles {
                before: hard,
                soft: hard
            }
        );
    }
}
