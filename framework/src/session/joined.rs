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

/// The joined namespaces, by name, in the order joined. A session joins a handful at
/// most (`max_namespaces_per_session`), so a list searched in order is smaller than a
/// map and as fast. Most join one: the first is kept in place (in the session's sink,
/// on the line an event reads anyway), the others in a boxed slice exactly as long as
/// they are (a join or a leave builds it again: rare).
#[derive(Default)]
pub(super) struct Joins {
    /// `None` only while none is joined.
    first: Option<Joined>,
    rest: Box<[Joined]>,
}

impl Joins {
    pub fn get(&self, ns: &str) -> Option<&Joined> {
        self.values().find(|j| &*j.namespace.name == ns)
    }

    pub fn get_mut(&mut self, ns: &str) -> Option<&mut Joined> {
        self.first
            .iter_mut()
            .chain(self.rest.iter_mut())
            .find(|j| &*j.namespace.name == ns)
    }

    pub fn contains_key(&self, ns: &str) -> bool {
        self.get(ns).is_some()
    }

    pub fn remove(&mut self, ns: &str) -> Option<Joined> {
        let at = self.values().position(|j| &*j.namespace.name == ns)?;
        let mut list: Vec<Joined> = self.drain().collect();
        let joined = list.remove(at);
        let mut others = list.into_iter();
        self.first = others.next();
        self.rest = others.collect();
        Some(joined)
    }

    /// Adds a namespace the session is not in yet.
    pub fn insert(&mut self, joined: Joined) {
        if self.first.is_none() {
            self.first = Some(joined);
            return;
        }
        let mut rest = std::mem::take(&mut self.rest).into_vec();
        rest.reserve_exact(1);
        rest.push(joined);
        self.rest = rest.into_boxed_slice();
    }

    pub fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    pub fn values(&self) -> impl Iterator<Item = &Joined> {
        self.first.iter().chain(self.rest.iter())
    }

    /// Takes every joined namespace out, in order.
    pub fn drain(&mut self) -> impl Iterator<Item = Joined> {
        let rest = std::mem::take(&mut self.rest).into_vec();
        self.first.take().into_iter().chain(rest)
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
