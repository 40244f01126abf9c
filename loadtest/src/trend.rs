//! Trends over a long run: the soak samples quantities once a second (server RSS,
//! CPU, open file descriptors, sessions; pings per session) and asks of each whether
//! it grows without bound.
//!
//! The verdict is a least-squares line through the second half of the run: the
//! first half holds the warm-up (buffers growing to their working size, sessions
//! connecting), a leak shows as a slope that stays in the second. A quantity
//! "grows" when its slope is above the limit per minute *and* the line rises more
//! than the limit's floor over that half; the floor keeps a run of a few seconds
//! from failing on noise (a short run checks only for fast growth), and over a long
//! run the slope is what decides.

/// A quantity sampled over a run: `(seconds since the start, value)`, in time order.
pub type Points = Vec<(f64, f64)>;

/// When a quantity counts as growing without bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// Largest slope allowed, in units per minute.
    pub per_min: f64,
    /// Largest rise over the second half allowed whatever the slope, in units.
    pub floor: f64,
}

/// A quantity's fitted growth over the second half of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Growth {
    /// Slope in units per minute.
    pub per_min: f64,
    /// How much the line rises over the half, in units.
    pub rise: f64,
    /// Whether both pass the limit: the quantity grows without bound.
    pub unbounded: bool,
}

/// The slope of the least-squares line through `points` (value per second), or
/// `None` with fewer than two distinct times.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_v = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut cov, mut var) = (0.0, 0.0);
    for &(t, v) in points {
        cov += (t - mean_t) * (v - mean_v);
        var += (t - mean_t) * (t - mean_t);
    }
    (var > 0.0).then(|| cov / var)
}

/// The points from the middle of the run's time span on.
pub fn second_half(points: &[(f64, f64)]) -> &[(f64, f64)] {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return points;
    };
    let middle = (first.0 + last.0) / 2.0;
    let from = points.partition_point(|p| p.0 < middle);
    &points[from..]
}

/// The growth of `points` over the second half of the run, judged by `limit`.
pub fn growth(points: &[(f64, f64)], limit: Limit) -> Option<Growth> {
    let half = second_half(points);
    let per_second = slope(half)?;
    let span = half.last()?.0 - half.first()?.0;
    let per_min = per_second * 60.0;
    let rise = per_second * span;
    Some(Growth {
        per_min,
        rise,
        unbounded: per_min > limit.per_min && rise > limit.floor,
    })
}

/// The rate of change between consecutive samples of a running total, placed at the
/// later sample: `(t, Δvalue / Δt)`.
pub fn rates(totals: &[(f64, f64)]) -> Points {
    totals
        .windows(2)
        .filter(|w| w[1].0 > w[0].0)
        .map(|w| (w[1].0, (w[1].1 - w[0].1) / (w[1].0 - w[0].0)))
        .collect()
}

/// Samples at least `every` seconds apart, from samples taken more often.
pub fn thin<T: Copy>(samples: &[(f64, T)], every: f64) -> Vec<(f64, T)> {
    let mut out: Vec<(f64, T)> = Vec::new();
    for &(t, value) in samples {
        if out.last().is_none_or(|last| t - last.0 >= every - 1e-9) {
            out.push((t, value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(a: f64, b: f64, seconds: usize) -> Points {
        (0..=seconds)
            .map(|t| (t as f64, a + b * t as f64))
            .collect()
    }

    #[test]
    fn the_slope_of_a_line_is_found_exactly() {
        let s = slope(&line(5.0, 0.25, 20)).unwrap();
        assert!((s - 0.25).abs() < 1e-12, "{s}");
        assert_eq!(slope(&[(1.0, 2.0)]), None);
        assert_eq!(slope(&[(1.0, 2.0), (1.0, 3.0)]), None);
    }

    #[test]
    fn only_the_second_half_counts() {
        // Warm-up: fast growth for 60 s, then flat for 60 s.
        let mut points: Points = (0..60).map(|t| (t as f64, t as f64 * 10.0)).collect();
        points.extend((60..=120).map(|t| (t as f64, 600.0)));
        assert_eq!(second_half(&points).first(), Some(&(60.0, 600.0)));
        let g = growth(
            &points,
            Limit {
                per_min: 1.0,
                floor: 0.0,
            },
        )
        .unwrap();
        assert!(g.per_min.abs() < 1e-9 && !g.unbounded, "{g:?}");
    }

    #[test]
    fn a_leak_is_unbounded_and_a_short_wobble_is_not() {
        // 2 units a minute over ten minutes.
        let leak = line(100.0, 2.0 / 60.0, 600);
        let g = growth(
            &leak,
            Limit {
                per_min: 1.0,
                floor: 2.0,
            },
        )
        .unwrap();
        assert!((g.per_min - 2.0).abs() < 1e-9 && (g.rise - 10.0).abs() < 1e-6);
        assert!(g.unbounded);
        // The same slope for four seconds rises far less than the floor.
        let short = line(100.0, 2.0 / 60.0, 8);
        assert!(
            !growth(
                &short,
                Limit {
                    per_min: 1.0,
                    floor: 2.0
                }
            )
            .unwrap()
            .unbounded
        );
    }

    #[test]
    fn rates_of_running_totals_and_thinning() {
        let totals = [(0.0, 0.0), (0.5, 5.0), (1.0, 10.0), (2.0, 40.0)];
        assert_eq!(rates(&totals), vec![(0.5, 10.0), (1.0, 10.0), (2.0, 30.0)]);
        let thinned = thin(&totals, 1.0);
        assert_eq!(thinned, vec![(0.0, 0.0), (1.0, 10.0), (2.0, 40.0)]);
    }
}
