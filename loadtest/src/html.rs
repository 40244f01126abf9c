//! `--html FILE`: the report as one self-contained HTML page that a browser opens
//! without a network: inline CSS and inline SVG, no script, nothing loaded. It shows
//! what the table shows (settings, checks, figures, latencies; the figures come from
//! the same [`Report`]) and plots what the run has: a histogram per latency, and its
//! quantities over time ([`Report::series`]). Every string from the run is escaped.

use std::fmt::Write as _;

use serde_json::Value;

use crate::plot::{self, escape, Mark, Panel};
use crate::report::{latency_cells, pretty, Report, LATENCY_COLUMNS};

const STYLE: &str = "\
body{font-family:sans-serif;max-width:900px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.2em .7em;text-align:left;border-bottom:1px solid #eee}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#1a7f37;font-weight:bold}.fail{color:#c33;font-weight:bold}
code,pre{background:#f6f6f6;padding:.1em .3em;overflow-x:auto}svg{display:block;margin:.5em 0}";

/// The page for `report`.
pub fn page(report: &Report) -> String {
    let mut out = String::new();
    let verdict = if report.passed() { "PASSED" } else { "FAILED" };
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>loadtest {} — {verdict}</title>\n<style>\n{STYLE}\n</style>\n</head>\n<body>",
        escape(&report.scenario)
    );
    let _ = writeln!(
        out,
        "<h1>loadtest {} — <span class=\"{}\">{verdict}</span> in {:.1} s</h1>",
        escape(&report.scenario),
        if report.passed() { "pass" } else { "fail" },
        report.duration.as_secs_f64()
    );
    if !report.command.is_empty() {
        let _ = writeln!(out, "<p><code>{}</code></p>", escape(&report.command));
    }
    checks(&mut out, report);
    settings(&mut out, report);
    figures(&mut out, report);
    latency(&mut out, report);
    over_time(&mut out, report);
    for table in &report.tables {
        let _ = writeln!(out, "<pre>{}</pre>", escape(table));
    }
    if !report.notes.is_empty() {
        out.push_str("<h2>Notes</h2>\n<ul>\n");
        for note in &report.notes {
            let _ = writeln!(out, "<li>{}</li>", escape(note));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

/// What decides the verdict, each as passed or failed.
fn checks(out: &mut String, report: &Report) {
    let r = report.reliable();
    let mut rows: Vec<(bool, String)> = vec![(
        report.failed == 0,
        format!(
            "clients connected: {} of {}, {} failed",
            report.connected, report.clients, report.failed
        ),
    )];
    if r.sent > 0 {
        rows.push((
            r.lost == 0,
            format!("{} reliable messages checked: lost {}", r.sent, r.lost),
        ));
        rows.push((r.duplicated == 0, format!("duplicated {}", r.duplicated)));
        for (name, s) in &report.streams {
            rows.push((
                s.lost == 0 && s.duplicated == 0,
                format!(
                    "stream {name}: sent {}, received {}, lost {}, duplicated {}",
                    s.sent, s.received, s.lost, s.duplicated
                ),
            ));
        }
    }
    rows.extend(report.failures.iter().map(|f| (false, f.clone())));
    out.push_str("<h2>Checks</h2>\n<table>\n");
    for (passed, what) in rows {
        let (class, word) = if passed {
            ("pass", "pass")
        } else {
            ("fail", "FAIL")
        };
        let _ = writeln!(
            out,
            "<tr><td class=\"{class}\">{word}</td><td>{}</td></tr>",
            escape(&what)
        );
    }
    out.push_str("</table>\n");
}

fn settings(out: &mut String, report: &Report) {
    let rows = report.settings.iter().map(|(name, value)| {
        let value = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        vec![name.clone(), value]
    });
    table(out, "Settings", &[], &[], rows);
}

fn figures(out: &mut String, report: &Report) {
    let rows = report
        .figures
        .iter()
        .map(|f| vec![f.label.clone(), pretty(f.value), f.unit.to_owned()]);
    table(out, "Figures", &[], &[1], rows);
}

/// A section with a table of `rows` (escaped here), under `header` if any; the
/// columns in `numeric` are aligned right. Nothing without rows.
fn table(
    out: &mut String,
    heading: &str,
    header: &[&str],
    numeric: &[usize],
    rows: impl Iterator<Item = Vec<String>>,
) {
    let mut body = String::new();
    for row in rows {
        body.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let class = if numeric.contains(&i) {
                " class=\"n\""
            } else {
                ""
            };
            let _ = write!(body, "<td{class}>{}</td>", escape(cell));
        }
        body.push_str("</tr>\n");
    }
    if body.is_empty() {
        return;
    }
    let _ = writeln!(out, "<h2>{}</h2>\n<table>", escape(heading));
    if !header.is_empty() {
        out.push_str("<tr>");
        for h in header {
            let _ = write!(out, "<th>{}</th>", escape(h));
        }
        out.push_str("</tr>\n");
    }
    out.push_str(&body);
    out.push_str("</table>\n");
}

/// The percentiles table, then a histogram per latency the run kept.
fn latency(out: &mut String, report: &Report) {
    let header: Vec<&str> = std::iter::once("(ms)").chain(LATENCY_COLUMNS).collect();
    let rows = report.latency.iter().map(|(name, p)| {
        std::iter::once(name.clone())
            .chain(latency_cells(p))
            .collect()
    });
    table(out, "Latency", &header, &[1, 2, 3, 4, 5, 6], rows);
    let ms = |us: u64| format!("{:.2}", us as f64 / 1000.0);
    for (name, h) in &report.histograms {
        let bars = h.bars();
        if bars.is_empty() {
            continue;
        }
        let p = h.percentiles();
        let (p50, p99) = (
            format!("p50 {} ms", ms(p.p50_us)),
            format!("p99 {} ms", ms(p.p99_us)),
        );
        let marks = [
            Mark {
                label: &p50,
                us: p.p50_us,
            },
            Mark {
                label: &p99,
                us: p.p99_us,
            },
        ];
        let title = format!("{name}: {} samples (logarithmic axis)", p.count);
        out.push_str(&inline(&plot::histogram(&title, &bars, &marks)));
    }
}

/// The run's quantities over time, one panel each on a shared time axis.
fn over_time(out: &mut String, report: &Report) {
    if report.series.is_empty() {
        return;
    }
    out.push_str("<h2>Over time</h2>\n");
    let panels: Vec<Panel<'_>> = report
        .series
        .iter()
        .map(|s| Panel {
            label: &s.label,
            points: &s.points,
            reference: None,
        })
        .collect();
    out.push_str(&inline(&plot::svg(
        "seconds since the run started",
        &panels,
    )));
}

/// An SVG document as an element of the page: HTML needs no namespace on it.
fn inline(svg: &str) -> String {
    svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::Histogram;
    use crate::report::Series;

    #[test]
    fn a_page_with_checks_plots_and_everything_escaped() {
        let mut r = Report {
            scenario: "fanout".into(),
            command: "loadtest fanout --json <x>".into(),
            clients: 2,
            connected: 2,
            ..Report::default()
        };
        r.setting("transport", "<script>alert(1)</script>");
        r.figure("deliveries_per_s", "deliveries \"per\" s", 1234.0, "/s");
        let mut h = Histogram::default();
        for us in [900, 1_000, 1_200, 40_000] {
            h.record_us(us);
        }
        r.histogram("delivery", &h);
        r.series.push(Series {
            label: "server RSS (MiB)".into(),
            points: vec![(0.0, 10.0), (1.0, 11.0)],
        });
        r.failures.push("a & b <failed>".into());
        let page = page(&r);
        assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
        assert!(page.contains("loadtest fanout"), "{page}");
        assert!(page.contains("FAILED"), "{page}");
        assert!(page.contains("a &amp; b &lt;failed&gt;"), "{page}");
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{page}"
        );
        assert!(!page.contains("<script"), "{page}");
        assert!(page.contains("deliveries &quot;per&quot; s"), "{page}");
        assert!(page.contains("1,234"), "{page}");
        assert_eq!(page.matches("<svg ").count(), 2, "{page}");
        assert!(page.contains("p99 40.00 ms"), "{page}");
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "{page}"
        );
    }
}
