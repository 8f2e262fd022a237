//! The egress muxer (`media/src/egress/`) and moq-pub init splitting
//! (`media/src/moq_pub.rs`): init segments and object payloads as they arrive from a
//! relay. The input is `[u16 init length][init segment][objects, each u16 length + bytes]`;
//! the init segment is used for one track, and twice (so the second is renumbered).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stagecast_media::chunk_decode_time;
use stagecast_media::egress::FragmentedMp4Writer;
use stagecast_media::moq_pub::{split_init, MoqPubTrack};

fuzz_target!(|data: &[u8]| {
    let Some((init, mut rest)) = take(data) else {
        return;
    };
    let mut objects = Vec::new();
    while let Some((object, tail)) = take(rest) {
        objects.push(object);
        rest = tail;
    }
    if !rest.is_empty() {
        objects.push(rest);
    }

    for names in [&["a"][..], &["a", "b"][..]] {
        let inits = names.iter().map(|n| (n.to_string(), init.to_vec()));
        let Ok(mut writer) = FragmentedMp4Writer::from_init_segments(inits) else {
            continue;
        };
        let _ = writer.init_segment();
        for object in &objects {
            for name in names {
                if let Ok(out) = writer.fragment(name, bytes::Bytes::copy_from_slice(object)) {
                    // Renumbering keeps the decode time.
                    assert_eq!(chunk_decode_time(&out), chunk_decode_time(object));
                }
            }
        }
    }

    let tracks: Vec<MoqPubTrack> = ["1.m4s", "2.m4s", "x"]
        .iter()
        .map(|name| MoqPubTrack {
            name: name.to_string(),
            init_track: "0.mp4".into(),
            codec: None,
        })
        .collect();
    if let Ok(split) = split_init(init, &tracks) {
        let _ = FragmentedMp4Writer::from_init_segments(split);
    }
});

/// A u16-length-prefixed piece off the front of `data`.
fn take(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = usize::from(u16::from_be_bytes([*data.first()?, *data.get(1)?]));
    let body = data.get(2..)?;
    (body.len() >= len).then(|| body.split_at(len))
}
