//! GOAWAY and control-stream splitting (`proto/src/goaway.rs`), as a client reads a
//! server's control stream (`proto/src/migration.rs`). A payload that decodes must encode
//! back to a message that decodes to itself; the splitter must hand out exactly the bytes
//! pushed, whatever the read sizes; and any GoAway built from the input must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stagecast_fuzz::chunks;
use stagecast_proto::goaway::{GoAway, GoAwayError, MessageSplitter, GOAWAY_TYPE, MAX_URI_BYTES};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let on_control = flags & 1 == 1;

    // A payload straight from the wire.
    if let Ok(goaway) = GoAway::decode_payload(rest, on_control) {
        assert_eq!(goaway.request_id.is_some(), on_control);
        round_trip(&goaway, on_control);
    }

    // The same bytes as a control stream, read in irregular pieces.
    let (sizes, stream) = rest.split_at(rest.len().min(2));
    let mut splitter = MessageSplitter::default();
    let mut seen = Vec::new();
    for chunk in chunks(stream, sizes) {
        splitter.push(chunk);
        while let Some(message) = splitter.next_message() {
            assert!(message.payload_at <= message.bytes.len());
            if message.message_type == GOAWAY_TYPE {
                for control in [true, false] {
                    if let Ok(goaway) = GoAway::decode_payload(message.payload(), control) {
                        round_trip(&goaway, control);
                    }
                }
            }
            seen.extend_from_slice(&message.bytes);
        }
    }
    assert_eq!(splitter.at_boundary(), seen.len() == stream.len());
    seen.extend_from_slice(&splitter.take_rest());
    assert_eq!(seen, stream, "the splitter lost or invented bytes");

    // A GoAway made from the input: any URI, timeout and request ID.
    if rest.len() >= 16 {
        let (numbers, uri) = rest.split_at(16);
        let goaway = GoAway {
            new_session_uri: String::from_utf8_lossy(uri).into_owned(),
            timeout_ms: u64::from_le_bytes(numbers[..8].try_into().expect("8 bytes")),
            request_id: on_control
                .then(|| u64::from_le_bytes(numbers[8..].try_into().expect("8 bytes"))),
        };
        match goaway.encode() {
            Ok(_) => round_trip(&goaway, on_control),
            Err(GoAwayError::UriTooLong(n)) => assert!(n > MAX_URI_BYTES),
            Err(err) => panic!("encode: {err}"),
        }
    }
});

fn round_trip(goaway: &GoAway, on_control: bool) {
    let bytes = goaway.encode().expect("a decoded GOAWAY encodes");
    let mut splitter = MessageSplitter::default();
    splitter.push(&bytes);
    let message = splitter.next_message().expect("one whole message");
    assert_eq!(message.message_type, GOAWAY_TYPE);
    assert!(splitter.at_boundary());
    let back = GoAway::decode_payload(message.payload(), on_control).expect("own encoding");
    assert_eq!(&back, goaway);
}
