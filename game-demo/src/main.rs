//! Orb Arena: the Volley demo game. `cargo run --release -p game-demo`, then open
//! the printed URL in a browser (or two).
//!
//! One binary serves everything: the game page, the admin dashboard, the browser
//! client (`volley.js`) and the Volley endpoints. Namespaces: `/game` (game rooms
//! with matchmaking and seat hold), `/chat` (chat per game room), `/admin`
//! (token-protected dashboard).

mod admin;
mod arena;
mod assets;
mod chat;
#[cfg(feature = "cluster")]
mod cluster;
mod code;

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::App;
use rand::RngCore;
use volley::{GameRooms, Namespace, RoomOptions, Volley};

const USAGE: &str = "usage: game-demo [--addr IP:PORT] [--admin-token TOKEN] [--bots N]
                 [--tls-cert PEM --tls-key PEM] [--cluster N] [--redis URL]
  --addr         where to listen (default 127.0.0.1:8080; port 0 picks a free one)
  --admin-token  the admin dashboard's token (default: a random one, printed)
  --bots         server-side bots in each new room (default 3)
  --tls-cert     serve https/wss with this PEM certificate chain (needs --tls-key)
  --tls-key      the certificate's PEM private key
  --cluster      N nodes sharing their game rooms through Redis, behind a round-robin
                 balancer on --addr (starts redis-server unless --redis is given)
  --redis        join the cluster on this Redis (redis://HOST:PORT, Redis 7+); with
                 --cluster, the nodes' Redis
  (--cluster and --redis need the `cluster` feature, on by default)";

struct Args {
    addr: String,
    admin_token: Option<String>,
    bots: usize,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    /// Nodes to start behind a balancer (0: this process is one node).
    cluster: usize,
    redis: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:8080".to_owned(),
        admin_token: None,
        bots: 3,
        tls_cert: None,
        tls_key: None,
        cluster: 0,
        redis: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => args.addr = value()?,
            "--admin-token" => args.admin_token = Some(value()?),
            "--bots" => {
                args.bots = value()?
                    .parse()
                    .map_err(|_| "--bots takes a number".to_owned())?
            }
            "--tls-cert" => args.tls_cert = Some(value()?),
            "--tls-key" => args.tls_key = Some(value()?),
            "--cluster" => {
                args.cluster = value()?
                    .parse()
                    .map_err(|_| "--cluster takes a number of nodes".to_owned())?
            }
            "--redis" => args.redis = Some(value()?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.tls_cert.is_some() != args.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".to_owned());
    }
    if args.cluster > 0 && args.tls_cert.is_some() {
        return Err("--cluster serves plain http (put a TLS proxy in front)".to_owned());
    }
    if (args.cluster > 0 || args.redis.is_some()) && !cfg!(feature = "cluster") {
        return Err("--cluster and --redis need the cluster build: \
                    cargo run --release -p game-demo -- --cluster 2 (default features)"
            .to_owned());
    }
    Ok(args)
}

fn random_token() -> String {
    let mut raw = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args = match parse_args() {
        Ok(args) => args,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("game-demo: {why}");
            }
            eprintln!("{USAGE}");
            std::process::exit(if why.is_empty() { 0 } else { 2 });
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,volley=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    #[cfg(feature = "cluster")]
    if args.cluster > 0 {
        // Said plainly (no Debug form): redis-server missing is the common case.
        if let Err(e) = cluster::run(&args, args.cluster).await {
            eprintln!("{e}");
            std::process::exit(1);
        }
        return Ok(());
    }
    let token: Arc<str> = args.admin_token.clone().unwrap_or_else(random_token).into();
    arena::DEFAULT_BOTS.store(args.bots, Ordering::Relaxed);

    let rooms = GameRooms::builder()
        .game::<arena::Arena>(
            "arena",
            RoomOptions {
                max_players: 8,
                tick_rate: 30,
                broadcast_rate: 15,
                dispose_after_empty: Duration::from_secs(30),
                ..RoomOptions::default()
            },
        )
        .build();
    let chat_stats = Arc::new(chat::ChatStats::default());
    let volley_cell: Arc<OnceLock<Volley>> = Arc::new(OnceLock::new());
    let game = Namespace::new().on_ack("whoami", |socket, _: (), ack| {
        let _ = ack.send(&socket.id().0);
    });
    let builder = Volley::builder()
        .resume_grace(Duration::from_secs(60))
        .heartbeat(Duration::from_secs(10), Duration::from_secs(10))
        .namespace("/game", rooms.with_events(game))
        .namespace("/chat", chat::namespace(chat_stats.clone()))
        .namespace(
            "/admin",
            admin::namespace(token.clone(), rooms.clone(), volley_cell.clone()),
        );
    #[cfg(feature = "cluster")]
    let builder = match &args.redis {
        Some(url) => {
            let cluster = volley::cluster::RedisCluster::new(url)
                .map_err(|e| std::io::Error::other(format!("--redis {url}: {e}")))?;
            builder.cluster(cluster)
        }
        None => builder,
    };
    let volley = builder.build();
    // With --redis: listings, join-or-create and play span the cluster's nodes.
    #[cfg(feature = "cluster")]
    rooms.share_in(&volley);
    let _ = volley_cell.set(volley.clone());
    admin::publish_overview(volley.clone(), rooms.clone(), chat_stats);

    let server = volley.http_server(|| App::new().configure(assets::routes));
    let (server, scheme) = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = volley::tls::server_config(cert, key)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            (server.bind_rustls(&args.addr, tls)?, "https")
        }
        _ => (server.bind(&args.addr)?, "http"),
    };
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("no address bound"))?;
    // The banner is for whoever reads it. A stdout nobody reads any more (`game-demo |
    // head -1`, a test that took the first line) must not stop the server: println!
    // would panic on the broken pipe, before the server even started.
    let banner = format!(
        "Orb Arena is running: {scheme}://{addr}/\n\
         Admin dashboard:      {scheme}://{addr}/admin.html  (admin token: {token})\n\
         Force long-polling:   {scheme}://{addr}/?transport=polling\n"
    );
    let _ = std::io::stdout()
        .write_all(banner.as_bytes())
        .and_then(|()| std::io::stdout().flush());
    server.run().await
}
