//! The `interaction` track's records (`proto/src/interaction/timeline.rs`): one JSON
//! record per line of the input. Each record that parses must round-trip; all of them are
//! fed, in input order, to a `TimelineFollower` (as a viewer would receive objects) and
//! their events applied to a snapshot, which must never panic and stay bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stagecast_proto::interaction::timeline::{
    Record, Snapshot, TimelineData, TimelineFollower, CHAT_BACKLOG, TOP_TIPPERS,
};

fuzz_target!(|data: &[u8]| {
    let mut follower = TimelineFollower::default();
    let mut state: Option<Snapshot> = None;
    for line in data.split(|&b| b == b'\n') {
        let Ok(record) = serde_json::from_slice::<Record>(line) else {
            continue;
        };
        let text = serde_json::to_vec(&record).expect("a parsed record serialises");
        let back: Record = serde_json::from_slice(&text).expect("own output parses");
        assert_eq!(back, record);

        match &record.data {
            TimelineData::Snapshot(snapshot) => state = Some(snapshot.clone()),
            TimelineData::Event(event) => {
                if let Some(state) = &mut state {
                    let chat = state.chat.len();
                    let tippers = state.top_tippers.len();
                    if state.apply(event, record.media_ms).is_ok() {
                        assert!(state.chat.len() <= chat.max(CHAT_BACKLOG));
                        assert!(state.top_tippers.len() <= tippers.max(TOP_TIPPERS));
                    }
                }
            }
        }
        let have = follower.state().map(|s| s.seq);
        for (event, _) in follower.push(record) {
            assert!(have.is_none_or(|have| event.seq() > have));
        }
    }
});
