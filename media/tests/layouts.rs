//! Ingest + egress round trip over every fragmented-MP4 layout ffmpeg produces: the
//! output must hold exactly the input's packets (same count, same hashes, per stream).

mod common;

use common::*;
use mp4_atom::{Atom, Decode, Mdat, Moof};
use stagecast_media::catalog::{AUDIO_TRACK, VIDEO_TRACK};
use stagecast_media::ingest::MediaObject;

/// What one layout must show besides the packet identity.
struct Expect {
    /// ffmpeg writes the video and audio `traf`s of a fragment into one `moof`.
    multi_traf: bool,
    /// One object per frame (frag_every_frame, frag_duration of one frame).
    per_frame: bool,
    /// Every track's chunks follow each other without gap or overlap in the input.
    contiguous: bool,
}

fn check_layout(name: &str, zerolatency: bool, mux: &[&str], expect: Expect) {
    let dir = TempDir::new(name);
    let mut args = h264_aac(zerolatency);
    args.extend_from_slice(&["-f", "mp4"]);
    args.extend_from_slice(mux);
    let input = make_clip(&dir, "in.mp4", 3, &args);
    check_input(name, &dir, &input, expect);
}

/// Checks ingest + egress of `input`, a 3 s clip also saved as `dir/in.mp4`.
fn check_input(name: &str, dir: &TempDir, input: &[u8], expect: Expect) {
    let result = ingest(input, 1000, 1);
    let catalog = &result.catalog;

    // Catalog.
    assert_eq!(catalog.tracks.len(), 2, "{catalog:?}");
    let video = catalog.track(VIDEO_TRACK).expect("video track");
    let audio = catalog.track(AUDIO_TRACK).expect("audio track");
    assert!(video.is_video() && audio.is_audio());
    assert!(
        video
            .codec
            .as_deref()
            .is_some_and(|c| c.starts_with("avc1.64")),
        "{video:?}"
    );
    assert_eq!((video.width, video.height), (Some(160), Some(120)));
    assert_eq!(video.framerate, Some(30.0));
    assert_eq!(audio.codec.as_deref(), Some("mp4a.40.2"));
    assert_eq!(audio.samplerate, Some(48000));
    assert_eq!(audio.channel_config.as_deref(), Some("1"));
    assert!(audio.bitrate.is_some());
    assert!(video.init_segment().is_ok() && audio.init_segment().is_ok());

    // Objects: one moof (one traf) + one mdat each, contiguous in time per track.
    for track in [VIDEO_TRACK, AUDIO_TRACK] {
        let objects = result.track(track);
        assert!(!objects.is_empty(), "{name}: no {track} objects");
        assert!(
            objects[0].starts_group,
            "{name}: first {track} object must open a group"
        );
        for pair in objects.windows(2) {
            if expect.contiguous {
                assert_eq!(
                    pair[1].decode_time,
                    pair[0].decode_time + pair[0].duration,
                    "{name}: {track} decode times are not contiguous"
                );
            } else {
                assert!(pair[1].decode_time >= pair[0].decode_time);
            }
        }
        for object in &objects {
            check_payload(object);
        }
    }
    let videos = result.track(VIDEO_TRACK);
    for object in &videos {
        assert_eq!(
            object.starts_group, object.keyframe,
            "{name}: video group != keyframe"
        );
    }
    let video_groups = videos.iter().filter(|o| o.starts_group).count();
    let audio_groups = result
        .track(AUDIO_TRACK)
        .iter()
        .filter(|o| o.starts_group)
        .count();
    assert_eq!(video_groups, 3, "{name}: 3 s at a 1 s GOP is 3 groups");
    assert_eq!(
        audio_groups, video_groups,
        "{name}: audio groups follow video groups"
    );
    let frames: u32 = videos.iter().map(|o| o.sample_count).sum();
    assert_eq!(frames, 90, "{name}: 3 s at 30 fps");
    if expect.per_frame {
        // ffmpeg occasionally puts two frames in one fragment (B-frames, end of stream).
        let single = videos.iter().filter(|o| o.sample_count == 1).count();
        assert!(single >= 85, "{name}: {single} single-frame objects");
    }

    // Pass-through: single-traf layouts are sent byte for byte.
    let concatenated: Vec<u8> = result
        .objects
        .iter()
        .flat_map(|o| o.payload.iter().copied())
        .collect();
    let verbatim = input.ends_with(&concatenated);
    assert_eq!(
        verbatim, !expect.multi_traf,
        "{name}: objects should be verbatim exactly when ffmpeg wrote one traf per moof"
    );

    // Egress: the same packets, decodable.
    let output = dir.path("out.mp4");
    egress(catalog, &result.objects, &output);
    compare_packets(&dir.path("in.mp4"), &output, name);
    let errors = decode_errors(&output);
    assert!(errors.is_empty(), "{name}: ffmpeg decode errors: {errors}");
}

/// An object payload is exactly one single-traf moof (default-base-is-moof or implicit)
/// and one mdat, and its data offsets land inside the mdat.
fn check_payload(object: &MediaObject) {
    let mut cursor: &[u8] = &object.payload;
    let moof = Moof::decode(&mut cursor).expect("object starts with a moof");
    let moof_len = object.payload.len() - cursor.len();
    let mdat = Mdat::decode(&mut cursor).expect("then an mdat");
    assert!(cursor.is_empty(), "nothing after the mdat");
    assert_eq!(moof.traf.len(), 1, "one traf per object");
    let traf = &moof.traf[0];
    assert!(traf.tfhd.base_data_offset.is_none());
    assert_eq!(
        traf.tfdt.as_ref().map(|t| t.base_media_decode_time),
        Some(object.decode_time)
    );
    let samples: usize = traf.trun.iter().map(|t| t.samples.len()).sum();
    assert_eq!(samples, object.sample_count as usize);
    let first = traf.trun[0].data_offset.expect("data offset") as usize;
    assert_eq!(first, moof_len + 8, "{:?}", Moof::KIND);
    assert!(!mdat.data.is_empty());
}

fn compare_packets(input: &std::path::Path, output: &std::path::Path, name: &str) {
    let before = framemd5(input);
    let after = framemd5(output);
    for stream in [0, 1] {
        let a = hashes(&before, stream);
        let b = hashes(&after, stream);
        assert!(
            !a.is_empty(),
            "{name}: input stream {stream} has no packets"
        );
        assert_eq!(
            a.len(),
            b.len(),
            "{name}: stream {stream} packet count differs"
        );
        assert_eq!(a, b, "{name}: stream {stream} packet hashes differ");
    }
}

#[test]
fn layout_a_cmaf_frag_keyframe_default_base_moof() {
    check_layout(
        "a",
        true,
        &[
            "-movflags",
            "cmaf+empty_moov+frag_keyframe+default_base_moof",
        ],
        Expect {
            multi_traf: true,
            per_frame: false,
            contiguous: true,
        },
    );
}

#[test]
fn layout_b_separate_moof_frag_every_frame() {
    check_layout(
        "b",
        true,
        &[
            "-movflags",
            "cmaf+separate_moof+delay_moov+skip_trailer+frag_every_frame",
        ],
        Expect {
            multi_traf: false,
            per_frame: true,
            contiguous: true,
        },
    );
}

#[test]
fn layout_c_separate_moof_frag_duration() {
    check_layout(
        "c",
        true,
        &[
            "-frag_duration",
            "33333",
            "-movflags",
            "cmaf+separate_moof+delay_moov+skip_trailer",
        ],
        Expect {
            multi_traf: false,
            per_frame: true,
            contiguous: true,
        },
    );
}

#[test]
fn layout_d_bframes_negative_composition_offsets() {
    check_layout(
        "d",
        false,
        &[
            "-movflags",
            "cmaf+empty_moov+frag_keyframe+default_base_moof",
        ],
        Expect {
            multi_traf: true,
            per_frame: false,
            contiguous: true,
        },
    );
}

/// ffmpeg 5.1 itself writes glitched audio timing here: after about 2.3 s some audio
/// fragments get a zero sample duration and the next one repeats their tfdt (ffprobe
/// shows duplicate audio timestamps in the input). We carry that through unchanged.
#[test]
fn layout_d_bframes_frag_every_frame() {
    check_layout(
        "d2",
        false,
        &[
            "-movflags",
            "cmaf+separate_moof+delay_moov+skip_trailer+frag_every_frame",
        ],
        Expect {
            multi_traf: false,
            per_frame: true,
            contiguous: false,
        },
    );
}

#[test]
fn layout_e_absolute_base_data_offset() {
    check_layout(
        "e",
        true,
        &["-movflags", "empty_moov+frag_keyframe"],
        Expect {
            multi_traf: true,
            per_frame: false,
            contiguous: true,
        },
    );
}

#[test]
fn layout_e_absolute_base_data_offset_with_bframes() {
    check_layout(
        "e2",
        false,
        &["-movflags", "empty_moov+frag_keyframe"],
        Expect {
            multi_traf: true,
            per_frame: false,
            contiguous: true,
        },
    );
}

#[test]
fn layout_global_sidx() {
    check_layout(
        "sidx",
        true,
        &[
            "-movflags",
            "cmaf+empty_moov+frag_keyframe+default_base_moof+global_sidx",
        ],
        Expect {
            multi_traf: true,
            per_frame: false,
            contiguous: true,
        },
    );
}

/// ffmpeg's HLS muxer with fMP4 segments: init.mp4 + segments that start with styp and
/// sidx boxes, concatenated as a publisher reading them in order would.
#[test]
fn layout_hls_segments_with_styp_and_sidx() {
    let dir = TempDir::new("hls");
    let mut args = h264_aac(true);
    let playlist = dir.path("p.m3u8");
    args.extend_from_slice(&[
        "-f",
        "hls",
        "-hls_segment_type",
        "fmp4",
        "-hls_time",
        "1",
        "-hls_playlist_type",
        "vod",
    ]);
    make_clip(&dir, "p.m3u8", 3, &args);
    let mut input = std::fs::read(dir.path("init.mp4")).expect("init.mp4");
    let mut segment = 0;
    while let Ok(bytes) = std::fs::read(dir.path(&format!("p{segment}.m4s"))) {
        input.extend_from_slice(&bytes);
        segment += 1;
    }
    assert!(segment >= 3, "hls segments in {}", playlist.display());
    std::fs::write(dir.path("in.mp4"), &input).expect("write");
    check_input(
        "hls",
        &dir,
        &input,
        Expect {
            multi_traf: true,
            per_frame: false,
            contiguous: true,
        },
    );
}

#[test]
fn chunk_size_does_not_matter() {
    let dir = TempDir::new("chunks");
    let mut args = h264_aac(true);
    args.extend_from_slice(&[
        "-f",
        "mp4",
        "-movflags",
        "cmaf+empty_moov+frag_keyframe+default_base_moof",
    ]);
    let input = make_clip(&dir, "in.mp4", 2, &args);
    let whole = ingest(&input, input.len(), 1);
    for chunk in [1, 7, 4096] {
        let pieces = ingest(&input, chunk, 1);
        assert_eq!(pieces.catalog, whole.catalog, "chunk {chunk}");
        assert_eq!(pieces.objects, whole.objects, "chunk {chunk}");
    }
}
