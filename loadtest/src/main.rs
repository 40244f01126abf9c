//! `loadtest`: the actor-level load generator for Volley.
//!
//! `loadtest <scenario> --spawn` starts a Volley server process (`loadtest serve`),
//! worker processes that each run thousands of simulated clients on the framework's
//! Rust client (`loadtest worker`), and drives them through the scenario while it
//! shows live progress; it ends with a report table, `--json FILE` and `--html FILE`
//! (a self-contained page with plots) if asked, and a non-zero exit status if any
//! reliable message was lost or duplicated or any client could not connect. `docs/benchmarks.md` has every scenario with measured figures.
//!
//! The modules, by concept: `coordinator` (the process the user starts), `worker`
//! and `sim` (simulated clients), `scenarios/` (one file per scenario), `server`
//! (the server under test), `proxy` (cutting connections), `control` (the
//! coordinator ↔ worker channel), `seq` (exactly-once checks), `histogram`,
//! `proc` (server CPU and memory), `sampler` and `timeline` (the run over time),
//! `progress`, `report`, and `plot` and `html` (the report as a page).

mod args;
mod chat_wire;
mod client_ctx;
mod control;
mod coordinator;
mod histogram;
mod html;
mod plot;
mod proc;
mod progress;
mod proxy;
mod rawplayer;
mod rawws;
mod report;
mod sampler;
mod scenarios;
mod seq;
mod server;
mod sim;
mod sioclient;
mod timeline;
mod trend;
mod worker;

use std::io::IsTerminal;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

use crate::args::Flags;

const USAGE: &str = "\
usage: loadtest <scenario> (--spawn | --url ws://host:port/volley) [flags]
       loadtest serve [--addr 127.0.0.1:8090] [server flags]

scenarios
  connect    connection storm: open --clients sessions at --connect-rate per second
  idle       hold --clients connections for --hold s (default 10) while the server
             pings every --ping-ms (default 2000); server RSS per connection
  fanout     --clients in one room, a publisher at --rate msgs/s (default 20) for
             --duration s (default 10), --size bytes of padding (default 100),
             receivers speaking --protocol volley (default), socketio (the same
             server's /socket.io/) or socketio-upgrade (the same, opened with long
             polling and upgraded); deliveries/s, server CPU per delivery, latency
  rooms      --rooms (default 10) x --players (default 8), inputs at --hz (default
             30) for --duration s (default 10), rooms tick at --tick-rate (default
             30); input->state latency, server tick lateness; --player raw: lean
             players on a raw WebSocket instead of the Rust client (--player client);
             --player socketio: Socket.IO clients on the server's /socket.io/
             (socketio-upgrade: opened with long polling and upgraded)
  reconnect  --clients sessions stream --msg-rate msgs/s each (default 5) through a
             cutting proxy; after --warmup s (default 1) all are cut at once; they
             resume with back-off from --backoff-ms (default 1000); streaming goes
             on --after s (default 2); time until all resumed, lost, duplicated;
             --player raw: lean players on a raw WebSocket that drop their own
             connections at the cut (no proxy) and resume the same way;
             --cut server: the server drops every connection instead (no proxy)
  soak       --clients (default 500) stream --msg-rate msgs/s each way (1), chat in
             rooms of --chat-room-size (10) at --chat-rate (0.2), play in game rooms
             of --players (8) at --hz (2) ticking at --tick-rate (10), and are cut
             at random --cuts-per-min times a minute (0.5), for --duration s (600),
             pings every --ping-ms (1000; --ping-timeout-ms: that, at least
             1000); the server is sampled every second.
             Fails if RSS, CPU, fds, sessions or pings per session grow (slope over
             the 2nd half above --max-rss-mib-per-min 1, --max-cpu-pct-per-min 5,
             --max-fds-per-min 0.5, --max-sessions-per-min 0.5, --max-pings-per-min
             0.05), if pings per session per interval are off 1 by more than
             --ping-tolerance (0.1), or on any loss; --svg FILE plots the run
  fuzz       for --duration s (10) or --cases connections, --concurrency (8) raw
             WebSocket connections at a time send mutated, random, wrong-direction
             and malformed WebSocket frames (--seed repeats a run) while --clients
             (4) chat; each must get the spec's close reason and status, nothing
             lost, server RSS flat (--max-rss-mib-per-min 1), no session left

  floor      no server: --clients (default 2000) loopback TCP connections from a
             drainer process get --size-byte messages (default 120, one Volley
             broadcast frame of a ~100-byte chat message) at --rate per second
             (default 20) for --duration s (default 10), one write() per message,
             then --batch (default 10) per write(); CPU per message of the writer
             and of the drainer: the yardstick for every server's CPU per delivery
             --ping: instead, --clients (default 10000) get a Volley ping every
             --interval-ms (default 2000) for --duration s (default 20), written
             on 20 slots per interval, and the drainer answers each with a pong
             that is read back; CPU per round trip: the yardstick for heartbeats
  compare    no server: the same chat (--clients, default 2000, in one room, a
             publisher at --rate msgs/s, default 20, for --duration s, default 20,
             texts of --size bytes, default 80) on Volley, on Volley's Socket.IO
             endpoint, on Socket.IO 4.8 on Node and socketioxide 0.18.9 (--peers
             volley,volley-socketio,socketio,socketioxide, or
             volley-socketio-upgrade: clients upgraded from polling; built from
             loadtest/peers, a peer without node/npm/cargo is skipped), and the floor
             for Volley's frame size, one write() and --batch (10) per write(); one
             table: server CPU per delivery and x floor, deliveries/s, latency,
             server RSS per idle connection; --rounds N (1): the floor and every
             server N times in turn, each read against its round's floor, the
             median round shown with the rounds' range
  cluster    (feature `cluster`, on by default; needs redis-server) the fanout above on
             one node, then on --nodes nodes (default 3) sharing a Redis it starts,
             behind a round-robin balancer; latency and CPU per delivery of both,
             Redis messages and Redis CPU per broadcast; then the reconnect storm
             through the balancer (its flags: --msg-rate, --player raw, ...);
             with --rooms N (default 0: none) also the rooms
             scenario (--players, --hz, --tick-rate, --room-duration s, default 10)
             on one node and on the nodes, players spread over them; with
             --drain, last, the fan-out once more while the first node gets
             SIGTERM a third of the way in (a rolling restart under traffic)

flags for every scenario
  --spawn               start a server process (so its CPU and memory are measured)
  --url URL             use a running server (`loadtest serve`)
  --server-pid PID      with --url: measure that process's CPU and memory
  --clients N           simulated clients (defaults: connect/idle 1000, fanout 500,
                        soak 500, reconnect 200, fuzz 4; rooms: rooms x players)
  --workers N           worker processes (default: one per 4000 clients, at least 2)
  --connect-rate R      new connections per second, all workers together
  --sources N           spread clients over source addresses 127.0.0.1..N
                        (default: one per 100 clients, 4 to 254; 0: let the
                        system choose)
  --transport T         websocket (default) or polling
  --io-window-us N      with --spawn: the server's io window (Config::io_window),
                        default 0: off
  --json FILE           write every figure as JSON (top-level `lost`, `duplicated`)
  --html FILE           write the report as one self-contained HTML page: settings,
                        checks, figures, latency histograms, plots over time

server flags (loadtest serve; with --spawn the scenario sets them)
  --ping-ms, --ping-timeout-ms, --grace-s, --max-detached, --tick-rate, --room-size,
  --io-window-us (Config::io_window, default 0: off)

exit status: 0 passed; 1 lost or duplicated messages, clients that could not
connect, or other failures (listed in the report); 2 bad usage or setup error";

fn main() -> ExitCode {
    init_logs();
    let mut args = std::env::args().skip(1);
    let Some(command) = args.next() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest: Vec<String> = args.collect();
    match command.as_str() {
        "worker" => match worker::run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadtest worker: {e}");
                ExitCode::FAILURE
            }
        },
        "serve" => serve(rest),
        "floor-drain" => match scenarios::floor::drain(&rest) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadtest floor-drain: {e}");
                ExitCode::FAILURE
            }
        },
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        name if scenarios::NAMES.contains(&name) => scenario(name, rest),
        other => {
            eprintln!("unknown command '{other}'\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: Vec<String>) -> ExitCode {
    let options = Flags::parse(args).and_then(|flags| {
        let options = server::ServeOptions::from_flags(&flags)?;
        flags.finish()?;
        Ok(options)
    });
    let options = match options {
        Ok(options) => options,
        Err(e) => {
            eprintln!("loadtest serve: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match actix_rt::System::new().block_on(server::serve(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadtest serve: {e}");
            ExitCode::FAILURE
        }
    }
}

fn scenario(name: &str, args: Vec<String>) -> ExitCode {
    let flags = match Flags::parse(args) {
        Ok(flags) => flags,
        Err(e) => {
            eprintln!("loadtest {name}: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if flags.switch("help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let json: Option<String> = match flags.opt("json") {
        Ok(json) => json,
        Err(e) => {
            eprintln!("loadtest {name}: {e}");
            return ExitCode::from(2);
        }
    };
    let html: Option<String> = match flags.opt("html") {
        Ok(html) => html,
        Err(e) => {
            eprintln!("loadtest {name}: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match actix_rt::System::new().block_on(scenarios::coordinate(name, &flags)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("loadtest {name}: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{}", report.table());
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report.to_json()).unwrap_or_default();
        if let Err(e) = std::fs::write(&path, text + "\n") {
            eprintln!("loadtest {name}: cannot write {path}: {e}");
            return ExitCode::from(2);
        }
    }
    if let Some(path) = html {
        if let Err(e) = std::fs::write(&path, html::page(&report)) {
            eprintln!("loadtest {name}: cannot write {path}: {e}");
            return ExitCode::from(2);
        }
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Logs go to stderr, warnings and errors only unless `RUST_LOG` says otherwise.
fn init_logs() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
