//! What the example programs in `src/bin/` share: their command-line flags, their
//! logs, serving a [`Volley`] on actix-web, and waiting for an event without hanging.
//!
//! This is not an example of its own. It keeps the setup out of the examples so that
//! each of them is about its one idea: `echo.rs`, `chat.rs`, `admin.rs`,
//! `tick_game.rs`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::App;
use tokio::task::JoinHandle;
use tracing_subscriber::EnvFilter;
use volley::client::{Event, NamespaceClient};
use volley::Volley;

/// The flags every example takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// `--addr ip:port`: where to listen. Port 0 asks the system for a free port.
    pub addr: SocketAddr,
    /// `--once`: run the scripted client session, then exit (used by the tests).
    pub once: bool,
    /// `--tls-cert PATH --tls-key PATH`: serve `https`/`wss` with this PEM
    /// certificate chain and private key.
    pub tls: Option<TlsFiles>,
}

/// The PEM files of `--tls-cert` and `--tls-key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

const USAGE: &str = "flags: [--addr <ip:port>] [--once] [--tls-cert <pem> --tls-key <pem>]
  --addr      where to listen (port 0 picks a free port)
  --once      run the scripted client session against this server, then exit
  --tls-cert  serve https/wss with this PEM certificate chain (needs --tls-key)
  --tls-key   the certificate's PEM private key";

impl Args {
    /// Reads the process's flags. Prints the usage and exits on `--help` or a bad flag.
    pub fn parse(default_addr: &str) -> Args {
        match Args::from_iter(std::env::args().skip(1), default_addr) {
            Ok(Some(args)) => args,
            Ok(None) => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            Err(e) => {
                eprintln!("{e}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }

    /// Parses flags (without the program name). `Ok(None)` means help was asked for.
    pub fn from_iter(
        args: impl IntoIterator<Item = String>,
        default_addr: &str,
    ) -> Result<Option<Args>, String> {
        let mut addr = default_addr.to_owned();
        let mut once = false;
        let (mut cert, mut key) = (None, None);
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--once" => once = true,
                "--addr" => {
                    addr = args
                        .next()
                        .ok_or("--addr needs a value, like 127.0.0.1:0")?
                }
                "--tls-cert" => cert = Some(args.next().ok_or("--tls-cert needs a file")?),
                "--tls-key" => key = Some(args.next().ok_or("--tls-key needs a file")?),
                "-h" | "--help" => return Ok(None),
                other => match other.strip_prefix("--addr=") {
                    Some(value) => addr = value.to_owned(),
                    None => return Err(format!("unknown flag '{other}'")),
                },
            }
        }
        let addr = addr
            .parse()
            .map_err(|e| format!("--addr '{addr}' is not an ip:port ({e})"))?;
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.into(),
                key: key.into(),
            }),
            (None, None) => None,
            _ => return Err("--tls-cert and --tls-key go together".to_owned()),
        };
        Ok(Some(Args { addr, once, tls }))
    }
}

/// Logs go to stderr, so that stdout tells only the example's story. `RUST_LOG`
/// picks what is shown (`RUST_LOG=volley=debug`); the default is `info`.
pub fn init_logs() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// A Volley server running on its own [`volley::HttpServer`].
pub struct Running {
    /// The address really bound: with port 0, the port the system picked.
    pub addr: SocketAddr,
    /// What clients connect to: `ws://<addr>/volley`, or `wss://` with TLS.
    pub url: String,
    tls: bool,
    handle: ServerHandle,
    task: JoinHandle<std::io::Result<()>>,
}

/// Mounts `volley` into an actix-web server on `args.addr` (with TLS when
/// `args.tls` names the files) and starts it in the background.
///
/// This is the whole integration: `volley.http_server(App::new)` serves Volley's
/// routes; your own routes go in the `App` the closure builds.
pub fn serve(volley: &Volley, args: &Args) -> std::io::Result<Running> {
    let addr = args.addr;
    // Volley's own server: an actix-web `App` (here with no routes of its own; add
    // yours) with Volley's routes added, `TCP_NODELAY` and the write timeout set on
    // every connection, and WebSocket connections that leave the HTTP layer once
    // upgraded (a few hundred bytes each while idle).
    let server = volley
        .http_server(App::new)
        // Open WebSockets never finish by themselves: on Ctrl-C, close them after 2 s
        // instead of the default 30 s.
        .shutdown_timeout(2);
    let server = match &args.tls {
        // `volley::tls::server_config` reads the PEM files and says which one is wrong.
        Some(files) => {
            let tls = volley::tls::server_config(&files.cert, &files.key)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            server.bind_rustls(addr, tls)?
        }
        None => server.bind(addr)?,
    };
    let addr = server.addrs().first().copied().unwrap_or(addr);
    let server = server.run();
    let handle = server.handle();
    let scheme = if args.tls.is_some() { "wss" } else { "ws" };
    Ok(Running {
        addr,
        url: format!("{scheme}://{addr}{}", volley.config().path),
        tls: args.tls.is_some(),
        handle,
        task: actix_rt::spawn(server),
    })
}

impl Running {
    /// Where the scripted client session connects, or `None` over TLS: the Rust
    /// client speaks plain `ws` only, so with TLS the example serves browsers and
    /// TLS clients and skips its script.
    pub fn demo_url(&self) -> Option<&str> {
        if self.tls {
            println!("TLS is on: the scripted client (plain ws only) is skipped");
            None
        } else {
            Some(&self.url)
        }
    }

    /// What every example does after its demo: with `--once`, stop the server and
    /// return; otherwise print how to connect and serve until Ctrl-C.
    pub async fn stop_or_serve(self, once: bool, how_to_connect: &str) -> std::io::Result<()> {
        if once {
            self.handle.stop(true).await;
            return Ok(());
        }
        println!("serving on {} until Ctrl-C; to connect:", self.url);
        println!("{how_to_connect}");
        self.task.await.map_err(std::io::Error::other)?
    }
}

/// How long a scripted session waits for anything: a broken server makes the
/// example fail with a message instead of hanging.
pub const SCRIPT_WAIT: Duration = Duration::from_secs(10);

/// The next event of `ns`, or an error if none comes within [`SCRIPT_WAIT`].
pub async fn next_event(ns: &mut NamespaceClient) -> Result<Event, String> {
    match tokio::time::timeout(SCRIPT_WAIT, ns.next_event()).await {
        Ok(Some(event)) => Ok(event),
        Ok(None) => Err(format!("namespace {} closed", ns.namespace())),
        Err(_) => Err(format!(
            "no event on {} within {SCRIPT_WAIT:?}",
            ns.namespace()
        )),
    }
}

// The Rust code blocks of the README and of the guide are compiled as doctests of
// this crate, so that documentation that drifts from the API fails `cargo test`.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

#[cfg(doctest)]
#[doc = include_str!("../../docs/guide.md")]
pub struct GuideDoctests;

// The README the `volley` crate is published with.
#[cfg(doctest)]
#[doc = include_str!("../../framework/README.md")]
pub struct CrateReadmeDoctests;

#[cfg(test)]
mod tests {
    use super::Args;

    fn parse(flags: &[&str]) -> Result<Option<Args>, String> {
        Args::from_iter(flags.iter().map(|s| s.to_string()), "127.0.0.1:8080")
    }

    #[test]
    fn defaults_and_flags() {
        let default = parse(&[])
            .ok()
            .flatten()
            .map(|a| (a.addr.to_string(), a.once));
        assert_eq!(default, Some(("127.0.0.1:8080".to_owned(), false)));
        let set = parse(&["--addr", "127.0.0.1:0", "--once"]).ok().flatten();
        assert_eq!(set.map(|a| (a.addr.port(), a.once)), Some((0, true)));
        let tls = parse(&["--tls-cert", "c.pem", "--tls-key", "k.pem"])
            .ok()
            .flatten();
        assert_eq!(
            tls.and_then(|a| a.tls),
            Some(super::TlsFiles {
                cert: "c.pem".into(),
                key: "k.pem".into()
            })
        );
        let eq = parse(&["--addr=0.0.0.0:9000"]).ok().flatten();
        assert_eq!(
            eq.map(|a| a.addr.to_string()),
            Some("0.0.0.0:9000".to_owned())
        );
        assert_eq!(parse(&["--help"]), Ok(None));
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        assert_eq!(parse(&["--port"]), Err("unknown flag '--port'".to_owned()));
        assert!(parse(&["--addr"]).is_err_and(|e| e.contains("needs a value")));
        assert!(parse(&["--addr", "localhost"]).is_err_and(|e| e.contains("not an ip:port")));
        assert!(parse(&["--tls-cert", "c.pem"]).is_err_and(|e| e.contains("go together")));
    }
}
