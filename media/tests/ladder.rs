//! A ladder from one ffmpeg process (several video renditions of one source, plus audio)
//! through the ingest: the catalog lists the renditions as alternates with their bitrate,
//! size and framerate; group numbers line up across renditions when keyframes do, and the
//! catalog stops claiming it when they do not; each rendition muxes back byte-identical.

mod common;

use std::collections::BTreeMap;

use common::*;
use stagecast_media::catalog::{Catalog, GROUPS_ALIGNED};
use stagecast_media::ingest::{MediaObject, VIDEO_ALT_GROUP};

/// One rung: size, `-b:v` (None: CRF, no declared bitrate) and GOP in frames.
struct Rung {
    width: u32,
    height: u32,
    kbps: Option<u32>,
    gop: u32,
}

const fn rung(width: u32, height: u32, kbps: Option<u32>, gop: u32) -> Rung {
    Rung {
        width,
        height,
        kbps,
        gop,
    }
}

/// Encodes `seconds` of one test pattern at 30 fps into one fragmented MP4 holding one
/// video stream per rung (in rung order) and a tone; `short` = (rung, seconds) cuts a
/// rung short; `bframes` keeps x264's B-frames (no `-tune zerolatency`).
fn make_ladder(
    dir: &TempDir,
    name: &str,
    seconds: u32,
    rungs: &[Rung],
    short: Option<(usize, u32)>,
    bframes: bool,
    movflags: &str,
) -> Vec<u8> {
    let mut graph = format!("[0:v]split={}", rungs.len());
    for i in 0..rungs.len() {
        graph.push_str(&format!("[s{i}]"));
    }
    for (i, r) in rungs.iter().enumerate() {
        graph.push_str(&format!(";[s{i}]scale={}:{}", r.width, r.height));
        if let Some((index, secs)) = short {
            if index == i {
                graph.push_str(&format!(",trim=duration={secs}"));
            }
        }
        graph.push_str(&format!("[v{i}]"));
    }
    let mut args: Vec<String> = [
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc2=size=320x180:rate=30:duration={seconds}"),
        "-f",
        "lavfi",
        "-i",
        &format!("sine=frequency=440:sample_rate=48000:duration={seconds}"),
        "-filter_complex",
        &graph,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for i in 0..rungs.len() {
        args.extend(["-map".into(), format!("[v{i}]")]);
    }
    args.extend(["-map", "1:a", "-c:v", "libx264", "-preset", "veryfast"].map(String::from));
    if !bframes {
        args.extend(["-tune", "zerolatency"].map(String::from));
    }
    args.extend(["-pix_fmt", "yuv420p", "-sc_threshold", "0"].map(String::from));
    for (i, r) in rungs.iter().enumerate() {
        args.extend([format!("-g:v:{i}"), r.gop.to_string()]);
        args.extend([format!("-keyint_min:v:{i}"), r.gop.to_string()]);
        if let Some(kbps) = r.kbps {
            args.extend([format!("-b:v:{i}"), format!("{kbps}k")]);
        }
    }
    args.extend(
        [
            "-c:a",
            "aac",
            "-b:a",
            "64k",
            "-f",
            "mp4",
            "-movflags",
            movflags,
        ]
        .map(String::from),
    );
    let out = dir.path(name);
    args.push(out.to_str().expect("utf8 path").to_string());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run("ffmpeg", &refs);
    std::fs::read(&out).expect("read ladder")
}

const VIDEO_TRACKS: [&str; 3] = ["video", "video1", "video2"];

/// A fragment per GOP, every track's `traf` in one `moof`.
const PER_GOP: &str = "cmaf+empty_moov+frag_keyframe+default_base_moof";
/// A fragment per frame and track, each in a `moof` of its own.
const PER_FRAME: &str = "cmaf+separate_moof+delay_moov+skip_trailer+frag_every_frame";

/// Per group number, the decode time (seconds) of its first object, for one track.
fn group_starts(objects: &[&MediaObject]) -> BTreeMap<u64, f64> {
    let mut starts = BTreeMap::new();
    let mut last = None;
    for object in objects {
        if object.starts_group {
            assert!(
                last.is_none_or(|l| object.group > l),
                "{}: group {} after {last:?}",
                object.track,
                object.group
            );
            last = Some(object.group);
            starts.insert(object.group, object.media_time_secs());
        } else {
            assert_eq!(
                Some(object.group),
                last,
                "{}: object outside its group",
                object.track
            );
        }
    }
    starts
}

#[test]
fn aligned_ladder_is_three_alternates_with_shared_group_numbers() {
    let dir = TempDir::new("ladder-aligned");
    let rungs = [
        rung(320, 180, Some(600), 30),
        rung(240, 136, Some(300), 30),
        rung(160, 90, Some(100), 30),
    ];
    let input = make_ladder(&dir, "in.mp4", 4, &rungs, None, false, PER_GOP);
    let result = ingest(&input, 4096, 1);
    // Every bitrate is declared (btrt from -b:v): no catalog update is needed.
    assert_eq!(result.catalogs.len(), 1, "{:?}", result.catalogs);
    let catalog = &result.catalog;

    for (name, r) in VIDEO_TRACKS.iter().zip(&rungs) {
        let track = catalog.track(name).expect("rendition listed");
        assert!(track.is_video());
        assert_eq!(track.alt_group, Some(VIDEO_ALT_GROUP), "{name}");
        assert_eq!((track.width, track.height), (Some(r.width), Some(r.height)));
        assert_eq!(track.framerate, Some(30.0), "{name}");
        assert_eq!(track.bitrate, r.kbps.map(|k| u64::from(k) * 1000), "{name}");
        assert_eq!(track.label, Some(format!("{}p", r.height)));
        assert!(track.groups_aligned());
    }
    let audio = catalog.track("audio").expect("audio");
    assert_eq!(audio.alt_group, None, "audio is not an alternate");
    assert_eq!(audio.bitrate, Some(64000));

    // Group N of every rendition starts at the same time; 4 groups of 1 s each.
    let starts: Vec<BTreeMap<u64, f64>> = VIDEO_TRACKS
        .iter()
        .map(|name| group_starts(&result.track(name)))
        .collect();
    assert_eq!(starts[0].len(), 4, "{starts:?}");
    assert!(starts.iter().all(|s| s == &starts[0]), "{starts:?}");
    let first = *starts[0].keys().next().expect("a group");
    assert_eq!(first, 0);
    // Audio groups follow with the same numbers.
    let audio_groups: Vec<u64> = group_starts(&result.track("audio")).into_keys().collect();
    assert_eq!(audio_groups, starts[0].keys().copied().collect::<Vec<_>>());

    // Each rendition alone with audio muxes back to exactly the input's packets.
    let packets = framemd5(&dir.path("in.mp4"));
    for (stream, name) in VIDEO_TRACKS.iter().enumerate() {
        let out = dir.path(&format!("{name}.mp4"));
        let objects = result
            .objects
            .iter()
            .filter(|o| o.track == *name || o.track == "audio");
        let only = Catalog::new(
            catalog
                .tracks
                .iter()
                .filter(|t| t.name == *name || t.name == "audio")
                .cloned()
                .collect(),
        );
        egress(&only, objects, &out);
        let got = framemd5(&out);
        assert_eq!(hashes(&got, 0), hashes(&packets, stream), "{name}");
        assert_eq!(hashes(&got, 1), hashes(&packets, 3), "{name}: audio");
    }
}

#[test]
fn unaligned_keyframes_keep_alternates_but_stop_claiming_alignment() {
    let dir = TempDir::new("ladder-unaligned");
    // GOPs of 1 s, 1.5 s and 1 s.
    let rungs = [
        rung(320, 180, Some(600), 30),
        rung(240, 136, Some(300), 45),
        rung(160, 90, Some(100), 30),
    ];
    let input = make_ladder(&dir, "in.mp4", 4, &rungs, None, false, PER_GOP);
    let result = ingest(&input, 4096, 1);

    // Claimed at first (nothing contradicted it yet), then withdrawn by an update.
    assert!(result.catalogs[0].tracks.iter().all(|t| t.groups_aligned()));
    assert_eq!(result.catalogs.len(), 2, "{:?}", result.catalogs);
    for name in VIDEO_TRACKS {
        let track = result.catalog.track(name).expect("rendition");
        assert_eq!(track.alt_group, Some(VIDEO_ALT_GROUP));
        assert!(!track.groups_aligned(), "{name}");
        assert_eq!(track.extra.get(GROUPS_ALIGNED), Some(&false.into()));
    }
    assert!(result
        .catalog
        .track("audio")
        .expect("audio")
        .groups_aligned());

    // Equal numbers still mean equal start times, and a higher number never starts
    // earlier in another rendition: a switch "from the next group" lands on the new
    // rendition's next keyframe.
    let starts: Vec<BTreeMap<u64, f64>> = VIDEO_TRACKS
        .iter()
        .map(|name| group_starts(&result.track(name)))
        .collect();
    let mut all: Vec<(u64, f64)> = Vec::new();
    for track in &starts {
        all.extend(track.iter().map(|(n, t)| (*n, *t)));
    }
    all.sort_by_key(|a| a.0);
    for pair in all.windows(2) {
        let ((n0, t0), (n1, t1)) = (pair[0], pair[1]);
        if n0 == n1 {
            assert!((t0 - t1).abs() < 0.001, "group {n0} at {t0} and {t1}");
        } else {
            assert!(
                t1 > t0,
                "group {n1} at {t1} starts before group {n0} at {t0}"
            );
        }
    }
    // The 1.5 s rendition has its own boundaries at 1.5 s and 4.5 s... numbers the others lack.
    assert_ne!(
        starts[0].keys().collect::<Vec<_>>(),
        starts[1].keys().collect::<Vec<_>>()
    );
    assert_eq!(starts[0], starts[2], "the two 1 s renditions stay aligned");
}

#[test]
fn undeclared_bitrates_are_measured_once_and_a_short_rendition_just_ends() {
    let dir = TempDir::new("ladder-crf");
    let rungs = [rung(320, 180, None, 30), rung(160, 90, None, 30)];
    // The second rendition stops after 2 s; the first goes on to 4 s.
    let input = make_ladder(&dir, "in.mp4", 4, &rungs, Some((1, 2)), false, PER_GOP);
    let result = ingest(&input, 4096, 1);

    let first = &result.catalogs[0];
    assert_eq!(first.track("video").and_then(|t| t.bitrate), None);
    assert_eq!(
        result.catalogs.len(),
        2,
        "one update with both measured bitrates? {:?}",
        result.catalogs.len()
    );
    let big = result
        .catalog
        .track("video")
        .and_then(|t| t.bitrate)
        .expect("measured");
    let small = result
        .catalog
        .track("video1")
        .and_then(|t| t.bitrate)
        .expect("measured");
    assert!(big > small && small > 0, "{big} {small}");
    // Measured over the first 2 s: the mean of those bytes.
    let bytes_2s: usize = result
        .track("video")
        .iter()
        .filter(|o| o.media_time_secs() < 2.0)
        .map(|o| o.payload.len())
        .sum();
    let payload_rate = bytes_2s as f64 * 8.0 / 2.0;
    assert!(
        (big as f64) < payload_rate && (big as f64) > payload_rate * 0.9,
        "{big} vs {payload_rate} (payloads include the moof)"
    );

    // The short rendition's groups are the first two of the long one's.
    let long = group_starts(&result.track("video"));
    let short = group_starts(&result.track("video1"));
    assert_eq!(long.len(), 4);
    assert_eq!(short.len(), 2);
    assert!(
        short.iter().all(|(n, t)| long.get(n) == Some(t)),
        "{long:?} {short:?}"
    );
    assert!(result
        .catalog
        .track("video")
        .expect("video")
        .groups_aligned());
}

#[test]
fn b_frames_and_loops_keep_the_renditions_aligned() {
    let dir = TempDir::new("ladder-bframes-loop");
    let rungs = [rung(320, 180, Some(600), 30), rung(160, 90, Some(100), 30)];
    // B-frames: decode times run ahead of presentation; groups are matched by the
    // presentation time of their first sample.
    let input = make_ladder(&dir, "in.mp4", 3, &rungs, None, true, PER_GOP);
    let result = ingest(&input, 4096, 2);
    assert_eq!(result.catalogs.len(), 1, "{:?}", result.catalogs);
    assert!(result.catalog.tracks.iter().all(|t| t.groups_aligned()));
    let starts: Vec<BTreeMap<u64, f64>> = ["video", "video1"]
        .iter()
        .map(|name| group_starts(&result.track(name)))
        .collect();
    // 3 groups a pass, two passes, numbered on.
    assert_eq!(starts[0].len(), 6, "{starts:?}");
    assert_eq!(
        starts[0].keys().copied().collect::<Vec<_>>(),
        (0..6).collect::<Vec<u64>>()
    );
    assert_eq!(starts[0], starts[1]);
    let audio: Vec<u64> = group_starts(&result.track("audio")).into_keys().collect();
    assert_eq!(audio, (0..6).collect::<Vec<u64>>());
}

#[test]
fn per_frame_fragments_give_every_rendition_its_framerate_in_the_first_catalog() {
    let dir = TempDir::new("ladder-per-frame");
    let rungs = [
        rung(320, 180, Some(600), 30),
        rung(240, 136, Some(300), 30),
        rung(160, 90, Some(100), 30),
    ];
    // Each track's frame 0 comes in a moof of its own: the catalog waits for all three.
    let input = make_ladder(&dir, "in.mp4", 2, &rungs, None, false, PER_FRAME);
    let result = ingest(&input, 4096, 1);
    assert_eq!(result.catalogs.len(), 1, "{:?}", result.catalogs);
    for name in VIDEO_TRACKS {
        let track = result.catalog.track(name).expect("rendition");
        assert_eq!(track.framerate, Some(30.0), "{name}");
        assert!(track.bitrate.is_some(), "{name}");
    }
    // One object per frame and track, grouped and numbered like the per-GOP layout.
    let starts: Vec<BTreeMap<u64, f64>> = VIDEO_TRACKS
        .iter()
        .map(|name| group_starts(&result.track(name)))
        .collect();
    assert_eq!(starts[0].len(), 2);
    assert!(starts.iter().all(|s| s == &starts[0]), "{starts:?}");
    assert_eq!(result.track("video2").len(), 60);
}
