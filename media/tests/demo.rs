//! The committed demo clip (`media/assets/demo.mp4`) streams as documented in
//! `media/assets/README.md`, including when looped.

mod common;

use common::*;
use stagecast_media::catalog::{AUDIO_TRACK, VIDEO_TRACK};

fn demo() -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/demo.mp4");
    std::fs::read(path).expect("media/assets/demo.mp4")
}

#[test]
fn demo_clip_is_streamable() {
    let input = demo();
    assert!(input.len() < 1 << 20, "demo clip must stay under 1 MiB");
    let result = ingest(&input, 64 * 1024, 2);

    let video = result.catalog.track(VIDEO_TRACK).expect("video");
    assert_eq!(video.codec.as_deref(), Some("avc1.64001e"));
    assert_eq!((video.width, video.height), (Some(640), Some(360)));
    assert_eq!(video.framerate, Some(30.0));
    let audio = result.catalog.track(AUDIO_TRACK).expect("audio");
    assert_eq!(audio.codec.as_deref(), Some("mp4a.40.2"));
    assert_eq!(audio.samplerate, Some(48000));
    assert_eq!(audio.channel_config.as_deref(), Some("2"));

    for track in [VIDEO_TRACK, AUDIO_TRACK] {
        let groups = result
            .track(track)
            .iter()
            .filter(|o| o.starts_group)
            .count();
        assert_eq!(groups, 20, "{track}: 10 groups per pass, 2 passes");
    }
    // First pass verbatim: the clip is one traf per moof.
    let per_pass = result.objects.len() / 2;
    let first: Vec<u8> = result.objects[..per_pass]
        .iter()
        .flat_map(|o| o.payload.iter().copied())
        .collect();
    assert!(input.ends_with(&first));
    let last = result
        .track(VIDEO_TRACK)
        .last()
        .map(|o| o.media_time_secs());
    assert!(
        last.is_some_and(|t| t > 19.9),
        "second pass continues after 10 s: {last:?}"
    );

    let dir = TempDir::new("demo");
    let output = dir.path("out.mp4");
    egress(&result.catalog, &result.objects, &output);
    let errors = decode_errors(&output);
    assert!(errors.is_empty(), "ffmpeg decode errors: {errors}");
}
