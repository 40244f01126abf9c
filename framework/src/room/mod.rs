//! Rooms: named groups of sockets inside a namespace, and the fan-out of broadcasts.
//!
//! Each room is an actor placed on one of the room arbiters (one per core), so the
//! fan-out of busy rooms runs on every core. A broadcast arrives here already encoded
//! and framed ([`WireFrame`]): per recipient the room only clones a reference-counted
//! buffer and posts it.
//! Every post on this path is bounded (see [`Mailbox`] and [`Gauge`]).

mod mailbox;

use std::collections::HashMap;
use std::sync::Arc;

use crate::protocol::WireFrame;
use crate::SessionId;
use actix::prelude::*;

pub use mailbox::{Gauge, Mailbox, Ticket};

/// An encoded frame for one session. `reliable` frames are sequenced and (with
/// resumption) buffered; volatile ones are dropped when the session cannot take them.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Deliver {
    /// The encoded and framed frame, shared by every recipient of the same broadcast.
    pub frame: WireFrame,
    /// Whether the frame belongs to the reliable stream.
    pub reliable: bool,
}

/// A room: its members and their delivery addresses.
pub struct Room {
    name: Arc<str>,
    members: HashMap<SessionId, Mailbox>,
}

impl Room {
    /// An empty room.
    pub fn new(name: Arc<str>) -> Self {
        Room {
            name,
            members: HashMap::new(),
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
    pub id: SessionId,
    pub recipient: Mailbox,
}

impl Handler<AddMember> for Room {
    type Result = ();

    fn handle(&mut self, msg: AddMember, _: &mut Context<Self>) {
        self.members.insert(msg.id, msg.recipient);
    }
}

/// Removes a member; the room stops when its last member leaves. One per leave, like
/// [`AddMember`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoveMember {
    pub id: SessionId,
}

impl Handler<RemoveMember> for Room {
    type Result = ();

    fn handle(&mut self, msg: RemoveMember, ctx: &mut Context<Self>) {
        self.members.remove(&msg.id);
        if self.members.is_empty() {
            ctx.stop();
        }
    }
}

/// Sends one encoded frame to every member except one.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Fanout {
    pub deliver: Deliver,
    pub except: Option<SessionId>,
    /// Counts the broadcast in its namespace's gauge until the fan-out is done.
    pub ticket: Ticket,
}

impl Handler<Fanout> for Room {
    type Result = ();

    fn handle(&mut self, msg: Fanout, _: &mut Context<Self>) {
        for (id, member) in &self.members {
            if Some(*id) != msg.except {
                member.post(msg.deliver.clone());
            }
        }
    }
}
