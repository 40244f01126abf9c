//! The client's frame limit: the largest frame it accepts, as it announced in `Hello`
//! or `Resume`. The server never sends it a larger one: a larger emit fails at the
//! sender, a larger broadcast skips this recipient (counted), so a client is never
//! handed a frame it would have to refuse (and, before it could say so, resume into
//! the same frame again and again).

/// Smallest limit the server honours: every frame the protocol itself produces
/// (`Open`, `Ping`, `Resumed`, reasons) fits well inside it, so a client announcing
/// less is taken to mean this much.
pub const MIN_CLIENT_FRAME: u32 = 1024;

/// What the client said about the frames it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientLimit {
    announced: Option<u32>,
}

impl ClientLimit {
    /// The limit from the `max_frame_size` field of `Hello`/`Resume` (absent for a
    /// client that predates the field: no limit).
    pub fn announced(max_frame_size: Option<u32>) -> Self {
        ClientLimit {
            announced: max_frame_size,
        }
    }

    /// What the client announced (to pass it on to another node).
    #[cfg(feature = "cluster")]
    pub(crate) fn announced_limit(&self) -> Option<u32> {
        self.announced
    }

    /// The largest frame, in bytes, this client may be sent.
    pub fn bytes(&self) -> usize {
        match self.announced {
            Some(max) => usize::try_from(max.max(MIN_CLIENT_FRAME)).unwrap_or(usize::MAX),
            None => usize::MAX,
        }
    }

    /// Whether a frame of `len` bytes may be sent to this client.
    pub fn admits(&self, len: usize) -> bool {
        len <= self.bytes()
    }

    /// Whether the client reads the optional trailing fields of protocol v1 (the
    /// reason of `Disconnect`): a client that sends one such field reads them all.
    pub fn reads_trailing_fields(&self) -> bool {
        self.announced.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_client_has_no_limit_and_a_tiny_one_is_raised() {
        let old = ClientLimit::announced(None);
        assert!(old.admits(usize::MAX));
        assert!(!old.reads_trailing_fields());
        let tiny = ClientLimit::announced(Some(10));
        assert_eq!(tiny.bytes(), 1024);
        assert!(tiny.reads_trailing_fields());
        let limited = ClientLimit::announced(Some(4096));
        assert!(limited.admits(4096));
        assert!(!limited.admits(4097));
    }
}
