//! Room broadcasts across moves: a session that moves to another node (a drain, or
//! `move_on_resume`) gets every broadcast of its rooms exactly once and in each
//! sender's order, including those sent while it was on its way (handled by the old
//! node after its freeze, or by the new one before it arrived).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use volley::client::{Client, ConnectionEvent, Transport};
use volley::cluster::ClusterStats;

use super::*;
use crate::proxy::{Cuts, FaultProxy};
use crate::resume::{counting_config, server_addr};

/// Receivers, spread over the three nodes by the balancer.
const RECEIVERS: usize = 12;
/// Broadcasts each node sends.
const PER_SENDER: u64 = 600;

fn room_node(redis: &RedisServer, moves: bool) -> VolleyBuilder {
    Volley::builder()
        .heartbeat(Duration::from_secs(2), Duration::from_secs(2))
        .namespace(
            "/",
            Namespace::new().authorize(|hs| hs.auth::<String>()).on_ack(
                "join",
                |socket, room: String, ack| {
                    socket.join(&room);
                    let _ = ack.send(&room);
                },
            ),
        )
        .cluster(
            RedisCluster::new(&redis.url())
                .unwrap()
                .move_on_resume(moves),
        )
}

/// How a node's sender addresses its broadcasts: each takes another path through
/// a node (a room's own fan-out, the namespace's, several rooms).
#[derive(Clone, Copy)]
enum Path {
    Room,
    Namespace,
    Rooms,
}

/// Sends `tick (sender, n)` every 2 ms until `stop`, then `end (sender, count)`:
/// sent after every tick on the same node, it arrives after them.
fn sender(volley: Volley, me: u64, path: Path, sent: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    actix_rt::spawn(async move {
        let ns = volley.of("/").unwrap();
        let emit = |event: &str, payload: &(u64, u64)| match path {
            Path::Room => ns.to("all").emit(event, payload),
            Path::Namespace => ns.emit(event, payload),
            Path::Rooms => ns.to("all").to("elsewhere").emit(event, payload),
        };
        let mut pace = tokio::time::interval(Duration::from_millis(2));
        let mut n = 0;
        while n < PER_SENDER && !stop.load(Ordering::Relaxed) {
            pace.tick().await;
            if emit("tick", &(me, n)).is_ok() {
                n += 1;
                sent.store(n, Ordering::Relaxed);
            }
        }
        while emit("end", &(me, n)).is_err() {
            pace.tick().await;
        }
    });
}

/// One receiver: joins `all`, says so, then takes every sender's ticks until each
/// sender's `end`, checking each tick arrives once and in order. Answers the
/// client (still connected) and its connection events.
async fn receiver(
    url: String,
    transport: Transport,
    i: usize,
    ready: mpsc::Sender<()>,
) -> (Client, Vec<ConnectionEvent>) {
    let client = Client::connect_with(&url, counting_config(transport))
        .await
        .expect("connect");
    let mut ns = client.join("/", &format!("r{i}")).await.expect("join");
    let _: String = ns.emit_with_ack("join", &"all", WAIT).await.unwrap();
    ready.send(()).await.unwrap();
    let mut next: HashMap<u64, u64> = HashMap::new();
    let mut ends: HashMap<u64, u64> = HashMap::new();
    while ends.len() < 3
        || ends
            .iter()
            .any(|(s, end)| next.get(s).copied().unwrap_or(0) < *end)
    {
        let event = tokio::time::timeout(WAIT, ns.next_event())
            .await
            .unwrap_or_else(|_| panic!("receiver {i}: stuck at {next:?}, ends {ends:?}"))
            .expect("namespace open");
        let (sender, n): (u64, u64) = event.decode().unwrap();
        match event.name.as_str() {
            "tick" => {
                let expected = next.entry(sender).or_default();
                assert_eq!(
                    n,
                    *expected,
                    "receiver {i} (sid {}): sender {sender}'s broadcast lost or twice",
                    client.session_id()
                );
                *expected += 1;
            }
            "end" => {
                ends.insert(sender, n);
            }
            other => panic!("unexpected {other}"),
        }
    }
    let events = connection_events(&client).await;
    (client, events)
}

/// Three nodes, each sending numbered broadcasts to the room every receiver is in,
/// by another path; A drains at a quarter of the traffic, B at half: the receivers
/// on A and B move (A's twice, if they went to B), and every receiver gets every
/// broadcast once, in order.
#[actix_rt::test]
async fn broadcasts_during_a_drain_reach_moving_sessions_exactly_once() {
    drains_under_broadcasts(WS).await;
}

#[actix_rt::test]
async fn broadcasts_during_a_drain_reach_moving_polling_sessions_exactly_once() {
    drains_under_broadcasts(Transport::Polling).await;
}

async fn drains_under_broadcasts(transport: Transport) {
    let Some(run) = Run::start("broadcasts_during_a_drain", Cuts::Never, false, transport).await
    else {
        return;
    };
    let drains = async {
        let progress = || run.counters[2].0.load(Ordering::Relaxed);
        for (going, at) in [
            (&run.nodes[0], PER_SENDER / 4),
            (&run.nodes[1], PER_SENDER / 2),
        ] {
            until("the senders stalled", || progress() >= at).await;
            let report = going.volley.cluster().unwrap().drain().await.unwrap();
            assert_eq!(report.stayed, 0, "{report:?}");
            assert!(going.volley.local_sessions().await.is_empty());
        }
        // The drained nodes' senders end too (they still run: their broadcasts go
        // to the members on C).
        run.stop();
    };
    let (stats, _clients) = run.check(drains).await;
    let on_c = run.nodes[2].volley.local_sessions().await.len();
    assert_eq!(on_c, RECEIVERS);
    // The windows carried what the moves would have lost (dozens per run).
    assert!(stats.window_broadcasts > 0, "{stats:?}");
}

/// The same traffic with `move_on_resume` and connections cut at random: every
/// resume through the balancer lands on another node, and the session follows its
/// client there.
#[actix_rt::test]
async fn broadcasts_reach_sessions_that_follow_their_clients_exactly_once() {
    let cuts = Cuts::Random {
        min: 4_000,
        max: 40_000,
        max_cuts: 40,
    };
    let Some(run) = Run::start("broadcasts_reach_sessions_that_follow", cuts, true, WS).await
    else {
        return;
    };
    let (stats, _clients) = run.check(async {}).await;
    // A cut after a receiver's last event may still be resuming (and moving).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut held = Vec::new();
        for node in &run.nodes {
            held.push(node.volley.local_sessions().await.len());
        }
        if held.iter().sum::<usize>() == RECEIVERS {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sessions held by the nodes: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stats.resumes_moved > 0, "no session moved: {stats:?}");
    eprintln!(
        "{} moves; broadcasts taken from the old nodes' windows: {}",
        stats.resumes_moved, stats.window_broadcasts
    );
}

/// Three nodes on one Redis, a balancer in front, every receiver in `all`, and a
/// sender on each node.
struct Run {
    _redis: RedisServer,
    proxy: FaultProxy,
    nodes: [TestServer; 3],
    counters: Vec<(Arc<AtomicU64>, Arc<AtomicBool>)>,
    transport: Transport,
}

impl Run {
    async fn start(test: &str, cuts: Cuts, moves: bool, transport: Transport) -> Option<Run> {
        let redis = RedisServer::start(test)?;
        let a = node_of(room_node(&redis, moves)).await;
        let b = node_of(room_node(&redis, moves)).await;
        let c = node_of(room_node(&redis, moves)).await;
        await_nodes(&c, 3).await;
        let targets = vec![server_addr(&a), server_addr(&b), server_addr(&c)];
        let proxy = FaultProxy::balance(targets, cuts, 0xb0ad).await;
        let counters = (0..3).map(|_| (Arc::default(), Arc::default())).collect();
        Some(Run {
            _redis: redis,
            proxy,
            nodes: [a, b, c],
            counters,
            transport,
        })
    }

    /// Connects the receivers, starts the senders once all are in the room, runs
    /// `meanwhile`, and checks what every receiver got. Answers the nodes' cluster
    /// figures, summed, and the clients (still connected).
    async fn check(
        &self,
        meanwhile: impl std::future::Future<Output = ()>,
    ) -> (ClusterStats, Vec<Client>) {
        let (ready_tx, mut ready) = mpsc::channel(RECEIVERS);
        let url = self.proxy.url();
        let receivers =
            (0..RECEIVERS).map(|i| receiver(url.clone(), self.transport, i, ready_tx.clone()));
        let receivers = futures_util::future::join_all(receivers);
        let run = async {
            for _ in 0..RECEIVERS {
                ready.recv().await.unwrap();
            }
            let paths = [Path::Room, Path::Namespace, Path::Rooms];
            for (i, node) in self.nodes.iter().enumerate() {
                let (sent, stop) = self.counters[i].clone();
                sender(node.volley.clone(), i as u64, paths[i], sent, stop);
            }
            meanwhile.await;
        };
        let (receivers, ()) = tokio::join!(receivers, run);
        for (i, (_, events)) in receivers.iter().enumerate() {
            assert_resumed(&format!("receiver {i}"), events);
        }
        let mut sum = ClusterStats::default();
        for node in &self.nodes {
            let stats = node.volley.cluster().unwrap().stats();
            sum.window_broadcasts += stats.window_broadcasts;
            sum.windows_missed += stats.windows_missed;
            sum.resumes_moved += stats.resumes_moved;
        }
        assert_eq!(sum.windows_missed, 0, "every move's window came");
        (
            sum,
            receivers.into_iter().map(|(client, _)| client).collect(),
        )
    }

    fn stop(&self) {
        for (_, stop) in &self.counters {
            stop.store(true, Ordering::Relaxed);
        }
    }
}
