//! Looping a file "as if live": three passes over the same clip must give decode times
//! that keep increasing and exactly the clip's packets three times over.

mod common;

use common::*;
use mp4_atom::{Decode, Moof};
use stagecast_media::catalog::{AUDIO_TRACK, VIDEO_TRACK};

const PASSES: usize = 3;

fn check_loop(name: &str, movflags: &str) {
    let dir = TempDir::new(name);
    let mut args = h264_aac(true);
    args.extend_from_slice(&["-f", "mp4", "-movflags", movflags]);
    let input = make_clip(&dir, "in.mp4", 2, &args);

    let result = ingest(&input, 1000, PASSES);
    let single = ingest(&input, 1000, 1);

    for track in [VIDEO_TRACK, AUDIO_TRACK] {
        let objects = result.track(track);
        assert_eq!(
            objects.len(),
            PASSES * single.track(track).len(),
            "{name} {track}"
        );
        let mut last_sequence = 0;
        for pair in objects.windows(2) {
            assert!(
                pair[1].decode_time >= pair[0].decode_time + pair[0].duration,
                "{name}: {track} decode time goes back: {} then {}",
                pair[0].decode_time,
                pair[1].decode_time
            );
        }
        for object in &objects {
            let moof = Moof::decode(&mut &object.payload[..]).expect("moof");
            assert!(
                moof.mfhd.sequence_number > last_sequence,
                "{name}: {track} sequence numbers must increase"
            );
            last_sequence = moof.mfhd.sequence_number;
        }
        let groups = objects.iter().filter(|o| o.starts_group).count();
        assert_eq!(
            groups,
            PASSES * 2,
            "{name}: {track}: a group per GOP per pass"
        );
    }
    // Audio and video stay together: each pass starts both at the same time (to within
    // one audio frame).
    let pass_starts = |track: &str| -> Vec<f64> {
        let per_pass = single.track(track).len();
        result
            .track(track)
            .chunks(per_pass)
            .map(|pass| pass[0].media_time_secs())
            .collect()
    };
    for (v, a) in pass_starts(VIDEO_TRACK)
        .iter()
        .zip(pass_starts(AUDIO_TRACK))
    {
        assert!(
            (v - a).abs() < 0.03,
            "{name}: pass starts at {v} s (video) and {a} s (audio)"
        );
    }

    let output = dir.path("out.mp4");
    egress(&result.catalog, &result.objects, &output);
    let before = framemd5(&dir.path("in.mp4"));
    let after = framemd5(&output);
    for stream in [0, 1] {
        let once = hashes(&before, stream);
        let repeated: Vec<_> = (0..PASSES).flat_map(|_| once.clone()).collect();
        assert_eq!(hashes(&after, stream), repeated, "{name}: stream {stream}");
    }
    // ffmpeg sees strictly increasing timestamps too.
    for stream in [0, 1] {
        let dts: Vec<i64> = after
            .iter()
            .filter(|p| p.stream == stream)
            .map(|p| p.dts)
            .collect();
        assert!(
            dts.windows(2).all(|w| w[1] > w[0]),
            "{name}: stream {stream} dts"
        );
    }
    let errors = decode_errors(&output);
    assert!(errors.is_empty(), "{name}: ffmpeg decode errors: {errors}");
}

#[test]
fn loop_three_times_multi_traf() {
    check_loop("loop-a", "cmaf+empty_moov+frag_keyframe+default_base_moof");
}

#[test]
fn loop_three_times_frag_every_frame() {
    check_loop(
        "loop-b",
        "cmaf+separate_moof+delay_moov+skip_trailer+frag_every_frame",
    );
}

#[test]
fn loop_three_times_absolute_offsets() {
    check_loop("loop-e", "empty_moov+frag_keyframe");
}

#[test]
fn finish_between_passes_is_harmless() {
    let dir = TempDir::new("loop-finish");
    let mut args = h264_aac(true);
    args.extend_from_slice(&[
        "-f",
        "mp4",
        "-movflags",
        "cmaf+empty_moov+frag_keyframe+default_base_moof",
    ]);
    let input = make_clip(&dir, "in.mp4", 2, &args);
    let expected = ingest(&input, 1000, 2);

    let mut ingest = stagecast_media::ingest::CmafIngest::new();
    let mut catalogs = Vec::new();
    let mut objects = Vec::new();
    for pass in 0..2 {
        if pass > 0 {
            ingest.begin_loop();
        }
        collect(
            ingest.push(&input).expect("push"),
            &mut catalogs,
            &mut objects,
        );
        collect(
            ingest.finish().expect("finish"),
            &mut catalogs,
            &mut objects,
        );
    }
    assert_eq!(catalogs, expected.catalogs);
    assert_eq!(objects, expected.objects);
}
