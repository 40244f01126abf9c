//! `cluster`: the fan-out of `fanout` on one node, then on `--nodes` nodes sharing a
//! Redis (Volley's `cluster` feature), in one run. With `--spawn` it starts
//! `redis-server` on a free port, the nodes (`loadtest serve --redis`), and a plain
//! round-robin TCP balancer in front of them (no stickiness): the receivers and the
//! publisher spread over the nodes, so most deliveries cross Redis. Measures, next to
//! the single node of the same run: delivery latency, CPU per delivery of the nodes
//! together, Redis CPU per broadcast and Redis messages per broadcast; checks every
//! message exactly once, as `fanout` does. Then the `reconnect` storm through the
//! balancer: every session cut at once resumes on whichever node its reconnection
//! reaches (with 3 nodes, two in three on another node than its session's). Then,
//! with `--rooms N` (0: not played), the game rooms of `rooms` on one node and on the
//! nodes: players connect through the balancer, so most play in a room of another
//! node (inputs and states relayed through Redis); input → state latency and CPU per
//! input and state, next to the single node's.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use volley::cluster::testbed::{round_robin, LocalRedis};

use super::fanout::{self, Publishing};
use super::per_second;
use super::reconnect::{self, Storm};
use super::rooms::{self, Play};
use crate::args::Flags;
use crate::coordinator::{spawn_server, Common, Target};
use crate::proc;
use crate::report::Report;

pub async fn coordinate(flags: &Flags) -> Result<Report, String> {
    let mut common = Common::from_flags(flags, 500, 500.0)?;
    let publishing = Publishing::from_flags(flags)?;
    let storm = Storm::from_flags(flags)?;
    let nodes = flags.count("nodes", 3)?.max(2);
    let play = Play::from_flags(flags, 0, "room-duration")?;
    let drain = flags.switch("drain");
    flags.finish()?;
    if !matches!(common.target, Target::Spawn { .. }) {
        return Err("cluster starts its own Redis and nodes: give --spawn".into());
    }

    // The same fan-out on one node first, for the comparison.
    let single = fanout::run(&common, publishing).await?;
    let rooms_common = |target: Target| {
        let clients = play.rooms * play.players;
        let workers = Common::default_workers(clients);
        let mut c = Common::new(clients, workers, common.connect_rate, target);
        for (name, value) in play.serve_flags() {
            c.serve_flag(name, value);
        }
        c
    };
    let single_rooms = match play.rooms {
        0 => None,
        _ => {
            let spawn = Target::Spawn {
                serve_flags: Vec::new(),
            };
            Some(rooms::run(&rooms_common(spawn), play, &[]).await?)
        }
    };

    let redis = Redis(LocalRedis::start().await?);
    let mut children = Vec::new();
    let mut addrs = Vec::new();
    let mut node_urls = Vec::new();
    for _ in 0..nodes {
        let mut flags = vec!["--redis".to_owned(), redis.url()];
        for (name, value) in play.serve_flags() {
            flags.extend([format!("--{name}"), value]);
        }
        let (child, url) = spawn_server(&flags, None).await?;
        addrs.push(address_of(&url)?);
        node_urls.push((url, child.id().unwrap_or(0)));
        children.push(child);
    }
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let balancer = round_robin(any, addrs)
        .await
        .map_err(|e| format!("balancer: {e}"))?;
    common.target = Target::Url {
        url: format!("ws://{balancer}/volley"),
        pid: None,
    };
    let pids: Vec<String> = children
        .iter()
        .filter_map(Child::id)
        .map(|p| p.to_string())
        .collect();
    // Each node's CPU seconds so far (0 for one that is gone).
    let cpu = || -> Vec<f64> {
        pids.iter()
            .map(|p| proc::sample(p).map_or(0.0, |s| s.cpu_seconds))
            .collect()
    };
    let (nodes_from, redis_from) = (cpu(), redis.figures().await?);
    let mut report = fanout::run(&common, publishing).await?;
    let (nodes_to, redis_to) = (cpu(), redis.figures().await?);
    let node_cpu: Vec<f64> = nodes_to
        .iter()
        .zip(&nodes_from)
        .map(|(to, from)| to - from)
        .collect();
    // Then every session cut at once: each reconnects through the balancer, most to
    // another node than its session's, and resumes there.
    let storm = reconnect::run(&common, storm).await?;
    // Then the game rooms, players through the balancer.
    let cluster_rooms = match single_rooms {
        None => None,
        Some(_) => {
            let redis_from = redis.figures().await?;
            let target = Target::Url {
                url: format!("ws://{balancer}/volley"),
                pid: None,
            };
            let played = rooms::run(&rooms_common(target), play, &node_urls).await?;
            let redis_to = redis.figures().await?;
            Some((played, redis_to.cpu_seconds - redis_from.cpu_seconds))
        }
    };
    // Then a rolling restart under traffic (`--drain`): the fan-out once more, and a
    // third of the way in the first node gets SIGTERM: it moves its sessions to the
    // others (their clients resume through the balancer, which skips it once it is
    // gone) and stops.
    let drained = match drain {
        false => None,
        true => {
            let delay = Duration::from_secs_f64(publishing.duration / 3.0);
            let first = &mut children[0];
            let stop = async move {
                tokio::time::sleep(delay).await;
                let pid = first.id().map(|p| p.to_string()).unwrap_or_default();
                let _ = Command::new("kill").args(["-TERM", &pid]).status().await;
                let signalled = Instant::now();
                // Held open: `wait` would close it first, and the node (`serve
                // --stop-on-eof`) would exit at once instead of draining.
                let _stdin = first.stdin.take();
                let _ = first.wait().await;
                signalled.elapsed()
            };
            let (run, stopped_after) = tokio::join!(fanout::run(&common, publishing), stop);
            Some((run?, stopped_after))
        }
    };
    drop(children);

    report.scenario = "cluster".to_owned();
    // The nodes were measured here, not by the run (it saw the balancer's address).
    report.notes.retain(|n| !n.contains("not measured"));
    for (name, value) in report.settings.iter_mut() {
        if name == "server" {
            *value = format!("spawned: one node, then {nodes} behind a balancer").into();
        }
    }
    report.setting("nodes", nodes);
    let published = figure(&report, "published");
    let delivered = figure(&report, "deliveries");
    report.figure(
        "nodes_cpu_us_per_delivery",
        "CPU per delivery, all nodes",
        per_second(node_cpu.iter().sum::<f64>() * 1e6, delivered),
        "µs",
    );
    // Each node's part: its CPU over all the run's deliveries (its members are about
    // one in `nodes`, so the parts add up to the figure above).
    for (i, seconds) in node_cpu.iter().enumerate() {
        report.figure(
            &format!("node{}_cpu_us_per_delivery", i + 1),
            &format!("CPU per delivery, node {} (its part of all)", i + 1),
            per_second(seconds * 1e6, delivered),
            "µs",
        );
    }
    report.figure(
        "single_cpu_us_per_delivery",
        "CPU per delivery, one node",
        figure(&single, "server_cpu_us_per_delivery"),
        "µs",
    );
    report.figure(
        "redis_messages_per_broadcast",
        "Redis messages published per broadcast",
        per_second(
            (redis_to.published - redis_from.published) as f64,
            published,
        ),
        "",
    );
    report.figure(
        "redis_cpu_us_per_broadcast",
        "Redis CPU per broadcast",
        per_second(
            (redis_to.cpu_seconds - redis_from.cpu_seconds) * 1e6,
            published,
        ),
        "µs",
    );
    // The single node's streams and latency beside the cluster's: both are checked.
    for (name, totals) in single.streams {
        report.streams.insert(format!("{name} (one node)"), totals);
    }
    for (name, p) in single.latency {
        report.latency.push((format!("{name} (one node)"), p));
    }
    report.failures.extend(single.failures);
    for (name, totals) in storm.streams {
        report.streams.insert(format!("{name} (reconnect)"), totals);
    }
    for (name, p) in storm.latency {
        report.latency.push((format!("{name} (reconnect)"), p));
    }
    for f in storm.figures {
        let label = format!("reconnect: {}", f.label);
        report.figure(&format!("reconnect_{}", f.key), &label, f.value, f.unit);
    }
    report.failures.extend(storm.failures);
    if let Some((run, stopped_after)) = drained {
        for (name, totals) in run.streams {
            report.streams.insert(format!("{name} (drain)"), totals);
        }
        for (name, p) in run.latency {
            report.latency.push((format!("{name} (drain)"), p));
        }
        report.failures.extend(run.failures);
        report.figure(
            "drain_node_stopped_ms",
            "drain: from SIGTERM to the node's exit",
            stopped_after.as_secs_f64() * 1e3,
            "ms",
        );
    }
    if let (Some(single), Some((played, redis_cpu))) = (single_rooms, cluster_rooms) {
        rooms_beside(&mut report, &single, &played, redis_cpu);
    }
    report.notes.push(format!(
        "the same fan-out on one node, then on {nodes} nodes behind a round-robin \
         balancer (Redis on 127.0.0.1:{})",
        redis.0.port()
    ));
    Ok(report)
}

/// The rooms played on one node and on the nodes, beside each other in `report`.
fn rooms_beside(report: &mut Report, single: &Report, played: &Report, redis_cpu: f64) {
    for (key, label, unit) in [
        ("inputs_per_s", "inputs sent per second", "/s"),
        ("states_per_s", "states received per second", "/s"),
        (
            "server_cpu_us_per_input_and_state",
            "server CPU per input and state",
            "µs",
        ),
        (
            "tick_lateness_p99_us",
            "tick lateness p99 (median room; worst node)",
            "µs",
        ),
        ("server_skipped_ticks", "ticks skipped", ""),
        ("server_inputs_dropped", "inputs dropped by rooms", ""),
    ] {
        let one = format!("rooms, one node: {label}");
        report.figure(
            &format!("rooms_one_node_{key}"),
            &one,
            figure(single, key),
            unit,
        );
        let all = format!("rooms, the nodes: {label}");
        report.figure(
            &format!("rooms_nodes_{key}"),
            &all,
            figure(played, key),
            unit,
        );
    }
    report.figure(
        "rooms_redis_cpu_s",
        "rooms, the nodes: Redis CPU",
        redis_cpu,
        "s",
    );
    for (name, totals) in &single.streams {
        report
            .streams
            .insert(format!("{name} (rooms, one node)"), *totals);
    }
    for (name, totals) in &played.streams {
        report
            .streams
            .insert(format!("{name} (rooms, the nodes)"), *totals);
    }
    for (name, p) in &single.latency {
        report
            .latency
            .push((format!("{name} (rooms, one node)"), *p));
    }
    for (name, p) in &played.latency {
        report
            .latency
            .push((format!("{name} (rooms, the nodes)"), *p));
    }
    report.failures.extend(single.failures.iter().cloned());
    report.failures.extend(played.failures.iter().cloned());
}

fn figure(report: &Report, key: &str) -> f64 {
    report
        .figures
        .iter()
        .find(|f| f.key == key)
        .map_or(0.0, |f| f.value)
}

fn address_of(url: &str) -> Result<SocketAddr, String> {
    url.trim_start_matches("ws://")
        .trim_end_matches("/volley")
        .parse()
        .map_err(|e| format!("node address in {url}: {e}"))
}

/// The run's own `redis-server`, stopped with the run.
struct Redis(LocalRedis);

/// What Redis says about itself.
struct RedisFigures {
    cpu_seconds: f64,
    /// `SPUBLISH` calls so far (broadcasts, questions and relays of every node).
    published: u64,
}

impl Redis {
    fn url(&self) -> String {
        self.0.url()
    }

    async fn figures(&self) -> Result<RedisFigures, String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.0.port().to_string(), "INFO", "all"])
            .output()
            .await
            .map_err(|e| format!("redis-cli: {e}"))?;
        let info = String::from_utf8_lossy(&out.stdout);
        let value = |key: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
                .unwrap_or("0")
                .to_owned()
        };
        let cpu = |key| value(key).parse::<f64>().unwrap_or(0.0);
        let published = value("cmdstat_spublish:calls=")
            .split(',')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Ok(RedisFigures {
            cpu_seconds: cpu("used_cpu_sys:") + cpu("used_cpu_user:"),
            published,
        })
    }
}
