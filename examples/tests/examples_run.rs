//! Runs each example program as a user would, `--addr 127.0.0.1:0 --once`: a real
//! process serving on a free loopback port and running its scripted client session
//! against itself. Each must exit 0 and print the lines that show its idea.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An example that has not finished by then is killed and the test fails: a hung
/// server fails the test instead of hanging it.
const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `exe --addr 127.0.0.1:0 --once`; returns its stdout once it exited 0.
fn run_once(exe: &str) -> String {
    let mut child = Command::new(exe)
        .args(["--addr", "127.0.0.1:0", "--once"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {exe}: {e}"));
    // Read the pipes on their own threads so that a chatty child never blocks on a
    // full pipe while we wait for it.
    let stdout = drain(&mut child, true);
    let stderr = drain(&mut child, false);
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < DEADLINE => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{exe} did not finish within {DEADLINE:?}\nstdout:\n{}\nstderr:\n{}",
                    collect(stdout),
                    collect(stderr)
                );
            }
            Err(e) => panic!("waiting for {exe}: {e}"),
        }
    };
    let (out, err) = (collect(stdout), collect(stderr));
    assert!(
        status.success(),
        "{exe} exited with {status}\nstdout:\n{out}\nstderr:\n{err}"
    );
    out
}

type Drain = std::thread::JoinHandle<String>;

fn drain(child: &mut Child, stdout: bool) -> Drain {
    let mut pipe: Box<dyn Read + Send> = if stdout {
        Box::new(child.stdout.take().expect("stdout is piped"))
    } else {
        Box::new(child.stderr.take().expect("stderr is piped"))
    };
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

fn collect(drain: Drain) -> String {
    drain.join().unwrap_or_else(|_| "<reader panicked>".into())
}

/// Asserts that `out` has a line containing each of `wanted`, in that order.
fn assert_lines_in_order(out: &str, wanted: &[&str]) {
    let mut lines = out.lines();
    for want in wanted {
        assert!(
            lines.any(|line| line.contains(want)),
            "missing (or out of order): {want:?}\nstdout:\n{out}"
        );
    }
}

/// The first line names the real address: port 0 was replaced by the bound port.
fn assert_real_port(out: &str) {
    let first = out.lines().next().unwrap_or_default();
    assert!(first.contains("ws://127.0.0.1:"), "{first}");
    assert!(!first.contains("127.0.0.1:0/"), "port 0 printed: {first}");
    assert!(first.ends_with("/volley"), "{first}");
}

#[test]
fn echo_answers_by_event_and_by_ack() {
    let out = run_once(env!("CARGO_BIN_EXE_echo"));
    assert_real_port(&out);
    assert_lines_in_order(
        &out,
        &[
            "echo server listening on ws://127.0.0.1:",
            "joined namespace /",
            "sent \"echo\", got \"echo\" back: hello, volley",
            r#"ack answered {"level":"ice cave","score":42}"#,
        ],
    );
}

#[test]
fn chat_rooms_deliver_to_their_members() {
    let out = run_once(env!("CARGO_BIN_EXE_chat"));
    assert_real_port(&out);
    assert_lines_in_order(
        &out,
        &[
            "a client without a name is refused: namespace refused: pick a name",
            "ann joined lobby; ann is in [\"lobby\"]",
            "ann received notice: bob joined lobby",
            "room list: games (1), lobby (2)",
            "in lobby: ann, bob",
            "bob received in lobby: ann: hi all",
            "cat received notice: join lobby before talking there",
            "bob left lobby; bob is in []",
            "ann received notice: bob left lobby",
            "room list: games (1), lobby (1)",
            "ann joined games; ann is in [\"games\", \"lobby\"]",
            "cat received notice: ann joined games",
            "cat closed games: 1 other member(s) left it",
            "ann received notice: cat closed games",
            "ann is in [\"lobby\"]",
            "room list: lobby (1)",
        ],
    );
}

#[test]
fn admin_refuses_without_the_token_and_says_why() {
    let out = run_once(env!("CARGO_BIN_EXE_admin"));
    assert_real_port(&out);
    assert_lines_in_order(
        &out,
        &[
            "player joined / without a token: hello, session ",
            "visitor without a token: namespace refused: admin token required",
            "visitor with a wrong token: namespace refused: invalid admin token",
            "visitor with the token: accepted as alice",
            "admin sees 2 sessions:",
            "admin kicked the player (true); player's session closed: kicked: by alice",
        ],
    );
}

#[test]
fn tick_game_sends_each_team_its_own_state() {
    let out = run_once(env!("CARGO_BIN_EXE_tick_game"));
    assert_real_port(&out);
    assert_lines_in_order(
        &out,
        &[
            "tick game server listening on ws://127.0.0.1:",
            "ann joined race room ",
            "bob joined race room ",
            "cat without a team is refused: refused: pick a team: red or blue",
            "dan joined race room ",
            "ann sees team red: 1 runner(s) of its own, the rival team's best at ",
            "bob sees team blue: 1 runner(s) of its own, the rival team's best at ",
            "lobby: race room ",
            " ticks at 30 Hz, ",
            "ann left the room: true",
        ],
    );
    for seated in ["(1/4 players)", "(2/4 players)", ", 2/4 players, locked"] {
        assert!(out.contains(seated), "missing {seated:?}\nstdout:\n{out}");
    }
}

#[test]
fn bad_flags_are_refused_with_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_echo"))
        .arg("--port")
        .output()
        .expect("echo runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown flag '--port'"), "{err}");
    assert!(err.contains("--addr"), "{err}");
}
