//! What carries an Engine.IO connection to its client: long-polling (records wait in
//! the connection's [`EioOut`](super::writing::EioOut) for the next `GET`) or a
//! WebSocket (records go onto the connection's queue, which the socket's writer
//! drains), and the messages its carriers send the connection (what `carrying.rs`
//! handles).

use std::sync::Arc;

use actix::prelude::*;
use futures_channel::mpsc;
use tokio::sync::oneshot;

use crate::protocol::socketio::EioPacket;
use crate::session::SendQueue;

/// What the connection tells a WebSocket's task. A handful per socket (a probe's
/// answer, the hand-over, the end): the records themselves go onto the queue.
#[derive(Debug)]
pub(crate) enum WsOut {
    /// A record the socket writes itself, before it carries the connection (a
    /// probe's `3probe`).
    Text(String),
    /// The socket now carries the connection: its writing half goes to this queue,
    /// whose writer writes what the connection queues.
    Carry(Arc<SendQueue>),
    /// The end: a socket that carries the connection stops reading (what the
    /// connection queued, its close included, is still written); a probe writes a
    /// WebSocket close and ends.
    Close,
}

/// A WebSocket of this connection: the probe during an upgrade, then the carrier.
pub(crate) struct WsHandle {
    pub id: u64,
    pub tx: mpsc::UnboundedSender<WsOut>,
    /// A probe that was answered `3probe`: the client is pausing its polling.
    pub probed: bool,
}

/// A waiting long-polling GET.
pub(super) struct Waiting {
    pub(super) reply: oneshot::Sender<Result<String, String>>,
    pub(super) timer: SpawnHandle,
}

/// What carries the connection's packets to the client now.
pub(super) enum Carrier {
    /// Records wait in the connection's `EioOut` for the next GET.
    Polling { waiting: Option<Waiting> },
    /// A WebSocket read by a task of its own (one that took over a polling
    /// connection: it may be on another thread).
    WebSocket(WsHandle),
    /// A WebSocket this connection's actor reads itself (WebSocket only, from the
    /// start: no task, no message per packet).
    Own,
}

/// A long-polling GET.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Poll {
    pub reply: oneshot::Sender<Result<String, String>>,
}

/// What a WebSocket of this connection received, or that it is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) enum FromWs {
    /// A WebSocket asks to carry this connection (`?sid=` of an upgrade).
    Probe(WsHandle),
    Packet(u64, EioPacket, usize),
    Gone(u64),
}

/// What the connection's writing side tells the connection.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) enum Notice {
    /// Records wait for a long poll: answer the waiting GET, if any.
    Flush,
    /// The session's frames ended with its close: close the connection.
    Close,
}
