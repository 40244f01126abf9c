//! Orb Arena, the game: players steer glowing cells around an arena, collect orbs to
//! grow, and swallow smaller cells. Server-authoritative at 30 Hz; each player is
//! sent only what is near it (its area of interest), 15 times a second.

use std::collections::HashMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use volley::{Game, LeaveReason, RoomContext, RoomSetup, SessionId};

/// Arena size in world units.
pub const WIDTH: f32 = 2400.0;
pub const HEIGHT: f32 = 1600.0;
/// Side of an area-of-interest cell; a player sees its cell and the eight around it.
const CELL: f32 = 500.0;
const ORBS: usize = 90;
const SPEED: f32 = 260.0;
const DASH_SPEED: f32 = 620.0;
const DASH_TIME: f32 = 0.25;
const DASH_COOLDOWN: f32 = 2.0;
/// Ids for bots live above every session id the server hands out in practice.
const BOT_BASE: u64 = 1 << 52;

/// One cell, player or bot.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub id: u64,
    pub name: String,
    pub x: f32,
    pub y: f32,
    pub r: f32,
    pub score: u32,
    pub bot: bool,
    #[serde(skip)]
    pub dx: f32,
    #[serde(skip)]
    pub dy: f32,
    #[serde(skip)]
    dash_left: f32,
    #[serde(skip)]
    dash_cooldown: f32,
}

impl Cell {
    fn new(id: u64, name: String, bot: bool, rng: &mut StdRng) -> Self {
        // People start near the middle, where they meet; bots anywhere.
        let (x, y) = if bot {
            (
                rng.gen_range(100.0..WIDTH - 100.0),
                rng.gen_range(100.0..HEIGHT - 100.0),
            )
        } else {
            (
                WIDTH / 2.0 + rng.gen_range(-180.0..180.0),
                HEIGHT / 2.0 + rng.gen_range(-180.0..180.0),
            )
        };
        Cell {
            id,
            name,
            x,
            y,
            r: radius(0),
            score: 0,
            bot,
            dx: 0.0,
            dy: 0.0,
            dash_left: 0.0,
            dash_cooldown: 0.0,
        }
    }
}

fn radius(score: u32) -> f32 {
    16.0 + (score as f32).sqrt() * 3.0
}

/// What a player sends each time its controls change.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Steer {
    /// Direction, each axis in -1..=1 (a stick or keys).
    pub dx: f32,
    pub dy: f32,
    /// Start a dash (if the cooldown allows).
    #[serde(default)]
    pub dash: bool,
}

/// What a player receives: what is near it, and the room's scoreboard.
#[derive(Debug, Serialize)]
pub struct View {
    pub cells: Vec<Cell>,
    pub orbs: Vec<(i16, i16)>,
    pub top: Vec<(String, u32)>,
    pub world: (f32, f32),
}

/// A room of Orb Arena.
pub struct Arena {
    cells: HashMap<u64, Cell>,
    orbs: Vec<(f32, f32)>,
    rng: StdRng,
    bots: usize,
    events: Vec<String>,
}

/// Options a room is created with (from the lobby's "create room").
#[derive(Debug, Default, Deserialize)]
struct CreateOptions {
    bots: Option<usize>,
}

/// Options a player joins with.
#[derive(Debug, Default, Deserialize)]
struct JoinOptions {
    name: Option<String>,
}

/// Bots per room unless the room was created with another number; set by `--bots`.
pub static DEFAULT_BOTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(3);

impl Arena {
    fn spawn_orb(&mut self) -> (f32, f32) {
        (
            self.rng.gen_range(20.0..WIDTH - 20.0),
            self.rng.gen_range(20.0..HEIGHT - 20.0),
        )
    }

    fn steer_bots(&mut self) {
        let snapshot: Vec<(u64, f32, f32, f32)> =
            self.cells.values().map(|c| (c.id, c.x, c.y, c.r)).collect();
        for cell in self.cells.values_mut().filter(|c| c.bot) {
            // Flee a bigger cell nearby, else head for the nearest orb.
            let threat = snapshot
                .iter()
                .filter(|(id, x, y, r)| {
                    *id != cell.id && *r > cell.r * 1.15 && dist(*x, *y, cell.x, cell.y) < 220.0
                })
                .min_by(|a, b| {
                    dist(a.1, a.2, cell.x, cell.y).total_cmp(&dist(b.1, b.2, cell.x, cell.y))
                });
            let (tx, ty, away) = match threat {
                Some((_, x, y, _)) => (*x, *y, true),
                None => match self.orbs.iter().min_by(|a, b| {
                    dist(a.0, a.1, cell.x, cell.y).total_cmp(&dist(b.0, b.1, cell.x, cell.y))
                }) {
                    Some((x, y)) => (*x, *y, false),
                    None => (WIDTH / 2.0, HEIGHT / 2.0, false),
                },
            };
            let (mut dx, mut dy) = (tx - cell.x, ty - cell.y);
            if away {
                dx = -dx;
                dy = -dy;
            }
            let len = (dx * dx + dy * dy).sqrt().max(1.0);
            // Bots are a little slower than people.
            cell.dx = dx / len * 0.8;
            cell.dy = dy / len * 0.8;
        }
    }
}

fn dist(ax: f32, ay: f32, bx: f32, by: f32) -> f32 {
    ((ax - bx).powi(2) + (ay - by).powi(2)).sqrt()
}

fn cell_of(x: f32, y: f32) -> (i16, i16) {
    ((x / CELL).floor() as i16, (y / CELL).floor() as i16)
}

impl Game for Arena {
    type Input = Steer;
    /// The area-of-interest cell the player is in.
    type Subset = (i16, i16);
    type State = View;

    fn create(setup: &RoomSetup<'_>) -> Result<Self, String> {
        let options: CreateOptions =
            serde_json::from_value(setup.options.clone()).unwrap_or_default();
        let bots = options
            .bots
            .unwrap_or_else(|| DEFAULT_BOTS.load(std::sync::atomic::Ordering::Relaxed))
            .min(20);
        let mut arena = Arena {
            cells: HashMap::new(),
            orbs: Vec::new(),
            rng: StdRng::from_entropy(),
            bots,
            events: Vec::new(),
        };
        for _ in 0..ORBS {
            let orb = arena.spawn_orb();
            arena.orbs.push(orb);
        }
        for n in 0..bots {
            let bot = Cell::new(
                BOT_BASE + n as u64,
                format!("bot-{}", n + 1),
                true,
                &mut arena.rng,
            );
            arena.cells.insert(bot.id, bot);
        }
        Ok(arena)
    }

    fn join(
        &mut self,
        ctx: &mut RoomContext,
        player: SessionId,
        options: &Value,
    ) -> Result<(), String> {
        let options: JoinOptions = serde_json::from_value(options.clone()).unwrap_or_default();
        let name: String = options
            .name
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(16)
            .collect();
        let name = if name.trim().is_empty() {
            "player".to_owned()
        } else {
            name
        };
        let cell = Cell::new(player.0, name.clone(), false, &mut self.rng);
        self.cells.insert(player.0, cell);
        let _ = ctx.emit_all("news", &format!("{name} joined"));
        // The code people read out; the id stays what the protocol carries.
        let code = crate::code::room_code(ctx.room());
        let _ = ctx.emit_to(player, "room", &serde_json::json!({ "code": code }));
        self.publish(ctx);
        Ok(())
    }

    fn leave(&mut self, ctx: &mut RoomContext, player: SessionId, reason: &LeaveReason) {
        if let Some(cell) = self.cells.remove(&player.0) {
            let _ = ctx.emit_all("news", &format!("{} left ({reason})", cell.name));
        }
        self.publish(ctx);
    }

    fn input(&mut self, _: &mut RoomContext, player: SessionId, steer: Steer) {
        if let Some(cell) = self.cells.get_mut(&player.0) {
            let (dx, dy) = (steer.dx.clamp(-1.0, 1.0), steer.dy.clamp(-1.0, 1.0));
            if dx.is_finite() && dy.is_finite() {
                let len = (dx * dx + dy * dy).sqrt();
                (cell.dx, cell.dy) = if len > 1.0 {
                    (dx / len, dy / len)
                } else {
                    (dx, dy)
                };
            }
            if steer.dash && cell.dash_cooldown <= 0.0 {
                cell.dash_left = DASH_TIME;
                cell.dash_cooldown = DASH_COOLDOWN;
            }
        }
    }

    fn tick(&mut self, ctx: &mut RoomContext, dt: Duration) {
        let dt = dt.as_secs_f32();
        if ctx.tick().is_multiple_of(6) {
            self.steer_bots();
        }
        for cell in self.cells.values_mut() {
            let speed = if cell.dash_left > 0.0 {
                DASH_SPEED
            } else {
                SPEED
            } * (28.0 / (cell.r + 12.0)).clamp(0.45, 1.0);
            cell.dash_left -= dt;
            cell.dash_cooldown -= dt;
            cell.x = (cell.x + cell.dx * speed * dt).clamp(cell.r, WIDTH - cell.r);
            cell.y = (cell.y + cell.dy * speed * dt).clamp(cell.r, HEIGHT - cell.r);
        }
        // Orbs.
        for cell in self.cells.values_mut() {
            let before = self.orbs.len();
            self.orbs
                .retain(|(x, y)| dist(*x, *y, cell.x, cell.y) > cell.r);
            let got = (before - self.orbs.len()) as u32;
            if got > 0 {
                cell.score += got;
                cell.r = radius(cell.score);
            }
        }
        while self.orbs.len() < ORBS {
            let orb = self.spawn_orb();
            self.orbs.push(orb);
        }
        // A cell clearly bigger than another swallows it: it takes half the score and
        // the smaller one starts again somewhere else.
        let ids: Vec<u64> = self.cells.keys().copied().collect();
        for &a in &ids {
            for &b in &ids {
                if a == b {
                    continue;
                }
                let (Some(big), Some(small)) = (self.cells.get(&a), self.cells.get(&b)) else {
                    continue;
                };
                if big.r > small.r * 1.2
                    && dist(big.x, big.y, small.x, small.y) < big.r - small.r * 0.4
                {
                    let gain = small.score / 2 + 1;
                    let line = format!("{} swallowed {}", big.name, small.name);
                    if let Some(big) = self.cells.get_mut(&a) {
                        big.score += gain;
                        big.r = radius(big.score);
                    }
                    if let Some(small) = self.cells.get(&b) {
                        let (name, bot, dx, dy) =
                            (small.name.clone(), small.bot, small.dx, small.dy);
                        let fresh = Cell::new(b, name, bot, &mut self.rng);
                        self.cells.insert(b, Cell { dx, dy, ..fresh });
                    }
                    self.events.push(line);
                }
            }
        }
        for line in self.events.drain(..) {
            let _ = ctx.emit_all("news", &line);
        }
        if ctx.tick().is_multiple_of(30) {
            self.publish(ctx);
        }
    }

    fn subset(&self, player: SessionId) -> (i16, i16) {
        self.cells
            .get(&player.0)
            .map_or((0, 0), |c| cell_of(c.x, c.y))
    }

    fn state(&self, area: &(i16, i16)) -> View {
        let near = |x: f32, y: f32| {
            let (cx, cy) = cell_of(x, y);
            (cx - area.0).abs() <= 1 && (cy - area.1).abs() <= 1
        };
        let mut top: Vec<(String, u32)> = self
            .cells
            .values()
            .map(|c| (c.name.clone(), c.score))
            .collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(5);
        View {
            cells: self
                .cells
                .values()
                .filter(|c| near(c.x, c.y))
                .cloned()
                .collect(),
            orbs: self
                .orbs
                .iter()
                .filter(|(x, y)| near(*x, *y))
                .map(|(x, y)| (*x as i16, *y as i16))
                .collect(),
            top,
            world: (WIDTH, HEIGHT),
        }
    }
}

impl Arena {
    /// Lobby metadata: who is playing and the best score.
    fn publish(&self, ctx: &mut RoomContext) {
        let humans = self.cells.values().filter(|c| !c.bot).count();
        let best = self.cells.values().map(|c| c.score).max().unwrap_or(0);
        let code = crate::code::room_code(ctx.room());
        ctx.set_metadata(
            serde_json::json!({ "humans": humans, "bots": self.bots, "best": best, "code": code }),
        );
    }
}
