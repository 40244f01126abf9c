//! Joins waiting for an asynchronous connect middleware
//! ([`crate::Namespace::authorize_async`]), with the events the client sent to those
//! namespaces meanwhile.
//!
//! The session goes on while a middleware thinks. A client may send events right
//! after its `Connect` (a client that rejoins after a lost session does), and with a
//! synchronous middleware those events find the namespace joined; to keep that true
//! here, they are held and handled once the answer is in, in the order they came.

use actix::SpawnHandle;
use serde_bytes::ByteBuf;

/// Events held for one namespace at most; past it, the client is told to wait.
pub(super) const MAX_HELD: usize = 64;

/// An `Event` frame from the client, kept for later.
pub(super) struct HeldEvent {
    pub ns: String,
    pub name: String,
    pub payload: ByteBuf,
    pub ack: Option<u64>,
}

/// What [`Authorizing::hold`] did with an event.
pub(super) enum Hold {
    /// Kept until the namespace answers.
    Held,
    /// The namespace is waiting but already holds [`MAX_HELD`] events.
    Full(HeldEvent),
    /// No join to that namespace is waiting: handle the event now.
    NotWaiting(HeldEvent),
}

struct Waiting {
    ns: String,
    answer: SpawnHandle,
    held: Vec<HeldEvent>,
}

/// The joins waiting for their answer (a few at most: bounded with the joined
/// namespaces by `max_namespaces_per_session`). Boxed while there are any, nothing
/// otherwise: most sessions never wait, and every idle one carries this in its task.
// Boxed on purpose: 8 bytes in the session's task instead of the collection's own.
#[allow(clippy::box_collection)]
#[derive(Default)]
pub(super) struct Authorizing(Option<Box<Vec<Waiting>>>);

impl Authorizing {
    fn waiting(&self) -> &[Waiting] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }

    pub fn contains(&self, ns: &str) -> bool {
        self.waiting().iter().any(|w| w.ns == ns)
    }

    pub fn len(&self) -> usize {
        self.waiting().len()
    }

    /// A join to `ns` waits for `answer` (the spawned middleware future).
    pub fn insert(&mut self, ns: String, answer: SpawnHandle) {
        self.0.get_or_insert_default().push(Waiting {
            ns,
            answer,
            held: Vec::new(),
        });
    }

    /// The join to `ns` is answered or abandoned: its future (to cancel when
    /// abandoned) and the events held for it.
    pub fn remove(&mut self, ns: &str) -> Option<(SpawnHandle, Vec<HeldEvent>)> {
        let list = self.0.as_mut()?;
        let at = list.iter().position(|w| w.ns == ns)?;
        let waiting = list.remove(at);
        if list.is_empty() {
            self.0 = None;
        }
        Some((waiting.answer, waiting.held))
    }

    pub fn hold(&mut self, event: HeldEvent) -> Hold {
        let found = self
            .0
            .as_mut()
            .and_then(|list| list.iter_mut().find(|w| w.ns == event.ns));
        match found {
            None => Hold::NotWaiting(event),
            Some(w) if w.held.len() >= MAX_HELD => Hold::Full(event),
            Some(w) => {
                w.held.push(event);
                Hold::Held
            }
        }
    }
}
