//! Test helpers: make clips with ffmpeg, run the ingest over them, mux the objects back,
//! and compare per-packet hashes with `ffmpeg -f framemd5`.
//!
//! ffmpeg is required: a missing ffmpeg fails the tests with a clear message.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use stagecast_media::catalog::Catalog;
use stagecast_media::egress::FragmentedMp4Writer;
use stagecast_media::ingest::{CmafIngest, IngestEvent, MediaObject};

/// The lavfi sources of every test clip: small, 30 fps, a 440 Hz tone.
const SOURCES: &[&str] = &[
    "-f",
    "lavfi",
    "-i",
    "testsrc2=size=160x120:rate=30",
    "-f",
    "lavfi",
    "-i",
    "sine=frequency=440:sample_rate=48000",
];

/// A temporary directory removed when dropped (kept if `STAGECAST_KEEP_TEMP` is set).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("stagecast-media-{}-{name}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("STAGECAST_KEEP_TEMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Runs a media tool, failing the test clearly if it is missing or fails.
pub fn run(tool: &str, args: &[&str]) -> (String, String) {
    let output = match Command::new(tool).args(args).output() {
        Ok(output) => output,
        Err(err) => panic!(
            "cannot run `{tool}` ({err}): these tests need ffmpeg and ffprobe on PATH \
             (Debian: apt-get install ffmpeg)"
        ),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "`{tool} {}` failed: {stderr}",
        args.join(" ")
    );
    (stdout, stderr)
}

/// Encodes `seconds` of test pattern + tone with the given codec/muxer arguments into
/// `dir/name` and returns the file's bytes.
pub fn make_clip(dir: &TempDir, name: &str, seconds: u32, args: &[&str]) -> Vec<u8> {
    let out = dir.path(name);
    let duration = seconds.to_string();
    let mut all: Vec<&str> = vec!["-v", "error", "-y"];
    all.extend_from_slice(SOURCES);
    all.extend_from_slice(&["-t", &duration]);
    all.extend_from_slice(args);
    let out_str = out.to_str().expect("utf8 path");
    all.push(out_str);
    run("ffmpeg", &all);
    std::fs::read(&out).expect("read clip")
}

/// H.264 (libx264, 1 s GOP) + AAC encoder arguments; `zerolatency` disables B-frames.
pub fn h264_aac(zerolatency: bool) -> Vec<&'static str> {
    let mut args = vec!["-c:v", "libx264", "-preset", "veryfast", "-g", "30"];
    if zerolatency {
        args.extend_from_slice(&["-tune", "zerolatency"]);
    }
    args.extend_from_slice(&["-c:a", "aac", "-b:a", "64k"]);
    args
}

/// Everything one ingest run produced.
pub struct Ingested {
    /// The latest catalog.
    pub catalog: Catalog,
    /// Every catalog, in order: the first, then each update.
    pub catalogs: Vec<Catalog>,
    pub objects: Vec<MediaObject>,
}

impl Ingested {
    pub fn track(&self, name: &str) -> Vec<&MediaObject> {
        self.objects.iter().filter(|o| o.track == name).collect()
    }
}

/// Collects events, checking the catalog comes before any object and that an update
/// lists the same tracks.
pub fn collect(
    events: Vec<IngestEvent>,
    catalogs: &mut Vec<Catalog>,
    objects: &mut Vec<MediaObject>,
) {
    for event in events {
        match event {
            IngestEvent::Catalog(c) => {
                if let Some(first) = catalogs.first() {
                    let names =
                        |c: &Catalog| c.tracks.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
                    assert_eq!(
                        names(first),
                        names(&c),
                        "a catalog update changed the tracks"
                    );
                    assert_ne!(
                        catalogs.last(),
                        Some(&c),
                        "a catalog update that changes nothing"
                    );
                } else {
                    assert!(objects.is_empty(), "catalog after objects");
                }
                catalogs.push(c);
            }
            IngestEvent::Object(o) => {
                assert!(!catalogs.is_empty(), "object before catalog");
                objects.push(o);
            }
        }
    }
}

/// Feeds `passes` copies of `input` in `chunk`-byte pieces (calling `begin_loop` between
/// copies), then finishes.
pub fn ingest(input: &[u8], chunk: usize, passes: usize) -> Ingested {
    let mut ingest = CmafIngest::new();
    let mut catalogs = Vec::new();
    let mut objects = Vec::new();
    for pass in 0..passes {
        if pass > 0 {
            ingest.begin_loop();
        }
        for piece in input.chunks(chunk) {
            let events = ingest.push(piece).expect("push");
            collect(events, &mut catalogs, &mut objects);
        }
    }
    collect(
        ingest.finish().expect("finish"),
        &mut catalogs,
        &mut objects,
    );
    Ingested {
        catalog: catalogs.last().cloned().expect("a catalog"),
        catalogs,
        objects,
    }
}

/// Muxes objects (in order) into one fragmented MP4 at `path`.
pub fn egress<'a>(
    catalog: &Catalog,
    objects: impl IntoIterator<Item = &'a MediaObject>,
    path: &Path,
) -> Vec<u8> {
    let mut writer = FragmentedMp4Writer::new(catalog).expect("writer");
    let mut out = writer.init_segment().to_vec();
    for object in objects {
        let bytes = writer
            .fragment(&object.track, object.payload.clone())
            .expect("fragment");
        out.extend_from_slice(&bytes);
    }
    std::fs::write(path, &out).expect("write output");
    out
}

/// One packet line of `ffmpeg -f framemd5`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub stream: usize,
    pub dts: i64,
    pub size: u64,
    pub hash: String,
}

/// Per-packet hashes of every stream of `path`, in file order.
pub fn framemd5(path: &Path) -> Vec<Packet> {
    let path = path.to_str().expect("utf8 path");
    let (stdout, _) = run(
        "ffmpeg",
        &[
            "-v", "error", "-i", path, "-map", "0", "-c", "copy", "-f", "framemd5", "-",
        ],
    );
    stdout
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split(',').map(str::trim).collect();
            assert_eq!(cols.len(), 6, "unexpected framemd5 line {line:?}");
            Packet {
                stream: cols[0].parse().expect("stream"),
                dts: cols[1].parse().expect("dts"),
                size: cols[4].parse().expect("size"),
                hash: cols[5].to_string(),
            }
        })
        .collect()
}

/// The (size, hash) sequence of one stream.
pub fn hashes(packets: &[Packet], stream: usize) -> Vec<(u64, String)> {
    packets
        .iter()
        .filter(|p| p.stream == stream)
        .map(|p| (p.size, p.hash.clone()))
        .collect()
}

/// Decodes `path` fully; returns ffmpeg's error output (empty when clean).
pub fn decode_errors(path: &Path) -> String {
    let path = path.to_str().expect("utf8 path");
    let (_, stderr) = run("ffmpeg", &["-v", "error", "-i", path, "-f", "null", "-"]);
    stderr
}

/// `(key_frame, pts_time)` of the first packets of a stream, from ffprobe.
pub fn probe_packets(path: &Path, stream: &str, count: usize) -> Vec<(bool, String)> {
    let path = path.to_str().expect("utf8 path");
    let (stdout, _) = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            stream,
            "-show_entries",
            "packet=pts_time,flags",
            "-of",
            "csv=p=0",
            path,
        ],
    );
    stdout
        .lines()
        .take(count)
        .map(|line| {
            let mut cols = line.split(',');
            let pts = cols.next().unwrap_or_default().to_string();
            let flags = cols.next().unwrap_or_default();
            (flags.starts_with('K'), pts)
        })
        .collect()
}
