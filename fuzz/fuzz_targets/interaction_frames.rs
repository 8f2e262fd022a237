//! Interaction request streams (`proto/src/interaction/frame.rs`) as a peer sends them:
//! the stream header, then varint-length frames cut into arbitrary reads. The incremental
//! splitter (`take_frame`) and the async `FrameReader` must agree, hold at most one frame
//! and one read, and every frame body must survive a re-encode; a body that parses as a
//! `Hello`, `Request` or `Answer` must survive `encode_frame` and a parse back.
#![no_main]

use bytes::{BufMut, BytesMut};
use libfuzzer_sys::fuzz_target;
use stagecast_fuzz::{block_on, chunks};
use stagecast_proto::interaction::frame::{
    encode_frame, read_header, take_frame, FrameError, FrameReader,
};
use stagecast_proto::interaction::{Answer, Hello, Request, MAX_FRAME_BYTES};
use stagecast_proto::varint::put_varint;

fuzz_target!(|data: &[u8]| {
    let (sizes, stream) = data.split_at(data.len().min(3));

    // Incremental, as a node reads a stream in pieces.
    let mut buf = BytesMut::new();
    let mut bodies = Vec::new();
    let mut failed = false;
    'outer: for chunk in chunks(stream, sizes) {
        buf.extend_from_slice(chunk);
        loop {
            match take_frame(&mut buf) {
                Ok(Some(body)) => {
                    assert!(body.len() <= MAX_FRAME_BYTES);
                    bodies.push(body);
                }
                Ok(None) => break,
                Err(FrameError::TooLarge(len)) => {
                    assert!(len > MAX_FRAME_BYTES as u64);
                    failed = true;
                    break 'outer;
                }
                Err(other) => panic!("take_frame: unexpected error {other}"),
            }
        }
        // Never more than one unfinished frame (varint + body) plus the last read.
        assert!(buf.len() <= 9 + MAX_FRAME_BYTES + chunk.len());
    }

    // The same bytes through the async reader.
    let mut reader = FrameReader::new(stream, bytes::Bytes::new());
    let mut read = Vec::new();
    let end = loop {
        match block_on(reader.next()).expect("an in-memory reader never waits") {
            Ok(Some(body)) => read.push(body),
            Ok(None) => break None,
            Err(err) => break Some(err),
        }
    };
    assert_eq!(read, bodies, "reader and splitter disagree");
    match end {
        None => assert!(!failed && buf.is_empty()),
        Some(FrameError::TooLarge(_)) => assert!(failed),
        Some(FrameError::Truncated) => assert!(!failed && !buf.is_empty()),
        Some(other) => panic!("reader: unexpected error {other}"),
    }

    for body in &bodies {
        // Framing round trip, with the shortest varint.
        let mut again = BytesMut::new();
        put_varint(&mut again, body.len() as u64);
        again.put_slice(body);
        assert_eq!(
            take_frame(&mut again).expect("re-framed").as_ref(),
            Some(body)
        );
        assert!(again.is_empty());

        round_trip::<Hello>(body);
        round_trip::<Request>(body);
        round_trip::<Answer>(body);
    }

    let _ = block_on(read_header(&mut &stream[..]));
});

/// A message that parsed is framed again and parses back to itself.
fn round_trip<T>(body: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let Ok(message) = serde_json::from_slice::<T>(body) else {
        return;
    };
    let frame = match encode_frame(&message) {
        Ok(frame) => frame,
        // Re-serialising can add defaulted fields (`"user":null`), past the limit.
        Err(FrameError::TooLarge(_)) => return,
        Err(err) => panic!("encode_frame: {err}"),
    };
    let mut buf = BytesMut::from(&frame[..]);
    let body = take_frame(&mut buf).expect("own frame").expect("whole");
    let back: T = serde_json::from_slice(&body).expect("own frame parses");
    assert_eq!(back, message);
}
