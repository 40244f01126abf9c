//! A cluster node that gets `SIGTERM` drains before it stops: its sessions move to
//! the other node and its process exits 0. Two real `loadtest serve --redis` node
//! processes on a real `redis-server` (feature `cluster`); skipped, saying so,
//! without `redis-server` unless `VOLLEY_REQUIRE_REDIS` is set (as in CI).
#![cfg(all(unix, feature = "cluster"))]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use volley::client::{Client, ClientConfig, ConnectionEvent};

const DEADLINE: Duration = Duration::from_secs(30);

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis() -> Option<(Process, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let spawned = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = spawned else {
        let why = "redis-server is not installed (apt install redis-server)";
        assert!(std::env::var_os("VOLLEY_REQUIRE_REDIS").is_none(), "{why}");
        eprintln!("SKIPPED: {why}");
        return None;
    };
    let stdout = child.stdout.take().expect("stdout");
    let process = Process(child);
    let mut lines = BufReader::new(stdout).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.contains("Ready to accept connections"))),
        "redis-server did not start"
    );
    std::thread::spawn(move || lines.for_each(drop));
    Some((process, format!("redis://127.0.0.1:{port}")))
}

/// A node's log (stderr), as it comes, and the thread that reads it (done once the
/// node exited).
type Log = (Arc<Mutex<String>>, std::thread::JoinHandle<()>);

/// `loadtest serve --redis <url>` on a free port, once connected to Redis (in the
/// registry); its process, WebSocket URL and log.
fn node(redis: &str) -> (Process, String, Log) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["serve", "--addr", "127.0.0.1:0", "--redis", redis])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start loadtest serve");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let process = Process(child);
    let mut lines = BufReader::new(stdout).lines();
    let url = lines
        .find_map(|l| l.ok()?.strip_prefix("listening ").map(str::to_owned))
        .expect("the node says where it listens");
    std::thread::spawn(move || lines.for_each(drop));
    let log = Arc::<Mutex<String>>::default();
    let (connected, wait) = mpsc::channel();
    let writer = log.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("connected to Redis") {
                let _ = connected.send(());
            }
            let mut log = writer.lock().unwrap_or_else(|e| e.into_inner());
            log.push_str(&line);
            log.push('\n');
        }
    });
    wait.recv_timeout(DEADLINE)
        .expect("the node connects to Redis");
    (process, url, (log, reader))
}

#[actix_rt::test]
async fn sigterm_moves_the_sessions_to_another_node_then_exits() {
    let Some((_redis, url)) = redis() else {
        return;
    };
    let (mut first, first_url, first_log) = node(&url);
    let (_second, _, _) = node(&url);
    let client = Client::connect_with(&first_url, ClientConfig::default())
        .await
        .expect("connect to the first node");

    let pid = first.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.is_ok_and(|s| s.success()), "kill -TERM {pid}");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = first.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the node did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (log, reader) = first_log;
    reader.join().expect("log reader");
    let log = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(status.success(), "exit status {status}; log:\n{log}");
    assert!(
        log.contains("node drained") && log.contains("moved=1") && log.contains("stayed=0"),
        "the node did not move its session:\n{log}"
    );
    // Its client heard of it as of a cut (it would resume on the other node through
    // a balancer; here its one URL is gone).
    let event = tokio::time::timeout(DEADLINE, client.next_connection_event()).await;
    assert!(
        matches!(event, Ok(Some(ConnectionEvent::Reconnecting { .. }))),
        "{event:?}"
    );
}
