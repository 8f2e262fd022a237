//! Request-stream framing: a five-byte header that tells an interaction stream from a MoQ
//! request stream, then frames of a draft-18 varint length and a JSON object.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::varint::{get_varint, put_varint};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The draft-18 varint 0x535443 ("STC", no MoQ message type) and protocol version 1.
pub const STREAM_HEADER: [u8; 5] = [0xE0, 0x53, 0x54, 0x43, 0x01];
/// The longest frame body either side accepts.
pub const MAX_FRAME_BYTES: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is over the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge(u64),
    #[error("stream ended inside a frame")]
    Truncated,
    #[error("not an interaction stream of a version this node speaks")]
    BadHeader,
    #[error("frame is not valid JSON for this message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("stream read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// One message as a frame: length, then its JSON.
pub fn encode_frame<T: serde::Serialize>(message: &T) -> Result<Bytes, FrameError> {
    let json = serde_json::to_vec(message)?;
    if json.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(json.len() as u64));
    }
    let mut buf = BytesMut::with_capacity(json.len() + 2);
    put_varint(&mut buf, json.len() as u64);
    buf.put_slice(&json);
    Ok(buf.freeze())
}

/// Takes one whole frame body off the front of `buf`, if it is all there.
pub fn take_frame(buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
    let Some((len, at)) = get_varint(buf) else {
        return Ok(None);
    };
    if len > MAX_FRAME_BYTES as u64 {
        return Err(FrameError::TooLarge(len));
    }
    let len = len as usize;
    if buf.len() < at + len {
        return Ok(None);
    }
    buf.advance(at);
    Ok(Some(buf.split_to(len).freeze()))
}

/// Reads frames from a stream, never holding more than one frame and one read.
pub struct FrameReader<R> {
    stream: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// `buffered`: bytes already read from the stream after its header.
    pub fn new(stream: R, buffered: Bytes) -> Self {
        Self {
            stream,
            buf: BytesMut::from(&buffered[..]),
        }
    }

    /// The next frame's body; `None` when the stream ended cleanly between frames.
    pub async fn next(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(frame) = take_frame(&mut self.buf)? {
                return Ok(Some(frame));
            }
            self.buf.reserve(4096);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                };
            }
        }
    }

    /// The next frame decoded as `T`.
    pub async fn next_message<T: serde::de::DeserializeOwned>(
        &mut self,
    ) -> Result<Option<T>, FrameError> {
        match self.next().await? {
            Some(frame) => Ok(Some(serde_json::from_slice(&frame)?)),
            None => Ok(None),
        }
    }
}

/// Reads an interaction stream's header; `Ok(false)` if the stream is something else.
pub async fn read_header<R: AsyncRead + Unpin>(stream: &mut R) -> Result<bool, FrameError> {
    let mut header = [0u8; STREAM_HEADER.len()];
    stream.read_exact(&mut header).await.map_err(|err| {
        if err.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Io(err)
        }
    })?;
    Ok(header == STREAM_HEADER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_wait_for_their_last_byte() {
        let frame = encode_frame(&serde_json::json!({"type": "chat", "text": "hi"})).unwrap();
        let mut buf = BytesMut::from(&frame[..frame.len() - 1]);
        assert!(take_frame(&mut buf).unwrap().is_none());
        buf.put_u8(frame[frame.len() - 1]);
        let body = take_frame(&mut buf).unwrap().unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed, serde_json::json!({"type": "chat", "text": "hi"}));
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_frames_are_refused_from_their_length_alone() {
        let mut buf = BytesMut::new();
        put_varint(&mut buf, MAX_FRAME_BYTES as u64 + 1);
        assert!(matches!(take_frame(&mut buf), Err(FrameError::TooLarge(_))));
        let big = "x".repeat(MAX_FRAME_BYTES);
        assert!(matches!(
            encode_frame(&serde_json::json!({ "text": big })),
            Err(FrameError::TooLarge(_))
        ));
    }

    #[tokio::test]
    async fn a_reader_reports_a_stream_cut_inside_a_frame() {
        let frame = encode_frame(&serde_json::json!({"a": 1})).unwrap();
        let mut both = frame.to_vec();
        both.extend_from_slice(&frame[..3]);
        let mut reader = FrameReader::new(&both[..], Bytes::new());
        assert!(reader.next().await.unwrap().is_some());
        assert!(matches!(reader.next().await, Err(FrameError::Truncated)));
        let mut reader = FrameReader::new(&frame[..], Bytes::new());
        reader.next().await.unwrap();
        assert!(reader.next().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn headers_are_recognised() {
        assert!(read_header(&mut &STREAM_HEADER[..]).await.unwrap());
        assert!(!read_header(&mut &[0x03, 0, 0, 0, 0][..]).await.unwrap());
        assert!(matches!(
            read_header(&mut &[0xE0][..]).await,
            Err(FrameError::Truncated)
        ));
    }
}
