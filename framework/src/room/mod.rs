//! Rooms: named groups of sockets inside a namespace, and the fan-out of broadcasts.
//!
//! Each room is an actor placed on one of the room arbiters (one per core). A
//! broadcast arrives here already encoded and framed ([`WireFrame`]); the room keeps
//! its members grouped by the thread their session runs on and posts one message per
//! thread (see [`local`]), whatever the number of members.
//! Every post on this path is bounded (see [`Mailbox`], [`Gauge`] and [`Ticket`]).

pub mod local;
mod mailbox;

use std::collections::HashMap;
use std::sync::Arc;

use crate::protocol::WireFrame;
use crate::SessionId;
use actix::prelude::*;

use local::{Groups, LocalRoute};
pub use mailbox::{Deliveries, Gauge, Mailbox, Ticket};

/// An encoded frame for one session. `reliable` frames are sequenced and (with
/// resumption) buffered; volatile ones are dropped when the session cannot take them.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Deliver {
    /// The encoded and framed frame, shared by every recipient of the same broadcast.
    pub frame: WireFrame,
    /// Whether the frame belongs to the reliable stream.
    pub reliable: bool,
    /// The broadcast's name across a cluster (feature `cluster`), by which a
    /// session moving between nodes takes it exactly once; `None` for a frame to
    /// one session, and on a single node.
    pub mark: Option<Mark>,
}

/// A broadcast's name in a cluster: the node that emitted it and its number there.
/// One namespace numbers its broadcasts in the order it handles them, and every
/// node receives one node's broadcasts in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mark {
    /// The node that emitted the broadcast.
    pub origin: u64,
    /// Its number among that node's broadcasts.
    pub n: u64,
}

/// A room: its members, grouped by the thread that delivers to them.
pub struct Room {
    name: Arc<str>,
    members: HashMap<SessionId, LocalRoute>,
    groups: Groups,
}

impl Room {
    /// An empty room.
    pub fn new(name: Arc<str>) -> Self {
        Room {
            name,
            members: HashMap::new(),
            groups: Groups::default(),
        }
    }
}

impl Actor for Room {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        tracing::trace!(room = %self.name, "room disposed");
    }
}

/// Adds a member (idempotent). Sent once per join: as often as a client's frames
/// come (bounded by its session's mailbox), and far cheaper to handle than a frame.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddMember {
    /// The member's session.
    pub id: SessionId,
    /// Where its deliveries go (its thread and sink).
    pub recipient: Mailbox,
}

impl Handler<AddMember> for Room {
    type Result = ();

    fn handle(&mut self, msg: AddMember, _: &mut Context<Self>) {
        let route = msg.recipient.route().clone();
        if !self.members.contains_key(&msg.id) {
            self.groups.add(msg.id, &route);
            self.members.insert(msg.id, route);
        }
    }
}

/// Removes a member; the room stops when its last member leaves. One per leave, like
/// [`AddMember`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoveMember {
    /// The member's session.
    pub id: SessionId,
}

impl Handler<RemoveMember> for Room {
    type Result = ();

    fn handle(&mut self, msg: RemoveMember, ctx: &mut Context<Self>) {
        if let Some(route) = self.members.remove(&msg.id) {
            self.groups.remove(msg.id, &route);
        }
        if self.members.is_empty() {
            ctx.stop();
        }
    }
}

/// Sends one encoded frame to every member except one.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Fanout {
    /// The frame, encoded once for every member.
    pub deliver: Deliver,
    /// A member left out (the sender of a `socket.to(room)` broadcast).
    pub except: Option<SessionId>,
    /// Counts the broadcast in its namespace's gauge until the fan-out is done.
    pub ticket: Ticket,
}

/// Passes a flush on to `thread` after the fan-outs this room posted there (see
/// [`local::Flushed`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushTo {
    /// The thread of the session being flushed.
    pub thread: local::ThreadAddr,
    /// The flush.
    pub flushed: Arc<local::Flushed>,
}

impl Handler<FlushTo> for Room {
    type Result = ();

    fn handle(&mut self, msg: FlushTo, _: &mut Context<Self>) {
        msg.thread.do_send(local::PassedBy(msg.flushed));
    }
}

impl Handler<Fanout> for Room {
    type Result = ();

    fn handle(&mut self, msg: Fanout, _: &mut Context<Self>) {
        self.groups.send(&msg.deliver, msg.except, msg.ticket);
    }
}
