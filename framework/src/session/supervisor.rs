//! The supervisor: the one registry of live sessions.
//!
//! It hands out session ids and resume tokens and answers "who is connected". It is
//! not on the per-message path: sessions talk to namespaces and rooms directly and
//! only register, unregister and resume through here.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use rand::RngCore;

use super::ids::SessionIds;
use super::{Session, TransportKind};
use crate::log_gate::LogGate;
use crate::metrics::ResumeResults;
use crate::namespace::SessionLink;
use crate::node::NodeNumber;
use crate::protocol::ResumeToken;
use crate::SessionId;

/// A row of the registry, as shown to the application (admin views, metrics).
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The session id.
    pub id: SessionId,
    /// When the session opened.
    pub opened_at: SystemTime,
    /// Namespaces the session has joined.
    pub namespaces: Vec<String>,
    /// The kind of connection the session is attached to; `None` while it is
    /// detached (waiting for a resume within the grace window).
    pub transport: Option<TransportKind>,
    /// The last round-trip time measured by the heartbeat; `None` before the first
    /// pong.
    pub rtt: Option<Duration>,
}

/// One session in the registry. Kept small: the table holds one per session, and
/// more than one bucket per session at its load.
struct Entry {
    /// The address the session's sockets share (an actix address per holder would
    /// allocate its own sender cells).
    addr: Arc<Addr<Session>>,
    token: ResumeToken,
    opened_at: SystemTime,
    /// The names of the joined namespaces, sorted (the namespaces' own names, shared).
    namespaces: Box<[Arc<str>]>,
    /// The state the session shares with its sockets (RTT, transport); `None` for
    /// the moment between registering and opening.
    link: Option<Arc<SessionLink>>,
    /// The move that brought the session here (see [`CancelMove`]); 0: opened here.
    #[cfg(feature = "cluster")]
    moved_in: u64,
    /// Frozen for a move (see [`SetMoving`]): a resume is told to ask again.
    #[cfg(feature = "cluster")]
    moving: bool,
}

/// Owns the session registry.
pub struct Supervisor {
    sessions: HashMap<SessionId, Entry>,
    /// Makes the ids of new sessions (see `ids.rs`).
    ids: SessionIds,
    /// Counts the resumes refused here (unknown session, wrong token).
    resumes: ResumeResults,
    /// The detaches of sessions by detach number (oldest first), each with its
    /// session and client address, at most `max_detached` (see [`Detached`]): every
    /// session waiting to resume has its latest one here.
    detached: BTreeMap<u64, (SessionId, Option<IpAddr>)>,
    /// `Config::max_detached_sessions`, resolved.
    max_detached: usize,
    /// The same detaches by client address, at most `per_address` each: exactly the
    /// entries of `detached` with that address (one leaving either leaves both).
    by_address: HashMap<IpAddr, BTreeSet<u64>>,
    /// How many of the sessions waiting to resume one client address may have
    /// (`Config::max_connections_per_ip`: as many as it may hold connected).
    per_address: usize,
    /// Moves (session, move number) cancelled before they arrived (see
    /// [`CancelMove`]): their `Adopt` is refused. Bounded: entries older than
    /// [`CANCELLED_FOR`] go.
    #[cfg(feature = "cluster")]
    cancelled: HashMap<(SessionId, u64), std::time::Instant>,
}

/// How long a cancelled move is remembered (far longer than a move's round trip).
#[cfg(feature = "cluster")]
const CANCELLED_FOR: Duration = Duration::from_secs(60);
/// At most this many cancelled moves are remembered at once.
#[cfg(feature = "cluster")]
const CANCELLED_MAX: usize = 4096;

impl Supervisor {
    /// An empty registry that counts refused resumes into `resumes`, numbers
    /// sessions after node number `node` and keeps at most `max_detached` sessions
    /// waiting to resume, at most `per_address` of them from one client address.
    pub(crate) fn new(
        resumes: ResumeResults,
        node: Arc<NodeNumber>,
        max_detached: usize,
        per_address: usize,
    ) -> Self {
        Supervisor {
            sessions: HashMap::new(),
            ids: SessionIds::new(node),
            resumes,
            detached: BTreeMap::new(),
            max_detached,
            by_address: HashMap::new(),
            per_address,
            #[cfg(feature = "cluster")]
            cancelled: HashMap::new(),
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;
}

/// Registers a new session; answers its id and a fresh resume token.
#[derive(Message)]
#[rtype(result = "(SessionId, ResumeToken)")]
pub struct Register {
    pub addr: Arc<Addr<Session>>,
}

impl Handler<Register> for Supervisor {
    type Result = MessageResult<Register>;

    fn handle(&mut self, msg: Register, _: &mut Context<Self>) -> Self::Result {
        let mut token = ResumeToken::default();
        rand::rngs::OsRng.fill_bytes(&mut token);
        let id = self.ids.next(&self.sessions);
        let entry = Entry {
            addr: msg.addr,
            token,
            opened_at: SystemTime::now(),
            namespaces: Box::default(),
            link: None,
            #[cfg(feature = "cluster")]
            moved_in: 0,
            #[cfg(feature = "cluster")]
            moving: false,
        };
        self.sessions.insert(id, entry);
        MessageResult((id, token))
    }
}

/// Registers a session moved here from another node under its own id and token
/// (see `moving.rs`); `false` when the id is in use here.
#[cfg(feature = "cluster")]
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct Adopt {
    pub id: SessionId,
    pub token: ResumeToken,
    pub opened_at: SystemTime,
    pub addr: Addr<Session>,
    /// The move's number (see [`CancelMove`]).
    pub moved_in: u64,
}

#[cfg(feature = "cluster")]
impl Handler<Adopt> for Supervisor {
    type Result = bool;

    fn handle(&mut self, msg: Adopt, _: &mut Context<Self>) -> bool {
        let cancelled = self.cancelled.remove(&(msg.id, msg.moved_in)).is_some();
        if cancelled || self.sessions.contains_key(&msg.id) {
            return false;
        }
        let entry = Entry {
            addr: Arc::new(msg.addr),
            token: msg.token,
            opened_at: msg.opened_at,
            namespaces: Box::default(),
            link: None,
            moved_in: msg.moved_in,
            // Until its old node's window of broadcasts is merged (or known lost),
            // a resume waits: the move may yet turn out not to have happened.
            moving: true,
        };
        self.sessions.insert(msg.id, entry);
        true
    }
}

/// Marks a session frozen for a move (or no longer): meanwhile a resume of it is
/// answered [`MOVING`], and asked again until the move lands or is undone.
#[cfg(feature = "cluster")]
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SetMoving {
    pub id: SessionId,
    pub moving: bool,
}

#[cfg(feature = "cluster")]
impl Handler<SetMoving> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: SetMoving, _: &mut Context<Self>) {
        if let Some(entry) = self.sessions.get_mut(&msg.id) {
            entry.moving = msg.moving;
        }
    }
}

/// The moving node did not hear whether its `MoveIn` was taken and cancels it
/// (see `cluster/drain.rs`): answers the session if that move brought it here;
/// otherwise remembers the move, so that its `MoveIn` arriving late is refused (a
/// later move of the same session, with another number, is not).
#[cfg(feature = "cluster")]
#[derive(Message)]
#[rtype(result = "Option<Addr<Session>>")]
pub(crate) struct CancelMove {
    pub id: SessionId,
    pub token: ResumeToken,
    pub moved_in: u64,
}

#[cfg(feature = "cluster")]
impl Handler<CancelMove> for Supervisor {
    type Result = Option<Addr<Session>>;

    fn handle(&mut self, msg: CancelMove, _: &mut Context<Self>) -> Self::Result {
        if let Some(session) = self.moved_here(msg.id, msg.token, msg.moved_in) {
            return Some(session);
        }
        let now = std::time::Instant::now();
        self.cancelled
            .retain(|_, at| now.duration_since(*at) < CANCELLED_FOR);
        if self.cancelled.len() < CANCELLED_MAX {
            self.cancelled.insert((msg.id, msg.moved_in), now);
        }
        None
    }
}

/// The session that move `moved_in` brought here, if it is still here with
/// `token`.
#[cfg(feature = "cluster")]
#[derive(Message)]
#[rtype(result = "Option<Addr<Session>>")]
pub(crate) struct MovedHere {
    pub id: SessionId,
    pub token: ResumeToken,
    pub moved_in: u64,
}

#[cfg(feature = "cluster")]
impl Handler<MovedHere> for Supervisor {
    type Result = Option<Addr<Session>>;

    fn handle(&mut self, msg: MovedHere, _: &mut Context<Self>) -> Self::Result {
        self.moved_here(msg.id, msg.token, msg.moved_in)
    }
}

#[cfg(feature = "cluster")]
impl Supervisor {
    /// The session move `moved_in` brought here, if it is here with `token`.
    fn moved_here(
        &self,
        id: SessionId,
        token: ResumeToken,
        moved_in: u64,
    ) -> Option<Addr<Session>> {
        let entry = self.sessions.get(&id)?;
        (entry.token == token && entry.moved_in == moved_in).then(|| Addr::clone(&entry.addr))
    }
}

/// Whether session `id` is registered here with `token` (see `Request::Holds`).
#[cfg(feature = "cluster")]
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct Holds {
    pub id: SessionId,
    pub token: ResumeToken,
}

#[cfg(feature = "cluster")]
impl Handler<Holds> for Supervisor {
    type Result = bool;

    fn handle(&mut self, msg: Holds, _: &mut Context<Self>) -> bool {
        self.sessions
            .get(&msg.id)
            .is_some_and(|entry| entry.token == msg.token)
    }
}

/// The sessions to move off a draining node: each one's address, token and
/// opening time.
#[cfg(feature = "cluster")]
#[derive(Message)]
#[rtype(result = "Vec<(SessionId, Addr<Session>, ResumeToken, SystemTime)>")]
pub(crate) struct Movable;

#[cfg(feature = "cluster")]
impl Handler<Movable> for Supervisor {
    type Result = MessageResult<Movable>;

    fn handle(&mut self, _: Movable, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.sessions
                .iter()
                .map(|(id, e)| (*id, Addr::clone(&e.addr), e.token, e.opened_at))
                .collect(),
        )
    }
}

/// Removes an ended session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unregister {
    pub id: SessionId,
}

impl Handler<Unregister> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Unregister, _: &mut Context<Self>) {
        self.sessions.remove(&msg.id);
    }
}

/// A number for a session's detach, unique in the process (0 is never one).
pub(crate) fn next_detach() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Session `id` lost its connection (its detach number `since`), from client
/// `address` if known, and waits to resume. Past `max_detached` such detaches the
/// oldest is taken off the list and its session told to [`Evict`] itself, if it
/// still waits since then: at most `max_detached` sessions wait at once, and the
/// list holds no more than that. Past its address's share (`per_address`) the
/// oldest of that address goes the same way, so that one client address
/// reconnecting without end makes its own sessions give way, not everyone's.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Detached {
    pub id: SessionId,
    pub since: u64,
    pub address: Option<IpAddr>,
}

impl Handler<Detached> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Detached, _: &mut Context<Self>) {
        if !self.sessions.contains_key(&msg.id) {
            return;
        }
        self.detached.insert(msg.since, (msg.id, msg.address));
        if let Some(address) = msg.address {
            let mine = self.by_address.entry(address).or_default();
            mine.insert(msg.since);
            let over = match mine.len() > self.per_address {
                true => mine.pop_first(),
                false => None,
            };
            if mine.is_empty() {
                self.by_address.remove(&address);
            }
            // Out of both lists: what an address sheds no longer counts against the
            // server's limit (or an address shedding its own would push out others).
            if let Some((since, (id, _))) = over.and_then(|s| self.detached.remove_entry(&s)) {
                self.evict(id, since, self.per_address, Some(address));
            }
        }
        while self.detached.len() > self.max_detached {
            let Some((since, (id, address))) = self.detached.pop_first() else {
                break;
            };
            if let Some(address) = address {
                if let MapEntry::Occupied(mut mine) = self.by_address.entry(address) {
                    mine.get_mut().remove(&since);
                    if mine.get().is_empty() {
                        mine.remove();
                    }
                }
            }
            self.evict(id, since, self.max_detached, None);
        }
    }
}

impl Supervisor {
    /// Tells session `id` to end if it still waits since its detach `since`. A
    /// session that resumed or detached again since gets an `Evict` it ignores (the
    /// lists keep no more than they must, not only live waits).
    fn evict(&self, id: SessionId, since: u64, max: usize, address: Option<IpAddr>) {
        if let Some(entry) = self.sessions.get(&id) {
            entry.addr.do_send(Evict {
                since,
                max,
                address,
            });
        }
    }
}

/// Ends the session if it still waits to resume since its detach `since` (see
/// [`Detached`]), with [`crate::DisconnectReason::Evicted`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct Evict {
    pub since: u64,
    /// The limit, for the log.
    pub max: usize,
    /// The client address over its share, or `None`: over the limit of all.
    pub address: Option<IpAddr>,
}

/// Keeps the registry's view of a session's namespaces current.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetNamespaces {
    pub id: SessionId,
    pub namespaces: Box<[Arc<str>]>,
}

impl Handler<SetNamespaces> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: SetNamespaces, _: &mut Context<Self>) {
        if let Some(entry) = self.sessions.get_mut(&msg.id) {
            entry.namespaces = msg.namespaces;
        }
    }
}

/// Gives the registry the session's shared state, once it is open.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SetLink {
    pub(crate) id: SessionId,
    pub(crate) link: Arc<SessionLink>,
}

impl Handler<SetLink> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: SetLink, _: &mut Context<Self>) {
        if let Some(entry) = self.sessions.get_mut(&msg.id) {
            entry.link = Some(msg.link);
        }
    }
}

/// Lists the live sessions.
#[derive(Message)]
#[rtype(result = "Vec<SessionInfo>")]
pub struct ListSessions;

impl Handler<ListSessions> for Supervisor {
    type Result = MessageResult<ListSessions>;

    fn handle(&mut self, _: ListSessions, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.sessions
                .iter()
                .map(|(id, e)| SessionInfo {
                    id: *id,
                    opened_at: e.opened_at,
                    namespaces: e.namespaces.iter().map(|ns| ns.to_string()).collect(),
                    transport: e.link.as_ref().and_then(|l| {
                        TransportKind::from_code(l.transport.load(Ordering::Relaxed))
                    }),
                    rtt: e.link.as_ref().and_then(|l| l.rtt()),
                })
                .collect(),
        )
    }
}

/// Counts the live sessions.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CountSessions;

impl Handler<CountSessions> for Supervisor {
    type Result = usize;

    fn handle(&mut self, _: CountSessions, _: &mut Context<Self>) -> usize {
        self.sessions.len()
    }
}

/// Ends a session from the application side (kick).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct KickSession {
    pub id: SessionId,
    pub reason: String,
}

impl Handler<KickSession> for Supervisor {
    type Result = bool;

    fn handle(&mut self, msg: KickSession, _: &mut Context<Self>) -> bool {
        match self.sessions.get(&msg.id) {
            Some(entry) => {
                entry.addr.do_send(super::Kick { reason: msg.reason });
                true
            }
            None => false,
        }
    }
}

impl Handler<crate::namespace::LeaveSockets> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: crate::namespace::LeaveSockets, _: &mut Context<Self>) {
        for id in msg.ids {
            if let Some(entry) = self.sessions.get(&id) {
                entry.addr.do_send(crate::namespace::SocketCommand::Leave {
                    ns: msg.ns.clone(),
                    reason: msg.reason.clone(),
                });
            }
        }
    }
}

/// Drops a session's connection without ending the session (it may resume).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct DropConnection {
    pub id: SessionId,
}

impl Handler<DropConnection> for Supervisor {
    type Result = bool;

    fn handle(&mut self, msg: DropConnection, _: &mut Context<Self>) -> bool {
        match self.sessions.get(&msg.id) {
            Some(entry) => {
                entry.addr.do_send(super::DropConnection);
                true
            }
            None => false,
        }
    }
}

/// Why a resume is refused: no such session here.
const UNKNOWN_SESSION: &str = "unknown or expired session";
/// Why a resume is refused: the session is here, the token is not its own.
const BAD_TOKEN: &str = "invalid resume token";
/// Why a resume of a session on its way to another node waits (see [`SetMoving`]).
#[cfg(feature = "cluster")]
pub(crate) const MOVING: &str = "session moving to another node";

impl Supervisor {
    /// The metrics label of a refusal of [`ResumeSession`] (for a caller that asked
    /// `quiet` and counts the outcome itself).
    #[cfg(feature = "cluster")]
    pub(crate) fn refusal_label(reason: &str) -> &'static str {
        if reason == BAD_TOKEN {
            "bad_token"
        } else {
            "unknown_session"
        }
    }
}

/// Finds a session for a reconnecting client, checking its resume token.
#[derive(Message)]
#[rtype(result = "Result<Addr<Session>, String>")]
pub struct ResumeSession {
    pub sid: SessionId,
    pub token: ResumeToken,
    /// Leave a refusal uncounted: the caller asks other nodes next and counts the
    /// outcome itself (a cluster).
    pub quiet: bool,
}

impl Handler<ResumeSession> for Supervisor {
    type Result = Result<Addr<Session>, String>;

    fn handle(&mut self, msg: ResumeSession, _: &mut Context<Self>) -> Self::Result {
        let Some(entry) = self.sessions.get(&msg.sid) else {
            if !msg.quiet {
                self.resumes.count("unknown_session");
            }
            return Err(UNKNOWN_SESSION.to_owned());
        };
        if !tokens_equal(&entry.token, &msg.token) {
            if !msg.quiet {
                static WARNED: LogGate = LogGate::new();
                if let Some(suppressed) = WARNED.admit() {
                    tracing::warn!(sid = msg.sid.0, suppressed, "resume refused: wrong token");
                }
                self.resumes.count("bad_token");
            }
            return Err(BAD_TOKEN.to_owned());
        }
        #[cfg(feature = "cluster")]
        if entry.moving {
            return Err(MOVING.to_owned());
        }
        Ok(Addr::clone(&entry.addr))
    }
}

/// Compares two secrets in time independent of where they differ.
pub fn tokens_equal(a: &ResumeToken, b: &ResumeToken) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}
