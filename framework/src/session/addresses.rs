//! What the per-address connection limits count of each client address (an IPv6
//! client by its /64 network, see [`network_of`]): the
//! connections it holds open (`max_connections_per_ip`) and how fast it opened them
//! lately (`connect_rate_per_ip`, a token bucket). Pure bookkeeping over the times
//! it is given, so that tests can drive it without a clock.
//!
//! An address has an entry while it holds a connection or its bucket is still
//! refilling; entries that say nothing a new one would not (nothing open, bucket
//! full) go when their last connection closes, or in a sweep each time the table
//! has doubled since the last one: the table stays within twice the addresses
//! active in the last `burst / per_sec` seconds, at amortized constant cost.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use super::rate::take;
use crate::ConnectRate;

/// What the per-address limits count a client address as: itself for IPv4, its /64
/// network for IPv6 (the block one subscriber usually gets).
pub(crate) fn network_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
    }
}

/// No sweep below this many entries.
const SWEEP_FROM: usize = 1024;

/// Which per-address limit a connect went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Over {
    /// It holds `max_connections_per_ip` connections already.
    Open(usize),
    /// Its bucket is empty.
    Rate(ConnectRate),
}

/// The client addresses with a connection open or a bucket refilling.
#[derive(Default)]
pub(crate) struct Addresses {
    entries: HashMap<IpAddr, AddressUse>,
    /// The table's size at which the next sweep runs.
    sweep_at: usize,
}

struct AddressUse {
    open: usize,
    /// Connects left in its bucket at `last`.
    tokens: f64,
    last: Instant,
}

impl AddressUse {
    /// Nothing open and its bucket full again at `now`.
    fn idle(&self, rate: ConnectRate, now: Instant) -> bool {
        let refilled =
            now.saturating_duration_since(self.last).as_secs_f64() * f64::from(rate.per_sec);
        self.open == 0 && (rate.is_off() || self.tokens + refilled >= f64::from(rate.burst.max(1)))
    }
}

impl Addresses {
    /// A new connection from `address` at `now`: counted, unless the address holds
    /// `max_open` already or its bucket is empty (a refused connect takes nothing).
    pub fn admit(
        &mut self,
        address: IpAddr,
        max_open: usize,
        rate: ConnectRate,
        now: Instant,
    ) -> Result<(), Over> {
        self.sweep(rate, now);
        let entry = self
            .entries
            .entry(network_of(address))
            .or_insert_with(|| AddressUse {
                open: 0,
                tokens: f64::from(rate.burst.max(1)),
                last: now,
            });
        if entry.open >= max_open {
            return Err(Over::Open(max_open));
        }
        if !rate.is_off() {
            let elapsed = now.saturating_duration_since(entry.last).as_secs_f64();
            entry.last = entry.last.max(now);
            let (per_sec, burst) = (f64::from(rate.per_sec), u64::from(rate.burst));
            if !take(&mut entry.tokens, per_sec, burst, elapsed, 1.0) {
                return Err(Over::Rate(rate));
            }
        }
        entry.open += 1;
        Ok(())
    }

    /// A connection from `address` closed at `now`.
    pub fn release(&mut self, address: IpAddr, rate: ConnectRate, now: Instant) {
        let network = network_of(address);
        let Some(entry) = self.entries.get_mut(&network) else {
            return;
        };
        entry.open = entry.open.saturating_sub(1);
        if entry.idle(rate, now) {
            self.entries.remove(&network);
        }
    }

    fn sweep(&mut self, rate: ConnectRate, now: Instant) {
        if self.entries.len() < self.sweep_at {
            return;
        }
        self.entries.retain(|_, entry| !entry.idle(rate, now));
        self.sweep_at = (self.entries.len() * 2).max(SWEEP_FROM);
    }

    /// Addresses in the table.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const RATE: ConnectRate = ConnectRate {
        per_sec: 10,
        burst: 3,
    };

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn an_address_connects_its_burst_at_once_then_at_its_rate() {
        let mut table = Addresses::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(table.admit(ip(1), 100, RATE, t0), Ok(()));
        }
        assert_eq!(table.admit(ip(1), 100, RATE, t0), Err(Over::Rate(RATE)));
        // Another address has its own bucket.
        assert_eq!(table.admit(ip(2), 100, RATE, t0), Ok(()));
        // One connect refills in a tenth of a second, not before.
        let t1 = t0 + Duration::from_millis(90);
        assert_eq!(table.admit(ip(1), 100, RATE, t1), Err(Over::Rate(RATE)));
        let t2 = t0 + Duration::from_millis(101);
        assert_eq!(table.admit(ip(1), 100, RATE, t2), Ok(()));
        assert_eq!(table.admit(ip(1), 100, RATE, t2), Err(Over::Rate(RATE)));
        // Refused connects took nothing: a whole burst back after 0.3 s.
        let t3 = t2 + Duration::from_millis(301);
        for _ in 0..3 {
            assert_eq!(table.admit(ip(1), 100, RATE, t3), Ok(()));
        }
    }

    #[test]
    fn the_open_limit_comes_first_and_a_closed_connection_gives_its_place_back() {
        let mut table = Addresses::default();
        let t0 = Instant::now();
        assert_eq!(table.admit(ip(1), 2, ConnectRate::OFF, t0), Ok(()));
        assert_eq!(table.admit(ip(1), 2, ConnectRate::OFF, t0), Ok(()));
        assert_eq!(
            table.admit(ip(1), 2, ConnectRate::OFF, t0),
            Err(Over::Open(2))
        );
        table.release(ip(1), ConnectRate::OFF, t0);
        assert_eq!(table.admit(ip(1), 2, ConnectRate::OFF, t0), Ok(()));
        // Full: a connect refused for it takes no token.
        let mut table = Addresses::default();
        assert_eq!(table.admit(ip(1), 1, RATE, t0), Ok(()));
        for _ in 0..5 {
            assert_eq!(table.admit(ip(1), 1, RATE, t0), Err(Over::Open(1)));
        }
        table.release(ip(1), RATE, t0);
        assert_eq!(table.admit(ip(1), 3, RATE, t0), Ok(()));
        assert_eq!(table.admit(ip(1), 3, RATE, t0), Ok(()));
        assert_eq!(table.admit(ip(1), 3, RATE, t0), Err(Over::Rate(RATE)));
    }

    #[test]
    fn an_address_stays_while_its_bucket_refills_and_the_table_is_swept() {
        let mut table = Addresses::default();
        let t0 = Instant::now();
        // Without a rate, a closed address goes at once.
        table.admit(ip(1), 10, ConnectRate::OFF, t0).unwrap();
        table.release(ip(1), ConnectRate::OFF, t0);
        assert_eq!(table.len(), 0);
        // With one, it stays until its bucket is full again: closing and opening
        // again does not give an address a new bucket.
        table.admit(ip(1), 10, RATE, t0).unwrap();
        table.release(ip(1), RATE, t0);
        assert_eq!(table.len(), 1);
        table.admit(ip(1), 10, RATE, t0).unwrap();
        table.admit(ip(1), 10, RATE, t0).unwrap();
        assert_eq!(table.admit(ip(1), 10, RATE, t0), Err(Over::Rate(RATE)));
        // Many addresses connect once and close; once their buckets are full the
        // next sweep takes them out, and the table does not grow past twice what
        // is live.
        for n in 2..3_000 {
            table.admit(ip(n), 10, RATE, t0).unwrap();
            table.release(ip(n), RATE, t0);
        }
        assert!(table.len() >= 2_999, "refilling: kept ({})", table.len());
        let later = t0 + Duration::from_secs(1);
        for n in 5_000..5_000 + SWEEP_FROM as u32 * 4 {
            table.admit(ip(n), 10, RATE, later).unwrap();
        }
        // Swept: the refilled ones are gone, the open ones all there (and the
        // first address, which holds two).
        assert_eq!(table.len(), SWEEP_FROM * 4 + 1);
        assert!(table.entries.contains_key(&ip(1)));
        for n in 5_000..5_000 + SWEEP_FROM as u32 * 4 {
            assert!(table.entries.contains_key(&ip(n)));
        }
    }
}
