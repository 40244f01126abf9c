//! A real `redis-server` for the cluster tests, on a free loopback port, stopped
//! when dropped. Without `redis-server` on the PATH the tests skip, saying so, unless
//! `VOLLEY_REQUIRE_REDIS=1` (CI) makes that a failure.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::WAIT;

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one, or `None` (the caller skips) when `redis-server` is missing.
    pub fn start(test: &str) -> Option<RedisServer> {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok();
        if !found {
            if std::env::var("VOLLEY_REQUIRE_REDIS").as_deref() == Ok("1") {
                panic!("VOLLEY_REQUIRE_REDIS=1 but redis-server is not installed");
            }
            eprintln!("skipping {test}: redis-server not found (apt install redis-server)");
            return None;
        }
        let port = free_port();
        let mut redis = RedisServer { port, child: None };
        redis.run();
        Some(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server on `self.port` and returns once it accepts connections.
    fn run(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut child = Command::new("redis-server")
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                .args(["--loglevel", "notice"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server");
            let out = child.stdout.take().expect("piped stdout");
            // Its log says when it is ready; a port still held (a restart) makes it exit.
            let mut lines = BufReader::new(out).lines().map_while(Result::ok);
            let ready = lines.any(|line| line.contains("Ready to accept connections"));
            // The rest of its log is read and dropped, so that it never blocks on a
            // full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            if ready {
                self.child = Some(child);
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (as a crash would: no goodbye to its clients).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// A connection for the test's own questions to Redis.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.url()).expect("redis url");
        client
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test's redis")
    }

    /// Adds Redis user `user` (password `secret`, every right) and its URL, so that
    /// a test can later cut the node that uses it from Redis for good
    /// ([`RedisServer::cut_user`]): to the other nodes it is then a dead node.
    pub async fn add_user(&self, user: &str) -> String {
        let mut admin = self.connection().await;
        redis::cmd("ACL")
            .arg(&["SETUSER", user, "on", ">secret", "~*", "&*", "+@all"])
            .exec_async(&mut admin)
            .await
            .unwrap();
        format!("redis://{user}:secret@127.0.0.1:{}", self.port)
    }

    /// Disables user `user` and closes its connections: its node cannot come back.
    pub async fn cut_user(&self, user: &str) {
        let mut admin = self.connection().await;
        redis::cmd("ACL")
            .arg(&["SETUSER", user, "off"])
            .exec_async(&mut admin)
            .await
            .unwrap();
        redis::cmd("CLIENT")
            .arg(&["KILL", "USER", user])
            .exec_async(&mut admin)
            .await
            .unwrap();
    }

    /// Waits (at most [`WAIT`]) until `nodes` nodes are subscribed to `channel`.
    pub async fn await_subscribers(&self, channel: &str, nodes: usize) {
        let mut conn = self.connection().await;
        let deadline = Instant::now() + WAIT;
        loop {
            let (_, n): (String, usize) = redis::cmd("PUBSUB")
                .arg("SHARDNUMSUB")
                .arg(channel)
                .query_async::<Vec<(String, usize)>>(&mut conn)
                .await
                .expect("PUBSUB SHARDNUMSUB")
                .pop()
                .expect("one channel asked, one answered");
            if n == nodes {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{channel}: {n} subscribers, expected {nodes}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind loopback");
    listener.local_addr().expect("local addr").port()
}
