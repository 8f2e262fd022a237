//! The JSON messages of interaction request streams (`proto/src/interaction/message.rs`)
//! without framing, so the fuzzer spends its time on JSON: any `Hello`, `Request` or
//! `Answer` that parses must serialise and parse back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stagecast_proto::interaction::{Answer, Hello, Request};

fuzz_target!(|data: &[u8]| {
    round_trip::<Hello>(data);
    if let Some(request) = round_trip::<Request>(data) {
        let _ = request.action.moves_credits();
    }
    round_trip::<Answer>(data);
});

fn round_trip<T>(data: &[u8]) -> Option<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let message = serde_json::from_slice::<T>(data).ok()?;
    let text = serde_json::to_vec(&message).expect("a parsed message serialises");
    let back: T = serde_json::from_slice(&text).expect("own output parses");
    assert_eq!(back, message);
    Some(message)
}
