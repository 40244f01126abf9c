//! The players of `rooms`, one per simulated client: the Rust client ([`client`]),
//! the lean raw player ([`raw_client`]) and a Socket.IO client ([`sio_client`]), each
//! joining its room, sending numbered inputs at `--hz` and timing the states that
//! show them applied ([`Inputs`]); the raw and Socket.IO players share one game
//! loop ([`play`]) over a [`Seat`] of each.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::json;
use volley::client::ClientError;
use volley::{JoinRequest, Joined};

use crate::client_ctx::WorkerCtx;
use crate::rawplayer::RawPlayer;
use crate::server::{FlushAnswer, Input, PulseState, GAME_NAMESPACE, ROOM_TYPE};
use crate::sim;
use crate::sioclient::SioClient;

/// A player's numbered inputs: when the next is due, and those sent and not yet
/// seen applied in a state (for the input → state latency).
struct Inputs {
    timer: tokio::time::Interval,
    /// The number of the next input.
    next: u64,
    /// Inputs sent and not yet seen applied, oldest first.
    pending: VecDeque<(u64, Instant)>,
}

impl Inputs {
    fn new(hz: f64) -> Inputs {
        let period = Duration::from_secs_f64(1.0 / hz);
        // Players of a room do not all send at the same instant.
        let first = tokio::time::Instant::now() + period.mul_f64(rand::random::<f64>());
        let mut timer = tokio::time::interval_at(first, period);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        Inputs {
            timer,
            next: 0,
            pending: VecDeque::new(),
        }
    }

    /// Waits until the next input is due.
    async fn due(&mut self) {
        self.timer.tick().await;
    }

    /// Input `next` went out.
    fn sent(&mut self, ctx: &WorkerCtx) {
        self.pending.push_back((self.next, Instant::now()));
        self.next += 1;
        ctx.count(|c| c.sent += 1);
    }

    /// A state came: the inputs of player `me` it shows applied are timed.
    fn applied(&mut self, ctx: &WorkerCtx, state: &PulseState, me: u64) {
        let Some(&(_, applied)) = state.applied.iter().find(|(p, _)| *p == me) else {
            return;
        };
        while self.pending.front().is_some_and(|(n, _)| *n <= applied) {
            if let Some((_, sent)) = self.pending.pop_front() {
                ctx.record("input_to_state", sent.elapsed());
            }
        }
    }
}

pub async fn client(ctx: &WorkerCtx, index: usize, room_size: usize, hz: f64) {
    let config = sim::config(ctx, index);
    let Some((client, mut ns)) = sim::open(ctx, index, GAME_NAMESPACE, config).await else {
        return;
    };
    // Players are seated by their global number: a room's players fill it together.
    let group = (ctx.plan.first_client + index) / room_size;
    let request = JoinRequest::new(ROOM_TYPE).filter("group", group as u64);
    match sim::ask::<_, Result<Joined, String>>(ctx, index, &ns, "join_game", &request).await {
        Some(Ok(_)) => ctx.ready(),
        Some(Err(reason)) => {
            return ctx.fail(format!("{}: join refused: {reason}", sim::who(ctx, index)));
        }
        None => return ctx.fail(format!("{}: join unanswered", sim::who(ctx, index))),
    }
    let me = client.session_id();

    // States arrive from the moment the player sits: read them while waiting.
    loop {
        tokio::select! {
            _ = ctx.until_running() => break,
            event = ns.next_event() => if event.is_none() { break },
        }
    }

    let mut inputs = Inputs::new(hz);
    loop {
        tokio::select! {
            _ = inputs.due() => match ns.emit("input", &Input { seq: inputs.next }) {
                Ok(()) => inputs.sent(ctx),
                Err(ClientError::SendBufferFull) => ctx.count(|c| c.refused += 1),
                Err(e) => {
                    ctx.problem(format!("{}: input not sent: {e}", sim::who(ctx, index)));
                    break;
                }
            },
            event = ns.next_event() => {
                let Some(event) = event else {
                    ctx.problem(format!("{}: namespace closed", sim::who(ctx, index)));
                    break;
                };
                if event.name != "state" {
                    continue;
                }
                ctx.delivered(crate::control::unix_us());
                if let Ok(state) = event.decode::<PulseState>() {
                    inputs.applied(ctx, &state, me);
                }
            }
            _ = ctx.until_finishing() => break,
        }
    }
    // Every input before the flush has reached the server once it answers.
    if let Some(answer) = sim::ask::<_, FlushAnswer>(ctx, index, &ns, "flush", &()).await {
        ctx.stream("inputs", inputs.next, answer.c2s);
    }
    sim::close(client).await;
}

/// A player of `--player raw`: the same game as [`client`] (the same join, inputs,
/// states and checks), spoken over a raw WebSocket by one task.
pub async fn raw_client(ctx: &WorkerCtx, index: usize, room_size: usize, hz: f64) {
    let who = sim::who(ctx, index);
    let Some(mut player) = sim::open_raw(ctx, index, GAME_NAMESPACE, false).await else {
        return;
    };
    let group = (ctx.plan.first_client + index) / room_size;
    let request = JoinRequest::new(ROOM_TYPE).filter("group", group as u64);
    match player
        .ask::<_, Result<Joined, String>>("join_game", &request, |_| {})
        .await
    {
        Ok(Ok(_)) => ctx.ready(),
        Ok(Err(reason)) => return ctx.fail(format!("{who}: join refused: {reason}")),
        Err(e) => return ctx.fail(format!("{who}: join: {e}")),
    }
    let me = player.sid();
    let Some(inputs) = play(ctx, &who, &mut player, me, hz).await else {
        return;
    };
    // Every input before the flush has reached the server once it answers.
    match player.ask::<_, FlushAnswer>("flush", &(), |_| {}).await {
        Ok(answer) => ctx.stream("inputs", inputs.next, answer.c2s),
        Err(e) => ctx.problem(format!("{who}: 'flush' not acknowledged: {e}")),
    }
    player.close().await;
}

/// A player of `--player socketio`: the same game as [`client`] (the same join,
/// inputs, states and checks), as a Socket.IO client of the server's `/socket.io/`
/// (WebSocket only, or with `upgrade` opened with long polling and upgraded): each
/// input an event, each state an event.
pub async fn sio_client(ctx: &WorkerCtx, index: usize, room_size: usize, hz: f64, upgrade: bool) {
    let who = sim::who(ctx, index);
    let base = ctx.url.trim_end_matches("/volley");
    let local = sim::source_address(ctx, index);
    let started = Instant::now();
    let connected = SioClient::connect(base, GAME_NAMESPACE, &json!({}), local, upgrade).await;
    let mut sio = match connected {
        Ok(sio) => sio,
        Err(e) => return ctx.fail(format!("{who}: {e}")),
    };
    ctx.record("connect", started.elapsed());
    // Volley names a socket by its session's id in hex, then the namespace.
    let id = sio.id().trim_end_matches(GAME_NAMESPACE);
    let Ok(me) = u64::from_str_radix(id, 16) else {
        return ctx.fail(format!("{who}: a socket id that is not Volley's: {id}"));
    };
    let group = (ctx.plan.first_client + index) / room_size;
    let request = JoinRequest::new(ROOM_TYPE).filter("group", group as u64);
    let joined = tokio::time::timeout(
        sim::ACK_WAIT,
        sio.emit_with_ack("join_game", &[json!(request)]),
    )
    .await;
    match joined {
        // `Result<Joined, String>` as JSON: `{"Ok": …}` or `{"Err": …}`.
        Ok(Ok(answer)) if answer.first().is_some_and(|a| a.get("Ok").is_some()) => ctx.ready(),
        Ok(Ok(answer)) => return ctx.fail(format!("{who}: join refused: {answer:?}")),
        Ok(Err(e)) => return ctx.fail(format!("{who}: join: {e}")),
        Err(_) => return ctx.fail(format!("{who}: join unanswered")),
    }

    let Some(inputs) = play(ctx, &who, &mut sio, me, hz).await else {
        return;
    };
    // Every input before the flush has reached the server once it answers.
    let flushed = tokio::time::timeout(sim::ACK_WAIT, sio.emit_with_ack("flush", &[])).await;
    let answer = match flushed {
        Ok(Ok(args)) => args.into_iter().next().map(serde_json::from_value),
        _ => None,
    };
    match answer {
        Some(Ok::<FlushAnswer, _>(answer)) => ctx.stream("inputs", inputs.next, answer.c2s),
        _ => ctx.problem(format!("{who}: 'flush' not acknowledged")),
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), sio.close()).await;
}

/// What a seated player read: a state (`None` inside if it did not decode), or
/// another event.
enum Seen {
    State(Option<PulseState>),
    Other,
}

/// A seated player's connection, as [`play`] drives it: the raw player's and the
/// Socket.IO client's.
trait Seat {
    /// The next event from the game's namespace.
    async fn next(&mut self) -> Result<Seen, String>;
    /// Sends input `seq`.
    async fn input(&mut self, seq: u64) -> Result<(), String>;
}

impl Seat for RawPlayer {
    async fn next(&mut self) -> Result<Seen, String> {
        let event = self.next_event().await?;
        Ok(match event.name == "state" {
            true => Seen::State(serde_json::from_slice(&event.payload).ok()),
            false => Seen::Other,
        })
    }

    async fn input(&mut self, seq: u64) -> Result<(), String> {
        self.emit("input", &Input { seq }).await
    }
}

impl Seat for SioClient {
    async fn next(&mut self) -> Result<Seen, String> {
        let (name, args) = self.next_event().await?;
        Ok(match name == "state" {
            true => Seen::State(
                args.into_iter()
                    .next()
                    .and_then(|state| serde_json::from_value(state).ok()),
            ),
            false => Seen::Other,
        })
    }

    async fn input(&mut self, seq: u64) -> Result<(), String> {
        self.emit("input", &[json!(Input { seq })]).await
    }
}

/// Plays a seated player `me` until the run finishes: states read while waiting for
/// the start, then inputs at `hz` and every state timed. Its inputs, or `None` when
/// the connection failed (told as a problem).
async fn play(
    ctx: &WorkerCtx,
    who: &str,
    seat: &mut impl Seat,
    me: u64,
    hz: f64,
) -> Option<Inputs> {
    // States arrive from the moment the player sits: read them while waiting.
    loop {
        tokio::select! {
            _ = ctx.until_running() => break,
            seen = seat.next() => if let Err(e) = seen {
                ctx.problem(format!("{who}: {e}"));
                return None;
            },
        }
    }

    enum Step {
        Input,
        Seen(Result<Seen, String>),
        Finish,
    }
    let mut inputs = Inputs::new(hz);
    loop {
        // The branches only read; what a step writes happens after the `select!`,
        // whose futures (a read halfway, perhaps) are gone by then.
        let step = tokio::select! {
            _ = inputs.due() => Step::Input,
            seen = seat.next() => Step::Seen(seen),
            _ = ctx.until_finishing() => Step::Finish,
        };
        match step {
            Step::Input => {
                if let Err(e) = seat.input(inputs.next).await {
                    ctx.problem(format!("{who}: input not sent: {e}"));
                    break;
                }
                inputs.sent(ctx);
            }
            Step::Seen(Err(e)) => {
                ctx.problem(format!("{who}: {e}"));
                break;
            }
            Step::Seen(Ok(Seen::State(state))) => {
                ctx.delivered(crate::control::unix_us());
                if let Some(state) = state {
                    inputs.applied(ctx, &state, me);
                }
            }
            Step::Seen(Ok(Seen::Other)) => {}
            Step::Finish => break,
        }
    }
    Some(inputs)
}
