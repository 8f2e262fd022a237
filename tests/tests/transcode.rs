//! Origin transcoding (`stagecast-server --transcode LADDER`), end to end: a broadcast
//! published with one video rendition is served with the ladder (the catalog lists the
//! source and the rungs as alternates, rung groups start where the source's groups of the
//! same id start, and every rendition decodes at its size through `stagecast subscribe
//! --rendition`, at the origin and through a relay); past `--max-transcodes` a broadcast stays single-rendition and the
//! refusal is counted (both set in the config file), until a transcoded broadcast ends
//! and gives its place back; an ffmpeg killed under the origin is started again while the
//! source rendition plays on without a gap; a publisher back with a larger picture is
//! transcoded again from its new init segment.
//!
//! Media is a 320x180 clip (640x360 once) looped live, so the two cores spend little on
//! encoding.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moq_transport::coding::TrackNamespace;
use moq_transport::serve::{Track, TrackReaderMode};
use moq_transport::session::{Session, Subscriber};
use serde_json::Value;
use stagecast_media::producer_time::producer_time;
use stagecast_proto::endpoint::ClientEndpoint;
use stagecast_proto::trust::ClientTrust;
use stagecast_tests::media::{self, Layout};
use stagecast_tests::node::{signal, Node};
use stagecast_tests::{bin, origin_lists, output_dir, runtime, wait_exit, wait_until};
use tokio::sync::mpsc;

const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// The 360p rung is above the 180p source: it must not be made.
const LADDER: &str = "360p:800k,144p:150k,90p:80k";
const REFUSED: &str = "stagecast_limit_refused_total{limit=\"transcodes\"}";

/// A MoQ client in the test process, to read catalogs and group ids as a player does.
struct Watcher {
    _client: ClientEndpoint,
    subscriber: Subscriber,
}

/// Object 0 of each group of a track, with its group id, as they arrive.
type Groups = mpsc::UnboundedReceiver<(u64, Bytes)>;

impl Watcher {
    async fn connect(node: &Node) -> Watcher {
        let client = ClientEndpoint::new().expect("client endpoint");
        let trust = ClientTrust::pinned_hex(&node.fingerprint).expect("fingerprint");
        let url = node.moqt_url().parse().expect("url");
        let (session, transport) = client.connect(&url, &trust).await.expect("connect");
        let (session, _publisher, subscriber) = Session::connect(session.into(), None, transport)
            .await
            .expect("MoQ session");
        tokio::spawn(session.run());
        Watcher {
            _client: client,
            subscriber,
        }
    }

    async fn subscribe(&self, broadcast: &str, track: &str) -> Groups {
        let (writer, reader) =
            Track::new(TrackNamespace::from_utf8_path(broadcast), track.to_string()).produce();
        let mut subscriber = self.subscriber.clone();
        let subscription = subscriber
            .subscribe_open(writer)
            .await
            .unwrap_or_else(|err| panic!("subscribe to {broadcast}/{track}: {err}"));
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let _subscription = subscription;
            let Ok(TrackReaderMode::Subgroups(mut groups)) = reader.mode().await else {
                return;
            };
            while let Ok(Some(mut group)) = groups.next().await {
                let Ok(Some(mut object)) = group.next().await else {
                    continue;
                };
                if object.object_id != 0 {
                    continue;
                }
                let mut payload = Vec::new();
                while let Ok(Some(chunk)) = object.read().await {
                    payload.extend_from_slice(&chunk);
                }
                if tx.send((group.group_id, Bytes::from(payload))).is_err() {
                    return;
                }
            }
        });
        rx
    }

    /// The broadcast's catalogs as they come, until one satisfies `done` (within 20 s).
    async fn catalog_until(&self, broadcast: &str, done: impl Fn(&Value) -> bool) -> Value {
        let mut catalogs = self.subscribe(broadcast, "catalog").await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut last = Value::Null;
        loop {
            let next = tokio::time::timeout_at(deadline, catalogs.recv()).await;
            let Ok(Some((_, json))) = next else {
                panic!("no catalog of {broadcast} as wanted within 20 s; last: {last}");
            };
            last = serde_json::from_slice(&json).expect("catalog JSON");
            if done(&last) {
                return last;
            }
        }
    }
}

/// The catalog's video tracks.
fn videos(catalog: &Value) -> Vec<&Value> {
    catalog["tracks"]
        .as_array()
        .map(|tracks| tracks.iter().filter(|t| t["role"] == "video").collect())
        .unwrap_or_default()
}

fn video_names(catalog: &Value) -> Vec<String> {
    videos(catalog)
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect()
}

fn is_ladder(catalog: &Value) -> bool {
    videos(catalog).len() > 1
}

/// A ladder whose every rendition declares its bitrate (a source encoded without a rate
/// cap has its bitrate measured by the publisher over its first seconds, then the
/// catalog is published again).
fn is_whole_ladder(catalog: &Value) -> bool {
    is_ladder(catalog) && videos(catalog).iter().all(|t| t["bitrate"].is_u64())
}

/// The `tfdt` of the first `traf` of a CMAF chunk (a `prft` may come first).
fn first_decode_time(chunk: &[u8]) -> Option<u64> {
    fn boxes(data: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut rest = data;
        std::iter::from_fn(move || {
            let size = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            if size < 8 || size > rest.len() {
                return None;
            }
            let (this, next) = rest.split_at(size);
            rest = next;
            Some((&this[4..8], &this[8..]))
        })
    }
    let (_, moof) = boxes(chunk).find(|(kind, _)| *kind == b"moof")?;
    let (_, traf) = boxes(moof).find(|(kind, _)| *kind == b"traf")?;
    let (_, tfdt) = boxes(traf).find(|(kind, _)| *kind == b"tfdt")?;
    match tfdt.first()? {
        1 => Some(u64::from_be_bytes(tfdt.get(4..12)?.try_into().ok()?)),
        _ => Some(u64::from(u32::from_be_bytes(
            tfdt.get(4..8)?.try_into().ok()?,
        ))),
    }
}

/// Reads `count` groups of a track: by group id, the start time in seconds and the
/// capture time its first chunk carries (its `prft`).
async fn group_starts(
    groups: &mut Groups,
    count: usize,
    timescale: f64,
) -> BTreeMap<u64, (f64, Duration)> {
    let mut starts = BTreeMap::new();
    while starts.len() < count {
        let next = tokio::time::timeout(Duration::from_secs(15), groups.recv()).await;
        let Ok(Some((id, payload))) = next else {
            panic!("{count} groups did not arrive within 15 s each (got {starts:?})");
        };
        let time = first_decode_time(&payload).expect("a tfdt in object 0");
        let captured = producer_time(&payload)
            .and_then(|p| p.since_unix_epoch())
            .expect("a prft in front of a video chunk");
        starts.insert(id, (time as f64 / timescale, captured));
    }
    starts
}

/// `stagecast publish --file CLIP --loop` as `broadcast`, logging to the test directory.
fn publish_looped(dir: &Path, origin: &Node, broadcast: &str, clip: &Path) -> Child {
    let log =
        std::fs::File::create(dir.join(format!("publish-{}.log", broadcast.replace('/', "_"))))
            .expect("log file");
    let child = Command::new(bin("stagecast"))
        .args(["publish", &origin.moqt_url(), broadcast])
        .args(["--fingerprint", &origin.fingerprint])
        .args(["--token", &origin.publish_token(broadcast)])
        .arg("--file")
        .arg(clip)
        .arg("--loop")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start stagecast publish");
    wait_until(
        "the origin to list the broadcast",
        Duration::from_secs(20),
        || origin_lists(origin, broadcast),
    );
    child
}

/// `stagecast subscribe --rendition R --duration S` at `node`, to a file.
fn subscribe(
    dir: &Path,
    node: &Node,
    broadcast: &str,
    name: &str,
    rendition: &str,
    seconds: u32,
) -> (Child, PathBuf) {
    let duration = seconds.to_string();
    media::subscriber(
        dir,
        name,
        &node.moqt_url(),
        broadcast,
        &node.fingerprint,
        &["--rendition", rendition, "--duration", &duration],
    )
}

/// Width and height of a file's only video stream.
fn video_size(path: &Path) -> (u32, u32) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-show_entries"])
        .args(["stream=width,height", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe is installed");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{}: one video stream: {text}",
        path.display()
    );
    let mut parts = lines[0]
        .split(',')
        .map(|v| v.trim().parse().expect("a size"));
    (parts.next().expect("width"), parts.next().expect("height"))
}

/// Presentation times of a file's video frames, in seconds, sorted.
fn video_times(path: &Path) -> Vec<f64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-show_entries"])
        .args(["packet=pts_time", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe is installed");
    let mut times: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    times.sort_by(f64::total_cmp);
    times
}

/// Asserts that a subscriber exited cleanly and wrote `min_frames` or more frames of a
/// `size` picture that decode without an error.
fn assert_plays(child: &mut Child, output: &Path, size: (u32, u32), min_frames: usize) {
    let status = wait_exit(child, &output.display().to_string(), EXIT_TIMEOUT);
    assert!(
        status.success(),
        "{} exited with {status}",
        output.display()
    );
    assert_eq!(video_size(output), size, "{}", output.display());
    let errors = media::decode_errors(output);
    assert!(
        errors.is_empty(),
        "{} decodes with errors: {errors}",
        output.display()
    );
    let frames = media::video_frame_count(output);
    assert!(
        frames >= min_frames,
        "{}: {frames} frames, wanted {min_frames} or more",
        output.display()
    );
}

/// The ffmpeg processes whose parent is `parent`.
fn ffmpeg_children(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // pid (comm) state ppid ...: the name may hold spaces, so split after it.
            let Some((head, tail)) = stat.rsplit_once(')') else {
                return false;
            };
            let comm = head.split_once('(').map(|(_, c)| c);
            let ppid = tail.split_whitespace().nth(1).and_then(|p| p.parse().ok());
            comm == Some("ffmpeg") && ppid == Some(parent)
        })
        .collect()
}

#[test]
fn a_single_rendition_broadcast_is_served_with_the_ladder() {
    let dir = output_dir("transcode_ladder");
    let clip = media::make_clip(&dir, "clip.mp4", 4, Layout::FragKeyframe, false);
    let origin = Node::origin(&dir, "origin", &["--no-demo", "--transcode", LADDER]);
    let mut publisher = publish_looped(&dir, &origin, "live/a", &clip);
    let rt = runtime();
    rt.block_on(async {
        let watcher = Watcher::connect(&origin).await;
        let catalog = watcher.catalog_until("live/a", is_whole_ladder).await;
        assert_eq!(
            video_names(&catalog),
            ["video", "video.144p", "video.90p"],
            "the rungs at or below the 180p source, none above: {catalog}"
        );
        let expected = [(320, 180, "180p"), (256, 144, "144p"), (160, 90, "90p")];
        let tracks = videos(&catalog);
        for (track, (width, height, label)) in tracks.iter().zip(expected) {
            assert_eq!(track["altGroup"], tracks[0]["altGroup"], "{track}");
            assert!(track["altGroup"].is_u64(), "{track}");
            assert_eq!(track["width"], width, "{track}");
            assert_eq!(track["height"], height, "{track}");
            assert_eq!(track["label"], label, "{track}");
            assert_eq!(track["framerate"], 30, "{track}");
            assert!(track["bitrate"].as_u64().is_some_and(|b| b > 0), "{track}");
            assert!(track["initData"].is_string(), "{track}");
        }
        assert_eq!(tracks[1]["bitrate"], 150_000, "the rung's -maxrate");
        assert!(
            catalog["tracks"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["name"] == "audio")),
            "the audio stays: {catalog}"
        );
        // Group N of every rendition starts at the same media time.
        let timescale = |i: usize| tracks[i]["timescale"].as_f64().expect("a timescale");
        let mut source = watcher.subscribe("live/a", "video").await;
        let mut rung = watcher.subscribe("live/a", "video.90p").await;
        let (source, rung) = tokio::join!(
            group_starts(&mut source, 5, timescale(0)),
            group_starts(&mut rung, 4, timescale(2)),
        );
        let common: Vec<u64> = rung
            .keys()
            .filter(|id| source.contains_key(id))
            .copied()
            .collect();
        assert!(
            common.len() >= 3,
            "rung groups {rung:?} share at least 3 ids with the source's {source:?}"
        );
        for id in common {
            let ((source_start, source_wall), (rung_start, rung_wall)) = (source[&id], rung[&id]);
            assert!(
                (source_start - rung_start).abs() < 0.5 / 30.0,
                "group {id} starts at {source_start} in the source and {rung_start} in the rung",
            );
            // The rung carries the source picture's capture time, not the (a GOP later)
            // time it was transcoded, so glass-to-glass latency on a rung counts the
            // transcode.
            let apart = source_wall.abs_diff(rung_wall);
            assert!(
                apart < Duration::from_millis(5),
                "group {id}: captured at {source_wall:?} in the source, {rung_wall:?} in the rung"
            );
        }
    });
    // The lowest rung through an edge relay: relays carry the origin's catalog and rungs
    // like any track.
    let edge = Node::relay(&dir, "edge", &origin);
    let mut subscribers: Vec<_> = [
        ("source", "180p", &origin),
        ("r144", "144p", &origin),
        ("r90-edge", "90p", &edge),
    ]
    .iter()
    .map(|(name, rendition, node)| subscribe(&dir, node, "live/a", name, rendition, 3))
    .collect();
    for ((child, output), size) in subscribers
        .iter_mut()
        .zip([(320, 180), (256, 144), (160, 90)])
    {
        // 3 s at 30 fps is 90 frames; a subscriber starts at a group boundary.
        assert_plays(child, output, size, 60);
    }
    assert_eq!(origin.metric("stagecast_transcodes"), Some(1.0));
    let _ = publisher.kill();
    let _ = publisher.wait();
}

#[test]
fn past_max_transcodes_a_broadcast_stays_single_rendition() {
    let dir = output_dir("transcode_cap");
    let clip = media::make_clip(&dir, "clip.mp4", 4, Layout::FragKeyframe, false);
    // From the config file, as an operator would set it.
    let config = dir.join("origin.toml");
    std::fs::write(&config, "transcode = \"144p:150k\"\nmax-transcodes = 1\n").expect("config");
    let config = config.display().to_string();
    let origin = Node::origin(&dir, "origin", &["--no-demo", "--config", &config]);
    let mut first = publish_looped(&dir, &origin, "live/first", &clip);
    origin.wait_metric("stagecast_transcodes", 1.0);
    assert_eq!(origin.metric(REFUSED), None, "nothing refused yet");
    let mut second = publish_looped(&dir, &origin, "live/second", &clip);
    origin.wait_metric(REFUSED, 1.0);
    assert_eq!(origin.metric("stagecast_transcodes"), Some(1.0));
    let log = std::fs::read_to_string(&origin.log).expect("origin log");
    assert!(
        log.lines().any(|l| l.contains("transcode refused")
            && l.contains("--max-transcodes")
            && l.contains("live/second")),
        "a log line names the refused broadcast and the limit"
    );
    let rt = runtime();
    rt.block_on(async {
        let watcher = Watcher::connect(&origin).await;
        let ladder = watcher.catalog_until("live/first", is_ladder).await;
        assert_eq!(video_names(&ladder), ["video", "video.144p"]);
        // The refusal was decided on the second broadcast's first catalog (the metric
        // counted it), so the catalog served now is the one it keeps.
        let single = watcher.catalog_until("live/second", |_| true).await;
        assert_eq!(video_names(&single), ["video"], "{single}");
    });
    let (mut child, output) = subscribe(&dir, &origin, "live/second", "second", "highest", 2);
    assert_plays(&mut child, &output, (320, 180), 40);
    // The first broadcast ending (its source given up after the relay's resume window)
    // gives its place back, and the next broadcast is transcoded.
    let _ = first.kill();
    let _ = first.wait();
    origin.wait_metric_below("stagecast_transcodes", 1.0);
    // Killed with its handle, then reaped by the origin's runtime.
    wait_until(
        "the ended transcode's ffmpeg to be gone",
        Duration::from_secs(10),
        || ffmpeg_children(origin.pid()).is_empty(),
    );
    let mut third = publish_looped(&dir, &origin, "live/third", &clip);
    rt.block_on(async {
        let watcher = Watcher::connect(&origin).await;
        let ladder = watcher.catalog_until("live/third", is_ladder).await;
        assert_eq!(video_names(&ladder), ["video", "video.144p"]);
    });
    assert_eq!(origin.metric(REFUSED), Some(1.0));
    for publisher in [&mut second, &mut third] {
        let _ = publisher.kill();
        let _ = publisher.wait();
    }
}

#[test]
fn a_killed_transcoder_restarts_while_the_source_plays_on() {
    let dir = output_dir("transcode_restart");
    let clip = media::make_clip(&dir, "clip.mp4", 4, Layout::FragKeyframe, false);
    let origin = Node::origin(&dir, "origin", &["--no-demo", "--transcode", "144p:150k"]);
    let mut publisher = publish_looped(&dir, &origin, "live/a", &clip);
    let rt = runtime();
    let watcher = rt.block_on(Watcher::connect(&origin));
    let catalog = rt.block_on(watcher.catalog_until("live/a", is_ladder));
    let timescale = videos(&catalog)[1]["timescale"]
        .as_f64()
        .expect("a timescale");
    let source_timescale = videos(&catalog)[0]["timescale"]
        .as_f64()
        .expect("a timescale");
    let mut rung = rt.block_on(watcher.subscribe("live/a", "video.144p"));
    let mut source_groups = rt.block_on(watcher.subscribe("live/a", "video"));
    let before = rt.block_on(group_starts(&mut rung, 1, timescale));
    // A source subscriber across the kill and the restart.
    let (mut source, output) = subscribe(&dir, &origin, "live/a", "source", "180p", 6);
    wait_until(
        "the source subscriber to write media",
        Duration::from_secs(10),
        || media::video_packets_so_far(&output) > 0,
    );
    let children = ffmpeg_children(origin.pid());
    assert_eq!(
        children.len(),
        1,
        "one ffmpeg under the origin: {children:?}"
    );
    signal(children[0], "KILL");
    let killed = Instant::now();
    origin.wait_metric("stagecast_transcode_restarts_total", 1.0);
    wait_until(
        "a new ffmpeg under the origin",
        Duration::from_secs(10),
        || {
            let now = ffmpeg_children(origin.pid());
            now.len() == 1 && now[0] != children[0]
        },
    );
    // The rung goes on, in its own track, with groups past those before the kill.
    let last_before = *before.keys().last().expect("a group");
    rt.block_on(async {
        let mut after = BTreeMap::new();
        while after.len() < 2 {
            let next = tokio::time::timeout(Duration::from_secs(15), rung.recv()).await;
            let Ok(Some((id, payload))) = next else {
                panic!("the rung stopped after its transcoder was killed");
            };
            if id > last_before {
                let time = first_decode_time(&payload).expect("a tfdt");
                after.insert(id, time as f64 / timescale);
            }
        }
        // The new ffmpeg joined the source mid-stream and still keeps its timeline: its
        // groups start where the source's groups of the same ids start.
        let mut source = BTreeMap::new();
        while !after.keys().all(|id| source.contains_key(id)) {
            let next = tokio::time::timeout(Duration::from_secs(15), source_groups.recv()).await;
            let Ok(Some((id, payload))) = next else {
                panic!("no source groups {after:?} (got {source:?})");
            };
            let time = first_decode_time(&payload).expect("a tfdt");
            source.insert(id, time as f64 / source_timescale);
        }
        for (id, start) in &after {
            assert!(
                (start - source[id]).abs() < 0.5 / 30.0,
                "after the restart, group {id} starts at {start} in the rung and {} in the source",
                source[id]
            );
        }
    });
    assert!(
        killed.elapsed() < Duration::from_secs(15),
        "restarted in {:?}",
        killed.elapsed()
    );
    assert_plays(&mut source, &output, (320, 180), 150);
    let times = video_times(&output);
    let gap = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(
        gap < 0.1,
        "the source rendition played without a gap (largest {gap:.3} s)"
    );
    let _ = publisher.kill();
    let _ = publisher.wait();
}

#[test]
fn a_publisher_back_with_another_picture_is_transcoded_again() {
    let dir = output_dir("transcode_new_source");
    let small = media::make_clip(&dir, "small.mp4", 4, Layout::FragKeyframe, false);
    let large = dir.join("large.mp4");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i"])
        .arg(&small)
        .args([
            "-vf",
            "scale=640:360",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
        ])
        .args([
            "-tune",
            "zerolatency",
            "-g",
            "30",
            "-c:a",
            "copy",
            "-f",
            "mp4",
        ])
        .args(["-movflags", Layout::FragKeyframe.movflags()])
        .arg(&large)
        .status()
        .expect("ffmpeg is installed");
    assert!(status.success(), "scaling the clip");
    let origin = Node::origin(&dir, "origin", &["--no-demo", "--transcode", "144p:150k"]);
    let mut publisher = publish_looped(&dir, &origin, "live/a", &small);
    let rt = runtime();
    let watcher = rt.block_on(Watcher::connect(&origin));
    let first = rt.block_on(watcher.catalog_until("live/a", is_ladder));
    assert_eq!(videos(&first)[0]["height"], 180);
    // The creator restarts with a larger picture: a new init segment for the same track.
    let _ = publisher.kill();
    let _ = publisher.wait();
    let mut publisher = publish_looped(&dir, &origin, "live/a", &large);
    // A session subscribes to a track once: a new watcher reads the catalog again.
    let watcher = rt.block_on(Watcher::connect(&origin));
    let second = rt.block_on(watcher.catalog_until("live/a", |catalog| {
        is_ladder(catalog) && videos(catalog)[0]["height"] == 360
    }));
    assert_eq!(video_names(&second), ["video", "video.144p"]);
    assert_eq!(videos(&second)[1]["width"], 256);
    assert_eq!(
        origin.metric("stagecast_transcodes"),
        Some(1.0),
        "one place, kept"
    );
    let (mut child, output) = subscribe(&dir, &origin, "live/a", "r144", "144p", 2);
    assert_plays(&mut child, &output, (256, 144), 40);
    let _ = publisher.kill();
    let _ = publisher.wait();
}
