//! `game-demo --cluster 2` (feature `cluster`): two nodes behind the demo's own
//! round-robin balancer. Two players whose connections land on different nodes
//! quick-play into one room and both see each other in its states.
//!
//! Needs `redis-server`: without it the demo says so, and the test repeats it and
//! is skipped, unless `VOLLEY_REQUIRE_REDIS` is set (CI sets it).
#![cfg(feature = "cluster")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use volley::client::{Client, NamespaceClient};

const WAIT: Duration = Duration::from_secs(20);

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        // SIGTERM: the demo stops its nodes and its Redis.
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

/// `game-demo --cluster 2`; its balancer's URL and its nodes' lines. `None` when
/// it says that redis-server is missing.
fn start_cluster() -> Option<(Killed, String, Vec<String>)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_game-demo"))
        .args(["--cluster", "2", "--addr", "127.0.0.1:0", "--bots", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("game-demo starts");
    let lines: Vec<String> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .take_while(|l| !l.starts_with("Stop a node"))
        .collect();
    if lines.is_empty() {
        let mut why = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut why);
        let missing = why.contains("cannot start redis-server");
        assert!(missing, "the demo did not start: {why}");
        assert!(
            std::env::var_os("VOLLEY_REQUIRE_REDIS").is_none(),
            "VOLLEY_REQUIRE_REDIS is set but redis-server is missing"
        );
        eprintln!("skipped: {why}");
        let _ = child.wait();
        return None;
    }
    // Its logs go on; nobody reads them.
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || BufReader::new(stderr).lines().for_each(drop));
    let url = lines[0]
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("the demo prints its URL")
        .trim_end_matches('/')
        .to_owned();
    let nodes = lines
        .into_iter()
        .filter(|l| l.starts_with("Node:"))
        .collect();
    Some((Killed(child), url, nodes))
}

async fn player(url: &str) -> (Client, NamespaceClient) {
    let ws = url.replace("http://", "ws://") + "/volley";
    let client = Client::connect(&ws).await.unwrap();
    let game = client.join("/game", &()).await.unwrap();
    (client, game)
}

/// The room a quick play lands in.
async fn quick_play(game: &NamespaceClient, name: &str) -> u64 {
    let request = json!({"type": "arena", "options": {"name": name}});
    let answer: Value = game
        .emit_with_ack("join_game", &request, WAIT)
        .await
        .unwrap();
    answer["Ok"]["room"].as_u64().expect("joined")
}

/// Waits for a state that shows the player `id`.
async fn sees(game: &mut NamespaceClient, id: u64) {
    let found = async {
        loop {
            let event = game.next_event().await.expect("events");
            if event.name != "state" {
                continue;
            }
            let state: Value = event.decode().unwrap();
            let cells = state["cells"].as_array().cloned().unwrap_or_default();
            if cells.iter().any(|c| c["id"].as_u64() == Some(id)) {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, found)
        .await
        .expect("the state shows the player");
}

#[actix_rt::test]
async fn two_players_on_two_nodes_play_in_one_room() {
    let Some((_demo, url, nodes)) = start_cluster() else {
        return;
    };
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    // Round robin: each connection reaches the other node than the one before. Each
    // node numbers its sessions from the same start, so a spare first connection
    // keeps Ann's and Bob's ids apart.
    let spare = Client::connect(&(url.replace("http://", "ws://") + "/volley")).await;
    let (ann, mut ann_game) = player(&url).await;
    let (bob, mut bob_game) = player(&url).await;
    assert_ne!(ann.session_id(), bob.session_id());
    drop(spare);
    let room = quick_play(&ann_game, "ann").await;
    assert_eq!(quick_play(&bob_game, "bob").await, room);
    sees(&mut ann_game, bob.session_id()).await;
    sees(&mut bob_game, ann.session_id()).await;
}
