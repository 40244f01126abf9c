//! How a frame's text and byte fields are read: as borrowed data, copied once into
//! the owned field.
//!
//! Asked for a `String` or a byte buffer, bincode allocates a zeroed buffer of the
//! field's length (`calloc`, which skips the allocator's per-thread cache and takes
//! its arena's lock) and copies the bytes into it; asked for a `&str` or a `&[u8]`
//! while it reads a slice (as `codec::decode` does), it hands over the bytes where
//! they are, and the field is made with one plain allocation. Formats that cannot
//! lend their data hand it over owned or transient, and it is kept or copied as it
//! comes.

use std::fmt;

use serde::de::{Deserializer, Error, SeqAccess, Visitor};
use serde_bytes::ByteBuf;

/// A text field.
pub(super) fn string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    struct Text;

    impl Visitor<'_> for Text {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }

        fn visit_str<E: Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }

        fn visit_string<E: Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }
    }

    deserializer.deserialize_str(Text)
}

/// A byte field (a JSON payload, an auth payload).
pub(super) fn bytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ByteBuf, D::Error> {
    struct Bytes;

    impl<'de> Visitor<'de> for Bytes {
        type Value = ByteBuf;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
            Ok(ByteBuf::from(v))
        }

        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
            Ok(ByteBuf::from(v))
        }

        fn visit_str<E: Error>(self, v: &str) -> Result<ByteBuf, E> {
            Ok(ByteBuf::from(v.as_bytes()))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ByteBuf, A::Error> {
            // Bounded by what the format holds: the frame's own size.
            let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(byte) = seq.next_element()? {
                bytes.push(byte);
            }
            Ok(ByteBuf::from(bytes))
        }
    }

    deserializer.deserialize_bytes(Bytes)
}

#[cfg(test)]
mod tests {
    use crate::protocol::{decode, encode, Frame};

    #[test]
    fn text_and_bytes_read_back_as_written() {
        let frames = [
            Frame::Event {
                ns: "/game".into(),
                name: "input ✓".into(),
                payload: serde_bytes::ByteBuf::from(&b"{\"seq\":7}"[..]),
                ack: Some(3),
            },
            Frame::Connect {
                ns: String::new(),
                auth: serde_bytes::ByteBuf::new(),
            },
        ];
        for frame in frames {
            assert_eq!(decode(&encode(&frame)).unwrap(), frame);
        }
    }

    #[test]
    fn text_that_is_not_utf8_is_refused() {
        let mut bytes = encode(&Frame::Connected { ns: "/ab".into() }).to_vec();
        let last = bytes.len() - 1;
        bytes[last] = 0xff;
        assert!(decode(&bytes).is_err());
    }
}
