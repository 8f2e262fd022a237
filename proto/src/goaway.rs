//! GOAWAY as draft-18 frames it (section "GOAWAY": New Session URI, Timeout, and on the
//! control stream the Request ID), and a splitter of control streams into whole messages.
//!
//! Why not moq-transport's own: its `GoAway` (0.17) carries the New Session URI only, so
//! it can neither send the draft's message nor read it (the Timeout and Request ID are
//! trailing bytes to it, a PROTOCOL_VIOLATION). Stagecast writes and reads GOAWAY beside
//! it: a draining node puts one on each session's control stream, and a client takes it
//! off before the MoQ session sees it (see [`crate::migration`]).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::varint::{get_varint, put_varint};

/// GOAWAY's message type.
pub const GOAWAY_TYPE: u64 = 0x10;
/// The longest New Session URI the draft allows.
pub const MAX_URI_BYTES: usize = 8192;
/// A control message's Length field is 16 bits.
const MAX_PAYLOAD: usize = u16::MAX as usize;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GoAwayError {
    #[error("GOAWAY New Session URI is {0} bytes; the draft allows {MAX_URI_BYTES}")]
    UriTooLong(usize),
    #[error("GOAWAY New Session URI is not UTF-8")]
    UriNotUtf8,
    #[error("GOAWAY payload is truncated")]
    Truncated,
    #[error("GOAWAY payload has {0} bytes after its last field")]
    TrailingBytes(usize),
}

/// A server's request that its peer move (or a client's notice that it is leaving).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoAway {
    /// Where to reconnect; empty means the current URI.
    pub new_session_uri: String,
    /// How long, in milliseconds, the sender waits before closing; 0 means no promise.
    pub timeout_ms: u64,
    /// Present on the control stream only: the smallest peer Request ID that was not or
    /// might not have been processed.
    pub request_id: Option<u64>,
}

impl GoAway {
    /// The whole message: Type, 16-bit Length, then the fields.
    pub fn encode(&self) -> Result<Bytes, GoAwayError> {
        let uri = self.new_session_uri.as_bytes();
        if uri.len() > MAX_URI_BYTES {
            return Err(GoAwayError::UriTooLong(uri.len()));
        }
        let mut payload = BytesMut::with_capacity(uri.len() + 24);
        put_varint(&mut payload, uri.len() as u64);
        payload.put_slice(uri);
        put_varint(&mut payload, self.timeout_ms);
        if let Some(id) = self.request_id {
            put_varint(&mut payload, id);
        }
        let mut message = BytesMut::with_capacity(payload.len() + 4);
        put_varint(&mut message, GOAWAY_TYPE);
        // Bounded by MAX_URI_BYTES plus three varints, far below the 16-bit limit.
        message.put_u16(payload.len() as u16);
        message.put_slice(&payload);
        Ok(message.freeze())
    }

    /// Reads a GOAWAY's payload (after Type and Length); `on_control` says whether a
    /// Request ID follows.
    pub fn decode_payload(mut payload: &[u8], on_control: bool) -> Result<Self, GoAwayError> {
        let uri_len = take_varint(&mut payload)?;
        let uri_len = usize::try_from(uri_len).unwrap_or(usize::MAX);
        if uri_len > MAX_URI_BYTES {
            return Err(GoAwayError::UriTooLong(uri_len));
        }
        if payload.len() < uri_len {
            return Err(GoAwayError::Truncated);
        }
        let new_session_uri = std::str::from_utf8(&payload[..uri_len])
            .map_err(|_| GoAwayError::UriNotUtf8)?
            .to_string();
        payload.advance(uri_len);
        let timeout_ms = take_varint(&mut payload)?;
        let request_id = if on_control {
            Some(take_varint(&mut payload)?)
        } else {
            None
        };
        if !payload.is_empty() {
            return Err(GoAwayError::TrailingBytes(payload.len()));
        }
        Ok(Self {
            new_session_uri,
            timeout_ms,
            request_id,
        })
    }
}

fn take_varint(buf: &mut &[u8]) -> Result<u64, GoAwayError> {
    let (value, len) = get_varint(buf).ok_or(GoAwayError::Truncated)?;
    buf.advance(len);
    Ok(value)
}

/// One whole control message as it was on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlMessage {
    pub message_type: u64,
    /// Type, Length and payload.
    pub bytes: Bytes,
    /// Where the payload starts in `bytes`.
    pub payload_at: usize,
}

impl ControlMessage {
    pub fn payload(&self) -> &[u8] {
        &self.bytes[self.payload_at..]
    }
}

/// Splits a control stream's bytes into whole messages (Type, 16-bit Length, payload).
/// It holds at most one unfinished message, so at most 64 KiB plus a header.
#[derive(Default)]
pub struct MessageSplitter {
    buffered: BytesMut,
}

impl MessageSplitter {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffered.extend_from_slice(bytes);
    }

    /// The next whole message, if all of it has been pushed.
    pub fn next_message(&mut self) -> Option<ControlMessage> {
        let (message_type, type_len) = get_varint(&self.buffered)?;
        let length_at = type_len;
        let header = self.buffered.get(length_at..length_at + 2)?;
        let length = usize::from(u16::from_be_bytes([header[0], header[1]]));
        debug_assert!(length <= MAX_PAYLOAD);
        let payload_at = length_at + 2;
        if self.buffered.len() < payload_at + length {
            return None;
        }
        let bytes = self.buffered.split_to(payload_at + length).freeze();
        Some(ControlMessage {
            message_type,
            bytes,
            payload_at,
        })
    }

    /// Whether everything pushed so far ended on a message boundary.
    pub fn at_boundary(&self) -> bool {
        self.buffered.is_empty()
    }

    /// What is left of an unfinished message.
    pub fn take_rest(&mut self) -> Bytes {
        self.buffered.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn goaway(uri: &str, request_id: Option<u64>) -> GoAway {
        GoAway {
            new_session_uri: uri.to_string(),
            timeout_ms: 5000,
            request_id,
        }
    }

    #[test]
    fn round_trips_on_control_and_request_streams() {
        for (message, on_control) in [
            (goaway("moqt://other.example:4443/", Some(12)), true),
            (goaway("", Some(0)), true),
            (goaway("moqt://x/", None), false),
        ] {
            let bytes = message.encode().unwrap();
            let mut splitter = MessageSplitter::default();
            splitter.push(&bytes);
            let whole = splitter.next_message().unwrap();
            assert_eq!(whole.message_type, GOAWAY_TYPE);
            assert_eq!(
                GoAway::decode_payload(whole.payload(), on_control).unwrap(),
                message
            );
            assert!(splitter.at_boundary());
        }
    }

    #[test]
    fn matches_the_draft_layout_byte_for_byte() {
        let bytes = goaway("ab", Some(4)).encode().unwrap();
        // Type 0x10, Length 6, URI length 2, "ab", Timeout 5000 (2-byte varint), ID 4.
        assert_eq!(
            &bytes[..],
            &[0x10, 0x00, 0x06, 0x02, b'a', b'b', 0x93, 0x88, 0x04]
        );
    }

    #[test]
    fn refuses_bad_payloads() {
        let too_long = "x".repeat(MAX_URI_BYTES + 1);
        assert_eq!(
            goaway(&too_long, None).encode(),
            Err(GoAwayError::UriTooLong(MAX_URI_BYTES + 1))
        );
        // The URI-only form moq-transport 0.17 sends: no Timeout.
        assert_eq!(
            GoAway::decode_payload(&[0x01, b'a'], true),
            Err(GoAwayError::Truncated)
        );
        assert_eq!(
            GoAway::decode_payload(&[0x00, 0x00, 0x00, 0x07], true),
            Err(GoAwayError::TrailingBytes(1))
        );
        assert_eq!(
            GoAway::decode_payload(&[0x01, 0xFF, 0x00], false),
            Err(GoAwayError::UriNotUtf8)
        );
    }

    #[test]
    fn splits_messages_across_arbitrary_chunks() {
        let mut stream = BytesMut::new();
        stream.extend_from_slice(&[0x07, 0x00, 0x01, 0x00]); // REQUEST_OK-like, 1 byte
        stream.extend_from_slice(&goaway("moqt://a/", Some(2)).encode().unwrap());
        stream.extend_from_slice(&[0x80, 0x50, 0x00, 0x00]); // 2-byte type, empty payload
        for chunk in 1..stream.len() {
            let mut splitter = MessageSplitter::default();
            let mut types = Vec::new();
            for piece in stream.chunks(chunk) {
                splitter.push(piece);
                while let Some(message) = splitter.next_message() {
                    types.push(message.message_type);
                }
            }
            assert_eq!(types, [0x07, GOAWAY_TYPE, 0x50], "chunks of {chunk}");
            assert!(splitter.at_boundary());
        }
    }
}
