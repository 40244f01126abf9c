//! A peer's rounds and the one table of a `compare` run: with `--rounds N` every
//! server runs N times in turn with the floor, each round read against the floor
//! measured just before it, and the table shows each server's median round with the
//! range of its rounds.

use std::fmt::Write as _;

use super::{per_second, Peer, PeerFigures, Settings};
use crate::scenarios::floor::FloorFigures;

/// One peer's rounds: its figures and the floor measured just before, per round.
pub(super) struct PeerRounds {
    pub peer: Peer,
    pub rounds: Vec<(PeerFigures, f64)>,
}

impl PeerRounds {
    /// Each round's CPU per delivery as a multiple of its own round's floor.
    pub fn ratios(&self) -> Vec<f64> {
        (self.rounds.iter())
            .map(|(f, floor)| per_second(f.cpu_us_per_delivery(), *floor))
            .collect()
    }

    /// The round whose multiple of the floor is the median (the lower middle one
    /// of an even count): the row the table shows.
    pub fn median(&self) -> &(PeerFigures, f64) {
        let ratios = self.ratios();
        &self.rounds[median_of(&ratios)]
    }
}

/// The round of the floor whose cost per message is the median: the floor the
/// report shows.
pub(super) fn median_floor(floors: &[FloorFigures]) -> &FloorFigures {
    let costs: Vec<f64> = floors
        .iter()
        .map(FloorFigures::writer_us_per_message)
        .collect();
    &floors[median_of(&costs)]
}

/// Where the median of `values` is (the lower middle one of an even count).
fn median_of(values: &[f64]) -> usize {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|a, b| values[*a].total_cmp(&values[*b]));
    order[(order.len() - 1) / 2]
}

/// The smallest and largest of `values` (0, 0 for none).
pub(super) fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values
        .fold(None, |r: Option<(f64, f64)>, v| match r {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
        .unwrap_or_default()
}

/// The one table of the run: each server's figures, next to the floor's. With
/// several rounds, a server's row is its median round (by its multiple of that
/// round's floor), with the range of the rounds in brackets.
pub(super) fn table(
    s: &Settings,
    floors: &[FloorFigures],
    batched: &FloorFigures,
    rows: &[PeerRounds],
) -> String {
    let spread = |(lo, hi): (f64, f64), unit: &str, digits: usize| {
        if s.rounds > 1 {
            format!(" ({lo:.digits$}–{hi:.digits$}{unit})")
        } else {
            String::new()
        }
    };
    let single = median_floor(floors);
    let floor = single.writer_us_per_message();
    let mut t = String::new();
    let rounds = match s.rounds {
        1 => String::new(),
        n => format!(", {n} rounds in turn (medians, the rounds' range in brackets)"),
    };
    let _ = writeln!(
        t,
        "{} clients in one room, {} msg/s for {} s{rounds}; server CPU per delivery next to the floor",
        s.clients,
        s.rate,
        s.duration.as_secs_f64()
    );
    let _ = writeln!(
        t,
        "| server | CPU per delivery | × floor | deliveries/s | latency p50 | latency p99 | RSS per idle connection | lost / duplicated |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|---|");
    for row in rows {
        let (f, round_floor) = row.median();
        let us = f.cpu_us_per_delivery();
        let cpu = range(row.rounds.iter().map(|(f, _)| f.cpu_us_per_delivery()));
        let (lost, duplicated) = (row.rounds.iter()).fold((0, 0), |(l, d), (f, _)| {
            (l + f.chat.lost, d + f.chat.duplicated)
        });
        let _ = writeln!(
            t,
            "| {} | {us:.2} µs{} | {:.2}×{} | {:.0} | {:.2} ms | {:.2} ms | {:.1} KiB | {lost} / {duplicated} |",
            row.peer.label(),
            spread(cpu, " µs", 2),
            per_second(us, *round_floor),
            spread(range(row.ratios().into_iter()), "×", 2),
            f.deliveries_per_s,
            f.delivery.quantile_us(0.5) as f64 / 1000.0,
            f.delivery.quantile_us(0.99) as f64 / 1000.0,
            f.rss_per_idle_connection_kib,
        );
    }
    let floor_range = range(floors.iter().map(FloorFigures::writer_us_per_message));
    let _ = writeln!(
        t,
        "| floor: one write() per message (writer; drainer {:.2} µs) | {floor:.2} µs{} | 1.0× | {:.0} | — | — | — | — |",
        single.drainer_us_per_message(),
        spread(floor_range, " µs", 2),
        single.rate_reached
    );
    let _ = writeln!(
        t,
        "| floor: {} messages per write() (writer; drainer {:.2} µs) | {:.2} µs | {:.2}× | {:.0} | — | — | — | — |",
        s.batch,
        batched.drainer_us_per_message(),
        batched.writer_us_per_message(),
        per_second(batched.writer_us_per_message(), floor),
        batched.rate_reached
    );
    t
}
