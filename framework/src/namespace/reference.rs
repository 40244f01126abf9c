//! [`NamespaceRef`]: a namespace as code outside its handlers (and a handler, through
//! `Socket::namespace_ref`) reaches it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Broadcast, ListRooms, NamespaceHandle, NamespaceStats, Stats, Target};
use crate::EmitError;

/// A namespace seen from outside its handlers: a timer, an HTTP route or another
/// namespace emits through it.
///
/// ```no_run
/// use std::time::Duration;
/// use volley::{Namespace, Volley};
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     let volley = Volley::builder().namespace("/news", Namespace::new()).build();
///     let news = volley.of("/news").expect("declared above");
///     actix_web::rt::spawn(async move {
///         let mut every = actix_web::rt::time::interval(Duration::from_secs(60));
///         loop {
///             every.tick().await;
///             let _ = news.to("subscribers").emit("tick", &"a minute passed");
///         }
///     });
///     volley.serve(("127.0.0.1", 8080)).await
/// }
/// ```
#[derive(Clone)]
pub struct NamespaceRef {
    handle: NamespaceHandle,
}

impl NamespaceRef {
    pub(crate) fn new(handle: NamespaceHandle) -> Self {
        NamespaceRef { handle }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.handle.name
    }

    /// A broadcast to the whole namespace; narrow it with `to`/`except`.
    pub fn broadcast(&self) -> Broadcast {
        Broadcast::new(
            self.handle.name.clone(),
            actix::Addr::clone(&self.handle.addr),
            self.handle.broadcasts.clone(),
            Target::default(),
        )
    }

    /// A broadcast to the members of `room`.
    pub fn to(&self, room: &str) -> Broadcast {
        self.broadcast().to(room)
    }

    /// Sends an event to every socket of the namespace.
    pub fn emit<T: Serialize>(&self, event: &str, payload: &T) -> Result<(), EmitError> {
        self.broadcast().emit(event, payload)
    }

    /// Sockets and rooms in the namespace right now (on this node).
    pub async fn stats(&self) -> NamespaceStats {
        self.handle.addr.send(Stats).await.unwrap_or_default()
    }

    /// The namespace's rooms with their members, by name: on every node of a
    /// cluster, the members of each node added up (a node that does not answer
    /// within 2 s is left out). For a lobby's room list.
    ///
    /// ```
    /// use volley::NamespaceRef;
    ///
    /// /// "lobby (3), table-7 (2)"
    /// async fn room_list(chat: &NamespaceRef) -> String {
    ///     let rooms = chat.rooms().await;
    ///     let shown: Vec<String> = rooms.iter().map(|(r, n)| format!("{r} ({n})")).collect();
    ///     shown.join(", ")
    /// }
    /// ```
    pub async fn rooms(&self) -> BTreeMap<String, usize> {
        let ask = ListRooms { here_only: false };
        self.handle.addr.send(ask).await.unwrap_or_default()
    }
}
