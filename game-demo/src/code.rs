//! Room codes: what the demo shows people instead of a room id, short enough to read
//! out across a room and type (`#K7Q2`).
//!
//! A code is a presentation of the id, computed here and sent next to it (lobby
//! metadata, the `room` event, the admin overview); the wire and the framework keep
//! the opaque id. The low 32 bits of an id count the rooms its node has made, the
//! bits above are the node's tag in a cluster (0 on one node): the code packs 12 bits
//! of the count and 8 bits of the tag into 20 bits, scrambles them with a bijection
//! so that neighbouring rooms do not get neighbouring codes, and writes them as 4
//! symbols of Crockford's base 32 (no I, L, O or U to misread). Rooms made one after
//! another get different codes for 4096 rooms; rooms of different nodes mostly
//! differ by their tag.

use volley::RoomId;

/// Crockford's base 32: digits and capitals without I, L, O and U.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const BITS: u32 = 20;
const MASK: u32 = (1 << BITS) - 1;
/// Odd, so multiplying by it modulo 2^20 is a bijection.
const SPREAD: u32 = 0x9E3B5;

/// The code of room `id`, 4 symbols.
pub fn room_code(id: RoomId) -> String {
    let index = (id.0 & 0xFFF) as u32;
    // Node tags are odd (0 on a single node): drop the always-set bit.
    let tag = ((id.0 >> 33) & 0xFF) as u32;
    let packed = index | (tag << 12);
    let mut x = packed.wrapping_mul(SPREAD) & MASK;
    x ^= x >> 10;
    (0..4)
        .rev()
        .map(|i| char::from(ALPHABET[((x >> (5 * i)) & 31) as usize]))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn id(index: u64, version: u64) -> RoomId {
        RoomId((version << 32) | index)
    }

    #[test]
    fn codes_are_four_readable_symbols() {
        let code = room_code(RoomId(4294967297));
        assert_eq!(code.len(), 4);
        assert!(code.bytes().all(|b| ALPHABET.contains(&b)), "{code}");
    }

    #[test]
    fn rooms_alive_together_get_different_codes_and_neighbours_do_not_look_alike() {
        let codes: HashSet<String> = (0..4096).map(|i| room_code(id(i, 1))).collect();
        assert_eq!(codes.len(), 4096);
        // Every slot reused 256 times still gives a code never seen before.
        let all: HashSet<String> = (0..4096)
            .flat_map(|i| (0..256).map(move |v| room_code(id(i, 2 * v + 1))))
            .collect();
        assert_eq!(all.len(), 1 << 20);
        let (a, b) = (room_code(id(1, 1)), room_code(id(2, 1)));
        assert_ne!(a[..3], b[..3], "{a} {b}");
    }
}
