//! [`RoomOptions`]: the settings of one room type, with every default in one place.

use std::time::Duration;

/// Settings of a room type, given to [`crate::GameRoomsBuilder::game`]. Every default
/// is on its field; start from `RoomOptions::default()` and change what you need.
///
/// ```
/// use std::time::Duration;
/// use volley::RoomOptions;
///
/// let duel = RoomOptions {
///     max_players: 2,
///     tick_rate: 30,
///     broadcast_rate: 15,
///     dispose_after_empty: Duration::from_secs(60),
///     ..RoomOptions::default()
/// };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomOptions {
    /// Seats per room; held seats count. Default 16.
    pub max_players: usize,
    /// Simulation rate: ticks per second, each advancing the game by a fixed
    /// `1 s / tick_rate`. Default 60. Taken as 1..=1000.
    pub tick_rate: u32,
    /// State broadcast rate: sends per second, after the tick that reaches each
    /// send's time. Default 20. Taken as 1..=`tick_rate`.
    pub broadcast_rate: u32,
    /// Overdue ticks a late room runs back to back to catch up; overdue ticks beyond
    /// this many are skipped and counted. Default 5 (83 ms at 60 Hz).
    pub max_catch_up: u32,
    /// Inputs one player may have waiting for the next tick; more are dropped and
    /// counted. Default 8.
    pub max_inputs_per_tick: usize,
    /// How long a room stays without any seated player before it is disposed of.
    /// Default 10 s.
    pub dispose_after_empty: Duration,
    /// Name of the volatile event that carries the state. Default `state`.
    pub state_event: String,
}

impl Default for RoomOptions {
    fn default() -> Self {
        RoomOptions {
            max_players: 16,
            tick_rate: 60,
            broadcast_rate: 20,
            max_catch_up: 5,
            max_inputs_per_tick: 8,
            dispose_after_empty: Duration::from_secs(10),
            state_event: "state".to_owned(),
        }
    }
}

impl RoomOptions {
    /// The options with out-of-range values brought into range.
    pub(crate) fn normalized(mut self) -> Self {
        self.max_players = self.max_players.max(1);
        self.tick_rate = self.tick_rate.clamp(1, 1000);
        self.broadcast_rate = self.broadcast_rate.clamp(1, self.tick_rate);
        self.max_inputs_per_tick = self.max_inputs_per_tick.max(1);
        self
    }
}
