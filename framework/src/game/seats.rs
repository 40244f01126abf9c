//! The seat table: which room each player (session) sits in, shared by the
//! [`super::GameRooms`] handle and the rooms.
//!
//! It is what keeps the matchmaker, and the room's mailbox, off the input path: an
//! input is looked up here, on the player's session thread, counted against the
//! player's per-tick bound and queued in the seat's [`InputGate`], which the room
//! empties at its next tick. No message and no wake-up of the room's thread per input:
//! the room needs its inputs only when it ticks. Rooms write a seat when they seat a
//! player and remove it when they free the seat.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use actix::Recipient;
use serde_json::value::RawValue;

use super::messages::LeavePlayer;
use super::{InputError, JoinError, RoomId};
use crate::SessionId;

/// The inputs a player has waiting, as they arrived: their JSON texts (checked to be
/// JSON, not parsed into anything until the room's tick parses each once, straight
/// into the game's `Input`), one after another in one buffer.
///
/// The room and the seat pass two of these back and forth (see [`InputGate::swap`]),
/// so an input costs a copy of its text into memory already there: no allocation per
/// input on the player's thread, and none freed on the room's (an input allocated on
/// one thread and freed on another takes the allocator's slow path).
#[derive(Debug, Default)]
pub(crate) struct Inputs {
    text: String,
    /// Where each input's text ends in `text`.
    ends: Vec<usize>,
}

/// An input buffer a burst grew past this many bytes is given back when emptied.
const KEPT_INPUT_BYTES: usize = 16 * 1024;

impl Inputs {
    pub fn push(&mut self, input: &RawValue) {
        self.text.push_str(input.get());
        self.ends.push(self.text.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The inputs' texts, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let text = &self.text[start..end];
            start = end;
            text
        })
    }

    /// Empties it for the next round, keeping its memory unless a burst made it big.
    pub fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
        if self.text.capacity() > KEPT_INPUT_BYTES {
            self.text.shrink_to(KEPT_INPUT_BYTES);
        }
    }
}

/// As a JSON array of the inputs (to the node of a guest's room, feature `cluster`).
impl serde::Serialize for Inputs {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for text in self.iter() {
            // Each was checked to be JSON as it came in.
            let raw: &RawValue = serde_json::from_str(text).map_err(S::Error::custom)?;
            seq.serialize_element(raw)?;
        }
        seq.end()
    }
}

/// The inputs one player has waiting for the next tick, at most `cap`. Shared by the
/// seat table (which admits and queues inputs, on the player's session thread) and
/// the room (which takes them each tick, on its own).
#[derive(Debug)]
pub(crate) struct InputGate {
    cap: usize,
    /// Inputs admitted and not yet applied.
    queued: AtomicUsize,
    dropped: AtomicU64,
    /// The admitted inputs, in arrival order, until the room takes them.
    inbox: Mutex<Inputs>,
    /// Whether the seat is still the player's: cleared when the seat is freed or
    /// replaced, so that a socket holding the gate (see [`super::GameRooms::input_json`])
    /// knows to look the seat up again.
    open: AtomicBool,
}

impl InputGate {
    pub fn new(cap: usize) -> Self {
        InputGate {
            cap,
            queued: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            inbox: Mutex::new(Inputs::default()),
            open: AtomicBool::new(true),
        }
    }

    /// Whether the seat is still the player's.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// The seat is freed or replaced: holders of the gate look the seat up again.
    fn close(&self) {
        self.open.store(false, Ordering::Release);
    }

    /// Queues an input for the next tick; [`InputError::Dropped`] (and counted)
    /// when `cap` wait: the gate holds `max_inputs_per_tick` per player until a tick.
    pub fn offer(&self, input: &RawValue) -> Result<(), InputError> {
        if !self.admit() {
            return Err(InputError::Dropped);
        }
        self.inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(input);
        Ok(())
    }

    /// The inputs queued since the last flush to their room's node, in arrival
    /// order; the caller releases them once sent.
    #[cfg(feature = "cluster")]
    pub fn take(&self) -> Inputs {
        std::mem::take(&mut *self.inbox.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Swaps the queued inputs with `spare` (emptied by the caller), so that the
    /// room's tick and the seat's arrivals pass the same two buffers back and forth
    /// instead of allocating one per tick.
    pub fn swap(&self, spare: &mut Inputs) {
        debug_assert!(spare.is_empty());
        std::mem::swap(
            &mut *self.inbox.lock().unwrap_or_else(|e| e.into_inner()),
            spare,
        );
    }

    /// Takes a place for one input; `false` (and counted) when `cap` are waiting.
    fn admit(&self) -> bool {
        let cap = self.cap;
        let admitted = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q < cap).then_some(q + 1)
            })
            .is_ok();
        if !admitted {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    /// `n` admitted inputs were applied (or discarded).
    pub fn release(&self, n: usize) {
        let _ = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                Some(q.saturating_sub(n))
            });
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Where a player sits.
pub(crate) enum Seat {
    /// A join is under way.
    Joining,
    /// Seated in `room`.
    Seated {
        room: RoomId,
        leave: Recipient<LeavePlayer>,
        gate: Arc<InputGate>,
    },
}

/// The seat table: one seat per session.
#[derive(Default)]
pub(crate) struct Seats {
    table: RwLock<HashMap<SessionId, Seat>>,
    /// Joins under way: reserved and not ended yet (the matchmaker's queue, for the
    /// metrics; read without walking the table).
    joining: AtomicUsize,
}

impl Seats {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<SessionId, Seat>> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<SessionId, Seat>> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins under way: asked of the matchmaker and not answered yet.
    pub fn joining(&self) -> usize {
        self.joining.load(Ordering::Relaxed)
    }

    /// Marks a join under way, unless the player sits somewhere or is joining.
    pub fn reserve(&self, id: SessionId) -> Result<(), JoinError> {
        let mut seats = self.write();
        match seats.get(&id) {
            Some(Seat::Seated { room, .. }) => Err(JoinError::AlreadySeated(*room)),
            Some(Seat::Joining) => Err(JoinError::JoinInProgress),
            None => {
                seats.insert(id, Seat::Joining);
                self.joining.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// Ends a join under way (a seated player keeps its seat).
    fn unreserve(&self, id: SessionId) {
        // Each successful reserve has exactly one Reservation, dropped once.
        self.joining.fetch_sub(1, Ordering::Relaxed);
        let mut seats = self.write();
        if matches!(seats.get(&id), Some(Seat::Joining)) {
            seats.remove(&id);
        }
    }

    /// The room has seated the player. A seat it replaces is closed, unless it is
    /// the same gate.
    pub fn seat(&self, id: SessionId, seat: Seat) {
        let new_gate = match &seat {
            Seat::Seated { gate, .. } => Some(gate.clone()),
            Seat::Joining => None,
        };
        if let Some(Seat::Seated { gate, .. }) = self.write().insert(id, seat) {
            if !new_gate.is_some_and(|new| Arc::ptr_eq(&new, &gate)) {
                gate.close();
            }
        }
    }

    /// The room has freed the player's seat.
    pub fn vacate(&self, id: SessionId, room: RoomId) {
        let mut seats = self.write();
        if let Some(Seat::Seated { room: r, gate, .. }) = seats.get(&id) {
            if *r == room {
                gate.close();
                seats.remove(&id);
            }
        }
    }

    /// The input gate of the player's seat, if seated.
    pub fn gate(&self, id: SessionId) -> Option<Arc<InputGate>> {
        match self.read().get(&id) {
            Some(Seat::Seated { gate, .. }) => Some(gate.clone()),
            _ => None,
        }
    }

    pub fn room_of(&self, id: SessionId) -> Option<RoomId> {
        match self.read().get(&id) {
            Some(Seat::Seated { room, .. }) => Some(*room),
            _ => None,
        }
    }

    pub fn leave_recipient(&self, id: SessionId) -> Option<Recipient<LeavePlayer>> {
        match self.read().get(&id) {
            Some(Seat::Seated { leave, .. }) => Some(leave.clone()),
            _ => None,
        }
    }

    /// Queues an input of player `id`, looked up in the table (a node's guest
    /// players; a local player's socket keeps its gate, see
    /// [`super::GameRooms::input_json`]).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub fn input(&self, id: SessionId, input: &RawValue) -> Result<(), InputError> {
        self.gate(id).ok_or(InputError::NotSeated)?.offer(input)
    }
}

/// Removes the `Joining` mark however the join ends (even if its future is dropped).
pub(crate) struct Reservation<'a>(pub &'a Seats, pub SessionId);

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.0.unreserve(self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_closes_when_its_seat_is_freed_or_replaced() {
        let seats = Seats::default();
        let id = SessionId(7);
        let leave = leave_recipient();
        let first = Arc::new(InputGate::new(4));
        let seated = |room: u64, gate: &Arc<InputGate>| Seat::Seated {
            room: RoomId(room),
            leave: leave.clone(),
            gate: gate.clone(),
        };
        seats.seat(id, seated(1, &first));
        // Seated again with the same gate (a held seat taken back): still open.
        seats.seat(id, seated(1, &first));
        assert!(first.is_open());
        let second = Arc::new(InputGate::new(4));
        seats.seat(id, seated(2, &second));
        assert!(!first.is_open(), "a replaced seat's gate closes");
        assert!(Arc::ptr_eq(&seats.gate(id).expect("seated"), &second));
        // Another room's vacate does not touch this seat.
        seats.vacate(id, RoomId(1));
        assert!(second.is_open());
        seats.vacate(id, RoomId(2));
        assert!(!second.is_open(), "a freed seat's gate closes");
        assert!(seats.gate(id).is_none());
    }

    /// A `LeavePlayer` recipient whose actor never runs (the seat table only
    /// stores it).
    fn leave_recipient() -> Recipient<LeavePlayer> {
        struct Nobody;
        impl actix::Actor for Nobody {
            type Context = actix::Context<Self>;
        }
        impl actix::Handler<LeavePlayer> for Nobody {
            type Result = bool;
            fn handle(&mut self, _: LeavePlayer, _: &mut Self::Context) -> bool {
                false
            }
        }
        use actix::AsyncContext;
        actix::Context::<Nobody>::new().address().recipient()
    }

    #[test]
    fn inputs_keep_their_texts_in_order_and_a_burst_is_given_back() {
        fn raw(text: &str) -> &RawValue {
            serde_json::from_str(text).unwrap()
        }
        let mut inputs = Inputs::default();
        for text in [r#"{"up":true}"#, "7", r#""left""#, "null"] {
            inputs.push(raw(text));
        }
        assert_eq!(inputs.len(), 4);
        let texts: Vec<&str> = inputs.iter().collect();
        assert_eq!(texts, [r#"{"up":true}"#, "7", r#""left""#, "null"]);
        assert_eq!(
            serde_json::to_string(&inputs).unwrap(),
            r#"[{"up":true},7,"left",null]"#
        );
        inputs.clear();
        assert!(inputs.is_empty() && inputs.iter().next().is_none());
        let big = format!("\"{}\"", "x".repeat(KEPT_INPUT_BYTES));
        inputs.push(raw(&big));
        inputs.clear();
        assert!(inputs.text.capacity() <= KEPT_INPUT_BYTES);
        // The gate hands them over whole and takes the emptied buffer back.
        let gate = InputGate::new(2);
        gate.offer(raw("1")).unwrap();
        gate.offer(raw("2")).unwrap();
        assert!(matches!(gate.offer(raw("3")), Err(InputError::Dropped)));
        gate.swap(&mut inputs);
        assert_eq!(inputs.iter().collect::<Vec<_>>(), ["1", "2"]);
        gate.release(inputs.len());
        assert_eq!(gate.dropped(), 1);
    }

    #[test]
    fn joins_under_way_are_counted_until_they_end() {
        let seats = Seats::default();
        let (a, b) = (SessionId(1), SessionId(2));
        seats.reserve(a).expect("free");
        let first = Reservation(&seats, a);
        seats.reserve(b).expect("free");
        assert!(seats.reserve(a).is_err(), "one join per player");
        assert_eq!(seats.joining(), 2);
        drop(first);
        assert_eq!(seats.joining(), 1);
        drop(Reservation(&seats, b));
        assert_eq!(seats.joining(), 0);
    }
}
