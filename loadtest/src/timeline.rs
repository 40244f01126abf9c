//! The run over time, for the report's plots: rates from the workers' counters
//! (kept at every progress draw) and the server's samples (CPU, RSS, sessions, tick
//! lateness), each as a [`Series`] in seconds since the run started. Only what the
//! run has becomes a series: no server pid, no CPU; no game rooms, no lateness.

use std::time::Duration;

use crate::control::Counters;
use crate::report::Series;
use crate::sampler::{ServerPoint, SAMPLE_EVERY};
use crate::trend::{self, Points};

const MIB: f64 = 1024.0;

/// The series of a run: client rates from `history`, the server from `server`.
pub fn series(history: &[(Duration, Counters)], server: &[ServerPoint]) -> Vec<Series> {
    let mut all = Vec::new();
    let mut add = |label: &str, points: Points| {
        // A series that never leaves zero says nothing a figure does not.
        if points.len() >= 2 && points.iter().any(|p| p.1 != 0.0) {
            all.push(Series {
                label: label.to_owned(),
                points,
            });
        }
    };
    // Rates over single progress draws jitter: over whole seconds, like the server.
    let counters: Vec<(f64, Counters)> =
        history.iter().map(|(t, c)| (t.as_secs_f64(), *c)).collect();
    let counters = trend::thin(&counters, SAMPLE_EVERY.as_secs_f64());
    let total = |f: fn(&Counters) -> u64| -> Points {
        counters.iter().map(|(t, c)| (*t, f(c) as f64)).collect()
    };
    add("clients connected", total(|c| c.connected));
    add(
        "messages sent per second (all clients)",
        trend::rates(&total(|c| c.sent)),
    );
    add(
        "messages received per second (all clients)",
        trend::rates(&total(|c| c.delivered)),
    );
    add("sessions resumed (all clients)", total(|c| c.resumed));

    let measured = server.iter().any(|p| p.rss_kib > 0);
    let pick = |f: &dyn Fn(&ServerPoint) -> Option<f64>| -> Points {
        server.iter().filter_map(|p| Some((p.t, f(p)?))).collect()
    };
    if measured {
        let cpu_s = pick(&|p| Some(p.cpu_s));
        add(
            "server CPU (% of one core)",
            trend::rates(&cpu_s)
                .into_iter()
                .map(|(t, v)| (t, v * 100.0))
                .collect(),
        );
        add("server RSS (MiB)", pick(&|p| Some(p.rss_kib as f64 / MIB)));
    }
    add("server sessions", pick(&|p| p.sessions.map(|n| n as f64)));
    add(
        "tick lateness p99 since the start, worst room (ms)",
        pick(&|p| p.lateness_p99_us.map(|us| us as f64 / 1000.0)),
    );
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: f64, cpu_s: f64, rss_kib: u64) -> ServerPoint {
        ServerPoint {
            t,
            cpu_s,
            rss_kib,
            fds: None,
            sessions: Some(10),
            lateness_p99_us: None,
        }
    }

    #[test]
    fn rates_per_second_and_only_what_the_run_has() {
        let history: Vec<(Duration, Counters)> = (0..=8)
            .map(|i| {
                let c = Counters {
                    connected: 10,
                    delivered: 100 * i,
                    ..Counters::default()
                };
                (Duration::from_millis(250 * i), c)
            })
            .collect();
        let server = [
            point(0.0, 1.0, 2048),
            point(1.0, 1.5, 4096),
            point(2.0, 2.0, 4096),
        ];
        let series = series(&history, &server);
        let labels: Vec<&str> = series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "clients connected",
                "messages received per second (all clients)",
                "server CPU (% of one core)",
                "server RSS (MiB)",
                "server sessions",
            ]
        );
        // 100 per 250 ms draw, thinned to whole seconds.
        assert_eq!(series[1].points, [(1.0, 400.0), (2.0, 400.0)]);
        assert_eq!(series[2].points, [(1.0, 50.0), (2.0, 50.0)]);
        assert_eq!(series[3].points[0], (0.0, 2.0));
    }
}
