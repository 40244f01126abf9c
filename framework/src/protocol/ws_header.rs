//! The header of a WebSocket message as the server writes it (unmasked, one whole
//! message per frame): the same bytes for every recipient, written in front of a
//! broadcast's payload once (`wire.rs`, and the Socket.IO endpoint's text records).

/// FIN set, opcode 2 (binary): one whole binary message per frame.
const FIN_BINARY: u8 = 0x82;

/// FIN set, opcode 1 (text): one whole text message per frame (the Socket.IO
/// endpoint's records).
const FIN_TEXT: u8 = 0x81;

/// The longest WebSocket header a server writes (no mask): 2 bytes and a 64-bit length.
pub(crate) const MAX_HEADER: usize = 10;

/// The header of an unmasked binary message of `len` bytes, and its length.
pub(crate) fn header(len: usize) -> ([u8; MAX_HEADER], usize) {
    header_of(FIN_BINARY, len)
}

/// The header of an unmasked text message of `len` bytes, and its length.
pub(crate) fn text_header(len: usize) -> ([u8; MAX_HEADER], usize) {
    header_of(FIN_TEXT, len)
}

fn header_of(first: u8, len: usize) -> ([u8; MAX_HEADER], usize) {
    let mut head = [0; MAX_HEADER];
    head[0] = first;
    if len < 126 {
        // Fits in 7 bits: the cast cannot truncate.
        head[1] = len as u8;
        (head, 2)
    } else if let Ok(short) = u16::try_from(len) {
        head[1] = 126;
        head[2..4].copy_from_slice(&short.to_be_bytes());
        (head, 4)
    } else {
        head[1] = 127;
        head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (head, 10)
    }
}
