//! Bad input gives a clear, specific error, never a panic: text, fragments without a moov,
//! truncation, progressive MP4, unsupported codecs, oversized boxes, garbage, bit flips.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::*;
use stagecast_media::catalog::{AUDIO_TRACK, VIDEO_TRACK};
use stagecast_media::ingest::{CmafIngest, IngestError, IngestEvent};

const CMAF: &str = "cmaf+empty_moov+frag_keyframe+default_base_moof";

/// Feeds `input` in 1000-byte pieces then finishes; the first error, if any.
fn run_ingest(input: &[u8]) -> Result<Vec<IngestEvent>, IngestError> {
    let mut ingest = CmafIngest::new();
    let mut events = Vec::new();
    for piece in input.chunks(1000) {
        events.extend(ingest.push(piece)?);
    }
    events.extend(ingest.finish()?);
    Ok(events)
}

fn clip(dir: &TempDir, name: &str, movflags: Option<&str>) -> Vec<u8> {
    let mut args = h264_aac(true);
    args.extend_from_slice(&["-f", "mp4"]);
    if let Some(flags) = movflags {
        args.extend_from_slice(&["-movflags", flags]);
    }
    make_clip(dir, name, 2, &args)
}

/// Top-level boxes of a well-formed file: (type, start, end).
fn boxes(data: &[u8]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= data.len() {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
        let kind = String::from_utf8_lossy(&data[at + 4..at + 8]).into_owned();
        out.push((kind, at, at + size));
        at += size;
    }
    out
}

#[test]
fn text_file_is_not_mp4() {
    let err = run_ingest(b"Hello, this is a text file.\nNot a video at all.\n")
        .expect_err("text must be rejected");
    assert!(matches!(err, IngestError::NotMp4 { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with("input is not fragmented MP4: expected ftyp/moov, found text"),
        "{message}"
    );
}

#[test]
fn empty_input() {
    let err = run_ingest(b"").expect_err("empty input");
    assert!(err.to_string().contains("empty"), "{err}");
}

#[test]
fn fragment_before_moov() {
    let dir = TempDir::new("before-moov");
    let input = clip(&dir, "in.mp4", Some(CMAF));
    let layout = boxes(&input);
    let moov_end = layout.iter().find(|b| b.0 == "moov").expect("moov").2;
    let ftyp_end = layout[0].2;

    // Fragments alone (a stream joined in the middle, or the header lost).
    let err = run_ingest(&input[moov_end..]).expect_err("no header");
    assert!(
        matches!(err, IngestError::FragmentBeforeMoov { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("before the moov"), "{err}");

    // ftyp, then fragments.
    let mut no_moov = input[..ftyp_end].to_vec();
    no_moov.extend_from_slice(&input[moov_end..]);
    let err = run_ingest(&no_moov).expect_err("no moov");
    assert!(
        matches!(err, IngestError::FragmentBeforeMoov { .. }),
        "{err:?}"
    );
}

#[test]
fn truncated_input_is_reported_at_finish() {
    let dir = TempDir::new("truncated");
    let input = clip(&dir, "in.mp4", Some(CMAF));
    let layout = boxes(&input);
    let (_, mdat_start, mdat_end) = layout.iter().find(|b| b.0 == "mdat").expect("mdat").clone();

    // Cut in the middle of the first mdat: the good part yields a catalog, finish fails.
    let cut = &input[..(mdat_start + mdat_end) / 2];
    let mut ingest = CmafIngest::new();
    let events = ingest.push(cut).expect("push");
    assert!(events.is_empty(), "nothing complete yet");
    let err = ingest.finish().expect_err("truncated");
    assert!(matches!(err, IngestError::Truncated { .. }), "{err:?}");
    assert!(err.to_string().contains("inside a \"mdat\" box"), "{err}");

    // Cut right after a moof.
    let err = run_ingest(&input[..mdat_start]).expect_err("moof without mdat");
    assert!(err.to_string().contains("after a moof"), "{err}");

    // Cut inside a box header.
    let err = run_ingest(&input[..mdat_start + 3]).expect_err("partial header");
    assert!(matches!(err, IngestError::Truncated { .. }), "{err:?}");

    // After an error the ingest stays failed.
    assert!(matches!(ingest.push(b"x"), Err(IngestError::AlreadyFailed)));
}

#[test]
fn progressive_mp4_is_not_fragmented() {
    let dir = TempDir::new("progressive");
    // Plain ffmpeg output: ftyp, free, mdat, moov.
    let plain = clip(&dir, "plain.mp4", None);
    let err = run_ingest(&plain).expect_err("progressive");
    assert!(matches!(err, IngestError::NotFragmented { .. }), "{err:?}");
    assert!(err.to_string().contains("remux"), "{err}");

    // faststart: moov (with samples, no mvex) first.
    let faststart = clip(&dir, "faststart.mp4", Some("+faststart"));
    let err = run_ingest(&faststart).expect_err("faststart");
    assert!(matches!(err, IngestError::NotFragmented { .. }), "{err:?}");
    assert!(err.to_string().contains("no mvex"), "{err}");

    // frag_keyframe without empty_moov: the first fragment hides in the moov.
    let hybrid = clip(&dir, "hybrid.mp4", Some("frag_keyframe"));
    let err = run_ingest(&hybrid).expect_err("samples in moov");
    assert!(matches!(err, IngestError::NotFragmented { .. }), "{err:?}");
    assert!(err.to_string().contains("holds"), "{err}");
}

#[test]
fn unsupported_codec_is_named() {
    let dir = TempDir::new("codec");
    let input = make_clip(
        &dir,
        "mpeg4.mp4",
        1,
        &["-c:v", "mpeg4", "-an", "-f", "mp4", "-movflags", CMAF],
    );
    let err = run_ingest(&input).expect_err("mpeg4 part 2 video");
    assert!(
        matches!(err, IngestError::UnsupportedCodec { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("mp4v"), "{err}");
}

#[test]
fn oversized_box_is_refused() {
    let mut input = b"\0\0\0\x14ftypiso6\0\0\0\0iso6".to_vec();
    input.extend_from_slice(b"\x7f\xff\xff\xffmoov");
    let err = run_ingest(&input).expect_err("2 GiB moov");
    assert!(matches!(err, IngestError::BoxTooLarge { .. }), "{err:?}");
    assert!(err.to_string().contains("limit"), "{err}");
}

#[test]
fn repeated_pass_must_be_the_same_file() {
    let dir = TempDir::new("loop-mismatch");
    let first = clip(&dir, "a.mp4", Some(CMAF));
    let other = make_clip(
        &dir,
        "b.mp4",
        2,
        &[
            "-c:v",
            "libx264",
            "-g",
            "15",
            "-c:a",
            "aac",
            "-f",
            "mp4",
            "-movflags",
            CMAF,
        ],
    );
    let mut ingest = CmafIngest::new();
    ingest.push(&first).expect("first pass");
    ingest.begin_loop();
    let err = ingest.push(&other).expect_err("different file");
    assert!(matches!(err, IngestError::LoopMismatch { .. }), "{err:?}");

    // begin_loop in the middle of a box: the next call reports the truncation.
    let mut ingest = CmafIngest::new();
    ingest.push(&first[..first.len() - 10]).expect("most of it");
    ingest.begin_loop();
    let err = ingest.push(&first).expect_err("truncated pass");
    assert!(matches!(err, IngestError::Truncated { .. }), "{err:?}");
}

#[test]
fn audio_only_and_video_only_streams() {
    let dir = TempDir::new("single-track");
    let audio = make_clip(
        &dir,
        "audio.mp4",
        5,
        &[
            "-vn",
            "-c:a",
            "aac",
            "-f",
            "mp4",
            "-movflags",
            CMAF,
            "-frag_duration",
            "200000",
        ],
    );
    let result = ingest(&audio, 1000, 1);
    assert_eq!(result.catalog.tracks.len(), 1);
    let starts: Vec<f64> = result
        .track(AUDIO_TRACK)
        .iter()
        .filter(|o| o.starts_group)
        .map(|o| o.media_time_secs())
        .collect();
    assert_eq!(
        starts.len(),
        3,
        "audio-only groups about every 2 s: {starts:?}"
    );

    let video = make_clip(
        &dir,
        "video.mp4",
        2,
        &[
            "-an",
            "-c:v",
            "libx264",
            "-g",
            "30",
            "-f",
            "mp4",
            "-movflags",
            CMAF,
        ],
    );
    let result = ingest(&video, 1000, 1);
    assert_eq!(result.catalog.tracks.len(), 1);
    assert_eq!(
        result
            .track(VIDEO_TRACK)
            .iter()
            .filter(|o| o.starts_group)
            .count(),
        2
    );
}

/// A tiny deterministic PRNG (xorshift64*), so failures are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Runs the ingest without letting a panic escape; returns whether it ended in an error.
fn survives(case: &str, input: &[u8], chunk: usize) -> bool {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut ingest = CmafIngest::new();
        for piece in input.chunks(chunk.max(1)) {
            if ingest.push(piece).is_err() {
                return true;
            }
        }
        ingest.finish().is_err()
    }));
    match outcome {
        Ok(failed) => failed,
        Err(_) => panic!("ingest panicked on {case}"),
    }
}

#[test]
fn garbage_truncation_and_bit_flips_never_panic() {
    let dir = TempDir::new("fuzz");
    let input = clip(&dir, "in.mp4", Some(CMAF));
    let looped = clip(
        &dir,
        "b.mp4",
        Some("cmaf+separate_moof+delay_moov+skip_trailer+frag_every_frame"),
    );
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    // `STAGECAST_FUZZ_SCALE=100 cargo test ...` for a longer soak.
    let scale: usize = std::env::var("STAGECAST_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);

    // Pure garbage: always an error.
    for case in 0..200 * scale {
        let len = rng.below(4096);
        let garbage: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        assert!(
            survives(&format!("garbage #{case}"), &garbage, 1 + rng.below(700)),
            "garbage #{case} was accepted"
        );
    }

    // Truncations: an error whenever the cut is not at a box boundary.
    let layout = boxes(&input);
    for _ in 0..200 * scale {
        let cut = rng.below(input.len());
        let at_boundary = layout.iter().any(|b| b.1 == cut) && cut >= layout[1].2;
        let failed = survives(&format!("truncation at {cut}"), &input[..cut], 1000);
        assert!(failed || at_boundary, "truncation at {cut} was accepted");
    }

    // Bit flips (many land in sample data, which is opaque: no error expected there).
    for (name, clip) in [("a", &input), ("b", &looped)] {
        for case in 0..300 * scale {
            let mut flipped = clip.clone();
            // Flip mostly in the first few KB, where the box structure is dense.
            let span = if case % 2 == 0 {
                2048.min(flipped.len())
            } else {
                flipped.len()
            };
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(span);
                flipped[at] ^= 1 << rng.below(8);
            }
            survives(
                &format!("bit flips {name} #{case}"),
                &flipped,
                1 + rng.below(3000),
            );
        }
    }

    // Header fields forced to extreme values.
    for case in 0..300 * scale {
        let mut mangled = input.clone();
        let at = rng.below(4096.min(mangled.len() - 4));
        let value: u32 = match case % 4 {
            0 => 0,
            1 => u32::MAX,
            2 => 1,
            _ => rng.next() as u32,
        };
        mangled[at..at + 4].copy_from_slice(&value.to_be_bytes());
        survives(&format!("mangled word at {at}"), &mangled, 997);
    }
}
