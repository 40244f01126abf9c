//! Heartbeat bookkeeping, kept free of timers so it can be unit-tested.
//!
//! The server pings every `interval`; the client must answer within `timeout`. A peer
//! that stops answering is detected at the latest `interval + timeout` after its last
//! answer.

use std::time::{Duration, Instant};

/// What the session should do when its heartbeat timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Send a ping now.
    Ping,
    /// The outstanding ping was not answered in time: drop the connection (the
    /// session detaches and may resume).
    TimedOut,
    /// A ping is outstanding and still within its timeout.
    Wait,
}

/// Heartbeat state of one session.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    timeout: Duration,
    /// When the unanswered ping was sent; `None` when every ping has been answered.
    outstanding: Option<Instant>,
    rtt: Option<Duration>,
}

impl Heartbeat {
    /// A heartbeat with no ping outstanding.
    pub fn new(timeout: Duration) -> Self {
        Heartbeat {
            timeout,
            outstanding: None,
            rtt: None,
        }
    }

    /// Decides what to do at `now`; records the ping when it says [`Beat::Ping`].
    pub fn tick(&mut self, now: Instant) -> Beat {
        match self.outstanding {
            Some(sent) if now.duration_since(sent) >= self.timeout => Beat::TimedOut,
            Some(_) => Beat::Wait,
            None => {
                self.outstanding = Some(now);
                Beat::Ping
            }
        }
    }

    /// Records a pong; returns the measured round-trip time if a ping was outstanding.
    pub fn pong(&mut self, now: Instant) -> Option<Duration> {
        let sent = self.outstanding.take()?;
        let rtt = now.duration_since(sent);
        self.rtt = Some(rtt);
        Some(rtt)
    }

    /// The last measured round-trip time.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_then_times_out_without_pong() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(Duration::from_secs(2));
        assert_eq!(hb.tick(t0), Beat::Ping);
        assert_eq!(hb.tick(t0 + Duration::from_secs(1)), Beat::Wait);
        assert_eq!(hb.tick(t0 + Duration::from_secs(2)), Beat::TimedOut);
    }

    #[test]
    fn pong_measures_rtt_and_clears_outstanding() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(Duration::from_secs(2));
        assert_eq!(hb.tick(t0), Beat::Ping);
        assert_eq!(
            hb.pong(t0 + Duration::from_millis(30)),
            Some(Duration::from_millis(30))
        );
        assert_eq!(hb.rtt(), Some(Duration::from_millis(30)));
        assert_eq!(hb.pong(t0 + Duration::from_millis(40)), None);
        assert_eq!(hb.tick(t0 + Duration::from_secs(10)), Beat::Ping);
    }
}
