//! Small self-contained SVG plots: a run's time series (the soak's `--svg FILE`, and
//! the `--html` report), one panel per quantity, stacked, sharing the time axis; and
//! a latency histogram on a logarithmic axis. Hand-written SVG, no dependency: a
//! browser or an image viewer shows it, and it can go in the docs.

use std::fmt::Write as _;

/// One panel: a quantity over time.
pub struct Panel<'a> {
    /// What it is, with its unit (`server RSS (MiB)`).
    pub label: &'a str,
    /// `(seconds since the start, value)`, in time order.
    pub points: &'a [(f64, f64)],
    /// A reference line (the configured ping rate), if any.
    pub reference: Option<f64>,
}

const WIDTH: f64 = 720.0;
const PANEL_HEIGHT: f64 = 150.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 56.0;
const GAP: f64 = 40.0;

/// The SVG document: `title` on top, then the panels.
pub fn svg(title: &str, panels: &[Panel<'_>]) -> String {
    let height = TOP + panels.len() as f64 * (PANEL_HEIGHT + GAP);
    let t_max = panels
        .iter()
        .flat_map(|p| p.points.last().map(|l| l.0))
        .fold(1.0_f64, f64::max);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="22" font-size="14">{}</text>"#,
        escape(title)
    );
    for (i, panel) in panels.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL_HEIGHT + GAP);
        draw_panel(&mut out, panel, top, t_max);
    }
    out.push_str("</svg>\n");
    out
}

fn draw_panel(out: &mut String, panel: &Panel<'_>, top: f64, t_max: f64) {
    let plot_w = WIDTH - LEFT - RIGHT;
    let bottom = top + PANEL_HEIGHT;
    let values = panel.points.iter().map(|p| p.1).chain(panel.reference);
    let v_max = values.fold(0.0_f64, f64::max).max(1e-9) * 1.1;
    let x = |t: f64| LEFT + t / t_max * plot_w;
    let y = |v: f64| bottom - (v / v_max).clamp(0.0, 1.0) * PANEL_HEIGHT;
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="{}">{}</text><rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL_HEIGHT}" fill="none" stroke="#999"/>"##,
        top - 6.0,
        escape(panel.label)
    );
    // Value labels at 0 and the top; time labels at the start, middle and end.
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="end">{}</text><text x="{}" y="{}" text-anchor="end">0</text>"#,
        LEFT - 4.0,
        top + 10.0,
        number(v_max),
        LEFT - 4.0,
        bottom
    );
    for (t, anchor) in [(0.0, "start"), (t_max / 2.0, "middle"), (t_max, "end")] {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{}" text-anchor="{anchor}">{} s</text>"#,
            x(t),
            bottom + 14.0,
            number(t)
        );
    }
    let line: Vec<String> = panel
        .points
        .iter()
        .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
        .collect();
    let _ = writeln!(
        out,
        r##"<polyline fill="none" stroke="#2a6fb0" stroke-width="1.5" points="{}"/>"##,
        line.join(" ")
    );
    // On top of the data, which often runs along it.
    if let Some(reference) = panel.reference {
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#c33" stroke-dasharray="4 3"/>"##,
            LEFT + plot_w,
            y(reference),
            y(reference)
        );
    }
}

/// One mark on a histogram: a dashed line at a value (`p99` at 2 400 µs).
pub struct Mark<'a> {
    pub label: &'a str,
    pub us: u64,
}

/// A latency histogram: `bars` as [`crate::histogram::Histogram::bars`] gives them,
/// on a logarithmic axis in milliseconds, each bar as high as its samples.
pub fn histogram(title: &str, bars: &[(u64, u64, u64)], marks: &[Mark<'_>]) -> String {
    let height = TOP + PANEL_HEIGHT + GAP;
    let plot_w = WIDTH - LEFT - RIGHT;
    let bottom = TOP + PANEL_HEIGHT;
    let log = |us: u64| (us.max(1) as f64).log2();
    let lo = bars.first().map_or(0.0, |b| log(b.0));
    let hi = bars.last().map_or(1.0, |b| log(b.1 + 1)).max(lo + 1.0);
    let x = |l: f64| LEFT + (l - lo) / (hi - lo) * plot_w;
    let top = bars.iter().map(|b| b.2 as f64).fold(1.0_f64, f64::max) * 1.1;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r##"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="22" font-size="14">{}</text><rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{PANEL_HEIGHT}" fill="none" stroke="#999"/>"##,
        escape(title)
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="end">{}</text><text x="{}" y="{bottom}" text-anchor="end">0</text>"#,
        LEFT - 4.0,
        TOP + 10.0,
        number(top),
        LEFT - 4.0,
    );
    for b in bars {
        let (x0, x1) = (x(log(b.0)), x(log(b.1 + 1)));
        let h = b.2 as f64 / top * PANEL_HEIGHT;
        let _ = writeln!(
            out,
            r##"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#2a6fb0"><title>{}–{} ms: {}</title></rect>"##,
            bottom - h,
            (x1 - x0 - 0.5).max(0.5),
            number(b.0 as f64 / 1000.0),
            number((b.1 + 1) as f64 / 1000.0),
            b.2
        );
    }
    // Time labels at 1, 2 and 5 times each power of ten inside the range.
    let mut decade = 1_u64;
    while decade <= u64::MAX / 10 && log(decade) <= hi {
        for at in [decade, 2 * decade, 5 * decade] {
            if (lo..=hi).contains(&log(at)) {
                let _ = writeln!(
                    out,
                    r#"<text x="{:.1}" y="{}" text-anchor="middle">{} ms</text>"#,
                    x(log(at)),
                    bottom + 14.0,
                    number(at as f64 / 1000.0)
                );
            }
        }
        decade *= 10;
    }
    for (i, mark) in marks.iter().enumerate() {
        let at = x(log(mark.us).clamp(lo, hi));
        // Left of the line near the right edge, where the text would be cut.
        let (text_x, anchor) = if at > WIDTH - RIGHT - 120.0 {
            (at - 3.0, "end")
        } else {
            (at + 3.0, "start")
        };
        let _ = writeln!(
            out,
            r##"<line x1="{at:.1}" x2="{at:.1}" y1="{TOP}" y2="{bottom}" stroke="#c33" stroke-dasharray="4 3"/><text x="{text_x:.1}" y="{}" fill="#c33" text-anchor="{anchor}">{}</text>"##,
            TOP + 12.0 + 13.0 * i as f64,
            escape(mark.label)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// A value label: up to three decimals below 10, one below 100, none above.
fn number(v: f64) -> String {
    let decimals = match v.abs() {
        a if a >= 100.0 => 0,
        a if a >= 10.0 => 1,
        _ => 3,
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// `text` safe inside SVG or HTML, as element text and as an attribute value.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_become_polylines_on_a_shared_time_axis() {
        let rss = [(0.0, 10.0), (30.0, 12.0), (60.0, 12.0)];
        let pings = [(1.0, 4.0), (60.0, 4.0)];
        let doc = svg(
            "soak <500 clients>",
            &[
                Panel {
                    label: "server RSS (MiB)",
                    points: &rss,
                    reference: None,
                },
                Panel {
                    label: "pings/s",
                    points: &pings,
                    reference: Some(4.0),
                },
            ],
        );
        assert!(doc.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(doc.trim_end().ends_with("</svg>"));
        assert_eq!(doc.matches("<polyline").count(), 2);
        assert_eq!(doc.matches("stroke-dasharray").count(), 1);
        assert!(doc.contains("soak &lt;500 clients&gt;"), "{doc}");
        // The last point of the longest series is at the right edge.
        assert!(doc.contains(&format!("{:.1},", WIDTH - RIGHT)), "{doc}");
        assert!(doc.contains(">60 s<"), "{doc}");
    }

    #[test]
    fn a_histogram_has_a_bar_per_bar_and_its_marks() {
        let bars = [(30, 30, 5), (960, 1_023, 10), (1_024, 1_087, 3)];
        let doc = histogram(
            "delivery <ms>",
            &bars,
            &[Mark {
                label: "p99 1.1 ms",
                us: 1_087,
            }],
        );
        assert!(doc.starts_with("<svg "), "{doc}");
        assert_eq!(doc.matches("<title>").count(), 3, "{doc}");
        assert_eq!(doc.matches("stroke-dasharray").count(), 1, "{doc}");
        assert!(doc.contains("delivery &lt;ms&gt;"), "{doc}");
        assert!(doc.contains(">1 ms<"), "{doc}");
        assert!(doc.contains(">0.96–1.024 ms: 10<"), "{doc}");
    }

    #[test]
    fn escaping_covers_attributes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn labels_are_short() {
        assert_eq!(number(13.24), "13.2");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(1234.56), "1235");
        assert_eq!(number(2.0), "2");
        assert_eq!(number(60.0), "60");
    }
}
