//! MoQT variable-length integers (draft-18 §1.4.1), for the wire formats this project
//! writes itself beside moq-transport's: interaction stream framing, GOAWAY, the
//! demultiplexer's look at a stream's first bytes.

use bytes::{Buf, BufMut};

/// Appends `value` as a draft-18 variable-length integer (MoQT draft-18 §1.4.1: the count
/// of leading one bits of the first byte gives the length).
pub fn put_varint(buf: &mut impl BufMut, value: u64) {
    let len = varint_len(value);
    if len == 9 {
        buf.put_u8(0xFF);
        buf.put_u64(value);
        return;
    }
    let prefix: u8 = !(0xFFu8 >> (len - 1));
    let bytes = value.to_be_bytes();
    let mut out = [0u8; 8];
    out[8 - len..].copy_from_slice(&bytes[8 - len..]);
    out[8 - len] |= prefix;
    buf.put_slice(&out[8 - len..]);
}

fn varint_len(value: u64) -> usize {
    (1..=8).find(|&n| value < 1u64 << (7 * n)).unwrap_or(9)
}

/// Reads a draft-18 varint from the front of `buf`; `None` if it is not all there yet.
pub fn get_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    let len = (first.leading_ones() as usize + 1).min(9);
    if buf.len() < len {
        return None;
    }
    if len == 9 {
        let mut rest = &buf[1..9];
        return Some((rest.get_u64(), 9));
    }
    let mut value = u64::from(first & 0xFFu8.checked_shr(len as u32).unwrap_or(0));
    for byte in &buf[1..len] {
        value = (value << 8) | u64::from(*byte);
    }
    Some((value, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_the_draft_examples() {
        // MoQT draft-18 §1.4.1 example encodings.
        for (bytes, value) in [
            (&[0x25u8][..], 37u64),
            (&[0x80, 0x25], 37),
            (&[0xbb, 0xbd], 15_293),
            (&[0xed, 0x7f, 0x3e, 0x7d], 226_442_877),
            (&[0xfa, 0xa1, 0xa0, 0xe4, 0x03, 0xd8], 2_893_212_287_960),
            (&[0xff; 9], u64::MAX),
        ] {
            assert_eq!(get_varint(bytes), Some((value, bytes.len())), "{bytes:x?}");
        }
        // The interaction stream header starts with one.
        assert_eq!(get_varint(&[0xE0, 0x53, 0x54, 0x43]), Some((0x535443, 4)));
    }

    #[test]
    fn varints_round_trip_at_every_length_boundary() {
        for n in 0..=9u32 {
            for value in [(1u64 << (7 * n).min(63)) - 1, 1u64 << (7 * n).min(63)] {
                let mut buf = Vec::new();
                put_varint(&mut buf, value);
                assert_eq!(get_varint(&buf), Some((value, buf.len())), "{value}");
                assert_eq!(get_varint(&buf[..buf.len() - 1]), None);
            }
        }
    }
}
