//! The namespaces a session has joined, each as a [`Socket`] with its watchers.

use actix::prelude::*;

use super::authorizing::Authorizing;
use crate::namespace::{self, NamespaceHandle, Socket, SocketEvent, SocketEventKind};
use crate::DisconnectReason;

/// The session's namespaces: those joined and those waiting for their middleware.
/// Kept in the session's sink (see [`super::outlet::Sink`]), not in its actor, so
/// that its connection can hand an event to its socket where the frame is read (see
/// [`super::inbound`]).
#[derive(Default)]
pub(super) struct Sockets {
    pub joined: Joins,
    pub authorizing: Authorizing,
}

pub(super) struct Joined {
    pub socket: Socket,
    pub namespace: NamespaceHandle,
    /// Who to tell about detach, resume and leave (see [`Socket::watch`]).
    pub watchers: Vec<Recipient<SocketEvent>>,
    /// The `auth` payload the client joined with: a session moved to another node
    /// runs the namespace's middleware again with it. Kept only where sessions can
    /// move (feature `cluster`).
    #[cfg(feature = "cluster")]
    pub auth: Vec<u8>,
}

impl Joined {
    /// Once per detach, resume or leave: the connection's lifetime sets the rate.
    pub fn notify(&self, kind: &SocketEventKind) {
        for watcher in &self.watchers {
            watcher.do_send(SocketEvent {
                id: self.socket.id(),
                namespace: self.socket.ns_arc(),
                kind: kind.clone(),
            });
        }
    }
}

/// The joined namespaces, by name. A session joins a handful at most
/// (`max_namespaces_per_session`), so a list searched in order is smaller than a map
/// and as fast. A boxed slice, exactly as long as the list, not a `Vec`: a join or a
/// leave builds the list again (rare), and the session's actor, allocated in 128-byte
/// steps, carries 8 bytes less.
#[derive(Default)]
pub(super) struct Joins(Box<[Joined]>);

impl Joins {
    pub fn get(&self, ns: &str) -> Option<&Joined> {
        self.0.iter().find(|j| &*j.namespace.name == ns)
    }

    pub fn get_mut(&mut self, ns: &str) -> Option<&mut Joined> {
        self.0.iter_mut().find(|j| &*j.namespace.name == ns)
    }

    pub fn contains_key(&self, ns: &str) -> bool {
        self.get(ns).is_some()
    }

    pub fn remove(&mut self, ns: &str) -> Option<Joined> {
        let at = self.0.iter().position(|j| &*j.namespace.name == ns)?;
        let mut list = std::mem::take(&mut self.0).into_vec();
        let joined = list.remove(at);
        self.0 = list.into_boxed_slice();
        Some(joined)
    }

    /// Adds a namespace the session is not in yet.
    pub fn insert(&mut self, joined: Joined) {
        let mut list = std::mem::take(&mut self.0).into_vec();
        list.reserve_exact(1);
        list.push(joined);
        self.0 = list.into_boxed_slice();
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn values(&self) -> impl Iterator<Item = &Joined> {
        self.0.iter()
    }

    /// Takes every joined namespace out, in order.
    pub fn drain(&mut self) -> impl Iterator<Item = Joined> {
        std::mem::take(&mut self.0).into_vec().into_iter()
    }
}

/// Takes a socket out of its namespace, runs the disconnect hook and tells the
/// socket's watchers.
pub(super) fn leave(joined: Joined, reason: &DisconnectReason) {
    joined.notify(&SocketEventKind::Left(reason.clone()));
    // Once per namespace left, like `AddSocket`.
    joined.namespace.addr.do_send(namespace::RemoveSocket {
        id: joined.socket.id(),
    });
    if let Some(hook) = &joined.namespace.spec.on_disconnect {
        hook(&joined.socket, reason);
    }
}
