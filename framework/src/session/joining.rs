//! Joining a namespace: the client's `Connect`, the namespace's middleware (now or
//! later, see `authorizing`), and the join itself — the socket, its place in the
//! namespace, the session list — before the client hears `Connected`.

use std::sync::Arc;

use actix::prelude::*;

use futures_util::future::{FutureExt, LocalBoxFuture};

use super::outlet::Link;
use super::{supervisor, Joined, Session};
use crate::namespace::{self, Authorization, NamespaceHandle, SessionLink, Socket};
use crate::protocol::Frame;

/// What a join waiting for the cluster holds until its socket is added.
#[cfg(feature = "cluster")]
type SubscribeWait = namespace::Subscribing;
/// Nothing: a single node's joins do not wait.
#[cfg(not(feature = "cluster"))]
enum SubscribeWait {}

impl Session {
    /// The client asks to join namespace `ns` with its auth payload (JSON).
    pub(super) fn connect(&mut self, ns: String, auth: &[u8], ctx: &mut Context<Self>) {
        let shared = self.shared.clone();
        let refuse = |reason: String| {
            shared.metrics.namespace_connect("refused");
            Frame::ConnectError {
                ns: ns.clone(),
                reason,
            }
        };
        let refused = {
            let sockets = self.sink.sockets.borrow();
            let asked = sockets.joined.len() + sockets.authorizing.len();
            if sockets.joined.contains_key(ns.as_str()) {
                Some(format!("already connected to '{ns}'"))
            } else if sockets.authorizing.contains(&ns) {
                Some(format!("already connecting to '{ns}'"))
            } else if asked >= self.shared.config.max_namespaces_per_session {
                Some("too many namespaces for one session".to_owned())
            } else {
                None
            }
        };
        if let Some(reason) = refused {
            return self.send_frame(&refuse(reason), ctx);
        }
        let Some(namespace) = self.shared.namespace(&ns) else {
            return self.send_frame(&refuse(format!("unknown namespace '{ns}'")), ctx);
        };
        let Some(link) = self.ids.clone() else {
            return;
        };
        let answer = match namespace.authorize(link.id, self.client_address(), auth) {
            Authorization::Now(answer) if !self.joins_wait_for_cluster() => {
                let auth = self.kept_auth(auth);
                return self.answered(namespace, link, answer, auth, ctx);
            }
            Authorization::Now(answer) => Box::pin(futures_util::future::ready(answer)),
            Authorization::Later(answer) => answer,
        };
        let auth = self.kept_auth(auth);
        let waiting = ns.clone();
        let answer = self.then_subscribed(&namespace, answer);
        // Spawned, not awaited: the session goes on meanwhile.
        let answer = ctx.spawn(
            answer
                .into_actor(self)
                .map(move |(answer, _wait), act, ctx| {
                    let waited = act.sink.sockets.borrow_mut().authorizing.remove(&ns);
                    let held = waited.map(|(_, held)| held);
                    act.answered(namespace, link, answer, auth, ctx);
                    act.handle_held(held.unwrap_or_default(), ctx);
                    // `_wait` goes here, after the socket's `AddSocket`: the socket
                    // holds the namespace's channel from then.
                }),
        );
        self.sink
            .sockets
            .borrow_mut()
            .authorizing
            .insert(waiting, answer);
    }

    /// Whether a join waits for the cluster before the client hears `Connected` (a
    /// node of a cluster: see `namespace::Subscribe`).
    fn joins_wait_for_cluster(&self) -> bool {
        #[cfg(feature = "cluster")]
        if self.shared.cluster.is_some() {
            return true;
        }
        false
    }

    /// The middleware's `answer`, then, on a node of a cluster and if it lets the
    /// client in, the wait for the namespace's channel (what the wait holds comes
    /// with the answer, to be dropped once the socket is added). Events the client
    /// sends to the namespace meanwhile are held as for an asynchronous middleware.
    fn then_subscribed(
        &self,
        #[cfg_attr(not(feature = "cluster"), allow(unused_variables))] namespace: &NamespaceHandle,
        answer: LocalBoxFuture<'static, Result<namespace::SocketData, String>>,
    ) -> LocalBoxFuture<'static, (Result<namespace::SocketData, String>, Option<SubscribeWait>)>
    {
        #[cfg(feature = "cluster")]
        if self.joins_wait_for_cluster() {
            let addr = namespace.addr.clone();
            return Box::pin(async move {
                let answer = answer.await;
                if answer.is_err() {
                    return (answer, None);
                }
                let (ready, subscribed) = tokio::sync::oneshot::channel();
                addr.do_send(namespace::Subscribe { ready });
                let wait = namespace::Subscribing(addr);
                // Dropped unanswered only if the actor stopped: nothing to wait for.
                let _ = subscribed.await;
                (answer, Some(wait))
            });
        }
        Box::pin(FutureExt::map(answer, |answer| (answer, None)))
    }

    /// The address of the client's connection, if one is attached and its address is
    /// known.
    fn client_address(&self) -> Option<std::net::IpAddr> {
        match &self.sink.outlet.borrow().link {
            Link::Attached(link) => link.address,
            Link::Detached { .. } => None,
        }
    }

    /// The auth payload to keep with a joined namespace: a session of a node in a
    /// cluster may move, and its new node runs the middleware again with it; a single
    /// node keeps nothing.
    fn kept_auth(&self, auth: &[u8]) -> Vec<u8> {
        #[cfg(feature = "cluster")]
        if self.shared.cluster.is_some() {
            return auth.to_vec();
        }
        let _ = auth;
        Vec::new()
    }

    /// The namespace's middleware answered: join, or tell the client why not.
    pub(super) fn answered(
        &mut self,
        namespace: NamespaceHandle,
        link: Arc<SessionLink>,
        answer: Result<namespace::SocketData, String>,
        #[cfg_attr(not(feature = "cluster"), allow(unused_variables))] auth: Vec<u8>,
        ctx: &mut Context<Self>,
    ) {
        if self.ended() {
            return;
        }
        let ns = namespace.name.to_string();
        let data = match answer {
            Ok(data) => data,
            Err(reason) => {
                tracing::info!(sid = link.id.0, ns = %ns, %reason, "namespace refused client");
                self.shared.metrics.namespace_connect("unauthorized");
                return self.send_frame(&Frame::ConnectError { ns, reason }, ctx);
            }
        };
        self.shared.metrics.namespace_connect("ok");
        let socket = Socket::new(&namespace, link.clone(), data);
        // One per namespace joined: bounded by this session's mailbox of frames.
        namespace.addr.do_send(namespace::AddSocket {
            id: link.id,
            recipient: link.deliver.clone(),
            #[cfg(feature = "cluster")]
            effective: None,
        });
        self.sink.sockets.borrow_mut().joined.insert(Joined {
            socket,
            namespace,
            watchers: Vec::new(),
            #[cfg(feature = "cluster")]
            auth,
        });
        // Listed before the client hears of its join (the session list has it then).
        self.publish_namespaces();
        self.send_frame(&Frame::Connected { ns: ns.clone() }, ctx);
        if let Some(joined) = self.sink.sockets.borrow().joined.get(&ns) {
            if let Some(hook) = &joined.namespace.spec.on_connect {
                hook(&joined.socket);
            }
        }
    }

    pub(super) fn publish_namespaces(&self) {
        let mut namespaces: Vec<Arc<str>> = self
            .sink
            .sockets
            .borrow()
            .joined
            .values()
            .map(|j| j.namespace.name.clone())
            .collect();
        namespaces.sort();
        // One per namespace connect or disconnect the session handles (its frames
        // are bounded by its mailbox and handled one at a time).
        self.shared.supervisor.do_send(supervisor::SetNamespaces {
            id: self.id(),
            namespaces: namespaces.into_boxed_slice(),
        });
    }
}
