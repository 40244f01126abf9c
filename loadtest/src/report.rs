//! The end report of a run: a table for people (stdout), with `--json FILE` every
//! figure as JSON for scripts and CI, and with `--html FILE` the same figures with
//! plots (`html`). The JSON has the integer keys `lost` and `duplicated` at its top
//! level: the exactly-once verdict over every checked stream.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::control::StreamTotals;
use crate::histogram::{Histogram, Percentiles};

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// JSON key, with its unit in the name (`deliveries_per_s`, `server_cpu_s`).
    pub key: String,
    /// What the table calls it.
    pub label: String,
    pub value: f64,
    /// Unit shown in the table.
    pub unit: &'static str,
}

/// Everything a run found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub scenario: String,
    /// The command line, to run it again.
    pub command: String,
    pub duration: Duration,
    /// Clients asked for, connected, and failed to connect.
    pub clients: u64,
    pub connected: u64,
    pub failed: u64,
    /// Checked reliable streams by name.
    pub streams: BTreeMap<String, StreamTotals>,
    /// The settings the run used, as given or defaulted.
    pub settings: Vec<(String, Value)>,
    pub figures: Vec<Figure>,
    /// Latency percentiles by name, computed from `histograms` when the run has them.
    pub latency: Vec<(String, Percentiles)>,
    /// Latency histograms by name (plotted by `--html`).
    pub histograms: Vec<(String, Histogram)>,
    /// Quantities over the run (plotted by `--html`).
    pub series: Vec<Series>,
    /// Why the run failed, besides lost, duplicated and failed clients.
    pub failures: Vec<String>,
    /// Things worth knowing that do not fail the run.
    pub notes: Vec<String>,
    /// Tables of the scenario's own, printed as they are (`compare`'s).
    pub tables: Vec<String>,
}

/// A quantity over the run.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// What it is, with its unit (`server RSS (MiB)`).
    pub label: String,
    /// `(seconds since the run started, value)`, in time order.
    pub points: Vec<(f64, f64)>,
}

impl Report {
    /// Records a latency histogram and its percentiles.
    pub fn histogram(&mut self, name: &str, h: &Histogram) {
        self.latency.push((name.to_owned(), h.percentiles()));
        self.histograms.push((name.to_owned(), h.clone()));
    }

    /// Records a setting.
    pub fn setting(&mut self, name: &str, value: impl Into<Value>) {
        self.settings.push((name.to_owned(), value.into()));
    }

    /// Records a figure.
    pub fn figure(&mut self, key: &str, label: &str, value: f64, unit: &'static str) {
        self.figures.push(Figure {
            key: key.to_owned(),
            label: label.to_owned(),
            value,
            unit,
        });
    }

    /// All checked streams together.
    pub fn reliable(&self) -> StreamTotals {
        let mut all = StreamTotals::default();
        self.streams.values().for_each(|s| all.add(s));
        all
    }

    /// Whether nothing was lost or duplicated, every client connected, and nothing
    /// else went wrong.
    pub fn passed(&self) -> bool {
        let r = self.reliable();
        r.lost == 0 && r.duplicated == 0 && self.failed == 0 && self.failures.is_empty()
    }

    /// Every figure, as JSON.
    pub fn to_json(&self) -> Value {
        let r = self.reliable();
        let settings: Map<String, Value> = self.settings.iter().cloned().collect();
        let figures: Map<String, Value> = self
            .figures
            .iter()
            .map(|f| (f.key.clone(), number(f.value)))
            .collect();
        let latency: Map<String, Value> = self
            .latency
            .iter()
            .map(|(name, p)| (name.clone(), json!(p)))
            .collect();
        let streams: Map<String, Value> = self
            .streams
            .iter()
            .map(|(name, s)| (name.clone(), json!(s)))
            .collect();
        json!({
            "scenario": self.scenario,
            "passed": self.passed(),
            "lost": r.lost,
            "duplicated": r.duplicated,
            "reordered": r.reordered,
            "reliable_checked": r.sent,
            "clients": self.clients,
            "connected": self.connected,
            "failed": self.failed,
            "duration_s": round3(self.duration.as_secs_f64()),
            "command": self.command,
            "settings": settings,
            "figures": figures,
            "latency_us": latency,
            "streams": streams,
            "failures": self.failures,
            "notes": self.notes,
        })
    }

    /// The report as a table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let verdict = if self.passed() { "PASSED" } else { "FAILED" };
        let _ = writeln!(
            t,
            "\n{} — {verdict} in {:.1} s",
            self.scenario,
            self.duration.as_secs_f64()
        );
        let settings: Vec<String> = self
            .settings
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect();
        let _ = writeln!(t, "  settings  {}", settings.join(" "));
        let _ = writeln!(
            t,
            "  clients   {} connected of {}, {} failed",
            self.connected, self.clients, self.failed
        );
        let r = self.reliable();
        if r.sent > 0 {
            let _ = writeln!(
                t,
                "  reliable  {} messages checked: lost {}, duplicated {}, reordered {}",
                r.sent, r.lost, r.duplicated, r.reordered
            );
            for (name, s) in &self.streams {
                let _ = writeln!(
                    t,
                    "    {name:<14} sent {:>10}  received {:>10}  lost {}  duplicated {}",
                    s.sent, s.received, s.lost, s.duplicated
                );
            }
        } else {
            let _ = writeln!(t, "  reliable  no numbered stream in this scenario");
        }
        if !self.figures.is_empty() {
            let width = self
                .figures
                .iter()
                .map(|f| f.label.len())
                .max()
                .unwrap_or(0);
            let _ = writeln!(t, "  figures");
            for f in &self.figures {
                let _ = writeln!(
                    t,
                    "    {:<width$}  {:>14} {}",
                    f.label,
                    pretty(f.value),
                    f.unit
                );
            }
        }
        if !self.latency.is_empty() {
            let columns = LATENCY_COLUMNS.map(str::to_owned);
            let _ = writeln!(t, "  latency (ms)      {}", latency_line(&columns));
            for (name, p) in &self.latency {
                let _ = writeln!(t, "    {name:<16}{}", latency_line(&latency_cells(p)));
            }
        }
        for table in &self.tables {
            let _ = writeln!(t, "\n{table}");
        }
        for failure in &self.failures {
            let _ = writeln!(t, "  FAILURE   {failure}");
        }
        for note in &self.notes {
            let _ = writeln!(t, "  note      {note}");
        }
        t
    }
}

/// The latency table's columns after the name: a count, then milliseconds.
pub const LATENCY_COLUMNS: [&str; 6] = ["count", "p50", "p90", "p99", "p99.9", "max"];

/// A latency row's cells, as [`LATENCY_COLUMNS`] names them.
pub fn latency_cells(p: &Percentiles) -> [String; 6] {
    let ms = |us: u64| format!("{:.2}", us as f64 / 1000.0);
    [
        p.count.to_string(),
        ms(p.p50_us),
        ms(p.p90_us),
        ms(p.p99_us),
        ms(p.p999_us),
        ms(p.max_us),
    ]
}

/// Latency cells aligned for the text table.
fn latency_line(cells: &[String; 6]) -> String {
    let mut line = format!(" {:>9}", cells[0]);
    for cell in &cells[1..] {
        let _ = write!(line, " {cell:>8}");
    }
    line
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Whole numbers as JSON integers, others rounded to 3 decimals.
fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9e15 {
        json!(v as i64)
    } else {
        json!(round3(v))
    }
}

/// A figure for the table: thousands separated, decimals only where they matter.
pub fn pretty(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.abs() >= 1000.0 || v.fract() == 0.0 {
        let digits = format!("{:.0}", v.abs());
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if v < 0.0 {
            grouped.insert(0, '-');
        }
        grouped
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::Histogram;

    fn sample() -> Report {
        let mut r = Report {
            scenario: "fanout".into(),
            clients: 10,
            connected: 10,
            duration: Duration::from_millis(1500),
            ..Report::default()
        };
        r.setting("rate", 20.0);
        r.figure("deliveries_per_s", "deliveries/s", 12_345.678, "/s");
        r.figure("server_peak_rss_kib", "server peak RSS", 2048.0, "KiB");
        let mut h = Histogram::default();
        h.record_us(1_500);
        r.latency.push(("delivery".into(), h.percentiles()));
        r.streams.insert(
            "fanout".into(),
            StreamTotals {
                sent: 100,
                received: 100,
                ..StreamTotals::default()
            },
        );
        r
    }

    #[test]
    fn json_has_the_verdict_at_the_top_level() {
        let json = sample().to_json();
        assert_eq!(json["lost"], 0);
        assert_eq!(json["duplicated"], 0);
        assert_eq!(json["passed"], true);
        assert_eq!(json["reliable_checked"], 100);
        assert_eq!(json["figures"]["deliveries_per_s"], 12_345.678);
        assert_eq!(json["figures"]["server_peak_rss_kib"], 2048);
        assert_eq!(json["latency_us"]["delivery"]["p99_us"], 1_500);
    }

    #[test]
    fn any_loss_duplicate_failed_client_or_failure_fails_the_run() {
        let mut lost = sample();
        lost.streams.get_mut("fanout").unwrap().lost = 1;
        assert!(!lost.passed());
        assert_eq!(lost.to_json()["lost"], 1);
        let mut dup = sample();
        dup.streams.get_mut("fanout").unwrap().duplicated = 2;
        assert!(!dup.passed());
        let mut failed = sample();
        failed.failed = 1;
        assert!(!failed.passed());
        let mut failure = sample();
        failure.failures.push("worker 1 exited early".into());
        assert!(!failure.passed());
    }

    #[test]
    fn the_table_shows_figures_and_latencies() {
        let table = sample().table();
        assert!(table.contains("fanout — PASSED"), "{table}");
        assert!(table.contains("12,346 /s"), "{table}");
        assert!(table.contains("delivery"), "{table}");
        assert!(table.contains("1.50"), "{table}");
    }

    #[test]
    fn pretty_numbers() {
        assert_eq!(pretty(1_234_567.0), "1,234,567");
        assert_eq!(pretty(-1_500.4), "-1,500");
        assert_eq!(pretty(42.0), "42");
        assert_eq!(pretty(12.34), "12.3");
        assert_eq!(pretty(3.25), "3.250");
    }
}
