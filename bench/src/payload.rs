//! The synthetic objects: the send time (u64 nanoseconds since the Unix epoch, big-endian)
//! followed by filler. Publisher and subscribers share one clock (loopback, one machine),
//! so receive time minus this stamp is the object's end-to-end latency.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of the stamp at the start of every object.
pub const STAMP_BYTES: usize = 8;

/// Now, in nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// An object of `size` bytes (at least the stamp) stamped with `sent_ns`.
pub fn make(size: usize, sent_ns: u64) -> Bytes {
    let size = size.max(STAMP_BYTES);
    let mut buf = BytesMut::with_capacity(size);
    buf.put_u64(sent_ns);
    buf.resize(size, 0xA5);
    buf.freeze()
}

/// The send time stamped in `payload`, if it is long enough to hold one.
pub fn sent_ns(payload: &[u8]) -> Option<u64> {
    let stamp: [u8; STAMP_BYTES] = payload.get(..STAMP_BYTES)?.try_into().ok()?;
    Some(u64::from_be_bytes(stamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips() {
        let payload = make(12_500, 1_700_000_000_123_456_789);
        assert_eq!(payload.len(), 12_500);
        assert_eq!(sent_ns(&payload), Some(1_700_000_000_123_456_789));
        assert_eq!(sent_ns(&payload[..4]), None);
    }
}
