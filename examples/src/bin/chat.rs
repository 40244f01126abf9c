//! Chat with rooms: join and leave rooms, talk to one room, list the rooms, list who
//! is in a room (the names the sockets shared, `share_data` and `fetch_sockets`),
//! close a room (everyone in it leaves, with one operation on the room's sockets).
//!
//! A room is a named group of sockets inside a namespace. `socket.join(room)` puts a
//! socket in it (the room exists while it has members); `socket.to(room).emit(..)`
//! sends to every member but the sender, and the payload is encoded once whatever
//! the number of members.
//!
//! Run: `cargo run -p examples --bin chat` (add `-- --once` to run the demo and exit).

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use volley::client::{Client, NamespaceClient};
use volley::{AckReply, Namespace, SessionId, Socket, Volley};

/// Who a chat user is. The connect middleware builds it from the client's auth
/// payload, once; every handler reads it back with `socket.data::<User>()`.
struct User {
    name: String,
}

/// What a client says to a room, and what the room's members receive.
#[derive(Serialize, Deserialize)]
struct Say {
    room: String,
    text: String,
}

#[derive(Serialize, Deserialize)]
struct Message {
    room: String,
    from: String,
    text: String,
}

/// Who is in which room, as the chat's handlers see it: `say` checks membership
/// without waiting (`socket.rooms()` is async), and a client that goes away is
/// announced in the rooms it was in. Updated by the same handlers as the rooms
/// themselves. (The room list the clients ask for comes from Volley itself:
/// `NamespaceRef::rooms`, on every node of a cluster.)
#[derive(Default)]
struct Directory(Mutex<BTreeMap<String, BTreeSet<SessionId>>>);

impl Directory {
    fn rooms(&self) -> MutexGuard<'_, BTreeMap<String, BTreeSet<SessionId>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn is_member(&self, room: &str, id: SessionId) -> bool {
        self.rooms().get(room).is_some_and(|m| m.contains(&id))
    }

    fn join(&self, room: &str, id: SessionId) {
        self.rooms().entry(room.to_owned()).or_default().insert(id);
    }

    fn leave(&self, room: &str, id: SessionId) {
        let mut rooms = self.rooms();
        if let Some(members) = rooms.get_mut(room) {
            members.remove(&id);
            if members.is_empty() {
                rooms.remove(room);
            }
        }
    }

    /// Takes `id` out of every room; returns the rooms it was in.
    fn leave_all(&self, id: SessionId) -> Vec<String> {
        let was_in: Vec<String> = self
            .rooms()
            .iter()
            .filter(|(_, m)| m.contains(&id))
            .map(|(r, _)| r.clone())
            .collect();
        for room in &was_in {
            self.leave(room, id);
        }
        was_in
    }
}

fn name(socket: &Socket) -> String {
    socket.data::<User>().map_or("?".into(), |u| u.name.clone())
}

/// Tells the other members of `room` that something happened.
fn notice(socket: &Socket, room: &str, text: String) {
    let _ = socket.to(room).emit("notice", &text);
}

/// Answers `ack` with the rooms `socket` is in, as Volley sees them. Handlers are
/// plain functions and `socket.rooms()` is async, so it is spawned. (It already
/// includes a room joined just before: the join went ahead of it.)
fn answer_with_rooms(socket: &Socket, ack: AckReply) {
    let socket = socket.clone();
    actix_rt::spawn(async move {
        let _ = ack.send(&socket.rooms().await);
    });
}

fn chat_namespace() -> Namespace {
    let dir = Arc::new(Directory::default());
    let (on_join, on_leave, on_say, on_close, on_gone) =
        (dir.clone(), dir.clone(), dir.clone(), dir.clone(), dir);
    Namespace::new()
        // Refuse clients without a name; the client's `join` fails with this reason.
        .authorize(|hs| {
            #[derive(Deserialize)]
            struct Auth {
                name: String,
            }
            match hs.auth::<Option<Auth>>()? {
                Some(auth) if !auth.name.trim().is_empty() => Ok(User { name: auth.name }),
                _ => Err("pick a name: join /chat with {\"name\": \"...\"}".to_owned()),
            }
        })
        // What `fetch_sockets` shows of this socket, on every node: its name.
        .on_connect(|socket| {
            let _ = socket.share_data(&name(socket));
        })
        .on_ack("join", move |socket, room: String, ack| {
            socket.join(&room);
            on_join.join(&room, socket.id());
            notice(socket, &room, format!("{} joined {room}", name(socket)));
            answer_with_rooms(socket, ack);
        })
        .on_ack("leave", move |socket, room: String, ack| {
            socket.leave(&room);
            on_leave.leave(&room, socket.id());
            notice(socket, &room, format!("{} left {room}", name(socket)));
            answer_with_rooms(socket, ack);
        })
        .on("say", move |socket, say: Say| {
            if !on_say.is_member(&say.room, socket.id()) {
                let _ = socket.emit("notice", &format!("join {} before talking there", say.room));
                return;
            }
            let message = Message {
                from: name(socket),
                room: say.room,
                text: say.text,
            };
            let _ = socket.to(&message.room).emit("message", &message);
        })
        // Who is in a room: the names its sockets shared (on every node of a
        // cluster), sorted.
        .on_ack("who", |socket, room: String, ack| {
            let room = socket.namespace_ref().to(&room);
            actix_rt::spawn(async move {
                let found = room.fetch_sockets().await;
                let mut names: Vec<String> = (found.iter())
                    .filter_map(|s| s.data_as::<String>()?.ok())
                    .collect();
                names.sort();
                let _ = ack.send(&names);
            });
        })
        // The room list, from the namespace itself (async: spawned).
        .on_ack("rooms", |socket, (): (), ack| {
            let chat = socket.namespace_ref();
            actix_rt::spawn(async move {
                let _ = ack.send(&chat.rooms().await);
            });
        })
        // Everyone leaves the room: the other members with one operation on the
        // room's sockets (on every node of a cluster), the closer as for `leave`.
        // The ack answers how many others were in it.
        .on_ack("close", move |socket, room: String, ack| {
            if !on_close.is_member(&room, socket.id()) {
                let _ = ack.send(&0);
                return;
            }
            notice(socket, &room, format!("{} closed {room}", name(socket)));
            let (socket, dir) = (socket.clone(), on_close.clone());
            actix_rt::spawn(async move {
                let others = socket.to(&room).sockets_leave(&room).await;
                socket.leave(&room);
                for id in others.iter().copied().chain([socket.id()]) {
                    dir.leave(&room, id);
                }
                let _ = ack.send(&others.len());
            });
        })
        // A client that goes away leaves its rooms; tell who stays.
        .on_disconnect(move |socket, reason| {
            for room in on_gone.leave_all(socket.id()) {
                notice(
                    socket,
                    &room,
                    format!("{} left {room} ({reason})", name(socket)),
                );
            }
        })
}

const WAIT: Duration = examples::SCRIPT_WAIT;

/// Connects a user called `name` to `/chat`.
async fn user(url: &str, name: &str) -> Result<(Client, NamespaceClient), Box<dyn Error>> {
    let client = Client::connect(url).await?;
    let chat = client
        .join("/chat", &serde_json::json!({ "name": name }))
        .await?;
    Ok((client, chat))
}

async fn join(chat: &NamespaceClient, who: &str, room: &str) -> Result<(), Box<dyn Error>> {
    let mine: Vec<String> = chat.emit_with_ack("join", &room, WAIT).await?;
    println!("{who} joined {room}; {who} is in {mine:?}");
    Ok(())
}

async fn print_rooms(chat: &NamespaceClient) -> Result<(), Box<dyn Error>> {
    let rooms: BTreeMap<String, usize> = chat.emit_with_ack("rooms", &(), WAIT).await?;
    let list: Vec<String> = rooms.iter().map(|(r, n)| format!("{r} ({n})")).collect();
    println!("room list: {}", list.join(", "));
    Ok(())
}

/// Prints the next event `who` receives.
async fn show_next(chat: &mut NamespaceClient, who: &str) -> Result<(), Box<dyn Error>> {
    let event = examples::next_event(chat).await?;
    match event.name.as_str() {
        "message" => {
            let m: Message = event.decode()?;
            println!("{who} received in {}: {}: {}", m.room, m.from, m.text);
        }
        _ => println!(
            "{who} received {}: {}",
            event.name,
            event.decode::<String>()?
        ),
    }
    Ok(())
}

/// Three users, two rooms: what each of them sees.
async fn demo(url: &str) -> Result<(), Box<dyn Error>> {
    let nameless = Client::connect(url).await?;
    if let Err(e) = nameless.join("/chat", &()).await {
        println!("a client without a name is refused: {e}");
    }
    nameless.close().await;

    let (ann, mut ann_chat) = user(url, "ann").await?;
    let (bob, mut bob_chat) = user(url, "bob").await?;
    let (cat, mut cat_chat) = user(url, "cat").await?;

    join(&ann_chat, "ann", "lobby").await?;
    join(&bob_chat, "bob", "lobby").await?;
    show_next(&mut ann_chat, "ann").await?; // bob joined lobby
    join(&cat_chat, "cat", "games").await?;
    print_rooms(&cat_chat).await?;
    let who: Vec<String> = cat_chat.emit_with_ack("who", &"lobby", WAIT).await?;
    println!("in lobby: {}", who.join(", "));

    // Only the other members of the room get it: bob, not ann (the sender) nor cat.
    ann_chat.emit(
        "say",
        &Say {
            room: "lobby".into(),
            text: "hi all".into(),
        },
    )?;
    show_next(&mut bob_chat, "bob").await?;

    // cat is not in the lobby: the server says so instead of relaying.
    cat_chat.emit(
        "say",
        &Say {
            room: "lobby".into(),
            text: "psst".into(),
        },
    )?;
    show_next(&mut cat_chat, "cat").await?;

    let left: Vec<String> = bob_chat.emit_with_ack("leave", &"lobby", WAIT).await?;
    println!("bob left lobby; bob is in {left:?}");
    show_next(&mut ann_chat, "ann").await?; // bob left lobby
    print_rooms(&cat_chat).await?;

    // cat closes games: ann, who joined it, is taken out with cat.
    join(&ann_chat, "ann", "games").await?;
    show_next(&mut cat_chat, "cat").await?; // ann joined games
    let closed: usize = cat_chat.emit_with_ack("close", &"games", WAIT).await?;
    println!("cat closed games: {closed} other member(s) left it");
    show_next(&mut ann_chat, "ann").await?; // cat closed games
    let mine: Vec<String> = ann_chat.emit_with_ack("leave", &"nowhere", WAIT).await?;
    println!("ann is in {mine:?}");
    print_rooms(&cat_chat).await?;

    for client in [ann, bob, cat] {
        client.close().await;
    }
    Ok(())
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = examples::Args::parse("127.0.0.1:8080");
    examples::init_logs();

    let volley = Volley::builder()
        .namespace("/chat", chat_namespace())
        .build();
    let server = examples::serve(&volley, &args)?;
    println!("chat server listening on {}", server.url);

    if let Some(url) = server.demo_url() {
        demo(url).await?;
    }
    let how_to_connect = format!(
        "  let client = volley::client::Client::connect(\"{}\").await?;\n  \
         let chat = client.join(\"/chat\", &json!({{\"name\": \"zoe\"}})).await?;\n  \
         events: join, leave (a room; ack: your rooms), say {{room, text}}, rooms (ack), \
         close (a room you are in; ack: how many others left it)",
        server.url
    );
    server.stop_or_serve(args.once, &how_to_connect).await?;
    Ok(())
}
