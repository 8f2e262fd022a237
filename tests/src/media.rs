//! Media for tests: clips made by ffmpeg, a live source that holds its media back until
//! the test opens a gate, the `stagecast` CLI as publisher and subscriber, and per-sample
//! comparison with ffmpeg's `framemd5`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::bin;

/// fMP4 layouts ffmpeg produces that publishing must accept.
#[derive(Clone, Copy, Debug)]
pub enum Layout {
    /// `cmaf+empty_moov+frag_keyframe+default_base_moof`: a fragment per GOP.
    FragKeyframe,
    /// `cmaf+separate_moof+delay_moov+skip_trailer+frag_every_frame`: a fragment per frame.
    FragEveryFrame,
}

impl Layout {
    pub fn movflags(self) -> &'static str {
        match self {
            Layout::FragKeyframe => "cmaf+empty_moov+frag_keyframe+default_base_moof",
            Layout::FragEveryFrame => "cmaf+separate_moof+delay_moov+skip_trailer+frag_every_frame",
        }
    }
}

fn ffmpeg() -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"]);
    cmd
}

fn check(output: Output, what: &str) -> Output {
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Makes a test-pattern clip: `seconds` long, 320x180 at 30 fps, 1 s GOPs, with a tone;
/// `bframes` keeps x264's B-frames (no `-tune zerolatency`).
pub fn make_clip(dir: &Path, name: &str, seconds: u32, layout: Layout, bframes: bool) -> PathBuf {
    let path = dir.join(name);
    let mut cmd = ffmpeg();
    cmd.args([
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc2=size=320x180:rate=30:duration={seconds}"),
    ]);
    cmd.args([
        "-f",
        "lavfi",
        "-i",
        &format!("sine=frequency=440:duration={seconds}"),
    ]);
    cmd.args([
        "-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-pix_fmt", "yuv420p",
    ]);
    if !bframes {
        cmd.args(["-tune", "zerolatency"]);
    }
    cmd.args([
        "-c:a",
        "aac",
        "-b:a",
        "64k",
        "-f",
        "mp4",
        "-movflags",
        layout.movflags(),
    ]);
    cmd.arg(&path);
    check(cmd.output().expect("ffmpeg is installed"), "making a clip");
    path
}

/// Per-stream packet hashes of a media file, keyed by media type (`video`, `audio`).
pub fn frame_hashes(path: &Path) -> BTreeMap<String, Vec<String>> {
    try_frame_hashes(path)
        .unwrap_or_else(|err| panic!("framemd5 of {} failed: {err}", path.display()))
}

/// [`frame_hashes`], or ffmpeg's complaint when the file is not media (yet).
pub fn try_frame_hashes(path: &Path) -> Result<BTreeMap<String, Vec<String>>, String> {
    let output = ffmpeg()
        .arg("-i")
        .arg(path)
        .args(["-map", "0", "-c", "copy", "-f", "framemd5", "-"])
        .output()
        .expect("ffmpeg is installed");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).to_string());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut kinds: BTreeMap<String, String> = BTreeMap::new();
    let mut hashes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("#media_type ") {
            if let Some((index, kind)) = rest.split_once(':') {
                kinds.insert(index.trim().to_string(), kind.trim().to_string());
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if let (Some(index), Some(hash)) = (fields.first(), fields.last()) {
            let kind = kinds
                .get(*index)
                .cloned()
                .unwrap_or_else(|| index.to_string());
            hashes.entry(kind).or_default().push(hash.to_string());
        }
    }
    Ok(hashes)
}

/// Asserts that two files hold the same packets, byte for byte, per media type.
pub fn assert_same_samples(input: &Path, output: &Path) {
    let want = frame_hashes(input);
    let got = frame_hashes(output);
    assert!(
        want.contains_key("video") && want.contains_key("audio"),
        "input lacks a stream: {want:?}"
    );
    for (kind, hashes) in &want {
        let received = got.get(kind).map(Vec::len).unwrap_or(0);
        assert_eq!(
            received,
            hashes.len(),
            "{kind} packet count differs ({})",
            output.display()
        );
        assert_eq!(got.get(kind), Some(hashes), "{kind} packets differ");
    }
}

/// Whether the first video packet of a file is a keyframe, per ffprobe.
pub fn first_video_packet_is_key(path: &Path) -> bool {
    let output = check(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "packet=flags",
            ])
            .args(["-read_intervals", "%+#1", "-of", "csv=p=0"])
            .arg(path)
            .output()
            .expect("ffprobe is installed"),
        "ffprobe",
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()
        .is_some_and(|flags| flags.starts_with('K'))
}

/// Decodes a whole file; returns ffmpeg's error output (empty when clean).
pub fn decode_errors(path: &Path) -> String {
    let output = ffmpeg()
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg is installed");
    let mut errors = String::from_utf8_lossy(&output.stderr).to_string();
    if !output.status.success() {
        errors.push_str(&format!("\nexit status {}", output.status));
    }
    errors
}

/// Number of decodable video frames in a file.
pub fn video_frame_count(path: &Path) -> usize {
    frame_hashes(path).get("video").map(Vec::len).unwrap_or(0)
}

/// Number of video packets in a file that may not be media (yet): 0 then.
pub fn video_packets_so_far(path: &Path) -> usize {
    packets_so_far(path).get("video").copied().unwrap_or(0)
}

/// Packets per media type in a file that may not be media (yet): none then.
pub fn packets_so_far(path: &Path) -> BTreeMap<String, usize> {
    try_frame_hashes(path)
        .map(|hashes| hashes.into_iter().map(|(k, v)| (k, v.len())).collect())
        .unwrap_or_default()
}

/// Whether `path` holds at least as many packets of every media type as `reference`.
pub fn has_all_packets(path: &Path, reference: &Path) -> bool {
    let got = packets_so_far(path);
    packets_so_far(reference)
        .iter()
        .all(|(kind, want)| got.get(kind).is_some_and(|n| n >= want))
}

/// Whether `path` holds the last packet of every media type of `reference`: a subscriber
/// that joined late has then received up to the end.
pub fn has_tail(path: &Path, reference: &Path) -> bool {
    let got = try_frame_hashes(path).unwrap_or_default();
    frame_hashes(reference)
        .iter()
        .all(|(kind, want)| match (want.last(), got.get(kind)) {
            (Some(last), Some(got)) => got.contains(last),
            (None, _) => true,
            (Some(_), None) => false,
        })
}

/// Asserts that `output` holds, per media type, the packets of `input` from some packet to
/// the end, byte for byte and none missing: what a subscriber that joined late receives.
/// Returns how many video packets it holds.
pub fn assert_suffix_of(input: &Path, output: &Path) -> usize {
    let want = frame_hashes(input);
    let got = frame_hashes(output);
    for (kind, hashes) in &want {
        let received = got.get(kind).cloned().unwrap_or_default();
        assert!(
            !received.is_empty(),
            "{} holds no {kind} packets",
            output.display()
        );
        assert!(
            hashes.ends_with(&received),
            "{kind} packets of {} are not the end of the input's ({} of {}): a packet is \
             missing or differs",
            output.display(),
            received.len(),
            hashes.len()
        );
    }
    got.get("video").map(Vec::len).unwrap_or(0)
}

/// A live source: ffmpeg re-muxes `clip` at real-time speed (`-re`), and its output is
/// written to `sink` (a publisher's stdin) and captured to a file for comparison. Only the
/// init segment and the first fragment (of each track) pass until [`LiveSource::open_gate`]
/// is called, so a test can set up its subscribers while the first group is the newest.
pub struct LiveSource {
    ffmpeg: Child,
    gate: Option<mpsc::Sender<()>>,
    pump: Option<JoinHandle<()>>,
    pub captured: PathBuf,
}

impl LiveSource {
    pub fn start(
        clip: &Path,
        layout: Layout,
        sink: impl Write + Send + 'static,
        captured: PathBuf,
    ) -> LiveSource {
        Self::start_with(clip, layout, &[], sink, captured)
    }

    /// [`LiveSource::start`] with more ffmpeg output options, e.g.
    /// `-max_interleave_delta 200000` for a ladder: ffmpeg's interleaver holds packets
    /// until every stream has one queued, for up to 10 s by default, so remuxing a file
    /// with several video streams delays fragments (by about 1 s here), and one whose
    /// rendition stops early holds everything after that point until the end of the file.
    pub fn start_with(
        clip: &Path,
        layout: Layout,
        output_args: &[&str],
        mut sink: impl Write + Send + 'static,
        captured: PathBuf,
    ) -> LiveSource {
        let mut ffmpeg = ffmpeg()
            .args(["-re", "-i"])
            .arg(clip)
            .args(["-map", "0", "-c", "copy"])
            .args(output_args)
            .args(["-f", "mp4", "-movflags", layout.movflags(), "-"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ffmpeg is installed");
        let mut stdout = ffmpeg.stdout.take().expect("ffmpeg stdout");
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let capture_path = captured.clone();
        let pump = std::thread::spawn(move || {
            let mut capture = std::fs::File::create(&capture_path).expect("capture file");
            let mut pending: Vec<u8> = Vec::new();
            let mut init_sent = false;
            let mut gate_open = false;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = stdout.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                capture.write_all(&buf[..n]).expect("capture");
                pending.extend_from_slice(&buf[..n]);
                if !init_sent {
                    if let Some(end) = first_fragment_end(&pending) {
                        if sink.write_all(&pending[..end]).is_err() {
                            return;
                        }
                        let _ = sink.flush();
                        pending.drain(..end);
                        init_sent = true;
                    }
                }
                if init_sent && !gate_open && gate_rx.try_recv().is_ok() {
                    gate_open = true;
                }
                if gate_open && !pending.is_empty() {
                    if sink.write_all(&pending).is_err() {
                        return;
                    }
                    let _ = sink.flush();
                    pending.clear();
                }
            }
            // The clip may be shorter than the set-up: open the gate before the end.
            if !gate_open && gate_rx.recv().is_ok() {
                let _ = sink.write_all(&pending);
            }
            drop(sink);
        });
        LiveSource {
            ffmpeg,
            gate: Some(gate_tx),
            pump: Some(pump),
            captured,
        }
    }

    /// Lets media through.
    pub fn open_gate(&mut self) {
        if let Some(gate) = self.gate.take() {
            let _ = gate.send(());
        }
    }

    /// Waits for the source to finish and the publisher's input to close.
    pub fn finish(mut self) {
        self.open_gate();
        let _ = self.ffmpeg.wait();
        if let Some(pump) = self.pump.take() {
            let _ = pump.join();
        }
    }
}

impl Drop for LiveSource {
    fn drop(&mut self) {
        let _ = self.ffmpeg.kill();
        let _ = self.ffmpeg.wait();
    }
}

/// Where the first fragment of every track ends (the `mdat` after which each track the
/// `moov` declares has had a `moof`, or the 16th fragment), once it is whole. The publisher
/// sends its catalog once every video track has sent a chunk, so that much must pass the
/// gate: one fragment when a `moof` holds every track, one per track with `separate_moof`.
fn first_fragment_end(data: &[u8]) -> Option<usize> {
    /// `(type, body)` of each whole box in `data`, stopping at the first incomplete one.
    fn boxes(data: &[u8]) -> impl Iterator<Item = (&[u8], &[u8], usize)> {
        let mut offset = 0usize;
        std::iter::from_fn(move || {
            let size = u32::from_be_bytes(data.get(offset..offset + 4)?.try_into().ok()?) as usize;
            let kind = data.get(offset + 4..offset + 8)?;
            if size < 8 || offset + size > data.len() {
                return None;
            }
            let body = &data[offset + 8..offset + size];
            offset += size;
            Some((kind, body, offset))
        })
    }
    let mut tracks: Option<usize> = None;
    let mut seen: Vec<u32> = Vec::new();
    let mut fragments = 0;
    for (kind, body, end) in boxes(data) {
        match kind {
            b"moov" => tracks = Some(boxes(body).filter(|(k, _, _)| *k == b"trak").count()),
            b"moof" => {
                for (_, traf, _) in boxes(body).filter(|(k, _, _)| *k == b"traf") {
                    let tfhd = boxes(traf).find(|(k, _, _)| *k == b"tfhd");
                    // tfhd: version and flags (4 bytes), then track_ID.
                    let id = tfhd.and_then(|(_, b, _)| {
                        Some(u32::from_be_bytes(b.get(4..8)?.try_into().ok()?))
                    });
                    if let Some(id) = id.filter(|id| !seen.contains(id)) {
                        seen.push(id);
                    }
                }
            }
            b"mdat" if tracks.is_some() => {
                fragments += 1;
                if tracks.is_some_and(|n| seen.len() >= n) || fragments >= 16 {
                    return Some(end);
                }
            }
            _ => {}
        }
    }
    None
}

/// `stagecast publish URL BROADCAST` reading stdin, with a token allowing it.
pub fn publisher(dir: &Path, url: &str, broadcast: &str, fingerprint: &str, token: &str) -> Child {
    let log =
        std::fs::File::create(dir.join(format!("publish-{}.log", broadcast.replace('/', "_"))))
            .expect("log file");
    Command::new(bin("stagecast"))
        .args([
            "publish",
            url,
            broadcast,
            "--fingerprint",
            fingerprint,
            "--token",
            token,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start stagecast publish")
}

/// `stagecast subscribe URL BROADCAST --output FILE [extra]`.
pub fn subscriber(
    dir: &Path,
    name: &str,
    url: &str,
    broadcast: &str,
    fingerprint: &str,
    extra: &[&str],
) -> (Child, PathBuf) {
    let output = dir.join(format!("{name}.mp4"));
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
    let child = Command::new(bin("stagecast"))
        .args([
            "subscribe",
            url,
            broadcast,
            "--fingerprint",
            fingerprint,
            "--output",
        ])
        .arg(&output)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start stagecast subscribe");
    (child, output)
}

/// Publishes `clip` live as `broadcast` with `stagecast publish` at `url` (a URL of node
/// `at`, which issues the token), through a gated [`LiveSource`], and returns once `origin`
/// lists the broadcast. Open the source's gate once the subscribers are in place.
pub fn publish_live(
    dir: &Path,
    origin: &crate::node::Node,
    at: &crate::node::Node,
    url: &str,
    broadcast: &str,
    clip: &Path,
    layout: Layout,
) -> (Child, LiveSource) {
    let mut child = publisher(
        dir,
        url,
        broadcast,
        &at.fingerprint,
        &at.publish_token(broadcast),
    );
    let stdin = child.stdin.take().expect("publisher stdin");
    let source = LiveSource::start(clip, layout, stdin, dir.join("input.mp4"));
    crate::wait_until(
        "the origin to list the broadcast",
        std::time::Duration::from_secs(20),
        || crate::origin_lists(origin, broadcast),
    );
    (child, source)
}

/// One rung of a test ladder: picture size, video bitrate, GOP length in frames, and the
/// seconds after which the rendition stops (None: it lasts the whole clip).
#[derive(Clone, Copy, Debug)]
pub struct Rung {
    pub width: u32,
    pub height: u32,
    pub kbps: u32,
    pub gop: u32,
    pub ends_after: Option<u32>,
}

impl Rung {
    /// A rung with 1 s GOPs (30 frames) that lasts the whole clip.
    pub const fn new(width: u32, height: u32, kbps: u32) -> Rung {
        Rung {
            width,
            height,
            kbps,
            gop: 30,
            ends_after: None,
        }
    }
}

/// Makes a ladder the way a creator's single ffmpeg process does (README "A ladder"):
/// one test pattern at 30 fps split into one H.264 stream per rung (in rung order: stream
/// i is rung i), each at its `-b:v`, with keyframes every `gop` frames and no scene-cut
/// keyframes (so equal GOPs are aligned), plus a tone; `seconds` long, in `layout`.
pub fn make_ladder(
    dir: &Path,
    name: &str,
    seconds: u32,
    rungs: &[Rung],
    layout: Layout,
) -> PathBuf {
    let path = dir.join(name);
    let mut graph = format!("[0:v]split={}", rungs.len());
    for i in 0..rungs.len() {
        graph.push_str(&format!("[s{i}]"));
    }
    for (i, rung) in rungs.iter().enumerate() {
        graph.push_str(&format!(";[s{i}]scale={}:{}", rung.width, rung.height));
        if let Some(end) = rung.ends_after {
            graph.push_str(&format!(",trim=duration={end}"));
        }
        graph.push_str(&format!("[v{i}]"));
    }
    let mut cmd = ffmpeg();
    cmd.args([
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc2=size=640x360:rate=30:duration={seconds}"),
    ]);
    cmd.args([
        "-f",
        "lavfi",
        "-i",
        &format!("sine=frequency=440:duration={seconds}"),
    ]);
    cmd.args(["-filter_complex", &graph]);
    for i in 0..rungs.len() {
        cmd.args(["-map", &format!("[v{i}]")]);
    }
    cmd.args(["-map", "1:a", "-c:v", "libx264", "-preset", "veryfast"]);
    cmd.args([
        "-tune",
        "zerolatency",
        "-pix_fmt",
        "yuv420p",
        "-sc_threshold",
        "0",
    ]);
    for (i, rung) in rungs.iter().enumerate() {
        let gop = rung.gop.to_string();
        let rate = format!("{}k", rung.kbps);
        cmd.args([
            &format!("-g:v:{i}"),
            &gop,
            &format!("-keyint_min:v:{i}"),
            &gop,
        ]);
        cmd.args([
            &format!("-b:v:{i}"),
            &rate,
            &format!("-maxrate:v:{i}"),
            &rate,
        ]);
        cmd.args([&format!("-bufsize:v:{i}"), &rate]);
    }
    cmd.args([
        "-c:a",
        "aac",
        "-b:a",
        "64k",
        "-f",
        "mp4",
        "-movflags",
        layout.movflags(),
    ]);
    cmd.arg(&path);
    check(
        cmd.output().expect("ffmpeg is installed"),
        "making a ladder",
    );
    path
}

/// Packet hashes of every stream of a media file, in stream order, with its media type:
/// `[("video", ...), ("video", ...), ("audio", ...)]` for a ladder.
pub fn stream_hashes(path: &Path) -> Vec<(String, Vec<String>)> {
    let output = check(
        ffmpeg()
            .arg("-i")
            .arg(path)
            .args(["-map", "0", "-c", "copy", "-f", "framemd5", "-"])
            .output()
            .expect("ffmpeg is installed"),
        "framemd5",
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let mut streams: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("#media_type ") {
            if let Some((_, kind)) = rest.split_once(':') {
                streams.push((kind.trim().to_string(), Vec::new()));
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let index = fields.first().and_then(|i| i.parse::<usize>().ok());
        if let (Some(index), Some(hash)) = (index, fields.last()) {
            if let Some((_, hashes)) = streams.get_mut(index) {
                hashes.push(hash.to_string());
            }
        }
    }
    streams
}

/// The `bit_rate` ffprobe reads for each video stream of a file (from its `btrt` in a
/// fragmented MP4), in stream order.
pub fn video_bitrates(path: &Path) -> Vec<u64> {
    let output = check(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v"])
            .args(["-show_entries", "stream=bit_rate", "-of", "csv=p=0"])
            .arg(path)
            .output()
            .expect("ffprobe is installed"),
        "ffprobe",
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.trim().parse().unwrap_or(0))
        .collect()
}
