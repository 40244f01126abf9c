//! Admin: a namespace only clients with the right token may join, beside a public one.
//!
//! A namespace's connect middleware (`Namespace::authorize`) runs once for each client
//! that asks to join it, before any of its handlers. `Err(reason)` refuses the client,
//! which receives `reason`; `Ok(data)` lets it in and attaches `data` to its socket,
//! typed, for every handler to read with `socket.data::<T>()`. A refusal ends nothing
//! else: the client's session and its other namespaces carry on.
//!
//! The admin namespace can list the live sessions and kick one.
//!
//! Run: `VOLLEY_ADMIN_TOKEN=... cargo run -p examples --bin admin` (add `-- --once` to
//! run the demo and exit). Without the variable the token is the demo's `change-me`.

use std::error::Error;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use volley::client::Client;
use volley::{Namespace, SessionId, Volley};

const TOKEN_VAR: &str = "VOLLEY_ADMIN_TOKEN";
const DEMO_TOKEN: &str = "change-me";

/// What the middleware attaches to an admin's socket.
struct Admin {
    name: String,
}

/// What an admin client sends when it joins `/admin`.
#[derive(Serialize, Deserialize)]
struct AdminAuth {
    token: String,
    name: String,
}

/// One live session, as the `sessions` event answers it.
#[derive(Serialize, Deserialize)]
struct SessionRow {
    id: u64,
    namespaces: Vec<String>,
}

/// Compares secrets in a time that does not depend on where they differ, so that
/// timing the refusals does not reveal the token a character at a time.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// `server` is filled in once the server is built: the handlers need the server (to
/// list and kick sessions) and the server needs the handlers, so they meet through it.
fn admin_namespace(token: String, server: Arc<OnceLock<Volley>>) -> Namespace {
    let kick_server = server.clone();
    Namespace::new()
        .authorize(move |hs| match hs.auth::<Option<AdminAuth>>()? {
            None => Err("admin token required".to_owned()),
            Some(auth) if !same_secret(&auth.token, &token) => {
                Err("invalid admin token".to_owned())
            }
            Some(auth) => Ok(Admin { name: auth.name }),
        })
        .on_ack("whoami", |socket, (): (), ack| {
            let _ = ack.send(&socket.data::<Admin>().map(|admin| &admin.name));
        })
        .on_ack("sessions", move |_socket, (): (), ack| {
            let Some(volley) = server.get().cloned() else {
                return;
            };
            actix_rt::spawn(async move {
                let rows: Vec<SessionRow> = volley
                    .sessions()
                    .await
                    .into_iter()
                    .map(|s| SessionRow {
                        id: s.id.0,
                        namespaces: s.namespaces,
                    })
                    .collect();
                let _ = ack.send(&rows);
            });
        })
        .on_ack("kick", move |socket, id: u64, ack| {
            let Some(volley) = kick_server.get().cloned() else {
                return;
            };
            let by = socket
                .data::<Admin>()
                .map_or("an admin".into(), |a| a.name.clone());
            actix_rt::spawn(async move {
                let existed = volley.kick(SessionId(id), &format!("by {by}")).await;
                let _ = ack.send(&existed);
            });
        })
}

/// The public namespace: no middleware, anyone may join.
fn public_namespace() -> Namespace {
    Namespace::new().on_ack("hello", |socket, (): (), ack| {
        let _ = ack.send(&format!("hello, session {}", socket.id()));
    })
}

/// A player in the public namespace, a visitor knocking on `/admin`, and an admin.
async fn demo(url: &str, token: &str) -> Result<(), Box<dyn Error>> {
    const WAIT: std::time::Duration = examples::SCRIPT_WAIT;

    let player = Client::connect(url).await?;
    let public = player.join("/", &()).await?;
    let hello: String = public.emit_with_ack("hello", &(), WAIT).await?;
    println!("player joined / without a token: {hello}");

    let visitor = Client::connect(url).await?;
    match visitor.join("/admin", &()).await {
        Err(e) => println!("visitor without a token: {e}"),
        Ok(_) => return Err("/admin let in a client without a token".into()),
    }
    let wrong = AdminAuth {
        token: "guess".into(),
        name: "mallory".into(),
    };
    match visitor.join("/admin", &wrong).await {
        Err(e) => println!("visitor with a wrong token: {e}"),
        Ok(_) => return Err("/admin let in a client with a wrong token".into()),
    }

    // Same session, now with the right token: refusals did not end it.
    let right = AdminAuth {
        token: token.to_owned(),
        name: "alice".into(),
    };
    let admin = visitor.join("/admin", &right).await?;
    let me: Option<String> = admin.emit_with_ack("whoami", &(), WAIT).await?;
    println!(
        "visitor with the token: accepted as {}",
        me.unwrap_or_default()
    );

    let sessions: Vec<SessionRow> = admin.emit_with_ack("sessions", &(), WAIT).await?;
    println!("admin sees {} sessions:", sessions.len());
    for s in &sessions {
        println!("  session {:x} in {:?}", s.id, s.namespaces);
    }

    let kicked: bool = admin
        .emit_with_ack("kick", &player.session_id(), WAIT)
        .await?;
    let reason = tokio::time::timeout(WAIT, player.closed()).await?;
    println!("admin kicked the player ({kicked}); player's session closed: {reason}");

    visitor.close().await;
    Ok(())
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = examples::Args::parse("127.0.0.1:8082");
    examples::init_logs();

    // The token is a secret: read it from the environment and never print or log it.
    let token = std::env::var(TOKEN_VAR).unwrap_or_else(|_| {
        tracing::warn!("{TOKEN_VAR} is not set: using the demo token from the source");
        DEMO_TOKEN.to_owned()
    });
    let server_slot = Arc::new(OnceLock::new());
    let volley = Volley::builder()
        .namespace("/", public_namespace())
        .namespace(
            "/admin",
            admin_namespace(token.clone(), server_slot.clone()),
        )
        .build();
    let _ = server_slot.set(volley.clone());
    let server = examples::serve(&volley, &args)?;
    println!("admin server listening on {}", server.url);

    if let Some(url) = server.demo_url() {
        demo(url, &token).await?;
    }
    let how_to_connect = format!(
        "  let client = volley::client::Client::connect(\"{}\").await?;\n  \
         let public = client.join(\"/\", &()).await?; // event: hello (ack)\n  \
         let auth = json!({{\"token\": <${TOKEN_VAR} or {DEMO_TOKEN:?}>, \"name\": \"you\"}});\n  \
         let admin = client.join(\"/admin\", &auth).await?; // events: whoami, sessions, kick",
        server.url
    );
    server.stop_or_serve(args.once, &how_to_connect).await?;
    Ok(())
}
