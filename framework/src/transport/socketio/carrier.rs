//! What carries an Engine.IO connection to its client: long-polling (records queued
//! for the next `GET`) or a WebSocket (records handed to its task), and the messages
//! its carriers send the connection (what `carrying.rs` handles).

use std::collections::VecDeque;

use actix::prelude::*;
use tokio::sync::{mpsc, oneshot};

use crate::protocol::socketio::EioPacket;
use crate::session::Backlog;

/// What the connection hands a WebSocket's writing task: a text record, counted off
/// the backlog by `counted` bytes once written, or the end.
#[derive(Debug)]
pub(crate) enum WsOut {
    Text(String, usize),
    /// The socket now carries the connection: count written records off this.
    Carrier(Backlog),
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
    /// Records wait in `queue` (with their backlog bytes) for the next GET.
    Polling {
        queue: VecDeque<(String, usize)>,
        waiting: Option<Waiting>,
    },
    WebSocket(WsHandle),
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
