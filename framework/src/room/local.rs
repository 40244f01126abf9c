//! Delivery by thread: one message per thread per broadcast, not one per recipient.
//!
//! Every thread that runs sessions has one [`LocalDelivery`] actor and a registry of
//! its sessions' delivery ends ([`LocalSink`], keyed by [`LocalKey`]). A room keeps its
//! members grouped by the thread their session runs on; a broadcast posts one
//! [`LocalFanout`] to each of those threads, carrying the frame (framed once, shared)
//! and the group. On the thread, the fan-out hands the frame to each member's sink in
//! turn, in one pass: the session's outbox and its connection's queue are reached
//! directly, with no actor message, mailbox or task wake-up per recipient.
//!
//! Bounds: a `LocalFanout` holds its broadcast's [`Ticket`] until every thread has
//! handled it, so a thread's queue of fan-outs is bounded by the broadcasts its
//! namespaces admit (`Config::max_mailbox` each). Per recipient, what is queued is
//! bounded where it always was: the outbox and the connection's send backlog.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use actix::prelude::*;
use slotmap::SlotMap;

use super::{Deliver, Mailbox, Ticket};
use crate::SessionId;

slotmap::new_key_type! {
    /// A session's place in its thread's registry.
    pub struct LocalKey;
}

/// A session's delivery end, as its thread's fan-outs reach it.
pub trait LocalSink {
    /// Takes one delivery (a broadcast's frame); never blocks.
    fn deliver(&self, deliver: &Deliver);
}

thread_local! {
    static SINKS: RefCell<SlotMap<LocalKey, Rc<dyn LocalSink>>> = RefCell::new(SlotMap::with_key());
    static DELIVERY: RefCell<Option<ThreadAddr>> = const { RefCell::new(None) };
}

/// A thread's delivery actor, as its sessions' routes and the rooms' groups hold it:
/// one per thread, shared, where a copy of an actix address per session would
/// allocate its sender cells (~100 bytes) for every idle connection.
pub type ThreadAddr = Arc<DeliveryThread>;

/// A thread's delivery actor, and the way to wake the thread from an io window's
/// sleep (`Config::io_window`) when it has one.
pub struct DeliveryThread {
    addr: Addr<LocalDelivery>,
    waking: Option<Arc<crate::pacing::Waking>>,
}

impl DeliveryThread {
    /// Posts `msg` to the thread's delivery actor, and wakes the thread if it sleeps
    /// out an io window: deliveries do not wait for the window.
    pub fn post<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        LocalDelivery: Handler<M>,
    {
        self.addr.do_send(msg);
        if let Some(waking) = &self.waking {
            waking.wake();
        }
    }
}

impl PartialEq for DeliveryThread {
    fn eq(&self, other: &Self) -> bool {
        self.addr == other.addr
    }
}

/// Where a session's deliveries go by thread: the thread's actor and the session's key.
#[derive(Clone)]
pub struct LocalRoute {
    /// The delivery actor of the thread the session runs on.
    pub thread: ThreadAddr,
    /// The session's sink among that thread's sinks.
    pub key: LocalKey,
}

/// Registers a session's sink on the current thread (which must run an actix
/// arbiter), starting the thread's [`LocalDelivery`] on first use.
pub fn register(sink: Rc<dyn LocalSink>) -> LocalRoute {
    let thread = DELIVERY.with(|d| {
        d.borrow_mut()
            .get_or_insert_with(|| {
                Arc::new(DeliveryThread {
                    addr: LocalDelivery.start(),
                    waking: crate::pacing::waking(),
                })
            })
            .clone()
    });
    let key = SINKS.with(|s| s.borrow_mut().insert(sink));
    LocalRoute { thread, key }
}

/// Forgets a sink (its session stopped); fan-outs still on their way skip it.
pub fn unregister(key: LocalKey) {
    // The sink is dropped after the registry lets go of it.
    let _sink = SINKS.with(|s| s.borrow_mut().remove(key));
}

/// The fan-out of one thread.
pub struct LocalDelivery;

impl Actor for LocalDelivery {
    type Context = Context<Self>;
}

/// One member of a thread's group.
pub type LocalMember = (SessionId, LocalKey);

/// Members of one fan-out on one thread from which the thread copies the frame for
/// itself ([`Deliver::own_copy`]): below it the copy costs more than the shared
/// reference count it spares.
const OWN_COPY_AT: usize = 16;

/// One broadcast for the members of a group that run on this thread.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LocalFanout {
    /// The frame, encoded once for every member.
    pub deliver: Deliver,
    /// The group's members on this thread (shared with the room until it changes).
    pub members: Arc<Vec<LocalMember>>,
    /// A member left out (the sender of a `socket.to(room)` broadcast).
    pub except: Option<SessionId>,
    /// The broadcast's place in its namespace's gauge, shared by its threads.
    pub ticket: Arc<Ticket>,
}

impl Handler<LocalFanout> for LocalDelivery {
    type Result = ();

    fn handle(&mut self, msg: LocalFanout, _: &mut Context<Self>) {
        // Many members here: the frame's bytes of this thread's own, so that their
        // clones and drops (send queue, outbox) stay on this core's cache line.
        let deliver = if msg.members.len() >= OWN_COPY_AT {
            msg.deliver.own_copy()
        } else {
            msg.deliver
        };
        for (id, key) in msg.members.iter() {
            if Some(*id) == msg.except {
                continue;
            }
            // Taken out of the registry first: a sink may (un)register others.
            if let Some(sink) = SINKS.with(|s| s.borrow().get(*key).cloned()) {
                sink.deliver(&deliver);
            }
        }
    }
}

/// Several fan-outs for one thread, posted as one message: the states a game thread's
/// rooms sent in one tick (see `game/room/outbound.rs`), so the thread is woken once
/// per tick rather than once per room.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LocalFanouts(pub Vec<LocalFanout>);

impl Handler<LocalFanouts> for LocalDelivery {
    type Result = ();

    fn handle(&mut self, msg: LocalFanouts, ctx: &mut Context<Self>) {
        for fanout in msg.0 {
            self.handle(fanout, ctx);
        }
    }
}

/// Told once a message sent down every path of a session's broadcasts (one per
/// namespace it is in) has come out at its thread: each holder drops its share
/// where its path ends, and the last one to go sends. A fan-out posted on a path before the message is handled
/// before it (one actor's mailbox is first in, first out), so by then every
/// broadcast handled upstream has reached the session's sink. Dropped unhandled
/// (an actor that stopped) counts as through: that path carries nothing more.
///
/// A session moving between nodes (feature `cluster`) waits for it before it
/// closes its window of broadcasts (`session/window.rs`).
pub struct Flushed(Option<tokio::sync::oneshot::Sender<()>>);

impl Flushed {
    /// A flush to send down the paths, and its end.
    pub fn start() -> (Arc<Flushed>, tokio::sync::oneshot::Receiver<()>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (Arc::new(Flushed(Some(tx))), rx)
    }
}

impl Drop for Flushed {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// A flush reaching a thread after the fan-outs posted to it before.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PassedBy(pub Arc<Flushed>);

impl Handler<PassedBy> for LocalDelivery {
    type Result = ();

    fn handle(&mut self, _: PassedBy, _: &mut Context<Self>) {
        // Its share of the flush is dropped here: the path is clear.
    }
}

/// Recipients of one broadcast, gathered by thread (a namespace-wide or several-room
/// broadcast, whose recipients are picked per broadcast).
#[derive(Default)]
pub struct Scatter {
    groups: Vec<(ThreadAddr, Vec<LocalMember>)>,
    /// How many recipients a thread's list is made for at once.
    expected: usize,
}

impl Scatter {
    /// A scatter for about `recipients` recipients: each thread's list is made that
    /// large at once instead of grown one recipient at a time.
    pub fn with_capacity(recipients: usize) -> Self {
        Scatter {
            groups: Vec::new(),
            expected: recipients,
        }
    }

    /// Adds one recipient.
    pub fn add(&mut self, id: SessionId, mailbox: &Mailbox) {
        let route = mailbox.route();
        match self.groups.iter_mut().find(|(t, _)| *t == route.thread) {
            Some((_, members)) => members.push((id, route.key)),
            None => {
                let mut members = Vec::with_capacity(self.expected.max(1));
                members.push((id, route.key));
                self.groups.push((route.thread.clone(), members));
            }
        }
    }

    /// Posts one fan-out per thread, each holding `ticket` until it is handled.
    pub fn send(self, deliver: &Deliver, ticket: &Arc<Ticket>) {
        self.send_via(deliver, ticket, |thread, fanout| thread.post(fanout));
    }

    /// Hands one fan-out per thread to `post` (which may gather them before posting).
    pub fn send_via(
        self,
        deliver: &Deliver,
        ticket: &Arc<Ticket>,
        mut post: impl FnMut(&ThreadAddr, LocalFanout),
    ) {
        for (thread, members) in self.groups {
            let fanout = LocalFanout {
                deliver: deliver.clone(),
                members: Arc::new(members),
                except: None,
                ticket: ticket.clone(),
            };
            post(&thread, fanout);
        }
    }
}

/// A room's members, kept grouped by thread between broadcasts.
#[derive(Default)]
pub struct Groups {
    groups: Vec<(ThreadAddr, Arc<Vec<LocalMember>>)>,
}

impl Groups {
    /// Adds a member to its thread's group (the caller keeps the room idempotent).
    pub fn add(&mut self, id: SessionId, route: &LocalRoute) {
        match self.groups.iter_mut().find(|(t, _)| *t == route.thread) {
            // A fan-out still on its way keeps the old list: copied on write.
            Some((_, members)) => Arc::make_mut(members).push((id, route.key)),
            None => self
                .groups
                .push((route.thread.clone(), Arc::new(vec![(id, route.key)]))),
        }
    }

    /// Removes a member from its thread's group, and the group once it is empty.
    pub fn remove(&mut self, id: SessionId, route: &LocalRoute) {
        if let Some(i) = self.groups.iter().position(|(t, _)| *t == route.thread) {
            let members = Arc::make_mut(&mut self.groups[i].1);
            if let Some(at) = members.iter().position(|(m, _)| *m == id) {
                members.swap_remove(at);
            }
            if members.is_empty() {
                self.groups.swap_remove(i);
            }
        }
    }

    /// Posts one fan-out per thread.
    pub fn send(&self, deliver: &Deliver, except: Option<SessionId>, ticket: Ticket) {
        let ticket = Arc::new(ticket);
        for (thread, members) in &self.groups {
            post(thread, deliver, members.clone(), except, &ticket);
        }
    }
}

fn post(
    thread: &DeliveryThread,
    deliver: &Deliver,
    members: Arc<Vec<LocalMember>>,
    except: Option<SessionId>,
    ticket: &Arc<Ticket>,
) {
    thread.post(LocalFanout {
        deliver: deliver.clone(),
        members,
        except,
        ticket: ticket.clone(),
    });
}
