//! Figures kept elsewhere and read when a scrape comes: frames over a client's limit,
//! the joins under way in the watched matchmakers, and the watched game rooms, summed
//! by room type (their tick histograms added
//! bucket by bucket), encoded by a `prometheus-client` [`Collector`].

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use crate::game::metrics::{Summary, BOUNDS_US};
use crate::game::{GameRooms, RoomMetrics};

/// Figures kept elsewhere, copied in just before each scrape is encoded.
#[derive(Default)]
pub(super) struct ScrapeTime {
    snapshot: Mutex<Snapshot>,
    sources: Mutex<Vec<GameRooms>>,
}

impl ScrapeTime {
    /// Also reports `rooms` from now on.
    pub(super) fn watch(&self, rooms: GameRooms) {
        lock(&self.sources).push(rooms);
    }

    /// Reads the figures kept elsewhere, for the encoding that follows.
    pub(super) async fn refresh(&self, over_client_limit: u64) {
        let sources = lock(&self.sources).clone();
        let mut rooms: BTreeMap<String, RoomTotals> = BTreeMap::new();
        let mut joins_waiting = 0;
        for source in sources {
            joins_waiting += source.joins_waiting();
            for room in source.all_metrics().await {
                rooms.entry(room.room_type.clone()).or_default().add(&room);
            }
        }
        *lock(&self.snapshot) = Snapshot {
            over_client_limit,
            joins_waiting,
            rooms,
        };
    }
}

impl std::fmt::Debug for ScrapeTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScrapeTime").finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Snapshot {
    over_client_limit: u64,
    /// Joins under way in the watched matchmakers.
    joins_waiting: usize,
    /// Per room type, summed over its live rooms.
    rooms: BTreeMap<String, RoomTotals>,
}

#[derive(Debug, Default)]
struct RoomTotals {
    rooms: i64,
    players: i64,
    held_seats: i64,
    ticks: u64,
    skipped_ticks: u64,
    inputs_dropped: u64,
    inputs_invalid: u64,
    lateness: Merged,
    duration: Merged,
}

/// One room type's tick histogram: its rooms' buckets added up.
#[derive(Debug, Default)]
struct Merged {
    counts: [u64; BOUNDS_US.len() + 1],
    sum: f64,
    count: u64,
}

impl Merged {
    fn add(&mut self, s: &Summary) {
        for (mine, theirs) in self.counts.iter_mut().zip(s.counts) {
            *mine += theirs;
        }
        self.sum += s.sum.as_secs_f64();
        self.count += s.count;
    }

    /// `(upper bound in seconds, count)` per bucket, the last one `+Inf`.
    fn buckets(&self) -> Vec<(f64, u64)> {
        let bounds = BOUNDS_US.iter().map(|&us| us as f64 / 1e6);
        let bounds = bounds.chain(std::iter::once(f64::INFINITY));
        bounds.zip(self.counts).collect()
    }
}

impl RoomTotals {
    fn add(&mut self, m: &RoomMetrics) {
        self.rooms += 1;
        self.players += m.players as i64;
        self.held_seats += m.held_seats as i64;
        self.ticks += m.ticks;
        self.skipped_ticks += m.skipped_ticks;
        self.inputs_dropped += m.inputs_dropped;
        self.inputs_invalid += m.inputs_invalid;
        self.lateness.add(&m.lateness);
        self.duration.add(&m.tick_duration);
    }
}

impl Collector for ScrapeTime {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = lock(&self.snapshot);
        let over = ConstCounter::new(snapshot.over_client_limit);
        let help = "Broadcast deliveries skipped: frame over the client's limit";
        over.encode(encoder.encode_descriptor(
            "frames_over_client_limit",
            help,
            None,
            over.metric_type(),
        )?)?;
        let waiting = ConstGauge::new(snapshot.joins_waiting as i64);
        waiting.encode(encoder.encode_descriptor(
            "matchmaker_joins_waiting",
            "Joins under way: asked of the matchmaker, not answered yet",
            None,
            waiting.metric_type(),
        )?)?;
        type Field = fn(&RoomTotals) -> f64;
        let gauges: [(&str, &str, Option<Unit>, Field); 3] = [
            ("game_rooms", "Live game rooms, by type", None, |t| {
                t.rooms as f64
            }),
            ("game_players", "Seated players, by room type", None, |t| {
                t.players as f64
            }),
            (
                "game_seats_held",
                "Seats held for dropped players, by room type",
                None,
                |t| t.held_seats as f64,
            ),
        ];
        for (name, help, unit, field) in gauges {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                unit.as_ref(),
                ConstGauge::new(0.0).metric_type(),
            )?;
            for (room_type, totals) in &snapshot.rooms {
                let labels = [("room_type", room_type.as_str())];
                ConstGauge::new(field(totals)).encode(family.encode_family(&labels)?)?;
            }
        }
        type Tick = fn(&RoomTotals) -> &Merged;
        let histograms: [(&str, &str, Tick); 2] = [
            (
                "game_tick_lateness",
                "How late ticks started, by room type",
                |t| &t.lateness,
            ),
            (
                "game_tick_duration",
                "How long ticks took, by room type",
                |t| &t.duration,
            ),
        ];
        for (name, help, field) in histograms {
            let kind = prometheus_client::metrics::MetricType::Histogram;
            let mut family = encoder.encode_descriptor(name, help, Some(&Unit::Seconds), kind)?;
            for (room_type, totals) in &snapshot.rooms {
                let labels = [("room_type", room_type.as_str())];
                let merged = field(totals);
                family
                    .encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(
                        merged.sum,
                        merged.count,
                        &merged.buckets(),
                        None,
                    )?;
            }
        }
        type Count = fn(&RoomTotals) -> u64;
        let counters: [(&str, &str, Count); 4] = [
            ("game_ticks", "Ticks run by live rooms, by room type", |t| {
                t.ticks
            }),
            (
                "game_ticks_skipped",
                "Ticks skipped by live rooms (too far behind), by room type",
                |t| t.skipped_ticks,
            ),
            (
                "game_inputs_dropped",
                "Inputs dropped (over max_inputs_per_tick), by room type",
                |t| t.inputs_dropped,
            ),
            (
                "game_inputs_invalid",
                "Inputs that did not decode, by room type",
                |t| t.inputs_invalid,
            ),
        ];
        for (name, help, field) in counters {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                ConstCounter::new(0u64).metric_type(),
            )?;
            for (room_type, totals) in &snapshot.rooms {
                let labels = [("room_type", room_type.as_str())];
                ConstCounter::new(field(totals)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
