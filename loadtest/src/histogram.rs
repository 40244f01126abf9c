//! A latency histogram with log-linear buckets: small and fixed in size whatever the
//! number of samples, cheap to record into, and mergeable, so that each worker keeps
//! its own and the coordinator adds them up.
//!
//! Values are whole microseconds. Below 32 µs every value has its own bucket; above,
//! each power of two is cut into 32 equal buckets, so a bucket is never wider than
//! 1/32 (about 3%) of the values in it. A percentile is reported as the upper bound
//! of its bucket (never below the truth, at most 3% above it), capped at the exact
//! maximum, which is kept beside the buckets with the exact minimum and mean.

use serde::{Deserialize, Serialize};

/// Buckets per power of two, as a number of bits.
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Enough buckets for any `u64`: 32 exact ones, then 32 per power of two up to 2^63.
const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * SUB as usize;

/// Bars per power of two in [`Histogram::bars`] (a divisor of [`SUB`]).
const BARS_PER_DOUBLING: u64 = 8;

/// The bucket of value `v`.
fn bucket_of(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let top = 63 - v.leading_zeros(); // position of the highest set bit, >= SUB_BITS
    let shift = top - SUB_BITS;
    let within = (v >> shift) - SUB; // the next SUB_BITS bits below the highest
    ((u64::from(shift) + 1) * SUB + within) as usize
}

/// The largest value that falls in bucket `b`.
fn upper_bound(b: usize) -> u64 {
    let b = b as u64;
    if b < SUB {
        return b;
    }
    let shift = b / SUB - 1;
    let base = b % SUB + SUB;
    // In u128: the top bucket's bound is 2^64 - 1, and its `base + 1` shifted
    // overflows a u64.
    let bound = (u128::from(base + 1) << shift) - 1;
    u64::try_from(bound).unwrap_or(u64::MAX)
}

/// Microsecond samples counted into log-linear buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "Sparse", into = "Sparse")]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: u64,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

/// The figures a report shows, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: u64,
}

impl Histogram {
    /// Counts one sample of `us` microseconds.
    pub fn record_us(&mut self, us: u64) {
        self.counts[bucket_of(us)] += 1;
        self.count += 1;
        self.sum = self.sum.saturating_add(us);
        self.min = self.min.min(us);
        self.max = self.max.max(us);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum = self.sum.saturating_add(other.sum);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// The exact largest sample (0 when empty).
    pub fn max_us(&self) -> u64 {
        self.max
    }

    /// The `q` quantile (`0.0..=1.0`): the upper bound of the bucket holding the
    /// sample of rank `ceil(q × count)`, capped at the maximum; 0 when empty.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return upper_bound(bucket).min(self.max);
            }
        }
        self.max
    }

    /// The samples as bars for a plot, in value order: `(from_us, to_us, count)`
    /// over [`BARS_PER_DOUBLING`] bars per power of two, a bar per microsecond below
    /// 32 µs (where buckets are exact); only bars that hold samples.
    pub fn bars(&self) -> Vec<(u64, u64, u64)> {
        let per_bar = (SUB / BARS_PER_DOUBLING) as usize;
        let mut bars: Vec<(usize, (u64, u64, u64))> = Vec::new();
        for (b, &n) in self.counts.iter().enumerate().filter(|(_, n)| **n > 0) {
            let (first, last) = if b < SUB as usize {
                (b, b)
            } else {
                let first = b / per_bar * per_bar;
                (first, first + per_bar - 1)
            };
            match bars.last_mut() {
                Some((group, bar)) if *group == first => bar.2 += n,
                _ => {
                    let from = if first == 0 {
                        0
                    } else {
                        upper_bound(first - 1) + 1
                    };
                    bars.push((first, (from, upper_bound(last), n)));
                }
            }
        }
        bars.into_iter().map(|(_, bar)| bar).collect()
    }

    /// p50, p90, p99, p99.9, max and mean.
    pub fn percentiles(&self) -> Percentiles {
        let mean_us = self.sum.checked_div(self.count).unwrap_or(0);
        Percentiles {
            count: self.count,
            p50_us: self.quantile_us(0.50),
            p90_us: self.quantile_us(0.90),
            p99_us: self.quantile_us(0.99),
            p999_us: self.quantile_us(0.999),
            max_us: self.max,
            mean_us,
        }
    }
}

/// The wire form: only the buckets that hold samples, as `[bucket, count]` pairs.
#[derive(Clone, Serialize, Deserialize)]
struct Sparse {
    buckets: Vec<(u32, u64)>,
    count: u64,
    sum: u64,
    min: u64,
    max: u64,
}

impl From<Histogram> for Sparse {
    fn from(h: Histogram) -> Self {
        let buckets = h
            .counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(b, n)| (b as u32, *n))
            .collect();
        Sparse {
            buckets,
            count: h.count,
            sum: h.sum,
            min: h.min,
            max: h.max,
        }
    }
}

impl From<Sparse> for Histogram {
    fn from(s: Sparse) -> Self {
        let mut h = Histogram {
            count: s.count,
            sum: s.sum,
            min: s.min,
            max: s.max,
            ..Histogram::default()
        };
        for (b, n) in s.buckets {
            // A bucket out of range can only come from a bad peer: keep the sample
            // counted at the top rather than fail the whole report.
            let b = (b as usize).min(BUCKETS - 1);
            h.counts[b] += n;
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_exact_below_32_and_within_3_percent_above() {
        for v in 0..32 {
            assert_eq!(upper_bound(bucket_of(v)), v);
        }
        for v in [
            32,
            33,
            63,
            64,
            65,
            1_000,
            12_345,
            999_999,
            1 << 40,
            u64::MAX,
        ] {
            let b = bucket_of(v);
            let hi = upper_bound(b);
            assert!(hi >= v, "{v} above its bucket's bound {hi}");
            assert!(
                (hi - v) as f64 <= v as f64 / 32.0,
                "{v}: bound {hi} too far"
            );
            if b > 0 {
                assert!(upper_bound(b - 1) < v, "{v} belongs to an earlier bucket");
            }
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_of_a_known_spread() {
        let mut h = Histogram::default();
        for us in 1..=1_000 {
            h.record_us(us);
        }
        let p = h.percentiles();
        assert_eq!(p.count, 1_000);
        assert_eq!(p.max_us, 1_000);
        assert_eq!(p.mean_us, 500);
        // Rank 500 is 500 µs; its bucket (496..=503) reports 503.
        assert_eq!(p.p50_us, 503);
        assert!((990..=1_000).contains(&p.p99_us), "{}", p.p99_us);
        // p99.9 is the 999th sample, in the last bucket: capped at the max.
        assert_eq!(p.p999_us, 1_000);
        assert!(p.p90_us >= 900 && p.p90_us <= 928, "{}", p.p90_us);
    }

    #[test]
    fn bars_cover_the_samples_in_order() {
        let mut h = Histogram::default();
        for us in [3, 5, 1_000, 1_010, 1_100, 50_000] {
            h.record_us(us);
        }
        let bars = h.bars();
        assert_eq!(bars[..2], [(3, 3, 1), (5, 5, 1)]);
        assert_eq!(bars.iter().map(|b| b.2).sum::<u64>(), 6);
        for pair in bars.windows(2) {
            assert!(pair[0].1 < pair[1].0, "{bars:?}");
        }
        // 1000 and 1010 share a bar (8 per doubling: 960..=1023); 1100 is in the next.
        assert_eq!(bars[2], (960, 1_023, 2));
        assert!(bars[3].0 <= 1_100 && 1_100 <= bars[3].1, "{bars:?}");
        assert!(Histogram::default().bars().is_empty());
    }

    #[test]
    fn empty_histograms_report_zeros() {
        let h = Histogram::default();
        assert_eq!(h.percentiles(), Percentiles::default());
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let (mut a, mut b, mut all) = (
            Histogram::default(),
            Histogram::default(),
            Histogram::default(),
        );
        for us in 0..5_000u64 {
            let v = us * us % 70_001;
            if us % 3 == 0 { &mut a } else { &mut b }.record_us(v);
            all.record_us(v);
        }
        a.merge(&b);
        assert_eq!(a, all);
    }

    #[test]
    fn the_sparse_wire_form_round_trips() {
        let mut h = Histogram::default();
        for us in [3, 3, 70, 1_500, 2_000_000] {
            h.record_us(us);
        }
        let json = serde_json::to_string(&h).unwrap();
        assert!(json.len() < 200, "{json}");
        let back: Histogram = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.quantile_us(1.0), 2_000_000);
    }
}
