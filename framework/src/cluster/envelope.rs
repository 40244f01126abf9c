//! What one node tells the others through Redis: a broadcast [`Envelope`], and the
//! names of the channels it travels on.
//!
//! The format is ours, written and read here by hand (no serde): nodes of one release
//! talk to each other, and a message that does not parse is dropped and counted,
//! never trusted. All integers are big-endian.
//!
//! ```text
//! u8  version (3)
//! u64 origin node
//! u64 seq (per origin, from 1, in publishing order)
//! u8  flags (bit 0: reliable)
//! u64 number (per origin, numbered by the namespace: the broadcast's `Mark`)
//! u16 namespace length, UTF-8 namespace
//! u16 number of target rooms, then each: u16 length, UTF-8 name
//! u16 number of excluded rooms, then each the same
//! u16 number of excluded sessions, then each u64 session id
//! ..  the encoded event frame (protocol::Frame), to the end
//! ```
//!
//! Excluded sessions travel as ids: a session id names one session cluster-wide
//! (`session/ids.rs`), wherever it is connected now.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

const VERSION: u8 = 3;
const RELIABLE: u8 = 1;
/// The fixed part of the header: version, origin, seq, flags.
const FIXED: usize = 1 + 8 + 8 + 1;

/// A broadcast as it crosses between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    /// The node that published it.
    pub origin: u64,
    /// Its place in the origin's stream of broadcasts.
    pub seq: u64,
    /// Part of the reliable (sequenced, replayed) stream, or volatile.
    pub reliable: bool,
    /// The broadcast's number at its origin, as its namespace there numbered it
    /// (`seq` is the link's, which a namespace does not know when it fans out).
    pub n: u64,
    /// The namespace it was emitted in.
    pub ns: Arc<str>,
    /// Target rooms; empty means the whole namespace.
    pub rooms: Vec<Arc<str>>,
    /// Members of these rooms are left out.
    pub except_rooms: Vec<Arc<str>>,
    /// These sessions are left out.
    pub except_ids: Vec<u64>,
    /// The encoded event frame, as every recipient receives it.
    pub frame: Bytes,
}

/// What the origin knows before the link gives the broadcast its number: everything
/// but origin and seq, encoded once.
#[derive(Debug, Clone)]
pub(crate) struct Body(pub Bytes);

impl Body {
    /// Encodes the parts of a broadcast that do not depend on the link.
    pub fn new(
        reliable: bool,
        n: u64,
        ns: &Arc<str>,
        rooms: &[Arc<str>],
        except: &[Arc<str>],
        except_ids: &[u64],
        frame: &[u8],
    ) -> Self {
        let names: usize = rooms.iter().chain(except).map(|r| 2 + r.len()).sum();
        let ids = 2 + 8 * except_ids.len();
        let mut out = BytesMut::with_capacity(1 + 8 + 6 + ns.len() + names + ids + frame.len());
        out.put_u8(if reliable { RELIABLE } else { 0 });
        out.put_u64(n);
        put_name(&mut out, ns);
        put_names(&mut out, rooms);
        put_names(&mut out, except);
        // As many as a frame can name; an `except` list longer than u16 is cut.
        let count = u16::try_from(except_ids.len()).unwrap_or(u16::MAX);
        out.put_u16(count);
        for id in except_ids.iter().take(usize::from(count)) {
            out.put_u64(*id);
        }
        out.put_slice(frame);
        Body(out.freeze())
    }

    /// The message published: header, then this body.
    pub fn seal(&self, origin: u64, seq: u64) -> Bytes {
        let mut out = BytesMut::with_capacity(FIXED - 1 + self.0.len());
        out.put_u8(VERSION);
        out.put_u64(origin);
        out.put_u64(seq);
        out.put_slice(&self.0);
        out.freeze()
    }
}

fn put_names(out: &mut BytesMut, names: &[Arc<str>]) {
    // Room names are bounded by the frame size limit; a name longer than u16 cannot
    // come from a client frame (and is cut to the limit rather than wrapped).
    let count = u16::try_from(names.len()).unwrap_or(u16::MAX);
    out.put_u16(count);
    for name in names.iter().take(usize::from(count)) {
        put_name(out, name);
    }
}

fn put_name(out: &mut BytesMut, name: &str) {
    let bytes = name.as_bytes();
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.put_u16(len);
    out.put_slice(&bytes[..usize::from(len)]);
}

/// Why a message from Redis was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    Version,
    Truncated,
    Name,
}

impl Envelope {
    /// Reads a published message; the frame is a view into `raw` (no copy).
    pub fn decode(raw: Bytes) -> Result<Envelope, Malformed> {
        let mut r = Reader { raw: &raw, at: 0 };
        if r.u8()? != VERSION {
            return Err(Malformed::Version);
        }
        let origin = r.u64()?;
        let seq = r.u64()?;
        let reliable = r.u8()? & RELIABLE != 0;
        let n = r.u64()?;
        let ns = r.name()?;
        let rooms = r.names()?;
        let except_rooms = r.names()?;
        let except_ids = (0..r.u16()?).map(|_| r.u64()).collect::<Result<_, _>>()?;
        let frame = raw.slice(r.at..);
        Ok(Envelope {
            origin,
            seq,
            reliable,
            n,
            ns,
            rooms,
            except_rooms,
            except_ids,
            frame,
        })
    }
}

struct Reader<'a> {
    raw: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Malformed> {
        let end = self.at.checked_add(n).ok_or(Malformed::Truncated)?;
        let bytes = self.raw.get(self.at..end).ok_or(Malformed::Truncated)?;
        self.at = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Malformed> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u64(&mut self) -> Result<u64, Malformed> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }

    fn names(&mut self) -> Result<Vec<Arc<str>>, Malformed> {
        let count = self.u16()?;
        let mut names = Vec::with_capacity(usize::from(count).min(64));
        for _ in 0..count {
            names.push(self.name()?);
        }
        Ok(names)
    }

    fn name(&mut self) -> Result<Arc<str>, Malformed> {
        let len = usize::from(self.u16()?);
        let name = std::str::from_utf8(self.take(len)?).map_err(|_| Malformed::Name)?;
        Ok(name.into())
    }
}

/// The Redis names of one cluster: every key and channel starts with its prefix, so
/// that several applications can share one Redis.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    prefix: Arc<str>,
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        Names {
            prefix: prefix.into(),
        }
    }

    /// The sharded channel of a room: nodes with members there subscribe to it. The
    /// namespace's length comes first so that no namespace/room pair can spell
    /// another's channel.
    pub fn room(&self, ns: &str, room: &str) -> String {
        format!("{}:room:{}:{ns}{room}", self.prefix, ns.len())
    }

    /// The sharded channel of a namespace-wide broadcast: nodes with sockets in the
    /// namespace subscribe to it.
    pub fn namespace(&self, ns: &str) -> String {
        format!("{}:ns:{ns}", self.prefix)
    }

    /// The registry key of a live node (it expires unless the node refreshes it).
    pub fn node(&self, id: u64) -> String {
        format!("{}:node:{id:016x}", self.prefix)
    }

    /// The sharded channel a node takes questions and answers on.
    pub fn control(&self, id: u64) -> String {
        format!("{}:ctl:{id:016x}", self.prefix)
    }

    /// The sharded channel of the relays whose other end is on node `id`.
    pub fn relay(&self, id: u64) -> String {
        format!("{}:relay:{id:016x}", self.prefix)
    }

    /// The pattern that matches every node's registry key.
    /// The node's game rooms and load (`cluster/game/`).
    pub fn game(&self, id: u64) -> String {
        format!("{}:game:{id:016x}", self.prefix)
    }

    /// The lock of one node making a room for join-or-creates of `what` (type and
    /// filters), so that two at once on two nodes share it.
    pub fn game_create(&self, what: &str) -> String {
        format!("{}:game-create:{what}", self.prefix)
    }

    pub fn nodes(&self) -> String {
        format!("{}:node:*", self.prefix)
    }

    /// The counter nodes take their number in session ids from (`INCR`).
    pub fn node_numbers(&self) -> String {
        format!("{}:node-numbers", self.prefix)
    }
}

/// The kinds of relay message (`relay.rs`): a relayed connection's frames and ends
/// each way, and the game seats' messages (`game/`), which share the relay channel.
pub(crate) const CLIENT_FRAME: u8 = 1;
pub(crate) const CLIENT_CLOSED: u8 = 2;
pub(crate) const SERVER_FRAME: u8 = 3;
pub(crate) const SERVER_CLOSE: u8 = 4;
pub(crate) const SERVER_DROP: u8 = 5;
/// Game seats across nodes (`game/`); the relay number is the sending node.
pub(crate) const GAME: u8 = 6;

/// A relay message: its kind, the relay number (for `GAME`, the sending node), then
/// the payload.
pub(crate) fn message(kind: u8, relay: u64, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(9 + payload.len());
    out.put_u8(kind);
    out.put_u64(relay);
    out.put_slice(payload);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<Arc<str>> {
        list.iter().map(|n| Arc::from(*n)).collect()
    }

    #[test]
    fn round_trips() {
        let ns: Arc<str> = "/chat".into();
        let body = Body::new(
            true,
            5,
            &ns,
            &names(&["red", "blue"]),
            &names(&["spy"]),
            &[3, 1 << 40],
            b"frame",
        );
        let env = Envelope::decode(body.seal(7, 42)).unwrap();
        assert_eq!(
            env,
            Envelope {
                origin: 7,
                seq: 42,
                reliable: true,
                n: 5,
                ns: ns.clone(),
                rooms: names(&["red", "blue"]),
                except_rooms: names(&["spy"]),
                except_ids: vec![3, 1 << 40],
                frame: Bytes::from_static(b"frame"),
            }
        );
        let volatile =
            Envelope::decode(Body::new(false, 1, &ns, &[], &[], &[], b"").seal(1, 1)).unwrap();
        assert!(!volatile.reliable && volatile.rooms.is_empty() && volatile.frame.is_empty());
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let ns: Arc<str> = "/".into();
        let sealed = Body::new(true, 1, &ns, &names(&["room"]), &[], &[9], b"x").seal(1, 2);
        // Anything shorter than the whole header is refused (the frame may be empty).
        for cut in 0..sealed.len() - 1 {
            assert!(
                Envelope::decode(sealed.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
        let mut other = sealed.to_vec();
        other[0] = 9;
        assert_eq!(
            Envelope::decode(Bytes::from(other)),
            Err(Malformed::Version)
        );
        let body = Body::new(true, 1, &ns, &names(&["ab"]), &[], &[], b"");
        let mut bad_name = body.seal(1, 1).to_vec();
        // After the header and number: namespace (2 + 1), room count (2), name
        // length (2).
        bad_name[FIXED + 8 + 3 + 4] = 0xff;
        assert_eq!(
            Envelope::decode(Bytes::from(bad_name)),
            Err(Malformed::Name)
        );
    }

    #[test]
    fn channel_names_cannot_collide() {
        let n = Names::new("volley");
        assert_ne!(n.room("/a", "b/c"), n.room("/a/b", "/c"));
        assert_eq!(n.room("/chat", "lobby"), "volley:room:5:/chatlobby");
        assert_eq!(n.namespace("/chat"), "volley:ns:/chat");
    }
}
