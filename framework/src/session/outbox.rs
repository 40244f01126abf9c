//! The outbox: reliable frames sent to a client that it has not acknowledged yet.
//!
//! Invariant: the frames held are exactly those with sequence numbers
//! `acked + 1 ..= sent`, in order, so a resume can replay everything after the
//! client's last processed frame, and nothing before it.

use std::collections::VecDeque;

use bytes::Bytes;

/// The outbox passed its count or byte limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// A client's claim about what it received cannot be true (ahead of what was sent,
/// or behind what it already acknowledged and we dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfRange;

/// Bounded buffer of unacknowledged reliable frames.
#[derive(Debug)]
pub struct Outbox {
    frames: VecDeque<Bytes>,
    bytes: usize,
    /// Highest sequence number the client has acknowledged.
    acked: u64,
    max_frames: usize,
    max_bytes: usize,
}

impl Outbox {
    /// An empty outbox with limits.
    pub fn new(max_frames: usize, max_bytes: usize) -> Self {
        Outbox {
            frames: VecDeque::new(),
            bytes: 0,
            acked: 0,
            max_frames,
            max_bytes,
        }
    }

    /// An outbox taken over from another node (a moved session): `frames` are
    /// numbered `acked + 1 ..`, in order.
    #[cfg(feature = "cluster")]
    pub(crate) fn restore(
        max_frames: usize,
        max_bytes: usize,
        acked: u64,
        frames: Vec<Bytes>,
    ) -> Self {
        Outbox {
            bytes: frames.iter().map(Bytes::len).sum(),
            frames: frames.into(),
            acked,
            max_frames,
            max_bytes,
        }
    }

    /// The client's last acknowledged frame and the frames after it, for a move.
    #[cfg(feature = "cluster")]
    pub(crate) fn parts(&self) -> (u64, impl Iterator<Item = &Bytes>) {
        (self.acked, self.frames.iter())
    }

    /// Sequence number of the last frame pushed (0 before the first).
    pub fn sent(&self) -> u64 {
        self.acked + self.frames.len() as u64
    }

    /// The last frame the client acknowledged (0 before the first).
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Frames held.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether nothing is waiting for an acknowledgement.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends the next reliable frame; its sequence number is `sent() + 1`.
    pub fn push(&mut self, frame: Bytes) -> Result<u64, Overflow> {
        if self.frames.len() >= self.max_frames || self.bytes + frame.len() > self.max_bytes {
            return Err(Overflow);
        }
        self.bytes += frame.len();
        self.frames.push_back(frame);
        Ok(self.sent())
    }

    /// Drops every frame up to and including `last_seq`. Stale or future claims are
    /// ignored for trimming (a future one is reported so the session can end).
    pub fn ack(&mut self, last_seq: u64) -> Result<(), OutOfRange> {
        if last_seq > self.sent() {
            return Err(OutOfRange);
        }
        while self.acked < last_seq {
            if let Some(frame) = self.frames.pop_front() {
                self.bytes -= frame.len();
            }
            self.acked += 1;
        }
        if self.frames.is_empty() {
            // All confirmed: an idle session keeps no buffer.
            self.frames = VecDeque::new();
        }
        Ok(())
    }

    /// Whether a client that processed up to `last_seq` can resume from here, and if
    /// not, the reason it is told. Frames are numbered from 1; `last_seq` 0 means
    /// "none yet".
    pub fn check_resume(&self, last_seq: u64) -> Result<(), String> {
        let sent = self.sent();
        if last_seq > sent {
            return Err(match sent {
                0 => format!(
                    "cannot resume from frame {last_seq}: the server has sent no reliable frame yet"
                ),
                _ => format!(
                    "cannot resume from frame {last_seq}: the server sent only frames 1..={sent}"
                ),
            });
        }
        if last_seq < self.acked {
            return Err(format!(
                "cannot resume from frame {last_seq}: the client already acknowledged frames 1..={}",
                self.acked
            ));
        }
        Ok(())
    }

    /// The frames held after `last_seq`, in order (nothing is trimmed).
    pub fn after(&self, last_seq: u64) -> impl Iterator<Item = &Bytes> {
        let skip = usize::try_from(last_seq.saturating_sub(self.acked)).unwrap_or(usize::MAX);
        self.frames.iter().skip(skip)
    }

    /// Acknowledges `last_seq` and returns the frames after it, in order, for replay.
    pub fn replay_after(
        &mut self,
        last_seq: u64,
    ) -> Result<impl Iterator<Item = &Bytes>, OutOfRange> {
        if last_seq < self.acked {
            return Err(OutOfRange);
        }
        self.ack(last_seq)?;
        Ok(self.frames.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u8) -> Bytes {
        Bytes::from(vec![n; 10])
    }

    #[test]
    fn numbers_frames_and_trims_by_ack() {
        let mut outbox = Outbox::new(10, 1000);
        for n in 1..=5 {
            assert_eq!(outbox.push(frame(n)), Ok(u64::from(n)));
        }
        assert_eq!((outbox.len(), outbox.bytes()), (5, 50));
        outbox.ack(3).unwrap();
        assert_eq!((outbox.len(), outbox.bytes(), outbox.sent()), (2, 20, 5));
        // A stale ack changes nothing.
        outbox.ack(1).unwrap();
        assert_eq!(outbox.len(), 2);
        assert_eq!(outbox.ack(6), Err(OutOfRange));
    }

    #[test]
    fn replays_exactly_what_follows_the_clients_last_frame() {
        let mut outbox = Outbox::new(10, 1000);
        for n in 1..=6 {
            outbox.push(frame(n)).unwrap();
        }
        outbox.ack(2).unwrap();
        let replay: Vec<u8> = outbox.replay_after(4).unwrap().map(|f| f[0]).collect();
        assert_eq!(replay, vec![5, 6]);
        // Frames 1–4 are gone: a claim of having only 1 cannot be served.
        assert!(outbox.replay_after(1).is_err());
        let replay: Vec<u8> = outbox.replay_after(6).unwrap().map(|f| f[0]).collect();
        assert!(replay.is_empty());
    }

    #[test]
    fn a_resume_out_of_range_names_the_frames_that_exist() {
        let mut outbox = Outbox::new(10, 1000);
        assert_eq!(
            outbox.check_resume(99),
            Err("cannot resume from frame 99: the server has sent no reliable frame yet".into())
        );
        assert_eq!(outbox.check_resume(0), Ok(()));
        outbox.push(frame(1)).unwrap();
        assert_eq!(
            outbox.check_resume(99),
            Err("cannot resume from frame 99: the server sent only frames 1..=1".into())
        );
        for n in 2..=5 {
            outbox.push(frame(n)).unwrap();
        }
        outbox.ack(3).unwrap();
        assert_eq!(
            outbox.check_resume(2),
            Err("cannot resume from frame 2: the client already acknowledged frames 1..=3".into())
        );
        assert_eq!(outbox.check_resume(3), Ok(()));
        let after: Vec<u8> = outbox.after(4).map(|f| f[0]).collect();
        assert_eq!(after, vec![5]);
        assert_eq!(outbox.len(), 2, "after() trims nothing");
    }

    #[test]
    fn overflows_on_count_and_on_bytes() {
        let mut by_count = Outbox::new(2, 1000);
        by_count.push(frame(1)).unwrap();
        by_count.push(frame(2)).unwrap();
        assert_eq!(by_count.push(frame(3)), Err(Overflow));
        let mut by_bytes = Outbox::new(100, 25);
        by_bytes.push(frame(1)).unwrap();
        by_bytes.push(frame(2)).unwrap();
        assert_eq!(by_bytes.push(frame(3)), Err(Overflow));
        by_bytes.ack(1).unwrap();
        assert_eq!(by_bytes.push(frame(3)), Ok(3));
    }
}
