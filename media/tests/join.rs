//! A subscriber joining mid-stream: starting every track at a later group start gives a
//! file that begins with a keyframe and decodes without error, even though its decode
//! times start far from zero.

mod common;

use common::*;
use stagecast_media::catalog::{AUDIO_TRACK, VIDEO_TRACK};
use stagecast_media::ingest::MediaObject;

/// Objects from the `group`-th (0-based) group start of each track on, in arrival order.
fn from_group(objects: &[MediaObject], group: usize) -> Vec<&MediaObject> {
    let mut seen = std::collections::HashMap::<&str, usize>::new();
    objects
        .iter()
        .filter(|o| {
            let count = seen.entry(o.track.as_str()).or_default();
            if o.starts_group {
                *count += 1;
            }
            *count > group
        })
        .collect()
}

fn check_join(name: &str, movflags: &str, passes: usize, group: usize) {
    let dir = TempDir::new(name);
    let mut args = h264_aac(true);
    args.extend_from_slice(&["-f", "mp4", "-movflags", movflags]);
    let input = make_clip(&dir, "in.mp4", 3, &args);
    let result = ingest(&input, 1000, passes);

    let joined = from_group(&result.objects, group);
    let first_video = joined
        .iter()
        .find(|o| o.track == VIDEO_TRACK)
        .expect("video after the join point");
    assert!(first_video.keyframe && first_video.starts_group);
    let first_audio = joined
        .iter()
        .find(|o| o.track == AUDIO_TRACK)
        .expect("audio after the join point");
    assert!(first_audio.starts_group);
    assert!(
        (first_audio.media_time_secs() - first_video.media_time_secs()).abs() < 0.05,
        "{name}: audio group starts at {} s, video group at {} s",
        first_audio.media_time_secs(),
        first_video.media_time_secs()
    );

    let output = dir.path("out.mp4");
    egress(&result.catalog, joined.iter().copied(), &output);
    let packets = probe_packets(&output, "v:0", 2);
    assert!(
        packets[0].0,
        "{name}: output must start with a keyframe: {packets:?}"
    );
    let errors = decode_errors(&output);
    assert!(errors.is_empty(), "{name}: ffmpeg decode errors: {errors}");

    let frames = framemd5(&output).iter().filter(|p| p.stream == 0).count();
    let expected: u32 = joined
        .iter()
        .filter(|o| o.track == VIDEO_TRACK)
        .map(|o| o.sample_count)
        .sum();
    assert_eq!(
        frames, expected as usize,
        "{name}: every joined frame is in the file"
    );
}

#[test]
fn join_at_second_group_multi_traf() {
    check_join(
        "join-a",
        "cmaf+empty_moov+frag_keyframe+default_base_moof",
        1,
        1,
    );
}

#[test]
fn join_at_second_group_frag_every_frame() {
    check_join(
        "join-b",
        "cmaf+separate_moof+delay_moov+skip_trailer+frag_every_frame",
        1,
        1,
    );
}

#[test]
fn join_late_in_a_looped_stream() {
    // Group 7 of 3 passes x 3 GOPs: decode times start beyond 7 s.
    check_join(
        "join-loop",
        "cmaf+separate_moof+delay_moov+skip_trailer+frag_every_frame",
        3,
        7,
    );
}
