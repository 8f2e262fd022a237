//! Egress details: merging init segments whose track_IDs collide (the fragments are then
//! renumbered) and rejecting objects that do not belong to the track they are given for.

mod common;

use bytes::Bytes;
use common::*;
use stagecast_media::catalog::{AUDIO_TRACK, VIDEO_TRACK};
use stagecast_media::egress::{EgressError, FragmentedMp4Writer};
use stagecast_media::ingest::MediaObject;

const CMAF: &str = "cmaf+separate_moof+delay_moov+skip_trailer+frag_every_frame";

#[test]
fn colliding_track_ids_are_renumbered() {
    let dir = TempDir::new("renumber");
    let video_in = make_clip(
        &dir,
        "video.mp4",
        2,
        &[
            "-an",
            "-c:v",
            "libx264",
            "-tune",
            "zerolatency",
            "-g",
            "30",
            "-f",
            "mp4",
            "-movflags",
            CMAF,
        ],
    );
    let audio_in = make_clip(
        &dir,
        "audio.mp4",
        2,
        &["-vn", "-c:a", "aac", "-f", "mp4", "-movflags", CMAF],
    );
    let video = ingest(&video_in, 1000, 1);
    let audio = ingest(&audio_in, 1000, 1);
    let video_init = video
        .catalog
        .track(VIDEO_TRACK)
        .expect("video")
        .init_segment()
        .expect("init");
    let audio_init = audio
        .catalog
        .track(AUDIO_TRACK)
        .expect("audio")
        .init_segment()
        .expect("init");

    let mut writer = FragmentedMp4Writer::from_init_segments([
        (VIDEO_TRACK.to_string(), video_init),
        (AUDIO_TRACK.to_string(), audio_init),
    ])
    .expect("writer");
    assert_eq!(writer.track_id(VIDEO_TRACK), Some(1));
    assert_eq!(
        writer.track_id(AUDIO_TRACK),
        Some(2),
        "the audio track is renumbered"
    );

    // Interleave by media time, as a subscriber would receive them.
    let mut objects: Vec<&MediaObject> = video.objects.iter().chain(&audio.objects).collect();
    objects.sort_by(|a, b| a.media_time_secs().total_cmp(&b.media_time_secs()));
    let mut out = writer.init_segment().to_vec();
    for object in objects {
        let bytes = writer
            .fragment(&object.track, object.payload.clone())
            .expect("fragment");
        if object.track == VIDEO_TRACK {
            assert_eq!(bytes, object.payload, "video passes through untouched");
        } else {
            assert_ne!(bytes, object.payload, "audio tfhd is rewritten");
        }
        out.extend_from_slice(&bytes);
    }
    let output = dir.path("out.mp4");
    std::fs::write(&output, &out).expect("write");

    let merged = framemd5(&output);
    assert_eq!(
        hashes(&merged, 0),
        hashes(&framemd5(&dir.path("video.mp4")), 0)
    );
    assert_eq!(
        hashes(&merged, 1),
        hashes(&framemd5(&dir.path("audio.mp4")), 0)
    );
    let errors = decode_errors(&output);
    assert!(errors.is_empty(), "ffmpeg decode errors: {errors}");
}

#[test]
fn objects_are_checked_against_their_track() {
    let dir = TempDir::new("mismatch");
    let mut args = h264_aac(true);
    args.extend_from_slice(&["-f", "mp4", "-movflags", CMAF]);
    let input = make_clip(&dir, "in.mp4", 1, &args);
    let result = ingest(&input, 1000, 1);
    let mut writer = FragmentedMp4Writer::new(&result.catalog).expect("writer");
    let audio = result.track(AUDIO_TRACK)[0].payload.clone();

    let err = writer
        .fragment(VIDEO_TRACK, audio.clone())
        .expect_err("audio as video");
    assert!(
        matches!(
            err,
            EgressError::TrackMismatch {
                expected: 1,
                found: 2,
                ..
            }
        ),
        "{err:?}"
    );
    let err = writer
        .fragment("subtitles", audio.clone())
        .expect_err("unknown track");
    assert!(matches!(err, EgressError::UnknownTrack { .. }), "{err:?}");
    let err = writer
        .fragment(AUDIO_TRACK, audio.slice(..audio.len() - 1))
        .expect_err("truncated payload");
    assert!(
        matches!(err, EgressError::MalformedFragment { .. }),
        "{err:?}"
    );
    let err = writer
        .fragment(AUDIO_TRACK, Bytes::from_static(b"\0\0\0\x08free"))
        .expect_err("no moof");
    assert!(
        matches!(err, EgressError::MalformedFragment { .. }),
        "{err:?}"
    );

    let mut catalog = result.catalog.clone();
    catalog.tracks[0].init_data = Some("!!".into());
    assert!(matches!(
        FragmentedMp4Writer::new(&catalog),
        Err(EgressError::InitData { .. })
    ));
    catalog.tracks[0].set_init_segment(b"garbage");
    assert!(matches!(
        FragmentedMp4Writer::new(&catalog),
        Err(EgressError::MalformedInit { .. })
    ));
    catalog.tracks.clear();
    assert!(matches!(
        FragmentedMp4Writer::new(&catalog),
        Err(EgressError::NoTracks)
    ));
}
