//! Rooms: named groups of sockets inside a namespace, and the fan-out of broadcasts.
//!
//! A room is part of its namespace's actor (as a Socket.IO adapter's rooms are part
//! of it); game rooms, which run a tick loop, are actors of their own
//! (`crate::game`). A broadcast arrives already encoded and framed ([`WireFrame`]);
//! the room keeps its members grouped by the thread their session runs on and the
//! namespace posts one message per thread (see [`local`]), whatever the number of
//! members.
//! Every post on this path is bounded (see [`Mailbox`], [`Gauge`] and [`Ticket`]).

pub mod local;
mod mailbox;

use std::collections::HashSet;

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

impl Deliver {
    /// The same delivery with the frame in bytes of its own ([`WireFrame::own_copy`]).
    pub fn own_copy(&self) -> Deliver {
        Deliver {
            frame: self.frame.own_copy(),
            reliable: self.reliable,
            mark: self.mark,
        }
    }
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

/// A room: its members, grouped by the thread that delivers to them. Kept by its
/// namespace actor, which fans each broadcast out itself, one message per thread
/// (see [`local`]): every broadcast of a namespace reaches a thread along the same
/// path, so each member gets one sender's broadcasts in the order sent, whichever
/// of its rooms they target.
#[derive(Default)]
pub struct Room {
    members: HashSet<SessionId>,
    groups: Groups,
}

impl Room {
    /// Adds a member whose deliveries go by `route`; `false` if it was one.
    pub fn add(&mut self, id: SessionId, route: &LocalRoute) -> bool {
        let added = self.members.insert(id);
        if added {
            self.groups.add(id, route);
        }
        added
    }

    /// Removes a member; `false` if it was none.
    pub fn remove(&mut self, id: SessionId, route: &LocalRoute) -> bool {
        let removed = self.members.remove(&id);
        if removed {
            self.groups.remove(id, route);
        }
        removed
    }

    /// The members.
    pub fn members(&self) -> &HashSet<SessionId> {
        &self.members
    }

    /// Posts one fan-out per thread with members, `except` left out.
    pub fn fan_out(&self, deliver: &Deliver, except: Option<SessionId>, ticket: Ticket) {
        self.groups.send(deliver, except, ticket);
    }
}
